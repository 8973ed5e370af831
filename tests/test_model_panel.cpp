// The Model panel on the real default model: opening a GGUF file and a Hugging Face checkpoint
// folder through the panel, by drop as well, the recent list kept in QSettings, a reload with
// another dtype, choices the engine cannot honour and bad files reported in the panel while
// the model loaded before stays usable; and the main window's status bar and shortcuts.
#include "shell/engine_client.h"
#include "hf_fixture.h"
#include "shell/main_window.h"
#include "panels/model_panel.h"
#include "test_support.h"

#include <QAction>
#include <QComboBox>
#include <QCoreApplication>
#include <QDir>
#include <QDropEvent>
#include <QLabel>
#include <QListWidget>
#include <QMimeData>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QUrl>

namespace {

QString text(const QWidget& root, const char* name) {
    const auto* label = root.findChild<QLabel*>(name);
    if (!label) qFatal("no label %s", name);
    return label->text();
}

void choose(QWidget& root, const char* combo, const QString& value) {
    auto* box = root.findChild<QComboBox*>(combo);
    if (!box) qFatal("no combo box %s", combo);
    const int index = box->findData(value);
    if (index < 0) qFatal("%s has no %s", combo, qPrintable(value));
    box->setCurrentIndex(index);
}

// A short greedy generation on whatever model the engine has: "" and `error` set when it failed.
QString generate(EngineClient& engine, QString* error = nullptr) {
    persona::GenerationRow row;
    row.messages = {{"user", "What is the capital of France?"}};
    row.sampling.max_new_tokens = 4;
    QString result;
    bool done = false;
    GenerationCallbacks callbacks;
    callbacks.receiver = &engine;
    callbacks.finished = [&](const std::vector<persona::GenerationResult>& results) {
        result = QString::fromStdString(results.at(0).text);
        done = true;
    };
    callbacks.failed = [&](const QString& message) {
        if (error) *error = message;
        done = true;
    };
    callbacks.cancelled = [&] { done = true; };
    engine.generate({row}, {}, callbacks);
    if (!QTest::qWaitFor([&] { return done; }, 60000)) qFatal("the generation never ended");
    return result;
}

void dropOn(QWidget& window, const QString& path) {
    auto* mime = new QMimeData;
    mime->setUrls({QUrl::fromLocalFile(path)});
    const QPoint at(window.width() / 2, window.height() / 2);
    QDragEnterEvent enter(at, Qt::CopyAction, mime, Qt::LeftButton, Qt::NoModifier);
    QCoreApplication::sendEvent(&window, &enter);
    if (!enter.isAccepted()) qFatal("the window refused the drag of %s", qPrintable(path));
    QDropEvent drop(QPointF(at), Qt::CopyAction, mime, Qt::LeftButton, Qt::NoModifier);
    QCoreApplication::sendEvent(&window, &drop);
    delete mime;
}

}  // namespace

class TestModelPanel : public QObject {
    Q_OBJECT

    QTemporaryDir settingsDir_;
    QTemporaryDir files_;
    QString gguf_;

