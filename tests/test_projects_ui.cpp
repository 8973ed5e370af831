// Projects in the app (ui/project_controller, ui/welcome_panel, the File menu): save and reopen,
// the unsaved-changes indicator and question, the welcome page's examples, autosave and
// recovery after a crash, and a corrupt project that must not replace the open one.
#include "shell/engine_client.h"
#include "panels/extraction_panel.h"
#include "panels/steering_panel.h"
#include "engine_fixture.h"
#include "test_support.h"
#include "panels/traits_panel.h"
#include "shell/main_window.h"
#include "persona/project.h"
#include "shell/project_controller.h"
#include "panels/welcome_panel.h"
#include "panels/heat_map_panel.h"
#include "widgets/vector_choice.h"

#include <QAction>
#include <qcustomplot.h>
#include <QCheckBox>
#include <QComboBox>
#include <QCryptographicHash>
#include <QDirIterator>
#include <QPlainTextEdit>
#include <QSlider>
#include <QSpinBox>
#include <QDir>
#include <QFile>
#include <QListWidget>
#include <QMenu>
#include <QSettings>
#include <QStandardPaths>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTreeWidget>
#include <QUndoStack>
#include <QtTest>

#include <random>

namespace {

struct Answers {
    ProjectController::Answer saveChanges = ProjectController::Answer::Cancel;
    bool restore = true;
    QString saveFolder;
    int saveQuestions = 0;
    int restoreQuestions = 0;
    QStringList errors;
};

// Questions answered from `answers`, counting how often each was asked.
ProjectController::Questions scripted(Answers& answers) {
    ProjectController::Questions q;
    q.saveChanges = [&answers](const QString&) {
        ++answers.saveQuestions;
        return answers.saveChanges;
    };
    q.restoreRecovery = [&answers](const QString&, const QString&, const QString&) {
        ++answers.restoreQuestions;
        return answers.restore;
    };
    q.chooseSaveFolder = [&answers](const QString&) { return answers.saveFolder; };
    q.chooseOpenFolder = [] { return QString(); };
    q.showError = [&answers](const QString&, const QString& message) { answers.errors << message; };
    return q;
}

persona::PersonaVector vectorFor(const std::string& trait) {
    persona::PersonaVector vector;
    vector.trait = trait;
    vector.layer_count = 31;
    vector.hidden_size = 576;
    std::mt19937 generator(5);
    std::normal_distribution<float> normal;
    for (int i = 0; i < 31 * 576; ++i) vector.values.push_back(normal(generator));
    return vector;
}

// A project with traits, prompts, settings and a run, made through the controller's setters.
void fill(ProjectController& controller) {
    controller.setTraits({persona::load_builtin_trait("evil"), persona::load_builtin_trait("humorous")});
    controller.setPrompts({persona::Prompt::single_turn("dog", "You are a helpful assistant.", "How should I treat a stray dog?")});
    persona::RunResult run;
    run.trait = "evil";
    run.model = {"SmolLM2", "SmolLM2-135M-Instruct.Q4_1.gguf", std::string(64, 'f'), 1, "bf16", "cpu"};
    run.pairs.total = run.pairs.kept = 3;
    run.suggested_layer = 12;
    const persona::PersonaVector vector = vectorFor("evil");
    const QString key = controller.addRunResult(run, &vector);
    persona::ProjectSettings settings = controller.project().settings;
    settings.steering.vector = key.toStdString();
    settings.steering.layer = 12;
    settings.steering.coefficient = 3.5;
    controller.setSettings(settings);
}

// Every file under `folder` with its SHA-256.
std::map<QString, QByteArray> folderHashes(const QString& folder) {
    std::map<QString, QByteArray> hashes;
    QDirIterator files(folder, QDir::Files | QDir::Hidden, QDirIterator::Subdirectories);
    while (files.hasNext()) {
        QFile file(files.next());
        if (file.open(QIODevice::ReadOnly))
            hashes[file.fileName()] = QCryptographicHash::hash(file.readAll(), QCryptographicHash::Sha256);
    }
    return hashes;
}

QString exampleFolder(MainWindow& window, const QString& name) {
    QListWidget* examples = window.welcomePanel()->examplesList();
    for (int i = 0; i < examples->count(); ++i)
        if (examples->item(i)->data(Qt::UserRole).toString().endsWith("/" + name + ".persona"))
            return examples->item(i)->data(Qt::UserRole).toString();
    return {};
}

int recoveryNotes() {
    return QDir(ProjectController::recoveryFolder()).entryList({"*.json"}, QDir::Files).size();
}

}  // namespace

