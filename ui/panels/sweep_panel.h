#pragma once
#include "persona/engine.h"
#include "persona/model_facts.h"
#include "persona/sweep.h"
#include "persona/trait.h"

#include <QString>
#include <QWidget>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

class EngineClient;
class JudgeChoice;
class QCheckBox;
class QCPItemStraightLine;
class QCustomPlot;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;
class TraitChoice;
class VectorChoice;

// persona::run_sweep drawn (docs/method.md, "Steering sweep"): judged trait score and coherence
// against calibrated strength, one curve per layer, the recommended cell ringed, and the
// prompting baseline (the questions asked under the trait's positive system prompt) as a
// dashed line, so one sees whether steering beats simply asking. Clicking a point lists that
// cell's answers. Runs on the engine thread with progress and Stop; the sweep checkpoints every
// batch, so running the same sweep again after Stop continues where it stopped.
class SweepPanel : public QWidget {
    Q_OBJECT
public:
    explicit SweepPanel(EngineClient* engine, QWidget* parent = nullptr);

    void setModel(const persona::ModelFacts& facts);
    void setTraits(const std::vector<persona::Trait>& traits);
    bool selectTrait(const QString& name);
    void setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors);
    VectorChoice* vectorChoice() const { return vector_; }

    // Layers and calibrated strengths as the form says (empty when a list does not parse).
    persona::SweepSettings settings() const;
    void setLayers(const std::vector<int>& layers);
    void setStrengths(const std::vector<double>& strengths);
    void setQuestionLimit(int questions);
    void setMaxTokens(int tokens);
    void setJudge(const persona::JudgeSettings& judge);
    // Where checkpoints go (one file per trait); the app's data folder by default.
    void setCheckpointDirectory(const QString& directory);
    QString checkpointPath() const;

    void showResult(const persona::SweepResult& result);
    const persona::SweepResult* result() const { return result_ ? &*result_ : nullptr; }
    bool running() const { return running_; }
    // Drawn points (calibrated strength, mean score) of one layer's curve; `coherence` picks the plot.
    std::vector<std::pair<double, double>> curve(int layer, bool coherence) const;
    // The prompting baseline's line on the trait (or coherence) plot; nothing when none is drawn.
    std::optional<double> baselineLine(bool coherence) const;
    // The cell whose answers the table lists (after a click, or showCell).
    void showCell(int layer, double calibratedStrength);
    QTableWidget* answerTable() const { return answers_; }
    QCustomPlot* traitPlot() const { return traitPlot_; }
    QCustomPlot* coherencePlot() const { return coherencePlot_; }
    QString message() const;

public slots:
    void run();
    void cancel();

signals:
    void sweepStarted();
    void sweepFinished(const persona::SweepResult& result);
    void sweepFailed(const QString& error);

private:
    void buildForm();
    void buildResults();
    void refreshButtons();
    void draw(const persona::SweepResult& result);
    void drawCell(const persona::SweepCell& cell);
    void prepareCurves(const std::vector<int>& layers);
    const persona::Trait* currentTrait() const;

    EngineClient* engine_;
    bool hasModel_ = false;
    QString checkpointDirectory_;

    TraitChoice* trait_;
    VectorChoice* vector_;
    QLineEdit* layers_;
    QLineEdit* strengths_;
    QSpinBox* questions_;
    QSpinBox* maxTokens_;
    JudgeChoice* judge_;
    QCheckBox* promptingBaseline_;
    QPushButton* runButton_;
    QPushButton* stopButton_;
    QProgressBar* progress_;
    QLabel* message_;
    QLabel* summary_;
    QCustomPlot* traitPlot_;
    QCustomPlot* coherencePlot_;
    std::map<QCustomPlot*, QCPItemStraightLine*> baselineLines_;
    QTableWidget* answers_;

    bool running_ = false;
    persona::JobHandle job_;
    std::vector<int> runLayers_;  // the curves of the running sweep, in plot order
    std::vector<persona::SweepCell> liveCells_;
    std::optional<persona::SweepResult> result_;
};