    bool loadThroughPanel(MainWindow& window, EngineClient& engine, const QString& path) {
        QSignalSpy loaded(&engine, &EngineClient::modelLoaded);
        window.modelPanel()->openModel(path);
        return loaded.wait(120000);
    }

private slots:
    void initTestCase() {
        // The user's own settings stay untouched: a test organisation in a temporary folder.
        QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, settingsDir_.path());
        QSettings::setPath(QSettings::NativeFormat, QSettings::UserScope, settingsDir_.path());
        QCoreApplication::setOrganizationName("persona-workbench-test");
        QCoreApplication::setApplicationName("test_model_panel");
        gguf_ = QFileInfo(persona_test::defaultModelPath()).absoluteFilePath();
    }

    void init() { QSettings().remove(ModelPanel::kRecentModelsKey); }

    void opensAGgufThroughThePanelAndRemembersIt() {
        EngineClient engine;
        MainWindow window(&engine);
        window.show();
        QVERIFY(window.showPanel("model"));  // the window opens on the Welcome tab
        QSignalSpy loaded(&engine, &EngineClient::modelLoaded);
        window.modelPanel()->openModel(gguf_);
        QVERIFY(window.findChild<QProgressBar*>("model_load_progress")->isVisible());
        QVERIFY(text(window, "engine_state").contains("loading"));
        QVERIFY(text(window, "model_message").contains(gguf_));
        QVERIFY(loaded.wait(120000));
        QVERIFY(!window.findChild<QProgressBar*>("model_load_progress")->isVisible());
        QCOMPARE(text(window, "fact_layers"), QString("30"));
        QCOMPARE(text(window, "fact_device"), "cpu, " + persona_test::autoCpuDtype());
        QCOMPARE(text(window, "engine_state"), QString("engine: idle"));
        QCOMPARE(text(window, "device_label"), "device: cpu, " + persona_test::autoCpuDtype());
        QVERIFY(text(window, "memory_label").startsWith("RAM "));

        QCOMPARE(window.modelPanel()->recentModels(), QStringList{gguf_});
        QCOMPARE(QSettings().value(ModelPanel::kRecentModelsKey).toStringList(), QStringList{gguf_});
        auto* recent = window.findChild<QListWidget*>("recent_models");
        QCOMPARE(recent->count(), 1);
        QCOMPARE(recent->item(0)->data(Qt::UserRole).toString(), gguf_);

        // Another panel (the next run of the application) reads the same list.
        ModelPanel later(&engine);
        QCOMPARE(later.recentModels(), QStringList{gguf_});
    }

    void recentListIsMostRecentFirstAtMostTenAndPrunesMissing() {
        QStringList stored;
        for (int i = 0; i < ModelPanel::kMaxRecentModels; ++i) stored << files_.filePath(QString("gone-%1.gguf").arg(i));
        QSettings().setValue(ModelPanel::kRecentModelsKey, stored);

        EngineClient engine;
        MainWindow window(&engine);
        auto* recent = window.findChild<QListWidget*>("recent_models");
        QCOMPARE(recent->count(), 10);
        QVERIFY(recent->item(0)->text().contains("missing"));
        QCOMPARE(recent->item(0)->foreground().color(), window.palette().color(QPalette::Disabled, QPalette::Text));
        QVERIFY(window.findChild<QPushButton*>("remove_missing_models")->isEnabled());

        QVERIFY(loadThroughPanel(window, engine, gguf_));
        QStringList expected = QStringList{gguf_} + stored.mid(0, 9);  // the oldest one falls off
        QCOMPARE(window.modelPanel()->recentModels(), expected);
        QCOMPARE(recent->count(), 10);
        QCOMPARE(recent->item(0)->data(Qt::UserRole).toString(), gguf_);
        QVERIFY(!recent->item(0)->text().contains("missing"));

        // Opening the same model again moves it to the top without a duplicate.
        QVERIFY(loadThroughPanel(window, engine, gguf_));
        QCOMPARE(window.modelPanel()->recentModels(), expected);

        // Activating a missing entry says so and prunes it instead of loading.
        QSignalSpy loadStarted(&engine, &EngineClient::loadStarted);
        emit recent->itemActivated(recent->item(1));
        QCOMPARE(loadStarted.count(), 0);
        QVERIFY(text(window, "model_message").contains(stored[0] + " no longer exists"));
        QVERIFY(!window.modelPanel()->recentModels().contains(stored[0]));
        QCOMPARE(window.modelPanel()->recentModels().size(), 9);

        window.findChild<QPushButton*>("remove_missing_models")->click();
        QCOMPARE(window.modelPanel()->recentModels(), QStringList{gguf_});
        QCOMPARE(QSettings().value(ModelPanel::kRecentModelsKey).toStringList(), QStringList{gguf_});
        QVERIFY(text(window, "model_message").contains(stored[1]));
    }

    void dtypeSwitchReloadsAndTheFactsShowIt() {
        EngineClient engine;
        MainWindow window(&engine);
        window.show();
        choose(window, "dtype_choice", "bf16");
        QVERIFY(loadThroughPanel(window, engine, gguf_));
        QCOMPARE(text(window, "fact_device"), QString("cpu, bf16"));
        const QString bf16Answer = generate(engine);
        QVERIFY(!bf16Answer.isEmpty());

        QSignalSpy loaded(&engine, &EngineClient::modelLoaded);
        choose(window, "dtype_choice", "f32");
        window.findChild<QPushButton*>("reload_model")->click();
        QVERIFY(loaded.wait(120000));
        QCOMPARE(engine.facts()->dtype, std::string("f32"));
        QCOMPARE(text(window, "fact_device"), QString("cpu, f32"));
        QCOMPARE(text(window, "device_label"), QString("device: cpu, f32"));
        QVERIFY(text(window, "model_badge").contains("f32"));
        QVERIFY(!generate(engine).isEmpty());

        choose(window, "dtype_choice", "bf16");
        window.findChild<QPushButton*>("reload_model")->click();
        QVERIFY(loaded.wait(120000));
        QCOMPARE(text(window, "fact_device"), QString("cpu, bf16"));
        // The same weights and dtype as at first: the same greedy answer.
        QCOMPARE(generate(engine), bf16Answer);
    }

    void choicesTheEngineCannotHonourAreReportedInThePanel() {
        EngineClient engine;
        MainWindow window(&engine);
        QVERIFY(loadThroughPanel(window, engine, gguf_));
        QSignalSpy failed(&engine, &EngineClient::loadFailed);
        QSignalSpy loaded(&engine, &EngineClient::modelLoaded);

        choose(window, "device_choice", "cpu");
        choose(window, "dtype_choice", "f16");
        window.modelPanel()->reloadModel();
        QVERIFY(failed.wait(60000));
        QString message = text(window, "model_message");
        QVERIFY2(message.contains("f16") && message.contains("CPU") && message.contains("still loaded"), qPrintable(message));
        QCOMPARE(text(window, "fact_device"), "cpu, " + persona_test::autoCpuDtype());
        QVERIFY(!generate(engine).isEmpty());

        // cuda: the engine's error on a machine without a GPU, a cuda model on one with a GPU.
        choose(window, "device_choice", "cuda");
        choose(window, "dtype_choice", "auto");
        window.modelPanel()->reloadModel();
        QVERIFY(QTest::qWaitFor([&] { return failed.count() + loaded.count() == 2; }, 120000));
        if (loaded.count() == 1) {
            QCOMPARE(text(window, "fact_device").section(',', 0, 0), QString("cuda"));
        } else {
            message = text(window, "model_message");
            QVERIFY2(message.contains("CUDA") && message.contains("still loaded"), qPrintable(message));
            QCOMPARE(text(window, "fact_device"), "cpu, " + persona_test::autoCpuDtype());
            QVERIFY(!generate(engine).isEmpty());
        }
    }

    void aBadFileShowsAClearErrorAndThePreviousModelStaysUsable() {
        EngineClient engine;
        MainWindow window(&engine);
        QVERIFY(loadThroughPanel(window, engine, gguf_));
        const QString before = generate(engine);

        const QString cut = files_.filePath("cut.gguf");
        QFile file(cut);
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.write(persona_test::readPrefix(gguf_, 1000));
        file.close();
        QSignalSpy failed(&engine, &EngineClient::loadFailed);
        window.modelPanel()->openModel(cut);
        QVERIFY(failed.wait(60000));
        const QString message = text(window, "model_message");
        QVERIFY2(message.contains(cut) && message.contains("truncated") && message.contains("still loaded"), qPrintable(message));
        QCOMPARE(text(window, "fact_layers"), QString("30"));
        QCOMPARE(text(window, "fact_path"), gguf_);
        QVERIFY(text(window, "engine_state").contains("failed"));
        QCOMPARE(window.modelPanel()->recentModels(), QStringList{gguf_});
        QCOMPARE(generate(engine), before);
        QVERIFY(!engine.busy());
    }

    void aDroppedFileLoadsAndAnythingElseIsExplained() {
        EngineClient engine;
        MainWindow window(&engine);
        window.resize(800, 600);
        window.show();
        QSignalSpy loaded(&engine, &EngineClient::modelLoaded);
        dropOn(window, gguf_);
        QVERIFY(loaded.wait(120000));
        QCOMPARE(text(window, "fact_layers"), QString("30"));
        QCOMPARE(window.modelPanel()->recentModels(), QStringList{gguf_});

        const QString notes = files_.filePath("notes.txt");
        QFile file(notes);
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.write("not a model");
        file.close();
        QSignalSpy started(&engine, &EngineClient::loadStarted);
        dropOn(window, notes);
        QCOMPARE(started.count(), 0);
        QVERIFY(text(window, "model_message").contains(notes + " is not a model"));
    }

    void opensAHuggingFaceCheckpointFolder() {
        // SmolLM2 cut to its first 2 blocks, so the folder is small and the facts tell it apart.
        const QString dir = files_.filePath("smollm2-hf");
        QVERIFY(QDir().mkpath(dir));
        {
            const auto file = persona::GgufFile::open(gguf_.toStdString());
            hf_fixture::write_smollm_checkpoint(*file, dir.toStdString(), 1, false, 2);
        }
        EngineClient engine;
        MainWindow window(&engine);
        QVERIFY(loadThroughPanel(window, engine, gguf_));
        QVERIFY(loadThroughPanel(window, engine, dir));
        QCOMPARE(text(window, "fact_layers"), QString("2"));
        QCOMPARE(text(window, "fact_architecture"), QString("llama"));
        QCOMPARE(text(window, "fact_path"), dir);
        QVERIFY(text(window, "fact_quantization").contains("F32"));
        QCOMPARE(window.modelPanel()->recentModels(), (QStringList{dir, gguf_}));
        QString error;
        generate(engine, &error);
        QVERIFY2(error.isEmpty(), qPrintable(error));

        // A dropped folder counts too.
        QSignalSpy loaded(&engine, &EngineClient::modelLoaded);
        QVERIFY(loadThroughPanel(window, engine, gguf_));
        window.show();
        dropOn(window, dir);
        QVERIFY(loaded.wait(120000));
        QCOMPARE(text(window, "fact_layers"), QString("2"));
    }

    void shortcutsSwitchPanelsOpenAndStop() {
        EngineClient engine;
        MainWindow window(&engine);
        window.show();
        QApplication::setActiveWindow(&window);
        QVERIFY(QTest::qWaitForWindowActive(&window));
        auto* panels = window.findChild<QTabWidget*>("panels");
        QVERIFY(panels->count() >= 3);
        QTest::keyClick(&window, Qt::Key_2, Qt::ControlModifier);
        QCOMPARE(panels->currentIndex(), 1);
        QTest::keyClick(&window, Qt::Key_4, Qt::ControlModifier);
        QCOMPARE(panels->currentIndex(), 3);
        QCOMPARE(panels->tabText(panels->currentIndex()), QString("Traits"));
        QTest::keyClick(&window, Qt::Key_1, Qt::ControlModifier);
        QCOMPARE(panels->currentIndex(), 0);

        auto* stop = window.findChild<QAction*>("stop_action");
        QVERIFY(stop->shortcuts().contains(QKeySequence(Qt::Key_Escape)));
        QVERIFY(stop->shortcuts().contains(QKeySequence("Ctrl+.")));
        QSignalSpy stopped(stop, &QAction::triggered);
        QTest::keyClick(&window, Qt::Key_Period, Qt::ControlModifier);
        QCOMPARE(stopped.count(), 1);
        QTest::keyClick(&window, Qt::Key_Escape);
        QCOMPARE(stopped.count(), 2);

        QStringList shortcuts;
        for (QAction* action : window.findChildren<QAction*>()) shortcuts << action->shortcut().toString();
        QVERIFY(shortcuts.contains("Ctrl+M"));
        QVERIFY(shortcuts.contains("Ctrl+Shift+M"));
    }
};

QTEST_MAIN(TestModelPanel)
#include "test_model_panel.moc"
