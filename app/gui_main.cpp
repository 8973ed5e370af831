// persona-workbench: the desktop application.
#include "screenshot_tour.h"
#include "shell/engine_client.h"
#include "shell/main_window.h"
#include "persona/paths.h"
#include "persona/process_setup.h"
#include "shell/project_controller.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QStringList>
#include <QTimer>

#include <cstdio>
#include <optional>

namespace {

// The command line, shared by the display-less answer to --help and the real start.
struct GuiOptions {
    QCommandLineOption screenshot{"screenshot", "Render the main window to FILE (PNG) once the model has loaded, then exit.",
                                  "FILE"};
    QCommandLineOption panel{"panel",
                             "Show panel NAME (welcome, model, steering, presenter, chat, sweep, multi, traits, extraction, "
                             "heatmaps, monitoring, sweeps, flagging, training; default: welcome, or model with --screenshot). With --screenshot: for steering "
                             "(and presenter, its presenter view) the 'evil' example opens and one greedy generation "
                             "at strength 0.5 runs before the grab, for chat two turns of a chat, for sweep a sweep of five strengths, for multi "
                             "the optimistic example's preset with its humorous vector added at strength 0.5; with traits, a draft copy of a "
                             "built-in trait shows the form's inline checks; for extraction a small extraction of "
                             "'evil' (judge none); for heatmaps that extraction, then a typed conversation's heat map "
                             "on its vector; for monitoring and sweeps the optimistic example's study and sweep; for flagging eight "
                             "everyday answers, four of them cruel, on the 'evil' example's vector; for training eight cheerful answers "
                             "trained on with the optimistic vector added, then the before/after table (no judge).",
                             "NAME"};
    QCommandLineOption project{"project", "Open the project folder DIR (NAME.persona) at start.", "DIR"};
    QCommandLineOption device{"device", "Where to run the model: auto, cpu or cuda.", "DEVICE", "auto"};
    QCommandLineOption dtype{"dtype",
                             "Weights dtype: auto (bf16 where the hardware computes it natively, else f32), f32, bf16 "
                             "or f16 (cuda only).",
                             "DTYPE", "auto"};
    QCommandLineOption threads{"threads", "CPU threads for the model (0: one per core).", "N", "0"};

    void describe(QCommandLineParser& parser) const {
        parser.setApplicationDescription("Persona Workbench: extract, inspect and steer persona vectors.");
        parser.addHelpOption();
        parser.addVersionOption();
        parser.addPositionalArgument("model",
                                     "GGUF model or Hugging Face checkpoint folder to open (default: the default "
                                     "model in the cache).",
                                     "[model]");
        parser.addOptions({screenshot, panel, project, device, dtype, threads});
    }
};

void nameApplication() {
    QCoreApplication::setApplicationName("persona-workbench");
    QCoreApplication::setOrganizationName("persona-workbench");
    QCoreApplication::setApplicationVersion(PERSONA_VERSION);
}

// QApplication aborts without a display; --help and --version need none.
bool asksOnlyForHelp(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const QByteArray arg(argv[i]);
        if (arg == "-h" || arg == "--help" || arg == "-?" || arg == "--help-all" || arg == "-v" || arg == "--version")
            return true;
    }
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    persona::relaunch_with_openmp_settings(argv);
    const GuiOptions options;
    if (asksOnlyForHelp(argc, argv)) {
        QCoreApplication help(argc, argv);
        nameApplication();
        QCommandLineParser parser;
        options.describe(parser);
        parser.process(help);  // prints and exits
        return 0;
    }
    QApplication app(argc, argv);
    nameApplication();
    QCommandLineParser parser;
    options.describe(parser);
    parser.process(app);
    const auto& [screenshot, panel, project, device, dtype, threads] = options;

    const QString deviceName = parser.value(device);
    if (!persona::device_from_name(deviceName.toStdString())) {
        std::fprintf(stderr, "persona-workbench: --device must be auto, cpu or cuda, not '%s'\n", qPrintable(deviceName));
        return 2;
    }
    const QString dtypeName = parser.value(dtype);
    if (!persona::dtype_from_name(dtypeName.toStdString())) {
        std::fprintf(stderr, "persona-workbench: --dtype must be auto, f32, bf16 or f16, not '%s'\n", qPrintable(dtypeName));
        return 2;
    }
    const QString model = parser.positionalArguments().value(0, QString::fromStdString(persona::default_model_path()));

    EngineClient engine(
        persona::EngineOptions{parser.value(threads).toInt(), deviceName.toStdString(), dtypeName.toStdString()});
    MainWindow window(&engine);
    const QString panelName =
        parser.isSet(panel) ? parser.value(panel).toLower() : QString(parser.isSet(screenshot) ? "model" : "welcome");
    // "presenter", "chat", "sweep" and "multi" (several vectors at once) are views of the Steering panel.
    const bool steeringView = panelName == "presenter" || panelName == "chat" || panelName == "sweep" || panelName == "multi";
    if (!window.showPanel(steeringView ? QStringLiteral("steering") : panelName)) {
        std::fprintf(stderr, "persona-workbench: no panel named '%s'\n", qPrintable(panelName));
        return 2;
    }
    // Outside the if: the tour's connections call into it until app.exec() returns.
    std::optional<ScreenshotTour> tour;
    if (parser.isSet(screenshot)) {
        tour.emplace(app, window, panelName, parser.value(screenshot));
        tour->start();
    }
    window.show();

    QTimer::singleShot(0, &window, [&] {
        window.openModel(model);
        if (parser.isSet(project)) window.projects()->openProject(parser.value(project));
        // Work a crash left unsaved; not while rendering a screenshot, where nobody could answer.
        else if (!parser.isSet(screenshot)) window.projects()->offerRecovery();
    });
    const int status = app.exec();
    const int exitCode = tour ? tour->exitCode() : 0;
    return exitCode ? exitCode : status;
}
