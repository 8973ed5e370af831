#pragma once
#include <QMainWindow>

namespace persona {
struct ExtractionResult;
struct MonitoringStudy;
struct Trait;
}  // namespace persona

class EngineClient;
class ExtractionPanel;
class HeatMapPanel;
class FlaggingPanel;
class TrainingPanel;
class MonitoringPanel;
class SweepPanel;
class ModelPanel;
class ProjectController;
class QAction;
class QFrame;
class QMenu;
class WelcomePanel;
class QLabel;
class QProgressBar;
class QPushButton;
class QTabWidget;
class QTreeWidget;
class QTreeWidgetItem;
class QPoint;
class SteeringPanel;
class TraitsPanel;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(EngineClient* engine, QWidget* parent = nullptr);

    SteeringPanel* steeringPanel() const { return steeringPanel_; }
    ExtractionPanel* extractionPanel() const { return extractionPanel_; }
    HeatMapPanel* heatMapPanel() const { return heatMapPanel_; }
    MonitoringPanel* monitoringPanel() const { return monitoringPanel_; }
    SweepPanel* sweepPanel() const { return sweepPanel_; }
    FlaggingPanel* flaggingPanel() const { return flaggingPanel_; }
    TrainingPanel* trainingPanel() const { return trainingPanel_; }
    ModelPanel* modelPanel() const { return modelPanel_; }
    TraitsPanel* traitsPanel() const { return traitsPanel_; }
    // Selects a panel by its tab name in lower case without spaces ("model", "steering",
    // "extraction", "heatmaps"); false for an unknown name.
    ProjectController* projects() const { return projects_; }
    WelcomePanel* welcomePanel() const { return welcomePanel_; }
    bool showPanel(const QString& name);
    // The Steering panel's presenter view, full screen, with nothing else of the window (F11).
    void setPresenterView(bool on);

public slots:
    // Loads with the device and dtype chosen in the Model panel.
    void openModel(const QString& path);
    void chooseModelFile();
    void chooseModelFolder();

signals:
    // The model finished loading (or failed): the moment a --screenshot is taken.
    void modelSettled(bool loaded);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void showProjectInPanels();
    // The project's saved state in the panels: its vectors and the Steering setup (needs a model).
    void applyProjectToPanels();
    // A finished study goes into the open project's monitoring/ folder (when it has a folder).
    void keepMonitoringStudy(const persona::MonitoringStudy& study);
    void projectTreeActivated(QTreeWidgetItem* item);
    void projectTreeMenu(const QPoint& position);
    void openVectorIn(const QString& key, const QString& panel);  // panel: "steering" or "heat maps"
    void usePrompt(int index);
    bool showRun(int index);  // a project run's stored plots in the Extraction tab
    void refreshProjectTree();
    void recordExtractionRun(const persona::Trait& trait, const persona::ExtractionResult& result);
    void stopCurrentPanel();
    void buildMenus();
    void buildFileMenu();
    void refreshRecentMenu();
    void updateTitle();
    void buildStatusBar();
    void onLoadStarted(const QString& path);
    void onProgress(const QString& stage, qint64 done, qint64 total);
    void onModelLoaded();
    void onLoadFailed(const QString& error);  // the Model panel shows it in full, the banner wherever the user is
    // The banner above the tabs: errors where the user is, until dismissed.
    void showError(const QString& message);
    void onLoadCancelled();
    void refreshMemory();
    void showGenerationProgress(int steps, int maxSteps, double tokensPerSecond);

    EngineClient* engine_;
    ProjectController* projects_;
    QAction* presenterAction_ = nullptr;
    QFrame* errorBanner_;
    QLabel* errorText_;
    Qt::WindowStates stateBeforePresenter_;
    WelcomePanel* welcomePanel_;
    QMenu* recentMenu_ = nullptr;
    QString modelName_;
    QTabWidget* panels_;
    ModelPanel* modelPanel_;
    SteeringPanel* steeringPanel_;
    ExtractionPanel* extractionPanel_;
    HeatMapPanel* heatMapPanel_;
    MonitoringPanel* monitoringPanel_;
    TrainingPanel* trainingPanel_;
    SweepPanel* sweepPanel_;
    FlaggingPanel* flaggingPanel_;
    TraitsPanel* traitsPanel_;
    QTreeWidget* projectTree_;
    QLabel* modelBadge_;
    QLabel* engineState_;
    QProgressBar* progress_;
    QPushButton* stop_;
    QLabel* memory_;
    QLabel* device_;
    double lastTokensPerSecond_ = 0;
};
