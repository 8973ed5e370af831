#pragma once
#include "shell/engine_client.h"
#include "persona/extraction.h"
#include "persona/generation.h"
#include "persona/model_facts.h"
#include "persona/persona_vector.h"
#include "persona/trait.h"

#include <QWidget>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

class ProjectionHeatMap;
class VectorChoice;
class QComboBox;
class QLabel;
class QPlainTextEdit;
class QPushButton;
class QScrollArea;

// Where a persona vector lights up: a layer x token map of one conversation's projections on the
// vector (docs/method.md: monitoring), and a layer x sample map of the last extraction's kept samples,
// positives and negatives side by side.
class HeatMapPanel : public QWidget {
    Q_OBJECT
public:
    enum SampleScale { CentredPerLayer = 0, RawProjection = 1 };

    explicit HeatMapPanel(EngineClient* engine, QWidget* parent = nullptr);

    void setModel(const persona::ModelFacts& facts);
    // Adds a vector file to the vector choice and selects it; false (and a message in the panel)
    // when it cannot be read or does not fit the model.
    bool openVectorFile(const QString& path);
    // The last extraction's three aggregates become choices (response_avg selected), and its
    // samples can fill the conversation.
    void setExtraction(const persona::Trait& trait, const persona::ExtractionResult& result);
    const persona::PersonaVector* currentVector() const;
    bool selectVector(const QString& name);
    // Lists `vector` under `name` (replacing an entry of that name) and selects it.
    void useVector(const QString& name, const persona::PersonaVector& vector);
    // The open project's vectors in the vector choice (VectorChoice::setProjectVectors).
    void setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors);
    bool selectProjectVector(const QString& key);

    // One turn: the earlier turns, if any, are dropped.
    void setConversation(const QString& system, const QString& user, const QString& assistant);
    // A whole conversation (a flagged multi-turn sample): its first system message, last user
    // message and the answer after it fill the boxes; the turns between come first in the map,
    // listed above the boxes until cleared.
    void setConversation(const std::vector<persona::ChatMessage>& messages);
    int earlierTurnCount() const { return static_cast<int>(earlierTurns_.size()); }
    // Fills the conversation from sample `index` of the last extraction (its system prompt,
    // question and answer); false when there is no such sample.
    bool useSample(int index);
    void setSampleScale(SampleScale scale);

    bool computing() const { return computing_; }
    // What the conversation map shows now.
    const ConversationProjections& projections() const { return projections_; }
    ProjectionHeatMap* conversationMap() const { return conversationMap_; }
    ProjectionHeatMap* sampleMap() const { return sampleMap_; }
    // Kept samples of the map, in column order (indices into the extraction's samples).
    const std::vector<std::size_t>& sampleColumns() const { return sampleColumns_; }
    QString message() const;

public slots:
    void compute();
    void stop();

signals:
    void computeFinished();
    void computeStopped();
    void computeFailed(const QString& error);

private:

    void buildInputs();
    void buildMaps();
    void showConversation();
    void setEarlierTurns(std::vector<persona::ChatMessage> turns);
    void showSamples();
    void layOutConversationMap();

    EngineClient* engine_;
    VectorChoice* vectorChoice_;
    QComboBox* sampleChoice_;
    QPlainTextEdit* system_;
    QPlainTextEdit* user_;
    QPlainTextEdit* assistant_;
    std::vector<persona::ChatMessage> earlierTurns_;  // between the system message and the last user message
    QWidget* earlierTurnsBox_;
    QLabel* earlierTurnsLabel_;
    QPushButton* computeButton_;
    QPushButton* stopButton_;
    QLabel* message_;
    QScrollArea* conversationScroll_;
    ProjectionHeatMap* conversationMap_;
    QComboBox* sampleScale_;
    ProjectionHeatMap* sampleMap_;

    int layerCount_ = 0;  // L
    int hiddenSize_ = 0;
    std::optional<persona::Trait> trait_;
    std::optional<persona::ExtractionResult> extraction_;
    std::vector<std::size_t> sampleColumns_;

    bool computing_ = false;
    persona::JobHandle job_;  // the last heat map started; only it is cancelled or shown
    ConversationProjections projections_;
    QString projectedVectorName_;
};
