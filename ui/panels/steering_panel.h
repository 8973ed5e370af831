#pragma once
#include "persona/engine.h"
#include "persona/model_facts.h"
#include "persona/persona_vector.h"

#include <QElapsedTimer>
#include <QStringList>
#include <QTimer>
#include <QWidget>

#include <array>
#include <map>
#include <string>
#include <cstdint>
#include <vector>

class EngineClient;
class MoreVectorsEditor;
class ProjectionHeatMap;
class StrengthControl;
class VectorChoice;
class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QGridLayout;
class QHBoxLayout;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QStackedWidget;
class QPushButton;
class QSpinBox;
class QTextCursor;
class QTextEdit;
namespace persona { struct TokenEvent; struct GenerationResult; struct Steering; struct SteeringSettings; }

// Steered and unsteered generations side by side with the same seed: each token tinted by its
// projection on the vector at the steered layer, and a layer x token heat map of those
// projections under each pane. Strength is calibrated (StrengthControl), decoding greedy unless
// Sample is ticked.
//
// Nothing generates until Generate (or Sweep) is pressed. After that, the user's own changes
// regenerate: a change of steering alone (strength, layer, positions, operation) regenerates
// only the steered row, at once, with the old steered text greyed until new tokens arrive; a
// change of the prompt or sampling regenerates both (debounced while typing). What a program
// sets (a project opened, an extraction finished) never starts a generation.
// Sweep mode runs one batched job with a row per strength and shows them side by side.
class SteeringPanel : public QWidget {
    Q_OBJECT
public:
    enum Pane { Unsteered = 0, Steered = 1 };
    enum Mode { PairMode, SweepMode };

    explicit SteeringPanel(EngineClient* engine, QWidget* parent = nullptr);

    void setModel(const persona::ModelFacts& facts);
    // Adds a vector file to the vector choice and selects it; false (and a message in the
    // panel) when it cannot be read or does not fit the model.
    bool openVectorFile(const QString& path);
    void useRandomDirection();
    // Adds a vector (an extraction's, say) to the vector choice under `name` and selects it,
    // with its suggested layer when that is a block's output; false when it does not fit the model.
    bool useVector(const persona::PersonaVector& vector, const QString& name, int suggestedLayer);
    // The open project's vectors in the vector choice (VectorChoice::setProjectVectors).
    void setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors);
    // The whole setup, as a project saves it, and back; applying starts nothing. A vector key
    // the choice does not hold leaves the vector as it is.
    persona::SteeringSettings settings() const;
    void applySettings(const persona::SteeringSettings& settings);
    // The vector chosen now; null before a model is loaded.
    const persona::PersonaVector* currentVector() const;
    int steeredLayer() const;
    void setPrompt(const QString& prompt);
    // The user's choices made from elsewhere (the Project tree): like choosing in the panel,
    // they regenerate once Generate has been pressed.
    bool selectProjectVector(const QString& key);
    void setConversation(const QString& system, const QString& user);
    void setCoefficient(double coefficient);
    double coefficient() const;
    // Calibrated: coefficient x |v_l| / typical |h_l| (ModelFacts::typical_residual_norms).
    void setStrength(double strength);
    double strength() const;

    bool generating() const { return generating_; }
    // The last generation this panel started (queued, running or ended).
    const persona::JobHandle& job() const { return job_; }
    // Rows of the last generation started: 1 when only the steered row was regenerated.
    int lastJobRows() const { return lastJobRows_; }
    QString paneText(Pane pane) const;
    int tokenCount(Pane pane) const;
    ProjectionHeatMap* heatMap(Pane pane) const;
    ProjectionHeatMap* differenceHeatMap() const { return differenceMap_; }
    // The coefficient of the generation now shown (what the steered pane was made with).
    double shownCoefficient() const { return shownCoefficient_; }
    // The vectors steered with the first (up to three more), composed in the steered row.
    MoreVectorsEditor* moreVectors() const { return moreVectors_; }

    // Chat mode: a conversation typed below the panes; each assistant turn is answered
    // unsteered and steered side by side, each side continuing its own earlier answers. The
    // prompt box gives way to the chat line; Send and a changed strength work as Generate does.
    void setChatMode(bool on);
    bool chatMode() const { return chatOn_; }
    void sendChatMessage(const QString& text);
    void clearChat();
    int chatTurns() const { return static_cast<int>(chat_.size()); }
    // What that side's row is generated from: the system prompt, the earlier turns with that
    // side's own answers, and the newest user message (chat mode), or the single prompt.
    std::vector<persona::ChatMessage> conversation(Pane pane) const;

    // The presenter view: the two texts in a large font and the strength slider, nothing else.
    void setPresenterMode(bool on);
    bool presenterMode() const { return presenterMode_; }

    Mode mode() const { return mode_; }
    // "-1, -0.5, 0, 0.5, 1": calibrated strengths separated by commas or spaces (raw
    // coefficients while the model gives no calibration).
    void setSweepStrengths(const QString& list);
    // The parsed list; empty (and a message) when it holds something that is not a number.
    std::vector<double> sweepStrengths() const;
    int sweepColumnCount() const { return static_cast<int>(sweepColumns_.size()); }
    double sweepColumnCoefficient(int column) const;
    QString sweepColumnText(int column) const;
    int sweepColumnTokens(int column) const;
public slots:
    void generate();
    void sweep();
    void stop();

