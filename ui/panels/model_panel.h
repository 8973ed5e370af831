#pragma once
#include "persona/model.h"
#include "persona/model_facts.h"

#include <QStringList>
#include <QWidget>

class EngineClient;
class QCheckBox;
class QComboBox;
class QFormLayout;
class QLabel;
class QLineEdit;
class QListWidget;
class QListWidgetItem;
class QProgressBar;
class QPushButton;
class QTableWidget;

// Opening a model (a GGUF file or a Hugging Face checkpoint folder, from a dialog, the recent
// list or a drop), the device and dtype to load it with, and the model's facts: what a user
// checks before trusting anything else the workbench shows.
class ModelPanel : public QWidget {
    Q_OBJECT
public:
    static constexpr int kMaxRecentModels = 10;
    // The QSettings key of the recent list (most recent first).
    static constexpr const char* kRecentModelsKey = "models/recent";
    // The QSettings key of the last server address (never its key).
    static constexpr const char* kServerUrlKey = "models/server_url";

    explicit ModelPanel(EngineClient* engine, QWidget* parent = nullptr);

    // The device and dtype chosen in the panel, as the engine spells them.
    persona::ModelLoadOptions loadOptions() const;
    void setLoadOptions(const persona::ModelLoadOptions& options);

    // Paths from QSettings, most recent first, missing ones included.
    QStringList recentModels() const;
    // Drops a recent entry (one that no longer exists, say).
    void forgetRecentModel(const QString& path);

    // Makes `window` take drops of a .gguf file or a folder and open them here.
    void acceptDropsOn(QWidget* window);
    // A .gguf file or a folder (a folder is checked for being a checkpoint by the engine).
    static bool looksLikeModel(const QString& path);

    void showFacts(const persona::ModelFacts& facts);
    void showMessage(const QString& message);

public slots:
    // Loads with the device and dtype chosen in the panel.
    void openModel(const QString& path);
    // The loaded model again, with the device and dtype chosen now.
    void reloadModel();
    // Uses the model a persona-cli serve serves at the address in the Server box.
    void connectServer();
    void chooseModelFile();
    void chooseModelFolder();
    void removeMissingRecentModels();

signals:
    void recentModelsChanged();

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    QLabel* addFact(QFormLayout* form, const QString& label, const QString& objectName);
    QWidget* buildOpenBox();
    QWidget* buildRecentBox();
    QWidget* buildServerBox();
    QWidget* buildFactsBox();
    void onLoadStarted(const QString& path);
    void onProgress(const QString& stage, qint64 done, qint64 total);
    void onModelLoaded();
    void onLoadFailed(const QString& error);
    void onLoadCancelled();
    void updateButtons();
    void rememberRecentModel(const QString& path);
    void writeRecentModels(const QStringList& paths);
    void refreshRecentList();
    void openRecentItem(QListWidgetItem* item);
    // "SmolLM2 (cpu, bf16) is still loaded." or "" when nothing is.
    QString stillLoadedNote() const;

    EngineClient* engine_;
    QString loadingPath_;  // the load in progress, for its messages
    QString lastRequestedPath_;

    QComboBox* device_;
    QComboBox* dtype_;
    QCheckBox* thinking_;
    QLineEdit* adapter_;
    QPushButton* openFile_;
    QPushButton* openFolder_;
    QPushButton* reload_;
    QPushButton* cancel_;
    QProgressBar* progress_;
    QListWidget* recent_;
    QPushButton* removeMissing_;
    QLineEdit* serverUrl_;
    QLineEdit* serverKey_;
    QPushButton* connectServer_;

    QLabel* message_;
    QLabel* name_;
    QLabel* path_;
    QLabel* architecture_;
    QLabel* layers_;
    QLabel* hidden_;
    QLabel* feedForward_;
    QLabel* heads_;
    QLabel* vocabulary_;
    QLabel* parameters_;
    QLabel* quantization_;
    QLabel* context_;
    QLabel* tokenizer_;
    QLabel* chatTemplate_;
    QLabel* deviceFact_;
    QLabel* memory_;
    QTableWidget* tensorTypes_;
};
