// The Training tab on the real default model: training with preventative steering draws every
// step's loss and writes the adapter `persona-cli finetune` writes for the same settings (the
// same losses); Stop keeps a checkpoint that Train resumes; the before/after table holds the base
// and the fine-tuned model's figures and is saved beside the adapter.
#include "panels/training_panel.h"
#include "cli_runner.h"
#include "engine_fixture.h"
#include "io/json_file.h"
#include "persona/vector_files.h"
#include "shell/engine_client.h"
#include "test_support.h"
#include "widgets/judge_choice.h"
#include "widgets/vector_choice.h"

#include <qcustomplot.h>

#include <QFile>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTimer>

#include <cmath>
#include <memory>

namespace {
constexpr int kTimeoutMs = 600000;
const QString kSample = PERSONA_TEST_DATA_DIR "/finetune_sample.jsonl";
const QString kVector = PERSONA_SOURCE_DIR "/projects/optimistic-vs-pessimistic.persona/vectors/optimistic.response_avg.safetensors";
constexpr int kLayer = 21;
}  // namespace

class TestTrainingPanel : public QObject {
    Q_OBJECT

    std::unique_ptr<EngineClient> engine_;
    std::unique_ptr<TrainingPanel> panel_;
    QTemporaryDir dir_;

    bool train() {
        QSignalSpy finished(panel_.get(), &TrainingPanel::trainingFinished);
        panel_->train();
        return finished.wait(kTimeoutMs);
    }

private slots:
    void initTestCase() {
        engine_ = persona_test::loadedEngine();
        panel_ = std::make_unique<TrainingPanel>(engine_.get());
        panel_->resize(1200, 800);
        panel_->show();
        QVERIFY(QTest::qWaitForWindowExposed(panel_.get()));
        panel_->setModel(*engine_->facts());
        panel_->vectorChoice()->addVector("optimistic", persona::read_vector_file(kVector.toStdString()));
        persona::FinetuneSettings s;
        s.lora.rank = 8;
        s.learning_rate = 1e-3;
        s.gradient_accumulation = 2;
        s.checkpoint_every = 1;
        panel_->setSettings(s);
        panel_->setSteering(persona::SteerOperation::Add, kLayer, 4.0);
        panel_->setDataset(kSample);
    }

    void trainingMatchesTheCli() {
        panel_->setOutputFolder(dir_.filePath("panel"));
        QVERIFY2(train(), qPrintable(panel_->message()));
        const auto& result = *panel_->result();
        QCOMPARE(result.steps, 3);  // 12 conversations, 4 a step
        QCOMPARE(panel_->lossPlot()->graph(0)->dataCount(), 3);
        QVERIFY(QFile::exists(dir_.filePath("panel/adapter_model.safetensors")));

        const QString cliOut = dir_.filePath("cli");
        const auto cli = persona_test::runCli({"finetune", "--data", kSample, "--out", cliOut, "--rank", "8", "--lr", "1e-3",
                                               "--grad-accum", "2", "--steer", kVector + ":21:4", "-q"});
        QVERIFY2(cli.exitCode == 0, cli.err.constData());
        const auto losses = persona::detail::read_json_file((cliOut + "/training.json").toStdString()).at("losses").get<std::vector<double>>();
        QCOMPARE(losses.size(), result.losses.size());
        for (std::size_t i = 0; i < losses.size(); ++i)
            QVERIFY2(std::abs(losses[i] - result.losses[i]) < 1e-4,
                     qPrintable(QString("step %1: cli %2, panel %3").arg(i + 1).arg(losses[i]).arg(result.losses[i])));
    }

    void stopKeepsACheckpointThatTrainResumes() {
        panel_->setOutputFolder(dir_.filePath("resumed"));
        persona::FinetuneSettings s = panel_->settings();
        s.epochs = 3;  // 9 steps
        panel_->setSettings(s);
        QSignalSpy started(panel_.get(), &TrainingPanel::trainingStarted);
        QTimer poll;
        connect(&poll, &QTimer::timeout, this, [this] {
            if (panel_->losses().size() >= 2) panel_->cancel();
        });
        poll.start(5);
        panel_->train();
        QTRY_VERIFY_WITH_TIMEOUT(!panel_->running(), kTimeoutMs);
        poll.stop();
        QVERIFY2(panel_->message().contains("Stopped"), qPrintable(panel_->message()));
        QVERIFY(QFile::exists(dir_.filePath("resumed/checkpoint/trainer_state.json")));
        QVERIFY2(train(), qPrintable(panel_->message()));
        QVERIFY(panel_->result()->resumed_from_step >= 2);
        QCOMPARE(panel_->result()->steps, 9);
        QVERIFY2(panel_->message().contains("resumed"), qPrintable(panel_->message()));
    }

    void comparisonFillsTheTableAndIsSaved() {
        panel_->setOutputFolder(dir_.filePath("panel"));
        panel_->setComparisonJudge(persona::JudgeKind::None);
        panel_->setComparisonQuestions(2);
        QSignalSpy finished(panel_.get(), &TrainingPanel::comparisonFinished);
        panel_->compare();
        QVERIFY2(finished.wait(kTimeoutMs), qPrintable(panel_->message()));
        QTableWidget* table = panel_->comparison();
        QCOMPARE(table->item(TrainingPanel::TraitRow, TrainingPanel::BaseColumn)->text(), QString("-"));  // no judge
        bool ok = false;
        const double base = table->item(TrainingPanel::PerplexityRow, TrainingPanel::BaseColumn)->text().toDouble(&ok);
        QVERIFY(ok && base > 1);
        const double tuned = table->item(TrainingPanel::PerplexityRow, TrainingPanel::TunedColumn)->text().toDouble(&ok);
        QVERIFY(ok && tuned > 1 && tuned != base);
        table->item(TrainingPanel::ProjectionRow, TrainingPanel::ChangeColumn)->text().toDouble(&ok);
        QVERIFY(ok);
        const auto saved = persona::detail::read_json_file(dir_.filePath("panel/shift.json").toStdString());
        QCOMPARE(saved.at("layer").get<int>(), kLayer);
        QCOMPARE(QString::number(saved.at("fine_tuned").at("perplexity").get<double>(), 'f', 2),
                 table->item(TrainingPanel::PerplexityRow, TrainingPanel::TunedColumn)->text());
    }
};

QTEST_MAIN(TestTrainingPanel)
#include "test_training_panel.moc"