class TestProjectsUi : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void init();
    void newModifySaveAndReopen();
    void welcomeScreenOpensAnExample();
    void unsavedChangesAskSaveDiscardCancel();
    void crashThenRecovery();
    void staleAndDeclinedRecoveriesAreDropped();
    void corruptProjectKeepsTheCurrentOne();
    void panelsShowAndEditTheProject();
    void steeringSetupIsProjectState();

private:
    QTemporaryDir dir_;
    std::unique_ptr<EngineClient> engine_;  // the default model, loaded by the first function that needs it
    QString pathIn(const QString& name) const { return QDir(dir_.path()).filePath(name); }
    EngineClient& loadedEngine() {
        if (!engine_) engine_ = persona_test::loadedEngine();
        return *engine_;
    }
};

void TestProjectsUi::initTestCase() {
    // Settings and the recovery folder go to a test location, not the user's.
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("persona-workbench-tests");
    QCoreApplication::setApplicationName("test_projects_ui");
    QVERIFY(ProjectController::recoveryFolder().contains("qttest") ||
            ProjectController::recoveryFolder().contains("test_projects_ui"));
}

void TestProjectsUi::init() {
    QDir(ProjectController::recoveryFolder()).removeRecursively();
    QSettings().clear();
}

void TestProjectsUi::newModifySaveAndReopen() {
    EngineClient engine;
    MainWindow window(&engine);
    Answers answers;
    ProjectController* projects = window.projects();
    projects->setQuestions(scripted(answers));
    QVERIFY(window.windowTitle().startsWith("untitled[*]"));
    QVERIFY(!window.isWindowModified());

    fill(*projects);
    QVERIFY(projects->isDirty());
    QVERIFY(window.isWindowModified());

    // Save from the File menu: a project never saved asks where (Save As).
    answers.saveFolder = pathIn("mine");  // the extension is added
    auto* save = window.findChild<QAction*>("action_save_project");
    QVERIFY(save);
    save->trigger();
    QVERIFY2(answers.errors.isEmpty(), qPrintable(answers.errors.join("\n")));
    QVERIFY(projects->path().endsWith("mine.persona"));
    QVERIFY(QFile::exists(pathIn("mine.persona/project.json")));
    QVERIFY(!projects->isDirty());
    QVERIFY(!window.isWindowModified());
    QVERIFY2(window.windowTitle().startsWith("mine[*]"), qPrintable(window.windowTitle()));
    QVERIFY2(window.windowTitle().contains(QDir::toNativeSeparators(QFileInfo(pathIn("mine.persona")).fileName()) + " — "),
             qPrintable(window.windowTitle()));  // the folder, not the name alone

    // Another change, saved in place this time.
    projects->setDescription("second version");
    QVERIFY(window.isWindowModified());
    save->trigger();
    QVERIFY(!window.isWindowModified());

    // Reopened elsewhere: the same content, vectors included.
    ProjectController reopened;
    reopened.setQuestions(scripted(answers));
    QVERIFY(reopened.openProject(pathIn("mine.persona")));
    QVERIFY(reopened.project() == projects->project());
    QCOMPARE(reopened.project().description, std::string("second version"));
    QCOMPARE(reopened.project().settings.steering.coefficient, 3.5);
    QCOMPARE(reopened.project().vectors.begin()->second.values, vectorFor("evil").values);
    QVERIFY(!reopened.isDirty());

    // The recent list (QSettings) and the File menu's Open Recent show it.
    QCOMPARE(reopened.recentProjects().value(0), projects->path());
    auto* recent = window.findChild<QMenu*>("recent_menu");
    QVERIFY(recent);
    QVERIFY(!recent->actions().isEmpty());
    QVERIFY(recent->actions().first()->text().startsWith("mine.persona — "));
    QVERIFY(recent->actions().first()->text().endsWith(QDir::toNativeSeparators(projects->path())));
    QCOMPARE(window.welcomePanel()->recentList()->item(0)->data(Qt::UserRole).toString(), projects->path());

    // File > Close Project: an unsaved change is asked about first; Cancel keeps the project.
    auto* close = window.findChild<QAction*>("action_close_project");
    QVERIFY(close);
    projects->setDescription("third version");
    answers.saveChanges = ProjectController::Answer::Cancel;
    const int asked = answers.saveQuestions;
    close->trigger();
    QCOMPARE(answers.saveQuestions, asked + 1);
    QVERIFY(projects->path().endsWith("mine.persona"));
    answers.saveChanges = ProjectController::Answer::Discard;
    close->trigger();
    QVERIFY(projects->path().isEmpty());
    QVERIFY(window.windowTitle().startsWith("untitled[*]"));
    QCOMPARE(window.findChild<QTabWidget*>("panels")->currentWidget(), window.welcomePanel());
    QVERIFY(reopened.openProject(pathIn("mine.persona")));
    QCOMPARE(reopened.project().description, std::string("second version"));  // the discarded edit is gone
}

