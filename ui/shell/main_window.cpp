#include "shell/main_window.h"

#include "shell/engine_client.h"
#include "panels/extraction_panel.h"
#include "panels/heat_map_panel.h"
#include "panels/flagging_panel.h"
#include "panels/training_panel.h"
#include "panels/monitoring_panel.h"
#include "panels/sweep_panel.h"
#include "panels/model_panel.h"
#include "shell/project_controller.h"
#include "panels/steering_panel.h"
#include "panels/traits_panel.h"
#include "panels/welcome_panel.h"
#include "persona/process_memory.h"
#include "persona/project.h"
#include "persona/trait.h"

#include <QApplication>
#include <QDesktopServices>
#include <QDir>
#include <QCloseEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFrame>
#include <QShortcut>
#include <QSignalBlocker>
#include <QTabBar>
#include <QHeaderView>
#include <QLabel>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QStatusBar>
#include <QTabWidget>
#include <QTimer>
#include <QToolButton>
#include <QTreeWidget>
#include <QVBoxLayout>
#include <QUrl>

#include <optional>

namespace {
QString shortcutsText() {
    return MainWindow::tr(
        "Ctrl+N\tNew project\n"
        "Ctrl+O\tOpen project\n"
        "Ctrl+S / Ctrl+Shift+S\tSave / Save As\n"
        "Ctrl+M / Ctrl+Shift+M\tOpen a model file / folder\n"
        "Ctrl+1 ... Ctrl+9\tShow a panel, in tab order\n"
        "Esc or Ctrl+.\tStop what the visible tab runs (other tabs' jobs go on)\n"
        "F11\tPresenter view: the two texts and the strength slider, full screen (F11 again leaves)\n"
        "Ctrl+Q\tQuit\n\n"
        "Steering: arrow keys move the strength slider by 0.05, Page Up / Page Down by 0.25.\n"
        "Project tree: double click a vector to steer with it, a prompt to use it; right click for more.");
}

// The docs/ folder: installed beside the program, else the source tree of a build.
QString docsFolder() {
    QStringList candidates{QDir(QCoreApplication::applicationDirPath()).filePath("../share/doc/persona-workbench")};
#ifdef PERSONA_SOURCE_DIR
    candidates << QDir(QStringLiteral(PERSONA_SOURCE_DIR)).filePath("docs");
#endif
    for (const QString& folder : candidates)
        if (QFileInfo(folder).isDir()) return QFileInfo(folder).canonicalFilePath();
    return {};
}
}  // namespace

