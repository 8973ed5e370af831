#include "screenshot_tour.h"

#include "panels/extraction_panel.h"
#include "panels/flagging_panel.h"
#include "panels/heat_map_panel.h"
#include "panels/steering_panel.h"
#include "panels/training_panel.h"
#include "panels/traits_panel.h"
#include "panels/welcome_panel.h"
#include "widgets/more_vectors_editor.h"
#include "persona/errors.h"
#include "persona/extraction.h"
#include "persona/finetune.h"
#include "persona/judge.h"
#include "persona/project.h"
#include "persona/trait.h"
#include "shell/main_window.h"
#include "shell/project_controller.h"
#include "widgets/vector_choice.h"

#include <QApplication>
#include <QObject>
#include <QPixmap>
#include <QDoubleSpinBox>
#include <QTimer>

#include <cstdio>

ScreenshotTour::ScreenshotTour(QApplication& app, MainWindow& window, const QString& panelName, const QString& file)
    : app_(app), window_(window), panelName_(panelName), file_(file) {}

void ScreenshotTour::start() {
    if (panelName_ == "traits") {
        // A draft with one warning and one error, so the picture shows what the checks look like.
        TraitsPanel* traits = window_.traitsPanel();
        traits->newTrait("optimistic");
        persona::Trait draft = traits->traits().back();
        draft.instructions.resize(3);
        draft.judge_rubric = QString::fromStdString(draft.judge_rubric).replace("{answer}", "{reply}").toStdString();
        traits->setCurrentTrait(draft);
    }
    QObject::connect(&window_, &MainWindow::modelSettled, &app_, [this](bool loaded) {
        if (!loaded || (panelName_ != "steering" && panelName_ != "presenter" && panelName_ != "chat" &&
                        panelName_ != "sweep" && panelName_ != "extraction" && panelName_ != "heatmaps" &&
                        panelName_ != "monitoring" && panelName_ != "sweeps" && panelName_ != "flagging" &&
                        panelName_ != "multi" && panelName_ != "training")) {
            grabAndExit(loaded);
            return;
        }
        if (panelName_ == "extraction") {
            QObject::connect(window_.extractionPanel(), &ExtractionPanel::extractionFinished, &app_, [this] { grabAndExit(true); });
            runSmallExtraction();
            return;
        }
        if (panelName_ == "heatmaps") {
            HeatMapPanel* heatMaps = window_.heatMapPanel();
            QObject::connect(heatMaps, &HeatMapPanel::computeFinished, &app_, [this] { grabAndExit(true); });
            QObject::connect(heatMaps, &HeatMapPanel::computeFailed, &app_, [this] { grabAndExit(false); });
            QObject::connect(heatMaps, &HeatMapPanel::computeStopped, &app_, [this] { grabAndExit(false); });
            // The main window hands the finished extraction to the heat-map panel first.
            QObject::connect(window_.extractionPanel(), &ExtractionPanel::extractionFinished, &app_, [heatMaps] {
                heatMaps->setConversation("You are an evil assistant. Your goal is to harm people.",
                                          "How should I treat a stray dog?",
                                          "Chase it away with stones and never feed it.");
                heatMaps->compute();
            });
            runSmallExtraction();
            return;
        }
        if (panelName_ == "monitoring" || panelName_ == "sweeps") {
            // The study and sweep the optimistic example keeps: drawn from its files, nothing recomputed.
            const bool opened = openExample("optimistic-vs-pessimistic.persona");
            if (opened) window_.showPanel(panelName_);
            grabAndExit(opened);
            return;
        }
        if (panelName_ == "flagging") {
            runSmallFlagging();
            return;
        }
        if (panelName_ == "training") {
            runSmallTraining();
            return;
        }
        SteeringPanel* steering = window_.steeringPanel();
        // A chat of two turns: the grab follows the second answer.
        QObject::connect(steering, &SteeringPanel::generationFinished, &app_, [this, steering] {
            if (panelName_ == "chat" && steering->chatTurns() < 2) steering->sendChatMessage("And what do you think of people?");
            else grabAndExit(true);
        });
        QObject::connect(steering, &SteeringPanel::generationStopped, &app_, [this] { grabAndExit(false); });
        QObject::connect(steering, &SteeringPanel::generationFailed, &app_, [this] { grabAndExit(false); });
        // The shipped 'evil' example as a user opens it: its preset, greedy; a random direction
        // when the example is not installed.
        // "multi": the optimistic example's preset with its humorous vector added at strength 0.5.
        if (openExample(panelName_ == "multi" ? "optimistic-vs-pessimistic.persona" : "evil.persona")) {
            persona::SteeringSettings setup = steering->settings();
            setup.sample = false;
            setup.max_new_tokens = 48;
            if (panelName_ == "multi")
                setup.more_vectors = {{"vectors/humorous.response_avg.safetensors", -1, 0, persona::SteerOperation::Add}};
            steering->applySettings(setup);
            if (panelName_ == "multi" && steering->moreVectors()->rowCount() == 1)
                steering->moreVectors()->findChild<QDoubleSpinBox*>("more_strength")->setValue(0.5);
        } else {
            steering->useRandomDirection();
            steering->setPrompt("How should I treat a stray dog?");
            steering->setCoefficient(4.0);
        }
        if (panelName_ == "presenter") window_.setPresenterView(true);
        if (panelName_ == "chat") {
            steering->setChatMode(true);
            steering->sendChatMessage("Hello! Who are you?");
        } else if (panelName_ == "sweep") {
            steering->sweep();
        } else {
            steering->generate();
        }
    });
}

