#pragma once
#include "persona/engine.h"
#include "persona/finetune.h"
#include "persona/model_facts.h"
#include "persona/persona_vector.h"
#include "persona/shift.h"
#include "persona/trait.h"

#include <QString>
#include <QWidget>

#include <map>
#include <optional>
#include <string>
#include <vector>

class EngineClient;
class JudgeChoice;
class QComboBox;
class QCustomPlot;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;
class TraitChoice;
class VectorChoice;

// Preventative steering point and click (docs/finetuning.md): a LoRA adapter trained on a chat
// JSONL file on the engine thread, with a persona vector added (or ablated) at a layer in every
// training pass; the loss curve drawn as it trains, progress with ETA, Stop and resume (training
// again with the same settings continues from the last checkpoint); then a before/after table of
// the base and the fine-tuned model: judged trait and coherence on the trait's evaluation
// questions, projection on the vector, and held-out perplexity. The adapter, training.json and
// shift.json go to the output folder: inside the project's folder once it is saved.
class TrainingPanel : public QWidget {
    Q_OBJECT
public:
    enum Column { BaseColumn, TunedColumn, ChangeColumn };
    enum Row { TraitRow, CoherenceRow, ProjectionRow, PerplexityRow };

    explicit TrainingPanel(EngineClient* engine, QWidget* parent = nullptr);

    void setModel(const persona::ModelFacts& facts);
    void setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors);
    void setTraits(const std::vector<persona::Trait>& traits);
    // The saved project's folder ("" when unsaved): adapters default to its adapters/ folder.
    void setProjectFolder(const QString& folder);

    void setDataset(const QString& path);
    void setOutputFolder(const QString& folder);
    QString outputFolder() const;
    VectorChoice* vectorChoice() const { return vector_; }
    void setSteering(persona::SteerOperation operation, int layer, double coefficient);
    void setSteeringOff();
    // The form as settings (the output folder and the steering vector included).
    persona::FinetuneSettings settings() const;
    void setSettings(const persona::FinetuneSettings& settings);  // all but the output folder and steering
    void setComparisonQuestions(int questions);
    void setComparisonJudge(const persona::JudgeSettings& judge);

    bool running() const { return running_; }
    const std::vector<double>& losses() const { return losses_; }
    const std::optional<persona::FinetuneResult>& result() const { return result_; }
    QCustomPlot* lossPlot() const { return lossPlot_; }
    QTableWidget* comparison() const { return comparison_; }
    QString message() const;

public slots:
    void train();
    void compare();
    void cancel();

signals:
    void trainingStarted();
    void trainingFinished();
    void trainingFailed(const QString& error);
    void comparisonFinished();

private:
    void build();
    void refreshButtons();
    void drawLosses();
    void showComparison(const persona::ShiftMeasure& base, const persona::ShiftMeasure& tuned);

    EngineClient* engine_;
    bool hasModel_ = false;
    QString projectFolder_;

    QLineEdit* dataset_;
    QLineEdit* output_;
    QSpinBox* rank_;
    QDoubleSpinBox* alpha_;
    QDoubleSpinBox* learningRate_;
    QSpinBox* epochs_;
    QSpinBox* batch_;
    QSpinBox* accumulation_;
    QSpinBox* maxLength_;
    QSpinBox* seed_;
    QSpinBox* checkpointEvery_;
    QComboBox* steerOperation_;
    VectorChoice* vector_;
    QSpinBox* layer_;
    QDoubleSpinBox* coefficient_;
    TraitChoice* trait_;
    JudgeChoice* judge_;
    QSpinBox* questions_;
    QPushButton* trainButton_;
    QPushButton* compareButton_;
    QPushButton* stopButton_;
    QProgressBar* progress_;
    QLabel* status_;
    QLabel* message_;
    QCustomPlot* lossPlot_;
    QTableWidget* comparison_;

    bool running_ = false;
    persona::JobHandle job_;
    std::vector<double> losses_;  // per optimiser step; NaN for steps a resumed run has not shown yet
    std::optional<persona::FinetuneResult> result_;
};