MainWindow::MainWindow(EngineClient* engine, QWidget* parent)
    : QMainWindow(parent), engine_(engine), projects_(new ProjectController(this, this)) {
    setWindowIcon(QIcon(":/icons/persona-workbench.svg"));
    resize(1180, 760);

    auto* splitter = new QSplitter(this);
    projectTree_ = new QTreeWidget(splitter);
    projectTree_->setObjectName("project_tree");
    projectTree_->setHeaderLabel(tr("Project"));
    projectTree_->setMinimumWidth(200);  // narrower, every item is cut off
    projectTree_->addTopLevelItem(new QTreeWidgetItem({tr("Model: none")}));
    projectTree_->setContextMenuPolicy(Qt::CustomContextMenu);
    connect(projectTree_, &QTreeWidget::itemDoubleClicked, this, &MainWindow::projectTreeActivated);
    connect(projectTree_, &QTreeWidget::customContextMenuRequested, this, &MainWindow::projectTreeMenu);
    panels_ = new QTabWidget(splitter);
    panels_->setObjectName("panels");
    welcomePanel_ = new WelcomePanel(panels_);
    panels_->addTab(welcomePanel_, tr("Welcome"));
    modelPanel_ = new ModelPanel(engine_, panels_);
    modelPanel_->setObjectName("model_panel");
    panels_->addTab(modelPanel_, tr("Model"));
    steeringPanel_ = new SteeringPanel(engine_, panels_);
    steeringPanel_->setObjectName("steering_panel");
    panels_->addTab(steeringPanel_, tr("Steering"));
    traitsPanel_ = new TraitsPanel(panels_);
    traitsPanel_->setObjectName("traits_panel");
    panels_->addTab(traitsPanel_, tr("Traits"));
    extractionPanel_ = new ExtractionPanel(engine_, panels_);
    extractionPanel_->setObjectName("extraction_panel");
    panels_->addTab(extractionPanel_, tr("Extraction"));
    heatMapPanel_ = new HeatMapPanel(engine_, panels_);
    heatMapPanel_->setObjectName("heat_map_panel");
    panels_->addTab(heatMapPanel_, tr("Heat maps"));
    sweepPanel_ = new SweepPanel(engine_, panels_);
    sweepPanel_->setObjectName("sweep_panel");
    panels_->addTab(sweepPanel_, tr("Sweeps"));
    connect(sweepPanel_, &SweepPanel::sweepStarted, this, [this] { engineState_->setText(tr("engine: sweep")); });
    connect(sweepPanel_, &SweepPanel::sweepFinished, this, [this](const persona::SweepResult& sweep) {
        engineState_->setText(tr("engine: ready (sweep done)"));
        projects_->addSweep(sweep);
    });
    connect(sweepPanel_, &SweepPanel::sweepFailed, this, [this](const QString& error) { showError(tr("Sweep: %1").arg(error)); });
    flaggingPanel_ = new FlaggingPanel(engine_, panels_);
    flaggingPanel_->setObjectName("flagging_panel");
    panels_->addTab(flaggingPanel_, tr("Flagging"));
    connect(flaggingPanel_, &FlaggingPanel::flaggingStarted, this, [this] { engineState_->setText(tr("engine: flagging")); });
    connect(flaggingPanel_, &FlaggingPanel::flaggingFinished, this, [this] { engineState_->setText(tr("engine: ready (flagging done)")); });
    connect(flaggingPanel_, &FlaggingPanel::flaggingFailed, this, [this](const QString& error) { showError(tr("Flagging: %1").arg(error)); });
    // A flagged sample's heat map: the whole conversation, ending with the dataset's answer.
    connect(flaggingPanel_, &FlaggingPanel::heatMapRequested, this,
            [this](const std::vector<persona::ChatMessage>& conversation, const persona::PersonaVector& vector) {
                heatMapPanel_->useVector(tr("%1 (flagging)").arg(QString::fromStdString(vector.trait)), vector);
                heatMapPanel_->setConversation(conversation);
                showPanel("heat maps");
                heatMapPanel_->compute();
            });
    monitoringPanel_ = new MonitoringPanel(engine_, panels_);
    monitoringPanel_->setObjectName("monitoring_panel");
    panels_->addTab(monitoringPanel_, tr("Monitoring"));
    connect(monitoringPanel_, &MonitoringPanel::studyStarted, this, [this] { engineState_->setText(tr("engine: monitoring study")); });
    connect(monitoringPanel_, &MonitoringPanel::studyFinished, this, &MainWindow::keepMonitoringStudy);
    connect(monitoringPanel_, &MonitoringPanel::studyFailed, this,
            [this](const QString& error) { showError(tr("Monitoring: %1").arg(error)); });
    trainingPanel_ = new TrainingPanel(engine_, panels_);
    trainingPanel_->setObjectName("training_panel");
    panels_->addTab(trainingPanel_, tr("Training"));
    connect(trainingPanel_, &TrainingPanel::trainingStarted, this, [this] { engineState_->setText(tr("engine: training")); });
    connect(trainingPanel_, &TrainingPanel::trainingFinished, this, [this] { engineState_->setText(tr("engine: ready (training done)")); });
    connect(trainingPanel_, &TrainingPanel::trainingFailed, this, [this](const QString& error) { showError(tr("Training: %1").arg(error)); });
    // A finished extraction's vector is ready to steer with and to look at.
    connect(extractionPanel_, &ExtractionPanel::extractionFinished, heatMapPanel_, &HeatMapPanel::setExtraction);
    connect(extractionPanel_, &ExtractionPanel::vectorChosen, steeringPanel_,
            [this](const persona::PersonaVector& vector, int suggestedLayer) {
                steeringPanel_->useVector(vector,
                                          tr("%1 %2 (last extraction)")
                                              .arg(QString::fromStdString(vector.trait),
                                                   QString::fromLatin1(persona::aggregate_name(vector.aggregate))),
                                          suggestedLayer);
            });
    connect(extractionPanel_, &ExtractionPanel::extractionProgress, this, [this](const QString& stage, qint64 done, qint64 total) {
        engineState_->setText(tr("engine: extracting, %1 %2/%3").arg(stage).arg(done).arg(total));
    });
    connect(extractionPanel_, &ExtractionPanel::extractionFinished, this, [this] { engineState_->setText(tr("engine: ready (extraction done)")); });
    connect(extractionPanel_, &ExtractionPanel::extractionCancelled, this, [this] { engineState_->setText(tr("engine: extraction cancelled")); });
    connect(extractionPanel_, &ExtractionPanel::extractionFailed, this, [this] { engineState_->setText(tr("engine: extraction failed")); });
    // Errors show above whichever tab the user is on, not only in the tab they came from.
    auto* right = new QWidget(splitter);
    auto* rightColumn = new QVBoxLayout(right);
    rightColumn->setContentsMargins(0, 0, 0, 0);
    errorBanner_ = new QFrame(right);
    errorBanner_->setObjectName("error_banner");
    errorBanner_->setStyleSheet(QStringLiteral("#error_banner { background: #fbe3e4; border: 1px solid #d9a3a6; }"));
    auto* bannerRow = new QHBoxLayout(errorBanner_);
    errorText_ = new QLabel(errorBanner_);
    errorText_->setObjectName("error_banner_text");
    errorText_->setWordWrap(true);
    errorText_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* dismiss = new QToolButton(errorBanner_);
    dismiss->setObjectName("error_banner_close");
    dismiss->setText(QStringLiteral("\u2715"));
    dismiss->setToolTip(tr("Dismiss"));
    connect(dismiss, &QToolButton::clicked, errorBanner_, &QWidget::hide);
    bannerRow->addWidget(errorText_, 1);
    bannerRow->addWidget(dismiss, 0, Qt::AlignTop);
    errorBanner_->hide();
    rightColumn->addWidget(errorBanner_);
    rightColumn->addWidget(panels_, 1);
    connect(steeringPanel_, &SteeringPanel::generationFailed, this,
            [this](const QString& error) { showError(tr("Steering: the generation failed: %1").arg(error)); });
    connect(extractionPanel_, &ExtractionPanel::extractionFailed, this,
            [this](const QString& error) { showError(tr("Extraction failed: %1").arg(error)); });
    connect(heatMapPanel_, &HeatMapPanel::computeFailed, this,
            [this](const QString& error) { showError(tr("Heat maps: %1").arg(error)); });
    connect(heatMapPanel_, &HeatMapPanel::computeFinished, this, [this] { engineState_->setText(tr("engine: ready (heat map done)")); });
    connect(heatMapPanel_, &HeatMapPanel::computeStopped, this, [this] { engineState_->setText(tr("engine: heat map stopped")); });
    splitter->addWidget(projectTree_);
    splitter->addWidget(right);
    splitter->setStretchFactor(1, 1);
    splitter->setSizes({240, 940});
    setCentralWidget(splitter);

    buildMenus();
    buildStatusBar();
    modelPanel_->acceptDropsOn(this);

    connect(engine_, &EngineClient::loadStarted, this, &MainWindow::onLoadStarted);

    connect(welcomePanel_, &WelcomePanel::openRequested, this, [this](const QString& folder) {
        // An example opened from the start page is there to be steered at once.
        if (projects_->openProject(folder)) showPanel("steering");
    });
    connect(welcomePanel_, &WelcomePanel::newRequested, projects_, &ProjectController::newProject);
    connect(welcomePanel_, &WelcomePanel::openDialogRequested, projects_, &ProjectController::open);
    connect(projects_, &ProjectController::recentProjectsChanged, this, &MainWindow::refreshRecentMenu);
    connect(projects_, &ProjectController::projectChanged, this, &MainWindow::updateTitle);
    connect(projects_, &ProjectController::pathChanged, this, &MainWindow::updateTitle);
    connect(projects_, &ProjectController::pathChanged, trainingPanel_, &TrainingPanel::setProjectFolder);
    trainingPanel_->setProjectFolder(projects_->path());
    connect(projects_, &ProjectController::dirtyChanged, this, &MainWindow::setWindowModified);
    // The panels edit the project: traits from the Traits tab, runs from the Extraction tab.
    connect(projects_, &ProjectController::projectChanged, this, &MainWindow::showProjectInPanels);
    connect(projects_, &ProjectController::projectOpened, this, &MainWindow::applyProjectToPanels);
    // The newest run's plots, so a reopened project's Extraction tab is not blank.
    connect(projects_, &ProjectController::projectOpened, this, [this] {
        for (int i = static_cast<int>(projects_->project().runs.size()) - 1; i >= 0; --i)
            if (showRun(i)) break;
    });
    projects_->setExampleFolders(WelcomePanel::exampleFolders());
    // The Steering setup is project state: a save stores it, a change of it is unsaved work.
    projects_->setLiveState([this](persona::Project& project) {
        if (engine_->facts()) project.settings.steering = steeringPanel_->settings();
    });
    connect(steeringPanel_, &SteeringPanel::setupEdited, projects_, &ProjectController::markLiveStateEdited);
    connect(traitsPanel_, &TraitsPanel::traitsChanged, this, [this] {
        const std::vector<persona::Trait> traits = traitsPanel_->traits();
        if (traits != projects_->project().traits) projects_->setTraits(traits);
    });
    connect(extractionPanel_, &ExtractionPanel::extractionFinished, this, &MainWindow::recordExtractionRun);
    refreshRecentMenu();
    updateTitle();
    refreshProjectTree();

    connect(engine_, &EngineClient::progress, this, &MainWindow::onProgress);
    connect(engine_, &EngineClient::modelLoaded, this, &MainWindow::onModelLoaded);
    connect(engine_, &EngineClient::loadFailed, this, &MainWindow::onLoadFailed);
    connect(engine_, &EngineClient::loadCancelled, this, &MainWindow::onLoadCancelled);
    connect(engine_, &EngineClient::busyChanged, stop_, &QPushButton::setEnabled);
    connect(steeringPanel_, &SteeringPanel::generationProgress, this, &MainWindow::showGenerationProgress);
    connect(steeringPanel_, &SteeringPanel::generationStarted, this, [this] {
        engineState_->setText(tr("engine: generating"));
    });
    connect(steeringPanel_, &SteeringPanel::generationFinished, this, [this] {
        engineState_->setText(tr("engine: ready (last generation %1 tok/s)").arg(lastTokensPerSecond_, 0, 'f', 1));
    });
    connect(steeringPanel_, &SteeringPanel::generationStopped, this, [this] { engineState_->setText(tr("engine: stopped")); });
    connect(steeringPanel_, &SteeringPanel::generationFailed, this, [this] {
        engineState_->setText(tr("engine: generation failed"));
    });

    auto* memoryTimer = new QTimer(this);
    connect(memoryTimer, &QTimer::timeout, this, &MainWindow::refreshMemory);
    memoryTimer->start(2000);
    refreshMemory();
    if (engine_->facts()) onModelLoaded();  // a window opened on an engine that already holds a model
}

