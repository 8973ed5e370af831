#pragma once
#include "persona/engine.h"
#include "persona/model_facts.h"
#include "persona/persona_vector.h"

#include <QElapsedTimer>
#include <QStringList>
#include <QTimer>
#include <QWidget>

#include <array>
#include <cstdint>
#include <vector>

class EngineClient;
class ProjectionHeatMap;
class VectorChoice;
class QComboBox;
class QDoubleSpinBox;
class QHBoxLayout;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QStackedWidget;
class QPushButton;
class QSlider;
class QSpinBox;
class QTextEdit;
namespace persona { struct TokenEvent; struct GenerationResult; }

// Steered and unsteered generations side by side, from one batched job with the same seed:
// each token tinted by its projection on the vector at the steered layer, and a layer x token
// heat map of those projections under each pane. Once a generation has run, changing any input
// (the coefficient slider above all) cancels it and generates again.
// Sweep mode runs one batched job with a row per coefficient (same prompt, seed and sampling)
// and shows the rows side by side as columns.
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
    // The vector chosen now; null before a model is loaded.
    const persona::PersonaVector* currentVector() const;
    int steeredLayer() const;
    void setPrompt(const QString& prompt);
    void setCoefficient(double coefficient);
    double coefficient() const;

    bool generating() const { return generating_; }
    // The last generation this panel started (queued, running or ended).
    const persona::JobHandle& job() const { return job_; }
    QString paneText(Pane pane) const;
    int tokenCount(Pane pane) const;
    ProjectionHeatMap* heatMap(Pane pane) const;
    ProjectionHeatMap* differenceHeatMap() const { return differenceMap_; }
    // The coefficient of the generation now shown (what the steered pane was made with).
    double shownCoefficient() const { return shownCoefficient_; }

    Mode mode() const { return mode_; }
    // "-8, -4, 0, 4, 8": numbers separated by commas or spaces.
    void setSweepCoefficients(const QString& list);
    // The parsed list; empty (and a message) when it holds something that is not a number.
    std::vector<double> sweepCoefficients() const;
    int sweepColumnCount() const { return static_cast<int>(sweepColumns_.size()); }
    double sweepColumnCoefficient(int column) const;
    QString sweepColumnText(int column) const;
    int sweepColumnTokens(int column) const;
public slots:
    void generate();
    void sweep();
    void stop();

signals:
    void generationStarted();
    void generationProgress(int steps, int maxSteps, double tokensPerSecond);
    void generationFinished();
    void generationStopped();
    void generationFailed(const QString& error);

private:
    struct PaneTokens {
        QStringList texts;
        std::vector<std::vector<float>> projections;  // [token][layer 0..L]
    };

    void buildInputs();
    void buildPanes();
    void buildSweepView();
    void regenerate();
    void startJob(std::vector<persona::GenerationRow> rows, persona::ProjectionProbe probe);
    void refreshSweep();
    void connectInputs();
    void inputChanged();
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
    QSlider* coefficientSlider_;
    QDoubleSpinBox* coefficient_;
    QSpinBox* maxTokens_;
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
    std::array<QLabel*, 2> paneTitles_{};
    std::array<QTextEdit*, 2> paneTexts_{};
    std::array<ProjectionHeatMap*, 2> paneMaps_{};
    ProjectionHeatMap* differenceMap_;

    int layerCount_ = 0;  // L: blocks; the vector and the probe have L + 1 layers
    int hiddenSize_ = 0;

    persona::JobHandle job_;  // the last generation started; only it is cancelled or shown
    bool generating_ = false;
    bool live_ = false;  // a generation has run: input changes regenerate
    std::array<PaneTokens, 2> panes_;
    int runLayer_ = 0;
    int runMaxTokens_ = 0;
    double runCoefficient_ = 0;
    double shownCoefficient_ = 0;
    Mode mode_ = PairMode;
    struct SweepColumn {
        double coefficient = 0;
        QLabel* title = nullptr;
        QTextEdit* text = nullptr;
        PaneTokens tokens;  // projections: the steered layer only
    };
    std::vector<SweepColumn> sweepColumns_;
    QElapsedTimer runClock_;
    QTimer regenerateDebounce_;
    QTimer refreshCoalescer_;
};
