#pragma once
#include "persona/engine.h"
#include "persona/flagging.h"
#include "persona/model_facts.h"

#include <QString>
#include <QWidget>

#include <map>
#include <optional>
#include <string>
#include <vector>

class EngineClient;
class QCPBars;
class QCPItemStraightLine;
class QCustomPlot;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;
class VectorChoice;

// Flagging training data (docs/method.md) point and click: a chat JSONL dataset flagged on the
// engine thread (progress, Stop; results append to a file in the app's data folder, so running
// the same flagging again continues), the samples ranked by projection difference with their
// prompt, the dataset's answer and the model's own, a histogram of the differences with a
// threshold the user drags (or types), and the dataset split at that threshold into flagged and
// kept JSONL files. Double-clicking a sample asks for its heat map.
class FlaggingPanel : public QWidget {
    Q_OBJECT
public:
    enum Column { LineColumn, DifferenceColumn, PromptColumn, DatasetAnswerColumn, ModelAnswerColumn };

    explicit FlaggingPanel(EngineClient* engine, QWidget* parent = nullptr);

    void setModel(const persona::ModelFacts& facts);
    void setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors);
    VectorChoice* vectorChoice() const { return vector_; }
    void setDataset(const QString& path);
    void setLayer(int layer);
    void setMaxTokens(int tokens);
    // Where results files go; the app's data folder by default.
    void setResultsDirectory(const QString& directory);
    // The results file for the dataset, vector and settings now chosen.
    QString resultsPath() const;

    const std::vector<persona::FlagRecord>& records() const { return records_; }
    bool running() const { return running_; }
    double threshold() const;
    void setThreshold(double threshold);
    int flaggedCount() const;  // samples at or above the threshold
    QTableWidget* table() const { return table_; }
    QCustomPlot* histogram() const { return histogram_; }
    QString message() const;
    // Atomic; false and a message when there are no results or a file cannot be written.
    bool exportSplit(const QString& flaggedPath, const QString& keptPath);

public slots:
    void run();
    void cancel();

signals:
    void flaggingStarted();
    void flaggingFinished();
    void flaggingFailed(const QString& error);
    // A sample's conversation (its prompt and the dataset's answer) on the chosen vector.
    void heatMapRequested(const std::vector<persona::ChatMessage>& conversation, const persona::PersonaVector& vector);

private:
    void buildForm();
    void buildResults();
    void refreshButtons();
    void showResults(const persona::FlagInput& input, const persona::FlagSummary& summary);
    void drawHistogram();
    void showThreshold();
    void openRow(int row);

    EngineClient* engine_;
    bool hasModel_ = false;
    QString resultsDirectory_;

    QLineEdit* dataset_;
    VectorChoice* vector_;
    QSpinBox* layer_;
    QSpinBox* maxTokens_;
    QPushButton* runButton_;
    QPushButton* stopButton_;
    QPushButton* exportButton_;
    QProgressBar* progress_;
    QLabel* message_;
    QDoubleSpinBox* threshold_;
    QLabel* counts_;
    QCustomPlot* histogram_;
    QCPBars* bars_ = nullptr;
    QCPItemStraightLine* thresholdLine_ = nullptr;
    QTableWidget* table_;

    bool running_ = false;
    persona::JobHandle job_;
    std::optional<persona::FlagInput> input_;
    std::vector<persona::FlagRecord> records_;  // ranked
    std::vector<std::vector<persona::ChatMessage>> conversations_;  // per ranked record
    bool dragging_ = false;
};