void MainWindow::buildFileMenu() {
    auto* file = menuBar()->addMenu(tr("&File"));
    file->setObjectName("file_menu");
    auto* newProject = file->addAction(tr("&New Project"), projects_, &ProjectController::newProject);
    newProject->setShortcut(QKeySequence::New);
    newProject->setObjectName("action_new_project");
    auto* open = file->addAction(tr("&Open Project..."), projects_, &ProjectController::open);
    open->setShortcut(QKeySequence::Open);
    open->setObjectName("action_open_project");
    recentMenu_ = file->addMenu(tr("Open &Recent"));
    recentMenu_->setObjectName("recent_menu");
    auto* close = file->addAction(tr("&Close Project"), this, [this] {
        if (projects_->newProject()) panels_->setCurrentWidget(welcomePanel_);
    });
    close->setShortcut(QKeySequence::Close);
    close->setObjectName("action_close_project");
    auto* save = file->addAction(tr("&Save"), projects_, &ProjectController::save);
    save->setShortcut(QKeySequence::Save);
    save->setObjectName("action_save_project");
    auto* saveAs = file->addAction(tr("Save &As..."), projects_, &ProjectController::saveAs);
    saveAs->setShortcut(QKeySequence::SaveAs);
    saveAs->setObjectName("action_save_project_as");
    file->addSeparator();
    auto* openModelFile = file->addAction(tr("Open &Model File…"), this, &MainWindow::chooseModelFile);
    openModelFile->setObjectName("action_open_model");
    // Ctrl+O opens projects, the documents of this application; models get Ctrl+M.
    openModelFile->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_M));
    auto* openFolder = file->addAction(tr("Open Model &Folder…"), this, &MainWindow::chooseModelFolder);
    openFolder->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_M));
    auto* recent = file->addMenu(tr("Open &Recent Model"));
    recent->setObjectName("recent_models_menu");
    // Filled when shown, so it always matches the Model panel's list (and QSettings).
    connect(recent, &QMenu::aboutToShow, this, [this, recent] {
        recent->clear();
        for (const QString& path : modelPanel_->recentModels()) {
            auto* action = recent->addAction(path, this, [this, path] { openModel(path); });
            action->setEnabled(QFileInfo::exists(path));
        }
        if (recent->isEmpty()) recent->addAction(tr("(none yet)"))->setEnabled(false);
    });
    file->addSeparator();
    auto* quit = file->addAction(tr("&Quit"), qApp, &QApplication::closeAllWindows);
    quit->setShortcut(QKeySequence::Quit);
}

