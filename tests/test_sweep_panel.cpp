// The Sweep tab on the real default model, judged by the judge model setup fetches: each drawn
// point is a cell of the run_sweep result (calibrated strength, mean score), the dashed line is a
// judged run of the questions under the trait's positive system prompt, a click lists a cell's
// answers, and a sweep stopped half-way continues from its checkpoint when run again.
#include "panels/sweep_panel.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/vector_files.h"
#include "shell/engine_client.h"
#include "widgets/vector_choice.h"
#include "engine_fixture.h"
#include "test_support.h"

#include <QFileInfo>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTemporaryDir>

#include <algorithm>
#include <cmath>
#include <memory>

namespace {
constexpr int kTimeoutMs = 900000;
}  // namespace

class TestSweepPanel : public QObject {
    Q_OBJECT

    std::unique_ptr<EngineClient> engine_;
    std::unique_ptr<SweepPanel> panel_;
    std::unique_ptr<persona::Model> model_;  // the test's own copy, to check the panel against
    persona::Trait trait_ = persona::load_builtin_trait("optimistic");
    QTemporaryDir checkpoints_;

private slots:
    void initTestCase() {
        engine_ = persona_test::loadedEngine();
        model_ = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "auto"});
        panel_ = std::make_unique<SweepPanel>(engine_.get());
        panel_->resize(1300, 800);
        panel_->show();
        QVERIFY(QTest::qWaitForWindowExposed(panel_.get()));
        panel_->setModel(*engine_->facts());
        panel_->setCheckpointDirectory(checkpoints_.path());
        panel_->vectorChoice()->addVector(
            "optimistic (test)",
            persona::read_vector_file(PERSONA_SOURCE_DIR
                                      "/projects/optimistic-vs-pessimistic.persona/vectors/optimistic.response_avg.safetensors"));
        QVERIFY(panel_->selectTrait("optimistic"));
    }

    void pointsAreTheCellsAndTheLineIsAJudgedPromptedRun() {
        persona::JudgeSettings judge(persona::JudgeKind::Local);
        judge.model_path = persona_test::modelPath(persona::kJudgeModelFile).toStdString();
        panel_->setJudge(judge);
        panel_->setLayers({17});
        panel_->setStrengths({0.5});
        panel_->setQuestionLimit(2);
        panel_->setMaxTokens(12);
        QSignalSpy finished(panel_.get(), &SweepPanel::sweepFinished);
        panel_->run();
        QVERIFY(panel_->running());
        QVERIFY2(finished.wait(kTimeoutMs), qPrintable(panel_->message()));
        const persona::SweepResult* result = panel_->result();
        QVERIFY(result);
        QCOMPARE(result->cells.size(), std::size_t(2));
        for (const bool coherence : {false, true}) {
            std::vector<std::pair<double, double>> expected;
            for (const persona::SweepCell& cell : result->cells) {
                const auto& mean = coherence ? cell.mean_coherence : cell.mean_trait;
                if (mean) expected.emplace_back(cell.calibrated_strength, *mean);
            }
            QCOMPARE(panel_->curve(17, coherence), expected);
        }
        QVERIFY2(!panel_->curve(17, true).empty(), "the judge model scored no answer's coherence");

        // The dashed line: the same questions and seeds, greedy, under the positive system prompt,
        // judged here by the test's own judge.
        const auto settings = panel_->settings();
        std::vector<persona::GenerationRow> rows;
        for (int q = 0; q < 2; ++q) {
            persona::GenerationRow row;
            row.messages = {{"system", persona::positive_system_prompt(trait_, 0)},
                            {"user", trait_.evaluation_questions[std::size_t(q)]}};
            row.sampling.temperature = 0;
            row.sampling.max_new_tokens = 12;
            row.sampling.seed = persona::sweep_sample_seed(settings.seed, q, 0);
            rows.push_back(std::move(row));
        }
        const auto answers = model_->generate(rows);
        const auto referenceJudge = persona::make_judge(*model_, judge);
        double sum = 0;
        int scored = 0;
        for (int q = 0; q < 2; ++q) {
            QCOMPARE(result->prompting_baseline->answers[std::size_t(q)].text, answers[std::size_t(q)].text);
            const auto score = referenceJudge->score(trait_.judge_rubric, trait_.evaluation_questions[std::size_t(q)],
                                                     answers[std::size_t(q)].text, {});
            if (score.score) sum += *score.score, ++scored;
        }
        QVERIFY2(scored > 0, "the judge model scored no prompted answer");
        const auto line = panel_->baselineLine(false);
        QVERIFY(line);
        QVERIFY2(std::abs(*line - sum / scored) < 1e-9, qPrintable(QString("%1 vs %2").arg(*line).arg(sum / scored)));

        // A click on a point lists that cell's answers.
        panel_->showCell(17, result->cells[1].calibrated_strength);
        QCOMPARE(panel_->answerTable()->rowCount(), 2);
        QCOMPARE(panel_->answerTable()->item(0, 3)->text(), QString::fromStdString(result->cells[1].answers[0].text).simplified());
    }

    // Stopped after its first batch, the same sweep run again takes that batch from the checkpoint.
    void stoppedSweepContinuesFromItsCheckpoint() {
        panel_->setJudge(persona::JudgeSettings(persona::JudgeKind::None));
        panel_->setLayers({13, 17});
        panel_->setStrengths({0.25, 0.5});
        panel_->setQuestionLimit(4);
        panel_->setMaxTokens(48);
        QSignalSpy finished(panel_.get(), &SweepPanel::sweepFinished);
        panel_->run();
        // The checkpoint appears once the first batch (16 rows) is done; the second takes seconds.
        QTRY_VERIFY_WITH_TIMEOUT(QFileInfo::exists(panel_->checkpointPath()), kTimeoutMs);
        panel_->cancel();
        QTRY_VERIFY_WITH_TIMEOUT(!panel_->running(), kTimeoutMs);
        QVERIFY(finished.isEmpty());
        QVERIFY2(panel_->message().contains("continue"), qPrintable(panel_->message()));

        panel_->run();
        QVERIFY2(finished.wait(kTimeoutMs), qPrintable(panel_->message()));
        QCOMPARE(panel_->result()->rows_resumed, std::size_t(16));
        QCOMPARE(panel_->result()->rows_generated, std::size_t(4 + 4 + 16));
        QCOMPARE(panel_->result()->cells.size(), std::size_t(6));
        QVERIFY2(panel_->message().contains("from the checkpoint"), qPrintable(panel_->message()));
        QVERIFY(!QFileInfo::exists(panel_->checkpointPath()));
    }
};

QTEST_MAIN(TestSweepPanel)
#include "test_sweep_panel.moc"
