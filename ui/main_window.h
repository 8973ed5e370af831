#pragma once
#include <QMainWindow>

class EngineClient;
class ModelPanel;
class ProjectController;
class QMenu;
class WelcomePanel;
class QLabel;
class QProgressBar;
class QPushButton;
class QTabWidget;
class QTreeWidget;
class SteeringPanel;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(EngineClient* engine, QWidget* parent = nullptr);

    SteeringPanel* steeringPanel() const { return steeringPanel_; }
    ProjectController* projects() const { return projects_; }
    WelcomePanel* welcomePanel() const { return welcomePanel_; }
    // Selects a panel by its name in lower case ("model", "steering"); false for an unknown name.
    bool showPanel(const QString& name);

public slots:
    void openModel(const QString& path);
    void chooseModelFile();

signals:
    // The model finished loading (or failed): the moment a --screenshot is taken.
    void modelSettled(bool loaded);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void buildMenus();
    void buildFileMenu();
    void refreshRecentMenu();
    void updateTitle();
    void buildStatusBar();
    void onProgress(const QString& stage, qint64 done, qint64 total);
    void onModelLoaded();
    void onLoadFailed(const QString& error);
    void onLoadCancelled();
    void refreshMemory();
    void showGenerationProgress(int steps, int maxSteps, double tokensPerSecond);

    EngineClient* engine_;
    ProjectController* projects_;
    WelcomePanel* welcomePanel_;
    QMenu* recentMenu_ = nullptr;
    QString modelName_;
    QTabWidget* panels_;
    ModelPanel* modelPanel_;
    SteeringPanel* steeringPanel_;
    QTreeWidget* projectTree_;
    QLabel* modelBadge_;
    QLabel* engineState_;
    QProgressBar* progress_;
    QPushButton* stop_;
    QLabel* memory_;
    double lastTokensPerSecond_ = 0;
};
