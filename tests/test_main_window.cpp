// The main window, offscreen, on the real default model: the facts appear once the engine
// thread has loaded it, a bad file is reported where the user is without losing it, and F11 enters
// and leaves the presenter view.
#include "shell/engine_client.h"
#include "shell/main_window.h"
#include "panels/steering_panel.h"
#include "widgets/projection_heat_map.h"
#include "test_support.h"

#include <QFrame>
#include <QMenuBar>
#include <QToolButton>
#include <QPlainTextEdit>
#include <QSlider>
#include <QTabWidget>
#include <QTextEdit>
#include <QTreeWidget>

#include <QLabel>
#include <QProgressBar>
#include <QSettings>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTimer>

class TestMainWindow : public QObject {
    Q_OBJECT

    QString fact(const MainWindow& window, const char* name) {
        const auto* label = window.findChild<QLabel*>(name);
        if (!label) qFatal("no label %s", name);
        return label->text();
    }

    QTemporaryDir settingsDir_;

private slots:
    void initTestCase() {
        // Loading a model writes the recent list: into a throwaway folder, not the user's settings.
        QSettings::setPath(QSettings::NativeFormat, QSettings::UserScope, settingsDir_.path());
        QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, settingsDir_.path());
        QCoreApplication::setOrganizationName("persona-workbench-test");
    }

    void showsTheDefaultModelsFacts() {
        EngineClient engine;
        MainWindow window(&engine);
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));

        // The UI thread keeps turning while the engine thread loads.
        int ticks = 0;
        QTimer heartbeat;
        connect(&heartbeat, &QTimer::timeout, [&] { ++ticks; });
        heartbeat.start(5);

        QSignalSpy loaded(&engine, &EngineClient::modelLoaded);
        QSignalSpy progress(&engine, &EngineClient::progress);
        window.openModel(persona_test::defaultModelPath());
        QVERIFY(window.findChild<QProgressBar*>("load_progress")->isVisible());
        QVERIFY(loaded.wait(120000));
        QVERIFY(progress.count() > 1);
        QVERIFY(ticks > 0);
        QVERIFY(!window.findChild<QProgressBar*>("load_progress")->isVisible());

        QCOMPARE(fact(window, "fact_architecture"), QString("llama"));
        QCOMPARE(fact(window, "fact_layers"), QString("30"));
        QCOMPARE(fact(window, "fact_hidden"), QString("576"));
        QCOMPARE(fact(window, "fact_vocabulary"), QString("49152"));
        QVERIFY(fact(window, "fact_heads").startsWith("9 / 3"));
        QVERIFY(fact(window, "fact_parameters").startsWith("134.5 M"));
        QVERIFY(fact(window, "fact_quantization").startsWith("Q4_1"));
        QCOMPARE(fact(window, "fact_context"), QString("8192"));
        QCOMPARE(fact(window, "fact_chat_template"), QString("ChatML"));  // the format the model is prompted in
        QVERIFY(fact(window, "fact_device").startsWith("cpu"));
        QVERIFY(fact(window, "fact_memory").contains("MB"));
        QVERIFY(fact(window, "model_badge").contains("Smollm2"));
        QVERIFY(window.windowTitle().contains("Smollm2"));
    }

    void aBadModelIsReportedInTheWindow() {
        EngineClient engine;
        MainWindow window(&engine);
        window.show();
        QTemporaryDir dir;
        const QString path = dir.filePath("cut.gguf");
        QFile cut(path);
        QVERIFY(cut.open(QIODevice::WriteOnly));
        cut.write(persona_test::readPrefix(persona_test::defaultModelPath(), 1000));
        cut.close();

        QSignalSpy failed(&engine, &EngineClient::loadFailed);
        QVERIFY(window.showPanel("steering"));  // the user is elsewhere than the Model tab
        auto* banner = window.findChild<QFrame*>("error_banner");
        QVERIFY(banner && !banner->isVisible());
        window.openModel(path);
        QVERIFY(failed.wait(60000));
        // Shown where the user is, and gone when dismissed.
        QVERIFY(banner->isVisible());
        const QString shown = fact(window, "error_banner_text");
        QVERIFY2(shown.contains(path) && shown.contains("truncated"), qPrintable(shown));
        QTest::mouseClick(window.findChild<QToolButton*>("error_banner_close"), Qt::LeftButton);
        QVERIFY(!banner->isVisible());
        const QString message = fact(window, "model_message");
        QVERIFY2(message.contains(path) && message.contains("truncated"), qPrintable(message));
        QCOMPARE(fact(window, "fact_layers"), QString("–"));
        QVERIFY(!engine.busy());
    }

    // F11: the presenter view shows the two texts, large, and the strength slider, nothing else
    // of the window; F11 again gives the window back as it was.
    void presenterViewEntersAndLeavesWithOneKey() {
        EngineClient engine;
        MainWindow window(&engine);
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        SteeringPanel* steering = window.steeringPanel();
        auto* prompt = steering->findChild<QPlainTextEdit*>("prompt");
        auto* slider = steering->findChild<QSlider*>("strength_slider");
        auto* unsteered = steering->findChild<QTextEdit*>("unsteered_text");
        auto* tree = window.findChild<QTreeWidget*>("project_tree");
        const double normalSize = unsteered->font().pointSizeF();
        QVERIFY(window.showPanel("model"));  // the view brings Steering to the front
        QVERIFY(tree->isVisible());

        QTest::keyClick(&window, Qt::Key_F11);
        QVERIFY(steering->presenterMode());
        QCOMPARE(window.findChild<QTabWidget*>("panels")->currentWidget(), steering);
        QVERIFY(!prompt->isVisible());
        QVERIFY(!tree->isVisible());
        QVERIFY(!steering->heatMap(SteeringPanel::Steered)->isVisible());
        QVERIFY(!window.menuBar()->isVisible());
        QVERIFY(slider->isVisible());
        QVERIFY(unsteered->isVisible() && steering->findChild<QTextEdit*>("steered_text")->isVisible());
        QCOMPARE(unsteered->font().pointSizeF(), 2 * normalSize);

        QTest::keyClick(&window, Qt::Key_F11);
        QVERIFY(!steering->presenterMode());
        QVERIFY(prompt->isVisible() && tree->isVisible() && window.menuBar()->isVisible());
        QVERIFY(steering->heatMap(SteeringPanel::Steered)->isVisible());
        QCOMPARE(unsteered->font().pointSizeF(), normalSize);
    }
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