void MainWindow::refreshRecentMenu() {
    const QStringList recent = projects_->recentProjects();
    welcomePanel_->setRecentProjects(recent);
    if (!recentMenu_) return;
    recentMenu_->clear();
    // Two projects may share a name: the folder tells them apart.
    for (const QString& folder : recent)
        recentMenu_->addAction(tr("%1 — %2").arg(QFileInfo(folder).fileName(), QDir::toNativeSeparators(folder)), this,
                               [this, folder] { projects_->openProject(folder); })
            ->setToolTip(folder);
    if (recent.isEmpty()) recentMenu_->addAction(tr("(none)"))->setEnabled(false);
    else {
        recentMenu_->addSeparator();
        recentMenu_->addAction(tr("Clear List"), projects_, &ProjectController::clearRecentProjects);
    }
}

// "evil[*] — ~/studies/evil.persona — Persona Workbench — SmolLM2": Qt shows the [*] as "*"
// while the window is modified; the folder tells two projects of one name apart.
void MainWindow::updateTitle() {
    QString title = projects_->displayName() + "[*] — ";
    if (!projects_->path().isEmpty()) {
        QString folder = QDir::toNativeSeparators(projects_->path());
        const QString home = QDir::toNativeSeparators(QDir::homePath());
        if (folder.startsWith(home + QDir::separator())) folder = "~" + folder.mid(home.size());
        title += folder + " — ";
    }
    title += tr("Persona Workbench");
    if (!modelName_.isEmpty()) title += " — " + modelName_;
    setWindowTitle(title);
    setWindowModified(projects_->isDirty());
}

