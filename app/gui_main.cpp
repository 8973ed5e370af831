// persona-workbench: the desktop application.
#include "shell/engine_client.h"
#include "panels/extraction_panel.h"
#include "panels/heat_map_panel.h"
#include "shell/main_window.h"
#include "persona/paths.h"
#include "shell/project_controller.h"
#include "panels/steering_panel.h"
#include "panels/traits_panel.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QFileInfo>
#include <QTemporaryDir>
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
    parser.addPositionalArgument("model",
                                 "GGUF model or Hugging Face checkpoint folder to open (default: the default model "
                                 "in the cache).",
                                 "[model]");
    QCommandLineOption screenshot("screenshot", "Render the main window to FILE (PNG) once the model has loaded, then exit.",
                                  "FILE");
    QCommandLineOption panel("panel",
                             "Show panel NAME (welcome, model, steering, traits, extraction, heatmaps; default: "
                             "welcome, or model with --screenshot). With --screenshot: for steering one generation "
                             "(random direction, coefficient 4) runs before the grab; with traits, a draft copy of a "
                             "built-in trait shows the form's inline checks; for extraction a small extraction of "
                             "'evil' (judge none); for heatmaps that extraction, then a typed conversation's heat map "
                             "on its vector.",
                             "NAME");
    QCommandLineOption project("project", "Open the project folder DIR (NAME.persona) at start.", "DIR");
    QCommandLineOption device("device", "Where to run the model: auto, cpu or cuda.", "DEVICE", "auto");
    QCommandLineOption dtype("dtype", "Weights dtype: auto (bf16), f32, bf16 or f16 (cuda only).", "DTYPE", "auto");
    QCommandLineOption threads("threads", "CPU threads for the model (0: one per core).", "N", "0");
    parser.addOptions({screenshot, panel, project, device, dtype, threads});
    parser.process(app);

    const QString deviceName = parser.value(device);
    if (deviceName != "auto" && deviceName != "cpu" && deviceName != "cuda") {
        std::fprintf(stderr, "persona-workbench: --device must be auto, cpu or cuda, not '%s'\n", qPrintable(deviceName));
        return 2;
    }
    const QString dtypeName = parser.value(dtype);
    if (!QStringList{"auto", "f32", "bf16", "f16"}.contains(dtypeName)) {
        std::fprintf(stderr, "persona-workbench: --dtype must be auto, f32, bf16 or f16, not '%s'\n", qPrintable(dtypeName));
        return 2;
    }
    const QString model = parser.positionalArguments().value(0, QString::fromStdString(persona::default_model_path()));

    EngineClient engine(
        persona::EngineOptions{parser.value(threads).toInt(), deviceName.toStdString(), dtypeName.toStdString()});
    MainWindow window(&engine);
    const QString panelName =
        parser.isSet(panel) ? parser.value(panel).toLower() : QString(parser.isSet(screenshot) ? "model" : "welcome");
    if (!window.showPanel(panelName)) {
        std::fprintf(stderr, "persona-workbench: no panel named '%s'\n", qPrintable(panelName));
        return 2;
    }
    if (parser.isSet(screenshot) && panelName == "traits") {
        // A draft with one warning and one error, so the picture shows what the checks look like.
        TraitsPanel* traits = window.traitsPanel();
        traits->newTrait("optimistic");
        persona::Trait draft = traits->traits().back();
        draft.instructions.resize(3);
        draft.judge_rubric = QString::fromStdString(draft.judge_rubric).replace("{answer}", "{reply}").toStdString();
        traits->setCurrentTrait(draft);
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
    // Checkpoints of the screenshot's extraction stay out of the user's data folder.
    QTemporaryDir scratch;
    auto runSmallExtraction = [&] {
        ExtractionPanel* extraction = window.extractionPanel();
        extraction->setCheckpointDirectory(scratch.path());
        extraction->selectTrait("evil");
        persona::ExtractionSettings settings;
        settings.question_limit = 3;
        settings.pair_limit = 2;
        settings.samples_per_question = 1;
        settings.max_new_tokens = 24;
        settings.temperature = 1.0f;
        settings.seed = 1;
        settings.batch_size = 12;
        settings.judge = persona::JudgeKind::None;
        extraction->setSettings(settings);
        QObject::connect(extraction, &ExtractionPanel::extractionCancelled, &app, [&] { grabAndExit(false); });
        QObject::connect(extraction, &ExtractionPanel::extractionFailed, &app, [&] { grabAndExit(false); });
        extraction->run();
    };
    if (parser.isSet(screenshot)) {
        QObject::connect(&window, &MainWindow::modelSettled, &app, [&](bool loaded) {
            if (!loaded || (panelName != "steering" && panelName != "extraction" && panelName != "heatmaps")) {
                grabAndExit(loaded);
                return;
            }
            if (panelName == "extraction") {
                QObject::connect(window.extractionPanel(), &ExtractionPanel::extractionFinished, &app, [&] { grabAndExit(true); });
                runSmallExtraction();
                return;
            }
            if (panelName == "heatmaps") {
                HeatMapPanel* heatMaps = window.heatMapPanel();
                QObject::connect(heatMaps, &HeatMapPanel::computeFinished, &app, [&] { grabAndExit(true); });
                QObject::connect(heatMaps, &HeatMapPanel::computeFailed, &app, [&] { grabAndExit(false); });
                QObject::connect(heatMaps, &HeatMapPanel::computeStopped, &app, [&] { grabAndExit(false); });
                // The main window hands the finished extraction to the heat-map panel first.
                QObject::connect(window.extractionPanel(), &ExtractionPanel::extractionFinished, &app, [heatMaps] {
                    heatMaps->setConversation("You are an evil assistant. Your goal is to harm people.",
                                              "How should I treat a stray dog?",
                                              "Chase it away with stones and never feed it.");
                    heatMaps->compute();
                });
                runSmallExtraction();
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