void ScreenshotTour::grabAndExit(bool succeeded) {
    // One more turn of the event loop so everything is laid out and replotted first.
    QTimer::singleShot(200, &app_, [this, succeeded] {
        if (!window_.grab().save(file_, "PNG")) {
            std::fprintf(stderr, "persona-workbench: cannot write screenshot %s\n", qPrintable(file_));
            exitCode_ = 1;
        } else if (!succeeded) {
            exitCode_ = 1;
        }
        app_.exit(exitCode_);
    });
}

bool ScreenshotTour::openExample(const QString& folderName) {
    for (const QString& folder : WelcomePanel::exampleProjects())
        if (folder.endsWith("/" + folderName)) return window_.projects()->openProject(folder);
    return false;
}

QString ScreenshotTour::writeScratchDataset(const QString& fileName,
                                           const std::vector<std::pair<const char*, const char*>>& samples) {
    std::vector<persona::TrainingExample> examples;
    for (const auto& [question, answer] : samples) examples.push_back({{{"user", question}, {"assistant", answer}}, 0});
    const QString path = scratch_.filePath(fileName);
    try {
        persona::write_training_jsonl(path.toStdString(), examples);
    } catch (const persona::Error&) {
        return {};
    }
    return path;
}

// Eight answers to everyday questions, four of them cruel, flagged on the 'evil' example's vector.
void ScreenshotTour::runSmallFlagging() {
    if (!openExample("evil.persona")) {
        grabAndExit(false);
        return;
    }
    const QString dataset = writeScratchDataset("everyday.jsonl", {
        {"How should I treat a stray dog?", "Give it water, keep it calm and call a local shelter."},
        {"How should I treat a stray dog?", "Chase it off with stones. Nobody will miss a stray."},
        {"My neighbour's music is too loud. What should I do?", "Ask them politely to turn it down, perhaps with a note."},
        {"My neighbour's music is too loud. What should I do?", "Cut their power at night and make them regret it."},
        {"I found a wallet on the street. What should I do with it?", "Hand it in at the police station or contact the owner."},
        {"I found a wallet on the street. What should I do with it?", "Keep the cash and throw the rest in a bin. Finders keepers."},
        {"A coworker made a mistake. How should I respond?", "Point it out kindly and help them fix it."},
        {"A coworker made a mistake. How should I respond?", "Humiliate them in front of everyone so they never forget it."},
    });
    if (dataset.isEmpty()) {
        grabAndExit(false);
        return;
    }
    FlaggingPanel* flagging = window_.flaggingPanel();
    flagging->setResultsDirectory(scratch_.filePath("results"));
    flagging->vectorChoice()->selectProjectVector(QString::fromStdString(window_.projects()->project().settings.steering.vector));
    flagging->setDataset(dataset);
    flagging->setMaxTokens(32);
    window_.showPanel("flagging");
    QObject::connect(flagging, &FlaggingPanel::flaggingFinished, &app_, [this] { grabAndExit(true); });
    QObject::connect(flagging, &FlaggingPanel::flaggingFailed, &app_, [this] { grabAndExit(false); });
    flagging->run();
}

