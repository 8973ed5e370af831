// The Extraction panel on the real default model: a tiny extraction run from the panel fills the
// sample table as samples arrive, every stage bar reaches its end, the plots show one point per
// layer with the suggested layer marked; a cancelled run resumes from its checkpoint; and the UI
// thread keeps turning while the engine works.
#include "shell/engine_client.h"
#include "panels/extraction_panel.h"
#include "persona/vector_files.h"
#include "engine_fixture.h"
#include "test_support.h"

#include <qcustomplot.h>

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTimer>

#include <cmath>
#include <memory>

namespace {
constexpr int kTimeoutMs = 240000;
}

class TestExtractionPanel : public QObject {
    Q_OBJECT

    std::unique_ptr<EngineClient> engine_;
    std::unique_ptr<ExtractionPanel> panel_;
    QTemporaryDir checkpoints_;
    int layers_ = 0;  // L + 1

    static persona::ExtractionSettings tiny(int questions, int batch, int maxTokens, std::uint64_t seed) {
        persona::ExtractionSettings s;
        s.question_limit = questions;
        s.pair_limit = 1;
        s.samples_per_question = 1;
        s.max_new_tokens = maxTokens;
        s.temperature = 1.0f;
        s.seed = seed;
        s.batch_size = batch;
        s.judge = persona::JudgeKind::None;
        return s;
    }

private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(checkpoints_.isValid());
        engine_ = persona_test::loadedEngine();
        layers_ = engine_->facts()->layers + 1;
        panel_ = std::make_unique<ExtractionPanel>(engine_.get());
        panel_->resize(1100, 700);
        panel_->show();
        QVERIFY(QTest::qWaitForWindowExposed(panel_.get()));
        panel_->setModel(*engine_->facts());
        panel_->setCheckpointDirectory(checkpoints_.path());
    }

    void offersTheBuiltInTraits() {
        const auto* choice = panel_->findChild<QComboBox*>("trait");
        QCOMPARE(choice->count(), static_cast<int>(persona::builtin_trait_names().size()));
        QVERIFY(panel_->selectTrait("evil"));
        QCOMPARE(panel_->currentTrait()->name, std::string("evil"));
        QVERIFY(!panel_->selectTrait("no-such-trait"));

        // A project's own traits replace them.
        persona::Trait mine = persona::load_builtin_trait("optimistic");
        mine.name = "cheerful";
        panel_->setTraits({mine, persona::load_builtin_trait("evil")});
        QCOMPARE(choice->count(), 2);
        QCOMPARE(panel_->currentTrait()->name, std::string("evil"));  // the choice survives
        QVERIFY(panel_->selectTrait("cheerful"));
        panel_->setTraits({persona::load_builtin_trait("evil")});
        QCOMPARE(panel_->currentTrait()->name, std::string("evil"));
    }

    // The default models refuse to grade, so a new form judges with the judge model setup put
    // in the cache.
    void defaultJudgeIsTheFetchedJudgeModel() {
        const QString judge = persona_test::modelPath(persona::kJudgeModelFile);
        ExtractionPanel fresh(engine_.get());
        const persona::JudgeSettings settings = fresh.settings().judge;
        QCOMPARE(settings.kind, persona::JudgeKind::Local);
        QCOMPARE(QString::fromStdString(settings.model_path), judge);
    }

    // Every judge core offers can be chosen in the form, and the form gives back what was set.
    void judgeChoicesRoundTrip() {
        auto* target = panel_->findChild<QLineEdit*>("judge_target");
        QVERIFY(target);
        persona::ExtractionSettings settings = tiny(2, 2, 12, 3);
        settings.judge = persona::JudgeKind::Local;
        settings.judge.model_path = "/models/judge.gguf";
        panel_->setSettings(settings);
        QVERIFY(!target->isHidden());
        QCOMPARE(persona::judge_label(panel_->settings().judge), std::string("local:judge.gguf"));
        settings.judge = persona::JudgeKind::Http;
        settings.judge.endpoint.base_url = "http://localhost:8080/v1";
        settings.judge.endpoint.model = "judge-model";
        panel_->setSettings(settings);
        QCOMPARE(target->text(), QString("http://localhost:8080/v1 judge-model"));
        QCOMPARE(panel_->settings().judge.kind, persona::JudgeKind::Http);
        QCOMPARE(persona::judge_label(panel_->settings().judge), persona::judge_label(settings.judge));
        QVERIFY(panel_->findChild<QDoubleSpinBox*>("trait_threshold")->isEnabled());
        // The negative side's threshold: "auto" (100 - trait threshold) unless one is set.
        auto* negative = panel_->findChild<QDoubleSpinBox*>("negative_threshold");
        QVERIFY(negative && negative->isEnabled());
        QCOMPARE(negative->text(), QString("auto"));
        QVERIFY(!panel_->settings().negative_threshold);
        settings.negative_threshold = 35;
        panel_->setSettings(settings);
        QCOMPARE(panel_->settings().negative_threshold, std::optional<double>(35));
        settings.negative_threshold.reset();
        panel_->setSettings(settings);
        QVERIFY(!panel_->settings().negative_threshold);
        auto* mode = panel_->findChild<QComboBox*>("judge_mode");
        QVERIFY(mode && mode->isEnabled());
        QCOMPARE(panel_->settings().judge_mode, persona::JudgeMode::Absolute);
        settings.judge_mode = persona::JudgeMode::Pairwise;
        panel_->setSettings(settings);
        QCOMPARE(mode->currentText(), QString("pairwise"));
        QCOMPARE(panel_->settings().judge_mode, persona::JudgeMode::Pairwise);
        QCOMPARE(persona::judging_label(panel_->settings()), persona::judge_label(settings.judge) + " pairwise");
        // Each mode's threshold is enabled with its mode.
        QVERIFY(panel_->findChild<QDoubleSpinBox*>("pairwise_threshold")->isEnabled());
        QVERIFY(!panel_->findChild<QDoubleSpinBox*>("trait_threshold")->isEnabled());
        QVERIFY(!negative->isEnabled());
        QCOMPARE(panel_->settings().pairwise_threshold, 70.0);
        settings.judge_mode = persona::JudgeMode::Absolute;
        settings.judge = persona::JudgeKind::None;
        panel_->setSettings(settings);
        QVERIFY(target->isHidden());
        QCOMPARE(panel_->settings().judge.kind, persona::JudgeKind::None);
        // Without a judge there is nothing to threshold.
        QVERIFY(!panel_->findChild<QDoubleSpinBox*>("trait_threshold")->isEnabled());
        QVERIFY(!panel_->findChild<QDoubleSpinBox*>("coherence_threshold")->isEnabled());
        QVERIFY(!mode->isEnabled());
        QVERIFY(!panel_->findChild<QDoubleSpinBox*>("pairwise_threshold")->isEnabled());
    }

    void tinyExtractionFillsTableStagesAndPlots() {
        panel_->setSettings(tiny(3, 2, 12, 3));
        const persona::ExtractionSettings settings = panel_->settings();
        QCOMPARE(settings.question_limit, 3);
        QCOMPARE(settings.judge.kind, persona::JudgeKind::None);
        QVERIFY(QString::fromStdString(settings.checkpoint_path).startsWith(checkpoints_.path()));

        // Rows appear while the run is still going, and the UI thread keeps turning.
        int rowsWhileRunning = 0, ticksWhileRunning = 0;
        QTimer heartbeat;
        connect(&heartbeat, &QTimer::timeout, [&] {
            if (!panel_->running()) return;
            ++ticksWhileRunning;
            rowsWhileRunning = std::max(rowsWhileRunning, panel_->sampleTable()->rowCount());
        });
        heartbeat.start(5);
        QSignalSpy finished(panel_.get(), &ExtractionPanel::extractionFinished);
        QSignalSpy chosen(panel_.get(), &ExtractionPanel::vectorChosen);
        QSignalSpy progress(panel_.get(), &ExtractionPanel::extractionProgress);
        QTest::mouseClick(panel_->findChild<QPushButton*>("run_extraction"), Qt::LeftButton);
        QVERIFY(panel_->running());
        QVERIFY(finished.wait(kTimeoutMs));
        heartbeat.stop();
        QVERIFY2(ticksWhileRunning > 10, qPrintable(QString::number(ticksWhileRunning)));
        QVERIFY2(rowsWhileRunning >= 2, qPrintable(QString::number(rowsWhileRunning)));
        QVERIFY(!panel_->running());

        const persona::ExtractionResult* result = panel_->result();
        QVERIFY(result);
        QCOMPARE(result->samples.size(), std::size_t(6));  // 3 questions x 1 pair x 2 sides
        QCOMPARE(result->pairs.kept, std::size_t(3));  // enough to suggest a layer
        QCOMPARE(result->samples_generated, std::size_t(6));

        // The table: one row per sample, answers as generated, every pair kept (no judge).
        QTableWidget* table = panel_->sampleTable();
        QCOMPARE(table->rowCount(), 6);
        for (int row = 0; row < 6; ++row) {
            const persona::Sample& sample = result->samples[static_cast<std::size_t>(row)];
            QCOMPARE(table->item(row, ExtractionPanel::QuestionColumn)->text(), QString::fromStdString(sample.question));
            QCOMPARE(table->item(row, ExtractionPanel::SideColumn)->text(),
                     sample.side == persona::Side::Positive ? QString("positive") : QString("negative"));
            QCOMPARE(table->item(row, ExtractionPanel::AnswerColumn)->toolTip(), QString::fromStdString(sample.answer));
            QVERIFY(!sample.answer.empty());
            QCOMPARE(table->item(row, ExtractionPanel::KeptColumn)->text(), QString("kept"));
        }

        // Every stage bar at its end; the judge was skipped and says so.
        for (const char* stage : ExtractionPanel::kStages) {
            QProgressBar* bar = panel_->stageBar(stage);
            QVERIFY(bar);
            QCOMPARE(bar->value(), bar->maximum());
        }
        QCOMPARE(panel_->stageBar("generate")->maximum(), 6);
        QVERIFY(panel_->stageBar("judge")->format().contains("skipped"));
        QVERIFY2(panel_->stageEta("generate").startsWith("done in"), qPrintable(panel_->stageEta("generate")));
        QVERIFY(progress.count() >= 5);

        // Plots: L + 1 points each, the values of the chosen aggregate's diagnostics.
        const persona::AggregateResult& chosenAggregate = result->aggregate(persona::Aggregate::ResponseMean);
        QCOMPARE(panel_->aggregate(), persona::Aggregate::ResponseMean);
        QCOMPARE(panel_->normPlot()->graph(0)->dataCount(), layers_);
        QCOMPARE(panel_->separationPlot()->graph(0)->dataCount(), layers_);
        QCOMPARE(panel_->separationPlot()->graph(1)->dataCount(), layers_);
        for (int l = 0; l < layers_; ++l) {
            const auto& d = chosenAggregate.diagnostics[static_cast<std::size_t>(l)];
            QCOMPARE(panel_->normPlot()->graph(0)->data()->at(l)->value, d.vector_norm);
            QCOMPARE(panel_->separationPlot()->graph(1)->data()->at(l)->value, d.auroc);
        }
        QVERIFY(chosenAggregate.suggested_layer >= 1 && chosenAggregate.suggested_layer < layers_);
        QCOMPARE(panel_->markedLayer(), chosenAggregate.suggested_layer);

        // The vector goes out to whoever listens, with its suggested layer.
        QCOMPARE(chosen.count(), 1);
        QCOMPARE(chosen.last().at(1).toInt(), chosenAggregate.suggested_layer);

        // A finished run leaves no checkpoint behind to short-cut the next one.
        QVERIFY(!QFile::exists(QString::fromStdString(settings.checkpoint_path)));
        QCOMPARE(panel_->findChild<QPushButton*>("run_extraction")->text(), QString("Run"));
    }

    void aggregateChoiceSwitchesPlotsAndVector() {
        const persona::ExtractionResult* result = panel_->result();
        QVERIFY(result);
        QSignalSpy chosen(panel_.get(), &ExtractionPanel::vectorChosen);
        panel_->setAggregate(persona::Aggregate::PromptLast);
        const persona::AggregateResult& last = result->aggregate(persona::Aggregate::PromptLast);
        QCOMPARE(chosen.count(), 1);
        QCOMPARE(chosen.last().at(1).toInt(), last.suggested_layer);
        QCOMPARE(panel_->markedLayer(), last.suggested_layer);
        QCOMPARE(panel_->normPlot()->graph(0)->data()->at(5)->value, last.diagnostics[5].vector_norm);

        QTemporaryDir dir;
        const QString path = dir.filePath("evil_prompt_last.safetensors");
        QVERIFY(panel_->saveVector(path));
        const persona::PersonaVector saved = persona::read_vector_file(path.toStdString());
        QCOMPARE(saved.aggregate, persona::Aggregate::PromptLast);
        QCOMPARE(saved.values, last.vector.values);
        QCOMPARE(saved.provenance.at("suggested_layer"), std::to_string(last.suggested_layer));
        // Named .pt, the same values as torch.save would hold them, for the reference scripts.
        QVERIFY(panel_->saveVector(dir.filePath("evil_prompt_last_diff.pt")));
        QCOMPARE(persona::read_vector_file(dir.filePath("evil_prompt_last_diff.pt").toStdString()).values, last.vector.values);
        QVERIFY(!panel_->saveVector(dir.filePath("no/such/folder/v.safetensors")));
        QVERIFY(panel_->message().contains("no/such/folder"));
        panel_->setAggregate(persona::Aggregate::ResponseMean);
    }

    void cancelledRunResumesFromItsCheckpoint() {
        // Batch 1: every answer is checkpointed on its own, so cancelling after the first leaves
        // finished samples to resume from.
        panel_->setSettings(tiny(2, 1, 10, 4));
        const QString checkpoint = panel_->checkpointPath();
        QVERIFY(!QFile::exists(checkpoint));
        bool cancelAsked = false;
        auto connection = connect(panel_->sampleTable()->model(), &QAbstractItemModel::rowsInserted, this, [&] {
            if (!cancelAsked && panel_->running()) {
                cancelAsked = true;
                panel_->cancel();
            }
        });
        QSignalSpy cancelled(panel_.get(), &ExtractionPanel::extractionCancelled);
        QSignalSpy finished(panel_.get(), &ExtractionPanel::extractionFinished);
        panel_->run();
        QVERIFY(cancelled.wait(kTimeoutMs));
        disconnect(connection);
        QCOMPARE(finished.count(), 0);
        QVERIFY(!panel_->running());
        // No stage still claims to run or to finish soon.
        for (const char* stage : ExtractionPanel::kStages) {
            const auto* eta = panel_->findChild<QLabel*>(QStringLiteral("eta_%1").arg(stage));
            QVERIFY(eta);
            QVERIFY2(!eta->text().startsWith("ETA") && !eta->text().startsWith("running"), qPrintable(eta->text()));
        }
        QVERIFY(QFile::exists(checkpoint));
        const int generatedBeforeCancel = panel_->sampleTable()->rowCount();
        QVERIFY(generatedBeforeCancel >= 1 && generatedBeforeCancel < 4);
        auto* run = panel_->findChild<QPushButton*>("run_extraction");
        QCOMPARE(run->text(), QString("Resume"));
        QVERIFY(panel_->findChild<QPushButton*>("discard_checkpoint")->isEnabled());

        // Resume lists what was saved at once, not only at the end.
        int rowsWhenResumed = -1;
        auto resumed = connect(panel_.get(), &ExtractionPanel::extractionProgress, this, [&](const QString& stage, qint64, qint64) {
            if (stage == "generate" && rowsWhenResumed < 0) rowsWhenResumed = panel_->sampleTable()->rowCount();
        });
        QTest::mouseClick(run, Qt::LeftButton);
        QVERIFY(finished.wait(kTimeoutMs));
        disconnect(resumed);
        QVERIFY2(rowsWhenResumed >= generatedBeforeCancel, qPrintable(QString::number(rowsWhenResumed)));
        const persona::ExtractionResult* result = panel_->result();
        QVERIFY(result);
        QVERIFY2(result->samples_resumed > 0, qPrintable(QString::number(result->samples_resumed)));
        QCOMPARE(result->samples_resumed + result->samples_generated, std::size_t(4));
        QCOMPARE(panel_->sampleTable()->rowCount(), 4);  // resumed samples are listed too
        QCOMPARE(result->pairs.kept, std::size_t(2));
        QVERIFY(!QFile::exists(checkpoint));
        // Two pairs are too few to tell layers apart: the message says so and no layer is marked.
        QVERIFY2(panel_->message().contains("no layer is suggested"), qPrintable(panel_->message()));
        QCOMPARE(result->aggregate(persona::Aggregate::ResponseMean).suggested_layer, -1);
        QCOMPARE(panel_->markedLayer(), -1);
    }

    void discardingSavedProgressStartsAfresh() {
        panel_->setSettings(tiny(2, 1, 8, 5));
        const QString checkpoint = panel_->checkpointPath();
        bool cancelAsked = false;
        auto connection = connect(panel_->sampleTable()->model(), &QAbstractItemModel::rowsInserted, this, [&] {
            if (!cancelAsked && panel_->running()) {
                cancelAsked = true;
                panel_->cancel();
            }
        });
        QSignalSpy cancelled(panel_.get(), &ExtractionPanel::extractionCancelled);
        panel_->run();
        QVERIFY(cancelled.wait(kTimeoutMs));
        disconnect(connection);
        QVERIFY(QFile::exists(checkpoint));
        QTest::mouseClick(panel_->findChild<QPushButton*>("discard_checkpoint"), Qt::LeftButton);
        QVERIFY(!QFile::exists(checkpoint));
        QCOMPARE(panel_->findChild<QPushButton*>("run_extraction")->text(), QString("Run"));
    }

    void damagedCheckpointIsReportedNotFatal() {
        panel_->setSettings(tiny(2, 2, 8, 6));
        const QString checkpoint = panel_->checkpointPath();
        QFile file(checkpoint);
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.write("{\"schema\": \"persona-workbench/extraction-checkpoint\", \"version\": 1, ");
        file.close();
        QSignalSpy failed(panel_.get(), &ExtractionPanel::extractionFailed);
        panel_->run();
        QVERIFY(failed.wait(kTimeoutMs));
        QVERIFY2(panel_->message().contains(checkpoint), qPrintable(panel_->message()));
        QVERIFY(!panel_->running());
        // The last good result is still there.
        QVERIFY(panel_->result() && panel_->result()->samples_resumed > 0);
        panel_->discardCheckpoint();
        QVERIFY(!QFile::exists(checkpoint));
    }

    void cleanupTestCase() {
        panel_.reset();
        engine_.reset();
    }
};

QTEST_MAIN(TestExtractionPanel)
#include "test_extraction_panel.moc"