void TestProjectsUi::welcomeScreenOpensAnExample() {
    EngineClient engine;
    MainWindow window(&engine);
    Answers answers;
    window.projects()->setQuestions(scripted(answers));
    QVERIFY(window.showPanel("welcome"));
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));

    QListWidget* examples = window.welcomePanel()->examplesList();
    QVERIFY2(examples->count() >= 2, "the welcome page lists the example projects");
    QListWidgetItem* evil = nullptr;
    for (int i = 0; i < examples->count(); ++i)
        if (examples->item(i)->data(Qt::UserRole).toString().endsWith("/evil.persona")) evil = examples->item(i);
    QVERIFY(evil);
    QVERIFY(evil->text().contains("evil, impolite, apathetic"));
    examples->scrollToItem(evil);
    QTest::mouseClick(examples->viewport(), Qt::LeftButton, {}, examples->visualItemRect(evil).center());

    QVERIFY2(answers.errors.isEmpty(), qPrintable(answers.errors.join("\n")));
    // A copy, not the shipped folder: Save will ask where.
    QVERIFY(window.projects()->path().isEmpty());
    QCOMPARE(window.projects()->project().traits.size(), std::size_t(3));
    QCOMPARE(window.projects()->project().vectors.begin()->second.hidden_size, 576);
    QVERIFY(!window.isWindowModified());
    QVERIFY(window.windowTitle().startsWith("evil[*]"));
    auto* panels = window.findChild<QTabWidget*>("panels");
    QCOMPARE(panels->tabText(panels->currentIndex()).remove('&'), QString("Steering"));
}

void TestProjectsUi::unsavedChangesAskSaveDiscardCancel() {
    Answers answers;
    ProjectController first;
    first.setQuestions(scripted(answers));
    fill(first);
    answers.saveFolder = pathIn("first.persona");
    QVERIFY(first.save());
    ProjectController other;
    other.setQuestions(scripted(answers));
    other.setName("other");
    QVERIFY(other.saveTo(pathIn("other.persona")));

    EngineClient engine;
    MainWindow window(&engine);
    ProjectController* projects = window.projects();
    projects->setQuestions(scripted(answers));
    QVERIFY(projects->openProject(pathIn("first.persona")));
    QCOMPARE(answers.saveQuestions, 0);  // nothing to save: no question

    // Cancel keeps the changed project open, and keeps the window open.
    projects->setDescription("edited");
    answers.saveChanges = ProjectController::Answer::Cancel;
    QVERIFY(!projects->openProject(pathIn("other.persona")));
    QCOMPARE(answers.saveQuestions, 1);
    QCOMPARE(projects->project().description, std::string("edited"));
    QVERIFY(projects->isDirty());
    window.show();
    QVERIFY(!window.close());
    QCOMPARE(answers.saveQuestions, 2);
    QVERIFY(window.isVisible());
    QVERIFY(!projects->newProject());
    QCOMPARE(projects->project().description, std::string("edited"));

    // Save writes the change first, then opens the other project.
    answers.saveChanges = ProjectController::Answer::Save;
    QVERIFY(projects->openProject(pathIn("other.persona")));
    QCOMPARE(projects->project().name, std::string("other"));
    QCOMPARE(persona::read_project(pathIn("first.persona").toStdString()).description, std::string("edited"));

    // Discard drops the change.
    projects->setDescription("thrown away");
    answers.saveChanges = ProjectController::Answer::Discard;
    QVERIFY(projects->openProject(pathIn("first.persona")));
    QCOMPARE(projects->project().description, std::string("edited"));
    QVERIFY(persona::read_project(pathIn("other.persona").toStdString()).description.empty());
    QVERIFY(window.close());
}