void MainWindow::closeEvent(QCloseEvent* event) {
    if (projects_->maybeSave()) event->accept();
    else event->ignore();
}

void MainWindow::buildMenus() {
    buildFileMenu();

    auto* model = menuBar()->addMenu(tr("&Model"));
    model->addAction(tr("&Open Model File…"), this, &MainWindow::chooseModelFile);
    model->addAction(tr("Open Model &Folder…"), this, &MainWindow::chooseModelFolder);
    model->addAction(tr("&Reload with the Panel's Device and Dtype"), modelPanel_, &ModelPanel::reloadModel);
    model->addSeparator();
    // Stops what the visible tab runs and nothing else: another tab's extraction goes on.
    auto* stop = model->addAction(tr("&Stop This Tab's Work"), this, &MainWindow::stopCurrentPanel);
    stop->setObjectName("stop_action");
    stop->setShortcuts({QKeySequence(Qt::Key_Escape), QKeySequence(Qt::CTRL | Qt::Key_Period)});

    auto* view = menuBar()->addMenu(tr("&View"));
    presenterAction_ = view->addAction(tr("&Presenter View"));
    presenterAction_->setObjectName("action_presenter_view");
    presenterAction_->setCheckable(true);
    presenterAction_->setShortcut(QKeySequence(Qt::Key_F11));
    presenterAction_->setToolTip(tr("The steered and unsteered texts in a large font and the strength slider, full screen"));
    connect(presenterAction_, &QAction::toggled, this, &MainWindow::setPresenterView);
    addAction(presenterAction_);  // its shortcut works while the menu bar is hidden

    // Ctrl+1..9 pick the panels in tab order, whichever panels other parts of the window added.
    for (int digit = 1; digit <= 9; ++digit) {
        auto* shortcut = new QShortcut(QKeySequence(Qt::CTRL | static_cast<Qt::Key>(Qt::Key_0 + digit)), this);
        connect(shortcut, &QShortcut::activated, this, [this, digit] {
            if (digit <= panels_->count()) panels_->setCurrentIndex(digit - 1);
        });
    }

    auto* help = menuBar()->addMenu(tr("&Help"));
    help->setObjectName("help_menu");
    help->addAction(tr("&Keyboard Shortcuts"), this, [this] {
        QMessageBox::information(this, tr("Keyboard Shortcuts"), shortcutsText());
    });
    help->addAction(tr("&Documentation"), this, [this] {
        const QString folder = docsFolder();
        if (folder.isEmpty() || !QDesktopServices::openUrl(QUrl::fromLocalFile(folder)))
            QMessageBox::information(this, tr("Documentation"),
                                     tr("The documentation is the docs/ folder of the source tree, or "
                                        "share/doc/persona-workbench once installed; it was not found here."));
    });
    help->addSeparator();
    help->addAction(tr("&About"), this, [this] {
        QMessageBox::about(this, tr("About Persona Workbench"),
                           tr("Persona Workbench %1\nPersona vectors in local language models.").arg(PERSONA_VERSION));
    });

    modelBadge_ = new QLabel(tr("model: none"), this);
    modelBadge_->setObjectName("model_badge");
    modelBadge_->setContentsMargins(8, 0, 8, 0);
    menuBar()->setCornerWidget(modelBadge_, Qt::TopRightCorner);
}

