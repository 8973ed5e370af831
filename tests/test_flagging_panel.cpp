// The Flagging tab on the real default model with the pirate fixture (flag_fixture.h: lines 1, 3,
// 5 answered in pirate speak, 2, 4, 6 with the model's own answer): its ranked table is what
// `persona-cli flag` writes for the same file, the threshold splits the dataset into flagged and
// kept JSONL of the original lines, flagging again continues from the results file, and a
// double-click asks for the sample's heat map.
#include "panels/flagging_panel.h"
#include "cli_runner.h"
#include "engine_fixture.h"
#include "flag_fixture.h"
#include "persona/flagging.h"
#include "persona/model.h"
#include "persona/vector_files.h"
#include "shell/engine_client.h"
#include "test_support.h"
#include "widgets/vector_choice.h"

#include <QFile>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTemporaryDir>

#include <cmath>
#include <memory>

namespace {
constexpr int kTimeoutMs = 600000;

QStringList fileLines(const QString& path) {
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) return {};
    return QString::fromUtf8(file.readAll()).split('\n', Qt::SkipEmptyParts);
}
}  // namespace

class TestFlaggingPanel : public QObject {
    Q_OBJECT

    std::unique_ptr<EngineClient> engine_;
    std::unique_ptr<FlaggingPanel> panel_;
    QTemporaryDir dir_;
    QString vectorPath_, dataset_;

    bool flag() {
        QSignalSpy finished(panel_.get(), &FlaggingPanel::flaggingFinished);
        panel_->run();
        return finished.wait(kTimeoutMs);
    }

private slots:
    void initTestCase() {
        engine_ = persona_test::loadedEngine();
        {
            const auto model = persona::Model::load(persona_test::defaultModelPath().toStdString(),
                                                    persona::ModelLoadOptions{"cpu", "auto"});
            vectorPath_ = dir_.filePath("pirate.safetensors");
            persona::write_vector_file(vectorPath_.toStdString(), flag_fixture::pirateVector(*model));
            dataset_ = dir_.filePath("data.jsonl");
            flag_fixture::writeDataset(*model, dataset_);
        }
        panel_ = std::make_unique<FlaggingPanel>(engine_.get());
        panel_->resize(1200, 760);
        panel_->show();
        QVERIFY(QTest::qWaitForWindowExposed(panel_.get()));
        panel_->setModel(*engine_->facts());
        panel_->setResultsDirectory(dir_.filePath("results"));
        panel_->vectorChoice()->addVector("pirate", persona::read_vector_file(vectorPath_.toStdString()));
        panel_->setDataset(dataset_);
        panel_->setLayer(flag_fixture::kLayer);
        panel_->setMaxTokens(flag_fixture::kMaxTokens);
    }

    void tableIsWhatTheCliWrites() {
        QVERIFY2(flag(), qPrintable(panel_->message()));
        const QString out = dir_.filePath("cli.jsonl");
        const auto cli = persona_test::runCli({"flag", "--vector", vectorPath_, "--layer", QString::number(flag_fixture::kLayer),
                                               "--input", dataset_, "--out", out, "--max-tokens",
                                               QString::number(flag_fixture::kMaxTokens)});
        QVERIFY2(cli.exitCode == 0, cli.err.constData());
        auto expected = persona::read_flag_results(out.toStdString());
        persona::rank_flag_records(expected);
        QTableWidget* table = panel_->table();
        QCOMPARE(table->rowCount(), int(expected.size()));
        QCOMPARE(table->rowCount(), 6);
        for (int row = 0; row < table->rowCount(); ++row) {
            const persona::FlagRecord& record = expected[std::size_t(row)];
            QCOMPARE(table->item(row, FlaggingPanel::LineColumn)->text(), QString::number(record.line));
            QVERIFY(record.difference);
            const double shown = table->item(row, FlaggingPanel::DifferenceColumn)->text().toDouble();
            QVERIFY2(std::abs(shown - *record.difference) <= 1e-3 * (1 + std::abs(*record.difference)),
                     qPrintable(QString("line %1: %2 vs %3").arg(record.line).arg(shown).arg(*record.difference)));
            QCOMPARE(table->item(row, FlaggingPanel::ModelAnswerColumn)->text(),
                     QString::fromStdString(record.model_answer).simplified());
        }
        // By construction the pirate lines come first.
        QSet<QString> top;
        for (int row = 0; row < 3; ++row) top << table->item(row, FlaggingPanel::LineColumn)->text();
        QCOMPARE(top, (QSet<QString>{"1", "3", "5"}));
    }

    void thresholdSplitsTheDataset() {
        QVERIFY(!panel_->records().empty());
        const double third = *panel_->records()[2].difference, fourth = *panel_->records()[3].difference;
        panel_->setThreshold((third + fourth) / 2);
        QCOMPARE(panel_->flaggedCount(), 3);
        const QString flagged = dir_.filePath("flagged.jsonl"), kept = dir_.filePath("kept.jsonl");
        QVERIFY2(panel_->exportSplit(flagged, kept), qPrintable(panel_->message()));
        const QStringList original = fileLines(dataset_);
        QCOMPARE(fileLines(flagged), (QStringList{original[0], original[2], original[4]}));
        QCOMPARE(fileLines(kept), (QStringList{original[1], original[3], original[5]}));
    }

    void flaggingAgainContinuesFromTheResults() {
        QVERIFY(QFileInfo::exists(panel_->resultsPath()));
        QVERIFY2(flag(), qPrintable(panel_->message()));
        QVERIFY2(panel_->message().contains("6 from an earlier run"), qPrintable(panel_->message()));
        QCOMPARE(panel_->table()->rowCount(), 6);
    }

    void doubleClickAsksForTheHeatMap() {
        int asked = 0;
        std::vector<persona::ChatMessage> conversation;
        connect(panel_.get(), &FlaggingPanel::heatMapRequested, this,
                [&](const std::vector<persona::ChatMessage>& messages, const persona::PersonaVector&) {
                    ++asked;
                    conversation = messages;
                });
        emit panel_->table()->cellDoubleClicked(0, 0);
        QCOMPARE(asked, 1);
        QVERIFY(conversation.size() >= 2);
        QCOMPARE(conversation.back().role, std::string("assistant"));
        QCOMPARE(QString::fromStdString(conversation.back().content).simplified(),
                 panel_->table()->item(0, FlaggingPanel::DatasetAnswerColumn)->text());
    }
};

QTEST_MAIN(TestFlaggingPanel)
#include "test_flagging_panel.moc"