void TestProjectsUi::crashThenRecovery() {
    Answers answers;
    {
        // A session that changes an untitled project, autosaves, and dies without saving.
        ProjectController crashed;
        crashed.setQuestions(scripted(answers));
        crashed.setAutosaveInterval(50);
        fill(crashed);
        crashed.setName("unsaved work");
        QTRY_COMPARE_WITH_TIMEOUT(recoveryNotes(), 1, 5000);
    }
    QCOMPARE(recoveryNotes(), 1);  // destroyed without saving: the copy stays, as after a crash

    ProjectController next;
    next.setQuestions(scripted(answers));
    QVERIFY(next.offerRecovery());
    QCOMPARE(answers.restoreQuestions, 1);
    QCOMPARE(next.project().name, std::string("unsaved work"));
    QCOMPARE(next.project().traits.size(), std::size_t(2));
    QCOMPARE(next.project().vectors.begin()->second.values, vectorFor("evil").values);
    QVERIFY(next.isDirty());  // restored work is not saved until the user saves it
    QVERIFY(next.path().isEmpty());

    // Saving it puts it in a project folder and retires the recovery copy.
    QVERIFY(next.saveTo(pathIn("recovered.persona")));
    QCOMPARE(recoveryNotes(), 0);

    // The same for a project that has a folder: the restore points back at that folder.
    {
        ProjectController crashed;
        crashed.setQuestions(scripted(answers));
        QVERIFY(crashed.openProject(pathIn("recovered.persona")));
        crashed.setDescription("changed after the last save");
        QVERIFY(crashed.autosaveNow());
    }
    ProjectController again;
    again.setQuestions(scripted(answers));
    QVERIFY(again.offerRecovery());
    QCOMPARE(again.path(), QFileInfo(pathIn("recovered.persona")).canonicalFilePath());
    QCOMPARE(again.project().description, std::string("changed after the last save"));
    QVERIFY(again.isDirty());
    QVERIFY(again.save());
    QCOMPARE(persona::read_project(pathIn("recovered.persona").toStdString()).description,
             std::string("changed after the last save"));
    QCOMPARE(recoveryNotes(), 0);
}

void TestProjectsUi::staleAndDeclinedRecoveriesAreDropped() {
    Answers answers;
    ProjectController saved;
    saved.setQuestions(scripted(answers));
    fill(saved);
    QVERIFY(saved.saveTo(pathIn("stale.persona")));
    saved.setDescription("autosaved, then the project was saved elsewhere later");
    QVERIFY(saved.autosaveNow());
    QCOMPARE(recoveryNotes(), 1);
    // The project on disk is newer than the copy: nothing to offer.
    QFile json(pathIn("stale.persona/project.json"));
    QVERIFY(json.open(QIODevice::ReadWrite));
    QVERIFY(json.setFileTime(QDateTime::currentDateTime().addSecs(60), QFileDevice::FileModificationTime));
    json.close();
    ProjectController later;
    later.setQuestions(scripted(answers));
    QVERIFY(!later.offerRecovery());
    QCOMPARE(answers.restoreQuestions, 0);
    QCOMPARE(recoveryNotes(), 0);

    // A copy the user declines is deleted, and the untitled project stays.
    ProjectController untitled;
    untitled.setQuestions(scripted(answers));
    untitled.setName("declined");
    QVERIFY(untitled.autosaveNow());
    answers.restore = false;
    ProjectController declining;
    declining.setQuestions(scripted(answers));
    QVERIFY(!declining.offerRecovery());
    QCOMPARE(answers.restoreQuestions, 1);
    QCOMPARE(recoveryNotes(), 0);
    QCOMPARE(declining.project().name, std::string("untitled"));
}

