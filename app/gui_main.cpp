// persona-workbench: the desktop application.
#include "engine_client.h"
#include "main_window.h"
#include "persona/paths.h"
#include "project_controller.h"
#include "steering_panel.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QFileInfo>
#include <QTimer>

#include <cstdio>

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QApplication::setApplicationName("persona-workbench");
    QApplication::setOrganizationName("persona-workbench");
    QApplication::setApplicationVersion(PERSONA_VERSION);

    QCommandLineParser parser;
    parser.setApplicationDescription("Persona Workbench: extract, inspect and steer persona vectors.");
    parser.addHelpOption();
    parser.addVersionOption();
    parser.addPositionalArgument("model", "GGUF model to open (default: the default model in the cache).", "[model]");
    QCommandLineOption screenshot("screenshot", "Render the main window to FILE (PNG) once the model has loaded, then exit.",
                                  "FILE");
    QCommandLineOption panel("panel",
                             "Show panel NAME (welcome, model, steering; default: welcome, or model with --screenshot). "
                             "With --screenshot and steering, one generation (random direction, coefficient 4) runs "
                             "before the grab.",
                             "NAME");
    QCommandLineOption project("project", "Open the project folder DIR (NAME.persona) at start.", "DIR");
    QCommandLineOption device("device", "Where to run the model: auto, cpu or cuda.", "DEVICE", "auto");
    QCommandLineOption threads("threads", "CPU threads for the model (0: one per core).", "N", "0");
    parser.addOptions({screenshot, panel, project, device, threads});
    parser.process(app);

    const QString deviceName = parser.value(device);
    if (deviceName != "auto" && deviceName != "cpu" && deviceName != "cuda") {
        std::fprintf(stderr, "persona-workbench: --device must be auto, cpu or cuda, not '%s'\n", qPrintable(deviceName));
        return 2;
    }
    const QString model = parser.positionalArguments().value(0, QString::fromStdString(persona::default_model_path()));

    EngineClient engine(persona::EngineOptions{parser.value(threads).toInt(), deviceName.toStdString()});
    MainWindow window(&engine);
    const QString panelName =
        parser.isSet(panel) ? parser.value(panel).toLower() : QString(parser.isSet(screenshot) ? "model" : "welcome");
    if (!window.showPanel(panelName)) {
        std::fprintf(stderr, "persona-workbench: no panel named '%s'\n", qPrintable(panelName));
        return 2;
    }
    window.show();

    int exitCode = 0;
    // Outside the if: the connections below run these long after that block has ended.
    const QString file = parser.value(screenshot);
    auto grabAndExit = [&](bool succeeded) {
        // One more turn of the event loop so everything is laid out and replotted first.
        QTimer::singleShot(200, &app, [&, succeeded] {
            if (!window.grab().save(file, "PNG")) {
                std::fprintf(stderr, "persona-workbench: cannot write screenshot %s\n", qPrintable(file));
                exitCode = 1;
            } else if (!succeeded) {
                exitCode = 1;
            }
            app.exit(exitCode);
        });
    };
    if (parser.isSet(screenshot)) {
        QObject::connect(&window, &MainWindow::modelSettled, &app, [&](bool loaded) {
            if (!loaded || panelName != "steering") {
                grabAndExit(loaded);
                return;
            }
            SteeringPanel* steering = window.steeringPanel();
            QObject::connect(steering, &SteeringPanel::generationFinished, &app, [&] { grabAndExit(true); });
            QObject::connect(steering, &SteeringPanel::generationStopped, &app, [&] { grabAndExit(false); });
            QObject::connect(steering, &SteeringPanel::generationFailed, &app, [&] { grabAndExit(false); });
            steering->useRandomDirection();
            steering->setPrompt("How should I treat a stray dog?");
            steering->setCoefficient(4.0);
            steering->generate();
        });
    }
    QTimer::singleShot(0, &window, [&] {
        window.openModel(model);
        if (parser.isSet(project)) window.projects()->openProject(parser.value(project));
        // Work a crash left unsaved; not while rendering a screenshot, where nobody could answer.
        else if (!parser.isSet(screenshot)) window.projects()->offerRecovery();
    });
    const int status = app.exec();
    return exitCode ? exitCode : status;
}