signals:
    // The user changed an input: the project's steering setup is no longer what was saved.
    void setupEdited();
    void generationStarted();
    void generationProgress(int steps, int maxSteps, double tokensPerSecond);
    void generationFinished();
    void generationStopped();
    void generationFailed(const QString& error);

private:
    struct PaneTokens {
        QStringList texts;
        std::vector<std::vector<float>> projections;  // [token][layer 0..L]
        bool stale = false;  // an older generation's text, shown greyed until new tokens arrive
    };
    // Changes the widgets as a program, not the user: no regeneration, no setupEdited.
    struct Programmatic {
        explicit Programmatic(SteeringPanel* panel) : panel_(panel) { ++panel_->programmatic_; }
        ~Programmatic() { --panel_->programmatic_; }
        SteeringPanel* panel_;
    };

    void buildInputs();
    void buildPanes();
    void buildSweepView();
    void buildChatBar();
    // Chat mode: the earlier turns of that side, before the answer being generated.
    void renderChatHistory(Pane pane, QTextCursor& cursor) const;
    // The answer the pane now shows, as text.
    QString paneAnswer(Pane pane) const;
    // A model, a vector and something to answer; else false, with what is missing in the panel.
    bool readyToGenerate();
    // The vectors steered with the first, as steering; false, with why in the panel, when a row
    // has no vector.
    bool moreSteeringOrMessage(std::vector<persona::Steering>* steering);
    void regenerate();
    void startJob(std::vector<persona::GenerationRow> rows, persona::ProjectionProbe probe);
    void refreshSweep();
    void connectInputs();
    // Text and sampling inputs: both rows regenerate, debounced. Steering inputs: the steered
    // row alone, at once.
    void inputChanged();
    void steeringChanged();
    void vectorChanged();
    void rescaleStrength();
    float temperature() const;
    persona::SteerOperation operation() const;  // of the first vector
    persona::GenerationRow unsteeredRow() const;
    // Everything the unsteered row and its projections depend on.
    QString unsteeredKey() const;
    void addVector(const QString& name, persona::PersonaVector vector, int suggestedLayer);
    void onToken(const persona::TokenEvent& event);
    void onFinished(const std::vector<persona::GenerationResult>& results);
    void settle(const QString& message);
    void refreshViews();
    void renderPane(Pane pane, double scale);
    void reportProgress();

    EngineClient* engine_;
    QPlainTextEdit* systemPrompt_;
    QPlainTextEdit* prompt_;
    VectorChoice* vectorChoice_;
    QSpinBox* layer_;
    QComboBox* positions_;
    QComboBox* operation_;
    MoreVectorsEditor* moreVectors_;
    StrengthControl* strength_;
    QSpinBox* maxTokens_;
    QCheckBox* sample_;
    QDoubleSpinBox* temperature_;
    QSpinBox* seed_;
    QPushButton* generateButton_;
    QPushButton* stopButton_;
    QLineEdit* sweepList_;
    QPushButton* sweepButton_;
    QStackedWidget* views_;
    QWidget* sweepColumnsHost_;
    QHBoxLayout* sweepColumnsLayout_;
    QLabel* message_;
    QWidget* setupBox_;
    QWidget* chatBar_;
    QCheckBox* chatToggle_;
    QLineEdit* chatInput_;
    QPushButton* sendButton_;
    struct ChatTurn {
        QString user;
        std::array<QString, 2> answers;  // by Pane; empty until generated
    };
    std::vector<ChatTurn> chat_;  // the last turn is the one the panes answer
    bool chatOn_ = false;
    QWidget* runControls_;
    QWidget* messageBox_;
    QGridLayout* paneGrid_;
    bool presenterMode_ = false;
    double normalPaneFontSize_ = 0;
    std::array<QLabel*, 2> paneTitles_{};
    std::array<QTextEdit*, 2> paneTexts_{};
    std::array<ProjectionHeatMap*, 2> paneMaps_{};
    ProjectionHeatMap* differenceMap_;

    int layerCount_ = 0;  // L: blocks; the vector and the probe have L + 1 layers
    int hiddenSize_ = 0;
    std::vector<double> typicalNorms_;  // l = 0..L; empty: no calibration
    int programmatic_ = 0;
    int vectorEpoch_ = 0;  // bumped whenever the chosen vector may have changed

    persona::JobHandle job_;  // the last generation started; only it is cancelled or shown
    bool generating_ = false;
    bool live_ = false;  // Generate or Sweep was pressed: the user's changes regenerate
    bool steeredOnly_ = false;  // the job started last regenerates the steered row alone
    int lastJobRows_ = 0;
    int jobTokens_ = 0;
    QString shownUnsteeredKey_;  // what the unsteered pane was made from, once complete
    QString runUnsteeredKey_;
    std::array<PaneTokens, 2> panes_;
    int runLayer_ = 0;
    int runMaxTokens_ = 0;
    double runCoefficient_ = 0;
    double shownCoefficient_ = 0;
    Mode mode_ = PairMode;
    struct SweepColumn {
        double coefficient = 0;
        double strengthScale = 0;  // StrengthControl::scale() when the sweep started
        QLabel* title = nullptr;
        QTextEdit* text = nullptr;
        PaneTokens tokens;  // projections: the steered layer only
    };
    std::vector<SweepColumn> sweepColumns_;
    QElapsedTimer runClock_;
    QTimer regenerateDebounce_;
    QTimer refreshCoalescer_;
};