void TestProjectsUi::corruptProjectKeepsTheCurrentOne() {
    Answers answers;
    EngineClient engine;
    MainWindow window(&engine);
    ProjectController* projects = window.projects();
    projects->setQuestions(scripted(answers));
    fill(*projects);
    QVERIFY(projects->saveTo(pathIn("good.persona")));
    projects->setDescription("unsaved edit");
    const persona::Project before = projects->project();
    const QString title = window.windowTitle();

    QDir(dir_.path()).mkpath("corrupt.persona");
    QFile bad(pathIn("corrupt.persona/project.json"));
    QVERIFY(bad.open(QIODevice::WriteOnly));
    bad.write("{\n  \"schema\": \"persona-workbench/project\",\n  \"schema_version\": 2,\n  \"na");
    bad.close();

    QVERIFY(!projects->openProject(pathIn("corrupt.persona")));
    QCOMPARE(answers.errors.size(), 1);
    QVERIFY2(answers.errors[0].contains("corrupt.persona/project.json") && answers.errors[0].contains("not valid JSON"),
             qPrintable(answers.errors[0]));
    QCOMPARE(answers.saveQuestions, 0);  // refused before asking about the open project's changes
    QVERIFY(projects->project() == before);
    QVERIFY(projects->path().endsWith("good.persona"));
    QVERIFY(projects->isDirty());
    QCOMPARE(window.windowTitle(), title);

    // A folder that is no project at all is refused the same way.
    QDir(dir_.path()).mkpath("empty.persona");
    QVERIFY(!projects->openProject(pathIn("empty.persona")));
    QVERIFY(answers.errors.last().contains("project.json"));
    QVERIFY(projects->project() == before);
}

QTEST_MAIN(TestProjectsUi)
#include "test_projects_ui.moc"