void MainWindow::buildStatusBar() {
    engineState_ = new QLabel(tr("engine: idle"), this);
    engineState_->setObjectName("engine_state");
    progress_ = new QProgressBar(this);
    progress_->setObjectName("load_progress");
    progress_->setMaximumWidth(260);
    progress_->setVisible(false);
    stop_ = new QPushButton(tr("Stop all"), this);
    stop_->setObjectName("stop_button");
    stop_->setToolTip(tr("Stop every job of every tab"));
    stop_->setEnabled(false);
    connect(stop_, &QPushButton::clicked, engine_, &EngineClient::cancelAll);
    memory_ = new QLabel(this);
    memory_->setObjectName("memory_label");
    device_ = new QLabel(tr("device: %1").arg(engine_->device()), this);
    device_->setObjectName("device_label");
    statusBar()->addPermanentWidget(device_);
    statusBar()->addWidget(engineState_, 1);
    statusBar()->addWidget(progress_);
    statusBar()->addWidget(stop_);
    statusBar()->addPermanentWidget(memory_);
}

bool MainWindow::showPanel(const QString& name) {
    for (int i = 0; i < panels_->count(); ++i)
        if (panels_->tabText(i).remove('&').remove(' ').toLower() == QString(name).remove(' ').toLower()) {
            panels_->setCurrentIndex(i);
            return true;
        }
    return false;
}

void MainWindow::showGenerationProgress(int steps, int maxSteps, double tokensPerSecond) {
    // Tokens of both rows count: that is the work the engine does per second.
    lastTokensPerSecond_ = tokensPerSecond;
    engineState_->setText(tr("engine: generating %1/%2 tok, %3 tok/s").arg(steps).arg(maxSteps).arg(tokensPerSecond, 0, 'f', 1));
}

void MainWindow::chooseModelFile() { modelPanel_->chooseModelFile(); }
void MainWindow::chooseModelFolder() { modelPanel_->chooseModelFolder(); }
void MainWindow::openModel(const QString& path) { modelPanel_->openModel(path); }

void MainWindow::onLoadStarted(const QString& path) {
    engineState_->setText(tr("engine: loading %1").arg(QFileInfo(path).fileName()));
    progress_->setRange(0, 0);  // busy until the first figures arrive
    progress_->setVisible(true);
}

void MainWindow::onProgress(const QString& stage, qint64 done, qint64 total) {
    engineState_->setText(tr("engine: %1").arg(stage));
    if (total > 0) {
        progress_->setRange(0, static_cast<int>(total));
        progress_->setValue(static_cast<int>(done));
    }
}

