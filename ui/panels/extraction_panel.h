#pragma once
#include "persona/engine.h"
#include "persona/extraction.h"
#include "persona/project.h"
#include "persona/model_facts.h"
#include "persona/trait.h"

#include <QElapsedTimer>
#include <QMap>
#include <QString>
#include <QWidget>

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

class EngineClient;
class QCPItemStraightLine;
class QCPItemText;
class QCheckBox;
class QComboBox;
class QLineEdit;
class QCustomPlot;
class QDoubleSpinBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

// Extracts one trait's persona vector (docs/method.md steps 3-6) on the engine thread: settings,
// a progress bar with an ETA per stage, a table of samples that fills as they are generated and
// judged, and when done, vector norm and separation per layer with the suggested layer marked.
// Finished samples are checkpointed, so a cancelled run resumes where it stopped.
class ExtractionPanel : public QWidget {
    Q_OBJECT
public:
    // Table columns, in order.
    enum Column { QuestionColumn, PairColumn, SideColumn, AnswerColumn, TraitScoreColumn, CoherenceColumn, KeptColumn };
    static const std::array<const char*, 5> kStages;  // generate, judge, filter, capture, vectors

    explicit ExtractionPanel(EngineClient* engine, QWidget* parent = nullptr);

    void setModel(const persona::ModelFacts& facts);
    // The traits to choose from; the built-in ones until a project supplies its own.
    void setTraits(const std::vector<persona::Trait>& traits);
    bool selectTrait(const QString& name);
    const persona::Trait* currentTrait() const;

    persona::ExtractionSettings settings() const;  // as the form says, checkpoint path included
    void setSettings(const persona::ExtractionSettings& settings);
    // Where checkpoints go: the app's data folder unless a project puts them beside itself.
    void setCheckpointDirectory(const QString& directory);
    // The checkpoint for the current trait, model and generation settings (each combination
    // has its own file, so changing a setting never meets a checkpoint it cannot use).
    QString checkpointPath() const;

    bool running() const { return running_; }
    // The last finished run; null before one.
    const persona::ExtractionResult* result() const { return result_ ? &*result_ : nullptr; }
    // A project's run, reopened: its plots from the stored diagnostics and its vector; the
    // samples are not stored, so the table stays empty. Starts nothing and is refused while an
    // extraction runs or for a run without diagnostics or vector (it kept no pair).
    bool showRun(const persona::RunResult& run, const persona::PersonaVector* vector);
    const persona::Trait* resultTrait() const { return result_ ? &resultTrait_ : nullptr; }
    persona::Aggregate aggregate() const;
    void setAggregate(persona::Aggregate aggregate);
    // The chosen aggregate of the last run; null before one, or when no pair was kept.
    const persona::AggregateResult* currentAggregate() const;
    // Atomic; false and a message in the panel when it cannot be written.
    bool saveVector(const QString& path);

    QTableWidget* sampleTable() const { return table_; }
    QProgressBar* stageBar(const QString& stage) const;
    QString stageEta(const QString& stage) const;
    QCustomPlot* normPlot() const { return normPlot_; }
    QCustomPlot* separationPlot() const { return separationPlot_; }
    // The layer the plots mark as suggested; -1 when none is shown.
    int markedLayer() const { return markedLayer_; }
    QString message() const;

public slots:
    void run();
    void cancel();
    void discardCheckpoint();
    void chooseVectorFile();

signals:
    void extractionStarted();
    void extractionProgress(const QString& stage, qint64 done, qint64 total);
    void extractionFinished(const persona::Trait& trait, const persona::ExtractionResult& result);
    void extractionCancelled();
    void extractionFailed(const QString& error);
    // After a run that kept pairs, and whenever the aggregate changes: for the Steering and
    // Heat-map panels.
    void vectorChosen(const persona::PersonaVector& vector, int suggestedLayer);

private:
    using SampleKey = std::tuple<int, int, int, int>;  // question, pair, sample index, side
    struct StageClock {
        QElapsedTimer clock;
        qint64 doneAtStart = -1;
    };

    void buildSettings();
    void buildProgress();
    void buildResults();
    void loadBuiltinTraits();
    void refreshButtons();
    void resetStages();
    void finishStage(std::size_t stage);
    void onProgress(const QString& stage, qint64 done, qint64 total);
    void onSample(const persona::Sample& sample);
    void onFinished(const persona::ExtractionResult& result);
    void settle(const QString& message);
    void showSample(int row, const persona::Sample& sample, bool final);
    void showPlots();

    EngineClient* engine_;
    std::vector<persona::Trait> traits_;
    QString checkpointDirectory_;
    persona::ModelFacts facts_;
    bool hasModel_ = false;

    QComboBox* trait_;
    QSpinBox* questions_;
    QSpinBox* pairs_;
    QSpinBox* samples_;
    QSpinBox* maxTokens_;
    QDoubleSpinBox* temperature_;
    QSpinBox* seed_;
    QSpinBox* batch_;
    QComboBox* judge_;
    QComboBox* judgeMode_;
    QDoubleSpinBox* pairwiseThreshold_;
    QLineEdit* judgeTarget_;  // the second model's path, or "BASE_URL MODEL" of an endpoint
    enum class JudgeChoice { StudiedModel, SecondModel, Endpoint, None };
    void updateJudgeTarget();
    QDoubleSpinBox* traitThreshold_;
    QDoubleSpinBox* negativeThreshold_;
    QDoubleSpinBox* coherenceThreshold_;
    QPushButton* runButton_;
    QPushButton* cancelButton_;
    QPushButton* discardButton_;
    QLabel* message_;
    std::array<QProgressBar*, 5> stageBars_{};
    std::array<QLabel*, 5> stageEtas_{};
    std::array<StageClock, 5> stageClocks_{};
    QTableWidget* table_;
    QCustomPlot* normPlot_;
    QCustomPlot* separationPlot_;
    std::array<QCPItemStraightLine*, 2> suggestedLines_{};
    std::array<QCPItemText*, 2> suggestedLabels_{};
    QComboBox* aggregate_;
    QPushButton* saveButton_;
    QLabel* summary_;

    bool running_ = false;
    bool cancelRequested_ = false;
    persona::JobHandle job_;  // the last run started; only it is cancelled or shown
    std::map<SampleKey, int> rowOfSample_;
    persona::Trait runTrait_;
    persona::Trait resultTrait_;
    persona::ExtractionSettings runSettings_;
    std::optional<persona::ExtractionResult> result_;
    int markedLayer_ = -1;
};