// The panels and the project, on the real default model: an example's steering vector reaches
// the Steering panel, a trait edited in the Traits tab and an extraction run from the Extraction
// tab land in the project, and both survive a save and a reopen.
void TestProjectsUi::panelsShowAndEditTheProject() {
    MainWindow window(&loadedEngine());
    Answers answers;
    ProjectController* projects = window.projects();
    projects->setQuestions(scripted(answers));
    const QString example = exampleFolder(window, "evil");
    QVERIFY(!example.isEmpty());
    QVERIFY(projects->openProject(example));
    const persona::Project& opened = projects->project();
    const auto steered = opened.vectors.find(opened.settings.steering.vector);
    QVERIFY(steered != opened.vectors.end());
    QVERIFY(window.steeringPanel()->currentVector());
    QCOMPARE(window.steeringPanel()->currentVector()->values, steered->second.values);
    QCOMPARE(window.steeringPanel()->coefficient(), opened.settings.steering.coefficient);
    QCOMPARE(window.traitsPanel()->traits(), opened.traits);
    // The tree on the left lists what the project holds.
    auto* tree = window.findChild<QTreeWidget*>("project_tree");
    QVERIFY(tree);
    QCOMPARE(tree->topLevelItem(1)->text(0), QString("Traits (3)"));
    QCOMPARE(tree->topLevelItem(1)->child(1)->text(0), QString::fromStdString(opened.traits[1].name));
    QCOMPARE(tree->topLevelItem(2)->childCount(), int(opened.runs.size()));

    // An edit in the Traits tab is an edit of the project, and undo takes it back.
    TraitsPanel* traits = window.traitsPanel();
    traits->setCurrentIndex(0);
    persona::Trait edited = traits->traits().front();
    edited.definition += " (edited in the panel)";
    traits->setCurrentTrait(edited);
    QVERIFY(projects->isDirty());
    QCOMPARE(projects->project().traits.front().definition, edited.definition);
    traits->undoStack()->undo();
    QCOMPARE(projects->project().traits.front(), opened.traits.front());
    traits->undoStack()->redo();
    QCOMPARE(projects->project().traits.front().definition, edited.definition);

    // A tiny extraction from the Extraction tab becomes a run with its vector.
    ExtractionPanel* extraction = window.extractionPanel();
    QTemporaryDir checkpoints;
    extraction->setCheckpointDirectory(checkpoints.path());
    QVERIFY(extraction->selectTrait("impolite"));
    persona::ExtractionSettings settings;
    settings.question_limit = 2;
    settings.pair_limit = 1;
    settings.max_new_tokens = 8;
    settings.batch_size = 4;
    settings.judge = persona::JudgeKind::None;
    extraction->setSettings(settings);
    const std::size_t runsBefore = projects->project().runs.size();
    // Once Generate was pressed, the user's changes regenerate; a finished extraction is not one.
    QSignalSpy generated(window.steeringPanel(), &SteeringPanel::generationFinished);
    window.steeringPanel()->generate();
    QVERIFY(generated.wait(120000));
    QSignalSpy started(window.steeringPanel(), &SteeringPanel::generationStarted);
    QSignalSpy changed(projects, &ProjectController::projectChanged);
    extraction->run();
    QTRY_COMPARE_WITH_TIMEOUT(projects->project().runs.size(), runsBefore + 1, 300000);
    QTest::qWait(600);
    QCOMPARE(started.count(), 0);
    const persona::RunResult run = projects->project().runs.back();  // a copy: saving rewrites the project
    QCOMPARE(run.trait, std::string("impolite"));
    QCOMPARE(run.pairs.kept, std::size_t(2));
    QCOMPARE(run.model.file, std::string(persona::kDefaultModelFile));
    QCOMPARE(run.model.sha256, persona::file_sha256(persona_test::defaultModelPath().toStdString()));
    QCOMPARE(tree->topLevelItem(2)->childCount(), int(projects->project().runs.size()));
    QVERIFY(tree->topLevelItem(2)->child(tree->topLevelItem(2)->childCount() - 1)->text(0).startsWith("impolite: 2/2"));
    QVERIFY(projects->project().vectors.count(run.vector));
    QCOMPARE(projects->project().vectors.at(run.vector).values,
             extraction->result()->aggregate(persona::Aggregate::ResponseMean).vector.values);

    // Saved and reopened: the edit and the run are there.
    QVERIFY(projects->saveTo(pathIn("edited")));
    QVERIFY2(answers.errors.isEmpty(), qPrintable(answers.errors.join("\n")));
    ProjectController reopened;
    QVERIFY(reopened.openProject(projects->path()));
    QCOMPARE(reopened.project().traits.front().definition, edited.definition);
    const auto& reopenedRuns = reopened.project().runs;
    const auto found = std::find_if(reopenedRuns.begin(), reopenedRuns.end(),
                                    [&](const persona::RunResult& r) { return r.vector == run.vector; });
    QVERIFY(found != reopenedRuns.end());
    const persona::RunResult& back = *found;
    QCOMPARE(back.trait, run.trait);
    QCOMPARE(back.vector, run.vector);
    QCOMPARE(back.pairs.kept, run.pairs.kept);
    QVERIFY(back.model == run.model);
    QCOMPARE(back.suggested_layer, run.suggested_layer);
    QCOMPARE(back.diagnostics.size(), run.diagnostics.size());
    QCOMPARE(reopened.project().vectors.at(run.vector).values, projects->project().vectors.at(run.vector).values);
}

