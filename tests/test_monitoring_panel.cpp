// The Monitoring tab on the real default model, judged by the judge model setup fetches: each
// point drawn is persona::monitor's last-prompt projection for that rung and question, and the
// judge's trait score for the answer; r is Pearson's over them; Stop ends the study alone; a
// study read back from a file is drawn the same; studies are kept in and shown from projects.
#include "panels/monitoring_panel.h"
#include "persona/model.h"
#include "persona/monitoring.h"
#include "persona/paths.h"
#include "persona/vector_files.h"
#include "shell/engine_client.h"
#include "shell/main_window.h"
#include "shell/project_controller.h"
#include "persona/project.h"
#include "widgets/vector_choice.h"
#include "engine_fixture.h"
#include "test_support.h"

#include <QSignalSpy>
#include <QStandardPaths>
#include <QTableWidget>
#include <QTemporaryDir>

#include <algorithm>
#include <cmath>
#include <memory>

namespace {
constexpr int kTimeoutMs = 600000;
}  // namespace

class TestMonitoringPanel : public QObject {
    Q_OBJECT

    std::unique_ptr<EngineClient> engine_;
    std::unique_ptr<MonitoringPanel> panel_;
    std::unique_ptr<persona::Model> model_;  // the test's own copy, to check the panel against
    persona::Trait trait_ = persona::load_builtin_trait("optimistic");
    persona::PersonaVector vector_;
    const int layer_ = 17;

