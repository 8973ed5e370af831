#pragma once
#include "persona/engine.h"
#include "persona/model_facts.h"
#include "persona/monitoring_study.h"
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
class QCPItemStraightLine;
class QCustomPlot;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;
class TraitChoice;
class VectorChoice;

// The monitoring study (docs/method.md, "Does the prediction predict?") point and click: a
// ladder of system prompts the user edits, each asked the trait's evaluation questions on the
// engine thread; the last prompt token's projection is read before each answer, the answers are
// judged, and the panel draws projection against trait score coloured by rung, with Pearson's r
// and its interval. Points appear as they are judged; Stop cancels this study only.
class MonitoringPanel : public QWidget {
    Q_OBJECT
public:
    enum Column { RungColumn, QuestionColumn, ProjectionColumn, TraitColumn, CoherenceColumn, AnswerColumn };

    explicit MonitoringPanel(EngineClient* engine, QWidget* parent = nullptr);

    void setModel(const persona::ModelFacts& facts);
    // The traits to choose from; the built-in ones until a project supplies its own.
    void setTraits(const std::vector<persona::Trait>& traits);
    bool selectTrait(const QString& name);
    void setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors);
    VectorChoice* vectorChoice() const { return vector_; }

    // The ladder's rungs as the table says (empty labels get "rung N"); setting it replaces them.
    std::vector<persona::LadderPrompt> ladder() const;
    void setLadder(const std::vector<persona::LadderPrompt>& ladder);
    void setJudge(const persona::JudgeSettings& judge);
    persona::MonitoringStudySettings settings() const;
    void setLayer(int layer);
    void setQuestionLimit(int questions);
    void setMaxTokens(int tokens);

    // A finished or reopened study, drawn and tabled; starts nothing.
    void showStudy(const persona::MonitoringStudy& study, const QString& savedAs = {});
    const persona::MonitoringStudy* study() const { return study_ ? &*study_ : nullptr; }
    bool running() const { return running_; }
    // The plotted (projection, trait score) points of one rung.
    std::vector<std::pair<double, double>> plotPoints(int rung) const;
    QString correlationText() const;
    // The live gauge: how many token projections it showed in the running (or last) study, and
    // the last one.
    int gaugeUpdates() const { return gaugeUpdates_; }
    double gaugeValue() const { return gaugeValue_; }
    QString message() const;
    QCustomPlot* plot() const { return plot_; }
    QTableWidget* pointTable() const { return table_; }
    // Atomic; false and a message in the panel when there is no study or it cannot be written.
    bool exportCsv(const QString& path);

public slots:
    void run();
    void cancel();
    void resetLadder();  // the trait's default ladder

signals:
    void studyStarted();
    void studyFinished(const persona::MonitoringStudy& study);
    void studyFailed(const QString& error);

private:
    void buildForm();
    void buildResults();
    void refreshButtons();
    void addPoint(const persona::MonitoringPoint& point, const std::vector<persona::LadderPrompt>& rungs,
                  const std::vector<std::string>& questions);
    void preparePlot(const std::vector<persona::LadderPrompt>& rungs);
    void showGauge(int point, double projection);
    void showCorrelation(const std::optional<persona::Correlation>& correlation, int points);
    const persona::Trait* currentTrait() const;

    EngineClient* engine_;
    bool hasModel_ = false;

    TraitChoice* trait_;
    VectorChoice* vector_;
    QSpinBox* layer_;
    QSpinBox* questions_;
    QSpinBox* maxTokens_;
    JudgeChoice* judgeChoice_;
    QTableWidget* ladder_;
    QWidget* ladderButtons_;
    QPushButton* runButton_;
    QPushButton* stopButton_;
    QPushButton* exportButton_;
    QProgressBar* progress_;
    QLabel* message_;
    QLabel* correlation_;
    QLabel* gaugeLabel_;
    QCPItemStraightLine* gauge_;
    int gaugeUpdates_ = 0;
    double gaugeValue_ = 0;
    QCustomPlot* plot_;
    QTableWidget* table_;

    bool running_ = false;
    persona::JobHandle job_;
    // What the running study was started with: its points name rungs and questions by index.
    std::vector<persona::LadderPrompt> runRungs_;
    std::vector<std::string> runQuestions_;
    std::optional<persona::MonitoringStudy> study_;
};