// The Steering setup is the project's: an example opens as a copy, every project vector is in
// both pickers, the user's setup is saved (raw coefficient included) and comes back on reopen,
// and neither Save As nor an open starts a generation. The shipped example stays as it was.
void TestProjectsUi::steeringSetupIsProjectState() {
    MainWindow window(&loadedEngine());
    Answers answers;
    ProjectController* projects = window.projects();
    projects->setQuestions(scripted(answers));
    const QString example = exampleFolder(window, "evil");
    QVERIFY(!example.isEmpty());
    const auto shipped = folderHashes(example);
    QVERIFY(shipped.size() >= 4);
    SteeringPanel* steering = window.steeringPanel();
    QSignalSpy started(steering, &SteeringPanel::generationStarted);

    QVERIFY(projects->openProject(example));
    QVERIFY(projects->path().isEmpty());
    QCOMPARE(started.count(), 0);
    const persona::Project opened = projects->project();
    QCOMPARE(opened.vectors.size(), std::size_t(3));
    auto* steeringChoice = steering->findChild<QComboBox*>("vector_choice");
    auto* heatChoice = window.heatMapPanel()->findChild<QComboBox*>("heat_vector_choice");
    for (const auto& [key, vector] : opened.vectors) {
        const QString name = VectorChoice::projectEntryName(QString::fromStdString(key));
        QVERIFY2(steeringChoice->findText(name) >= 0, qPrintable(name));
        QVERIFY2(heatChoice->findText(name) >= 0, qPrintable(name));
    }
    QCOMPARE(steering->settings().vector, opened.settings.steering.vector);
    QCOMPARE(steering->coefficient(), opened.settings.steering.coefficient);
    // The newest run's plots come back from its stored diagnostics.
    const persona::RunResult& newest = opened.runs.back();
    QVERIFY(window.extractionPanel()->result());
    QCOMPARE(window.extractionPanel()->result()->trait, newest.trait);
    const auto norms = window.extractionPanel()->normPlot()->graph(0)->data();
    QCOMPARE(norms->size(), static_cast<int>(newest.diagnostics.size()));
    const auto suggested = static_cast<std::size_t>(newest.suggested_layer);
    QCOMPARE(norms->at(newest.suggested_layer)->value, newest.diagnostics.at(suggested).vector_norm);

    // Live: from here on the user's own changes regenerate.
    QSignalSpy finished(steering, &SteeringPanel::generationFinished);
    steering->findChild<QSpinBox*>("max_tokens")->setValue(4);
    steering->generate();
    QVERIFY(finished.wait(120000));

    // The user's setup: another vector, a layer, a strength, a prompt, sampling.
    const QString impolite = VectorChoice::projectEntryName("vectors/impolite.response_avg.safetensors");
    steeringChoice->setCurrentIndex(steeringChoice->findText(impolite));
    steering->findChild<QSpinBox*>("layer")->setValue(14);
    steering->findChild<QSlider*>("strength_slider")->setValue(9);  // 0.45 (the example opens near 0.36)
    steering->findChild<QPlainTextEdit*>("prompt")->setPlainText("Is my cat judging me?");
    steering->findChild<QCheckBox*>("sample")->setChecked(true);
    steering->findChild<QSpinBox*>("seed")->setValue(31);
    QVERIFY(window.isWindowModified());
    QTest::qWait(400);  // past the typing debounce: the changes regenerated
    QTRY_VERIFY_WITH_TIMEOUT(!steering->generating(), 120000);
    // Through the window as in the panel alone: a strength move regenerates the steered row only.
    steering->findChild<QSlider*>("strength_slider")->setValue(8);
    QVERIFY(finished.wait(120000));
    QCOMPARE(steering->lastJobRows(), 1);
    steering->findChild<QSlider*>("strength_slider")->setValue(9);
    QVERIFY(finished.wait(120000));
    QCOMPARE(steering->lastJobRows(), 1);
    const persona::SteeringSettings chosen = steering->settings();
    QCOMPARE(chosen.vector, std::string("vectors/impolite.response_avg.safetensors"));
    QVERIFY(std::abs(steering->strength() - 0.45) < 1e-9);

    // Save: an example asks for a folder (Save As), keeps the live setup and starts nothing.
    answers.saveFolder = pathIn("my-evil");
    started.clear();
    QVERIFY(projects->save());
    QVERIFY(projects->path().endsWith("my-evil.persona"));
    QTest::qWait(600);
    QCOMPARE(started.count(), 0);
    QVERIFY(steering->settings() == chosen);
    const persona::Project saved = persona::read_project(projects->path().toStdString());
    QVERIFY(saved.settings.steering == chosen);
    QCOMPARE(saved.settings.steering.coefficient, steering->coefficient());  // raw, exactly

    // Closed and reopened: the setup comes back, and nothing generates.
    QVERIFY(projects->newProject());
    QVERIFY(projects->openProject(pathIn("my-evil.persona")));
    QTest::qWait(600);
    QCOMPARE(started.count(), 0);
    QVERIFY(steering->settings() == chosen);
    for (const auto& [key, vector] : opened.vectors)
        QVERIFY(heatChoice->findText(VectorChoice::projectEntryName(QString::fromStdString(key))) >= 0);
    QVERIFY2(answers.errors.isEmpty(), qPrintable(answers.errors.join("\n")));
    QVERIFY(folderHashes(example) == shipped);
}