    void configure(const persona::JudgeSettings& judge) {
        QVERIFY(panel_->selectTrait("optimistic"));
        QVERIFY(panel_->vectorChoice()->select("optimistic (test)"));
        panel_->setLayer(layer_);
        panel_->setQuestionLimit(2);
        panel_->setMaxTokens(12);
        panel_->setJudge(judge);
        panel_->setLadder({{"discourage", persona::negative_system_prompt(trait_, 0)},
                           {"none", ""},
                           {"encourage", persona::positive_system_prompt(trait_, 0)}});
    }

private slots:
    void initTestCase() {
        engine_ = persona_test::loadedEngine();
        model_ = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "auto"});
        vector_ = persona::read_vector_file(
            PERSONA_SOURCE_DIR "/projects/optimistic-vs-pessimistic.persona/vectors/optimistic.response_avg.safetensors");
        panel_ = std::make_unique<MonitoringPanel>(engine_.get());
        panel_->resize(1200, 760);
        panel_->show();
        QVERIFY(QTest::qWaitForWindowExposed(panel_.get()));
        panel_->setModel(*engine_->facts());
        panel_->vectorChoice()->addVector("optimistic (test)", vector_);
    }

    void pointsAreMonitorsProjectionsAndTheJudgesScores() {
        persona::JudgeSettings judge(persona::JudgeKind::Local);
        judge.model_path = persona_test::modelPath(persona::kJudgeModelFile).toStdString();
        configure(judge);
        QSignalSpy finished(panel_.get(), &MonitoringPanel::studyFinished);
        panel_->run();
        QVERIFY(panel_->running());
        QVERIFY2(finished.wait(kTimeoutMs), qPrintable(panel_->message()));
        const persona::MonitoringStudy* study = panel_->study();
        QVERIFY(study);
        QCOMPARE(study->points.size(), std::size_t(6));
        QCOMPARE(panel_->pointTable()->rowCount(), 6);
        QVERIFY2(panel_->gaugeUpdates() >= 6, qPrintable(QString::number(panel_->gaugeUpdates())));  // every answer streamed
        QVERIFY(std::isfinite(panel_->gaugeValue()));

        // The same conversations read by the test's own model, batched as the study batches them.
        std::vector<persona::MonitorInput> inputs;
        for (const auto& point : study->points) {
            persona::MonitorInput input;
            const std::string& system = study->prompts[std::size_t(point.prompt_index)].system;
            if (!system.empty()) input.messages.push_back({"system", system});
            input.messages.push_back({"user", trait_.evaluation_questions[std::size_t(point.question_index)]});
            input.generate_answer = true;
            input.sampling.max_new_tokens = 12;
            input.sampling.temperature = 0;
            inputs.push_back(std::move(input));
        }
        persona::MonitorOptions options;
        options.layers = {layer_};
        const auto monitored = persona::monitor(*model_, vector_, inputs, options);
        const auto referenceJudge = persona::make_judge(*model_, judge);
        int scored = 0;
        std::vector<std::vector<std::pair<double, double>>> expected(3);
        for (std::size_t i = 0; i < study->points.size(); ++i) {
            const auto& point = study->points[i];
            QCOMPARE(point.projection, monitored[i].prompt_last.front());
            QCOMPARE(point.answer, monitored[i].answer);
            const std::string& question = trait_.evaluation_questions[std::size_t(point.question_index)];
            const auto score = referenceJudge->score(trait_.judge_rubric, question, point.answer, {}).score;
            QCOMPARE(point.trait_score.has_value(), score.has_value());
            if (score) {
                QVERIFY2(std::abs(*point.trait_score - *score) < 1e-9, qPrintable(QString("%1 vs %2").arg(*point.trait_score).arg(*score)));
                expected[std::size_t(point.prompt_index)].emplace_back(point.projection, *score);
                ++scored;
            }
            QCOMPARE(panel_->pointTable()->item(int(i), MonitoringPanel::ProjectionColumn)->text(),
                     QString::number(point.projection, 'f', 3));
        }
        QVERIFY2(scored >= 3, "the judge model scored fewer than 3 of 6 answers");
        for (int rung = 0; rung < 3; ++rung) {
            auto drawn = panel_->plotPoints(rung);
            auto wanted = expected[std::size_t(rung)];
            std::sort(drawn.begin(), drawn.end());
            std::sort(wanted.begin(), wanted.end());
            QCOMPARE(drawn, wanted);
        }
        // Optimistic system prompts read higher on the optimistic vector before any answer.
        QVERIFY(study->points[4].projection > study->points[0].projection);
        if (study->correlation)
            QVERIFY2(panel_->correlationText().contains(QString::number(study->correlation->r, 'f', 2)),
                     qPrintable(panel_->correlationText()));

        // Reopened from its file, the study is drawn the same.
        QTemporaryDir dir;
        const QString path = dir.filePath("study.json");
        persona::write_monitoring_study(path.toStdString(), *study);
        const auto before0 = panel_->plotPoints(0), before2 = panel_->plotPoints(2);
        const QString correlation = panel_->correlationText();
        panel_->showStudy(persona::read_monitoring_study(path.toStdString()), "study.json");
        QCOMPARE(panel_->plotPoints(0), before0);
        QCOMPARE(panel_->plotPoints(2), before2);
        QCOMPARE(panel_->correlationText(), correlation);
        QVERIFY(panel_->exportCsv(dir.filePath("study.csv")));
        QVERIFY(QFileInfo(dir.filePath("study.csv")).size() > 100);
    }

    // The study is project state: the optimistic example opens with its study drawn (nothing
    // runs), a finished study joins the project, is saved with it and is what a reopen shows.
    void studiesAreProjectState() {
        QStandardPaths::setTestModeEnabled(true);
        MainWindow window(engine_.get());
        MonitoringPanel* panel = window.monitoringPanel();
        QSignalSpy started(panel, &MonitoringPanel::studyStarted);
        QVERIFY(window.projects()->openProject(PERSONA_SOURCE_DIR "/projects/optimistic-vs-pessimistic.persona"));
        const persona::Project& project = window.projects()->project();
        QCOMPARE(project.monitoring.size(), std::size_t(1));
        const persona::MonitoringStudy& shipped = project.monitoring.back().second;
        QVERIFY(panel->study());
        QCOMPARE(panel->study()->points.size(), shipped.points.size());
        QVERIFY(shipped.correlation);
        QVERIFY2(panel->correlationText().contains(QString::number(shipped.correlation->r, 'f', 2)),
                 qPrintable(panel->correlationText()));
        std::size_t drawn = 0;
        for (int rung = 0; rung < int(shipped.prompts.size()); ++rung) drawn += panel->plotPoints(rung).size();
        QCOMPARE(int(drawn), shipped.correlation->n);
        QTest::qWait(300);
        QCOMPARE(started.count(), 0);

        persona::MonitoringStudy mine = shipped;
        mine.points.resize(5);
        mine.correlation.reset();
        emit panel->studyFinished(mine);
        QCOMPARE(window.projects()->project().monitoring.size(), std::size_t(2));
        QVERIFY(window.isWindowModified());
        QTemporaryDir dir;
        const QString folder = dir.filePath("mine.persona");
        QVERIFY(window.projects()->saveTo(folder));
        const persona::Project saved = persona::read_project(folder.toStdString());
        QCOMPARE(saved.monitoring.size(), std::size_t(2));
        QCOMPARE(saved.monitoring.back().second.points.size(), std::size_t(5));
        QVERIFY(window.projects()->openProject(PERSONA_SOURCE_DIR "/projects/optimistic-vs-pessimistic.persona"));
        QVERIFY(window.projects()->openProject(folder));
        QCOMPARE(panel->study()->points.size(), std::size_t(5));
    }

    // Stop ends the study and nothing else: a generation queued by another owner still finishes.
    void stopEndsTheStudyOnly() {
        configure(persona::JudgeSettings(persona::JudgeKind::None));
        panel_->setQuestionLimit(10);
        panel_->setMaxTokens(64);
        panel_->run();
        QVERIFY(panel_->running());
        persona::GenerationRow row;
        row.messages = {{"user", "Say hi."}};
        row.sampling.max_new_tokens = 4;
        bool otherFinished = false;
        GenerationCallbacks other;
        other.receiver = this;
        other.finished = [&](const std::vector<persona::GenerationResult>&) { otherFinished = true; };
        engine_->generate({row}, {}, std::move(other));
        QTest::qWait(300);
        panel_->cancel();
        QTRY_VERIFY_WITH_TIMEOUT(!panel_->running(), kTimeoutMs);
        QTRY_VERIFY_WITH_TIMEOUT(otherFinished, kTimeoutMs);
        QVERIFY(!panel_->study());
        QVERIFY2(panel_->message().contains("Stopped"), qPrintable(panel_->message()));
    }
};

QTEST_MAIN(TestMonitoringPanel)
#include "test_monitoring_panel.moc"