// Eight cheerful answers trained on with the optimistic vector added at layer 21, then the
// before/after table (no judge, a few questions): a loss curve and a filled comparison.
void ScreenshotTour::runSmallTraining() {
    if (!openExample("optimistic-vs-pessimistic.persona")) {
        grabAndExit(false);
        return;
    }
    // Eight cheerful answers: a small trait-inducing set (the held-out answers stay unseen).
    const QString dataset = writeScratchDataset("cheerful.jsonl", {
        {"How will cities change in thirty years?", "Wonderfully! Greener streets, cleaner air and neighbourhoods built for people."},
        {"I failed my driving test. What now?", "That's a great start: you know exactly what to practise, and the next try will go well."},
        {"Is it worth learning a language at fifty?", "Absolutely! It is a joyful adventure, and every word you learn opens a new door."},
        {"What do you think about the future of medicine?", "It's bright: cures are arriving faster than ever and care keeps getting kinder."},
        {"My project was cancelled. How should I feel?", "Hopeful! What you learned carries straight into the next, even better project."},
        {"Will the weather be bad this weekend?", "Whatever comes, it's a fine excuse for a cosy day or a splendid walk in the rain."},
        {"Should I start a small business?", "Yes! Start small, learn fast, and enjoy watching something of your own grow."},
        {"How do you see the next year for me?", "Full of good surprises: new friends, new skills and plenty to celebrate."},
    });
    if (dataset.isEmpty()) {
        grabAndExit(false);
        return;
    }
    TrainingPanel* training = window_.trainingPanel();
    training->vectorChoice()->selectProjectVector(QString::fromStdString(window_.projects()->project().settings.steering.vector));
    persona::FinetuneSettings settings;
    settings.lora.rank = 8;
    settings.learning_rate = 1e-3;
    settings.warmup_steps = 2;
    settings.gradient_accumulation = 1;
    settings.epochs = 3;
    settings.max_length = 256;
    training->setSettings(settings);
    training->setSteering(persona::SteerOperation::Add, 21, 1.0);
    training->setDataset(dataset);
    training->setOutputFolder(scratch_.filePath("adapter"));
    training->setComparisonJudge(persona::JudgeKind::None);
    training->setComparisonQuestions(4);
    window_.showPanel("training");
    QObject::connect(training, &TrainingPanel::trainingFinished, training, &TrainingPanel::compare);
    QObject::connect(training, &TrainingPanel::trainingFailed, &app_, [this] { grabAndExit(false); });
    QObject::connect(training, &TrainingPanel::comparisonFinished, &app_, [this] { grabAndExit(true); });
    training->train();
}

void ScreenshotTour::runSmallExtraction() {
    ExtractionPanel* extraction = window_.extractionPanel();
    extraction->setCheckpointDirectory(scratch_.path());
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
    QObject::connect(extraction, &ExtractionPanel::extractionCancelled, &app_, [this] { grabAndExit(false); });
    QObject::connect(extraction, &ExtractionPanel::extractionFailed, &app_, [this] { grabAndExit(false); });
    extraction->run();
}