void MainWindow::setPresenterView(bool on) {
    if (on == steeringPanel_->presenterMode()) return;
    if (on) {
        stateBeforePresenter_ = windowState();
        showPanel("steering");
    }
    projectTree_->setVisible(!on);
    panels_->tabBar()->setVisible(!on);
    statusBar()->setVisible(!on);
    menuBar()->setVisible(!on);
    steeringPanel_->setPresenterMode(on);
    if (on) showFullScreen();
    else setWindowState(stateBeforePresenter_);
    const QSignalBlocker blocker(presenterAction_);
    presenterAction_->setChecked(on);
}

// A finished extraction becomes a run of the project, with its vector.
void MainWindow::recordExtractionRun(const persona::Trait& trait, const persona::ExtractionResult& result) {
    const persona::ModelFacts* facts = engine_->facts();
    if (!facts) return;
    persona::RunResult run =
        persona::run_result_from_extraction(result, extractionPanel_->settings(), extractionPanel_->aggregate());
    run.model = persona::model_identity(*facts);
    run.finished = persona::utc_timestamp();
    run.started = run.finished;
    std::optional<persona::PersonaVector> vector;
    if (result.pairs.kept > 0) vector = result.aggregate(extractionPanel_->aggregate()).vector;
    if (!projects_->project().find_trait(trait.name)) {
        std::vector<persona::Trait> traits = projects_->project().traits;
        traits.push_back(trait);
        projects_->setTraits(traits);
    }
    projects_->addRunResult(run, vector ? &*vector : nullptr);
}

void MainWindow::stopCurrentPanel() {
    QWidget* current = panels_->currentWidget();
    if (current == steeringPanel_) steeringPanel_->stop();
    else if (current == extractionPanel_) extractionPanel_->cancel();
    else if (current == heatMapPanel_) heatMapPanel_->stop();
    else if (current == monitoringPanel_) monitoringPanel_->cancel();
    else if (current == sweepPanel_) sweepPanel_->cancel();
    else if (current == trainingPanel_) trainingPanel_->cancel();
    else if (current == flaggingPanel_) flaggingPanel_->cancel();
    else if (current == modelPanel_) engine_->cancelLoad();
}

void MainWindow::onModelLoaded() {
    const persona::ModelFacts* facts = engine_->facts();
    progress_->setVisible(false);
    steeringPanel_->setModel(*facts);
    extractionPanel_->setModel(*facts);
    heatMapPanel_->setModel(*facts);
    monitoringPanel_->setModel(*facts);
    sweepPanel_->setModel(*facts);
    trainingPanel_->setModel(*facts);
    flaggingPanel_->setModel(*facts);
    const QString name = QString::fromStdString(facts->name);
    engineState_->setText(tr("engine: idle"));
    device_->setText(tr("device: %1, %2").arg(QString::fromStdString(facts->device), QString::fromStdString(facts->dtype)));
    modelBadge_->setText(tr("model: %1 | %2 %3 (%4)")
                             .arg(name, QString::fromStdString(facts->device), QString::fromStdString(facts->dtype),
                                  QString::fromStdString(facts->file_type)));
    // The menu bar lays out its corner widget only when one is set, not when its text grows.
    modelBadge_->adjustSize();
    menuBar()->setCornerWidget(modelBadge_, Qt::TopRightCorner);
    modelName_ = name;
    errorBanner_->hide();  // an earlier load's error is no longer news
    showProjectInPanels();
    applyProjectToPanels();
    updateTitle();
    projectTree_->topLevelItem(0)->setText(0, tr("Model: %1").arg(name));
    refreshMemory();
    emit modelSettled(true);
}

void MainWindow::showError(const QString& message) {
    errorText_->setText(message);
    errorBanner_->show();
}

void MainWindow::onLoadFailed(const QString& error) {
    progress_->setVisible(false);
    showError(tr("The model did not load: %1").arg(error));
    engineState_->setText(engine_->facts() ? tr("engine: idle (the last load failed, see the Model panel)")
                                           : tr("engine: load failed (see the Model panel)"));
    emit modelSettled(false);
}

void MainWindow::onLoadCancelled() {
    progress_->setVisible(false);
    engineState_->setText(tr("engine: idle (load cancelled)"));
    emit modelSettled(false);
}

void MainWindow::refreshMemory() {
    const auto memory = persona::read_process_memory();
    memory_->setText(tr("RAM %1").arg(QString::fromStdString(persona::human_bytes(memory.resident_bytes))));
}
