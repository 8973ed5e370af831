// persona-cli monitor and flag as a user runs them: JSON checked against the model's own hidden
// states, a flagging run ranked as its construction says (flag_fixture.h), shards merged, bad
// lines named, Ctrl-C and resume, exit codes.
#include "flag_fixture.h"
#include "persona/model.h"
#include "persona/vector_files.h"
#include "cli_runner.h"
#include "test_support.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>

#include <cmath>

#include <sys/stat.h>

namespace {

using Run = persona_test::CliRun;

// One thread: these runs check behaviour, and on a shared 2-core machine two threads that wait
// on each other while other processes hold a core made the suite ten times slower.
const QStringList kOneThread{"--threads", "1"};

Run run(const QStringList& arguments, int timeoutMs = 300000) { return persona_test::runCli(kOneThread + arguments, timeoutMs); }

void writeText(const QString& path, const QByteArray& text) {
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly)) qFatal("cannot write %s", qPrintable(path));
    file.write(text);
}

QList<QJsonObject> readJsonLines(const QByteArray& text) {
    QList<QJsonObject> records;
    for (const QByteArray& line : text.split('\n'))
        if (!line.trimmed().isEmpty()) records << QJsonDocument::fromJson(line).object();
    return records;
}

QByteArray readAll(const QString& path) {
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) qFatal("cannot read %s", qPrintable(path));
    return file.readAll();
}

}  // namespace

class TestCliMonitorFlag : public QObject {
    Q_OBJECT

    QTemporaryDir dir_;
    std::unique_ptr<persona::Model> model_;  // dtype auto on the CPU, as persona-cli runs it here
    QString vector_;
    QString dataset_;
    std::vector<std::string> answers_;

private slots:
    void initTestCase() {
        model_ = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "auto"});
        vector_ = dir_.filePath("pirate.safetensors");
        persona::write_vector_file(vector_.toStdString(), flag_fixture::pirateVector(*model_));
        dataset_ = dir_.filePath("data.jsonl");
        answers_ = flag_fixture::writeDataset(*model_, dataset_);
    }

    // One conversation: tokens, every layer's per-token projections (the model's hidden states
    // dotted with the unit vector), the prediction at the last prompt token, the answer average.
    void monitorOneConversation() {
        const Run r = run({"monitor", "--vector", vector_, "--layer", "12", "--system", "You are terse.",
                           "--prompt", "How do plants grow?", "--answer", "Arr, with sun an' rain, matey!"});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        QVERIFY2(r.err.contains("capture 1/1"), r.err.constData());
        const QJsonObject report = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(report["layer"].toInt(), 12);
        QCOMPARE(report["layers"].toArray().size(), 31);
        const QJsonArray conversations = report["conversations"].toArray();
        QCOMPARE(conversations.size(), 1);
        const QJsonObject c = conversations[0].toObject();
        std::vector<std::int32_t> ids;
        for (const auto& id : c["token_ids"].toArray()) ids.push_back(id.toInt());
        QCOMPARE(c["token_texts"].toArray().size(), int(ids.size()));
        QString joined;
        for (const auto& t : c["token_texts"].toArray()) joined += t.toString();
        QVERIFY2(joined.contains("How do plants grow?") && joined.endsWith("Arr, with sun an' rain, matey!"), qPrintable(joined));
        const int promptLength = c["prompt_length"].toInt();
        QCOMPARE(std::vector<std::int32_t>(ids.begin(), ids.begin() + promptLength),
                 model_->encode_chat({{"system", "You are terse."}, {"user", "How do plants grow?"}}, true));

        const persona::PersonaVector vector = persona::read_vector_file(vector_.toStdString());
        const auto trace = model_->trace(ids);
        const QJsonArray projections = c["projections"].toArray();
        QCOMPARE(projections.size(), 31);
        for (int l : {0, 12, 30}) {
            const QJsonArray row = projections[l].toArray();
            QCOMPARE(row.size(), int(ids.size()));
            const float* d = vector.layer(l).values;
            double norm = 0;
            for (int i = 0; i < vector.hidden_size; ++i) norm += double(d[i]) * d[i];
            double answerSum = 0;
            for (int t = 0; t < int(ids.size()); ++t) {
                const float* h = trace.hidden_states.data() + (std::size_t(l) * ids.size() + std::size_t(t)) * std::size_t(vector.hidden_size);
                double dot = 0;
                for (int i = 0; i < vector.hidden_size; ++i) dot += double(h[i]) * d[i];
                const double want = dot / std::sqrt(norm);
                QVERIFY2(std::abs(row[t].toDouble() - want) <= 2e-3 * (1 + std::abs(want)),
                         qPrintable(QString("layer %1 token %2: %3 vs %4").arg(l).arg(t).arg(row[t].toDouble()).arg(want)));
                if (t >= promptLength) answerSum += want;
            }
            const double last = row[promptLength - 1].toDouble();
            QCOMPARE(c["prompt_last_projection"].toArray()[l].toDouble(), last);
            const double mean = answerSum / double(ids.size() - std::size_t(promptLength));
            QVERIFY(std::abs(c["response_avg_projection"].toArray()[l].toDouble() - mean) <= 2e-3 * (1 + std::abs(mean)));
        }
        QCOMPARE(c["prediction"].toDouble(), projections[12].toArray()[promptLength - 1].toDouble());
        QCOMPARE(c["response_avg"].toDouble(), c["response_avg_projection"].toArray()[12].toDouble());
    }

    // JSONL input: several conversations, answers generated where missing, only chosen layers.
    void monitorInputFileAndLayers() {
        const QString input = dir_.filePath("chats.jsonl");
        writeText(input, QByteArray(flag_fixture::chatLine("Hi?", "Hello there!").c_str()) +
                             "\n\n{\"messages\":[{\"role\":\"user\",\"content\":\"Name a colour.\"}]}\n");
        const Run r = run({"monitor", "--vector", vector_, "--input", input, "--layers", "3", "20", "--generate", "-n", "4"});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        const QJsonObject report = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(report["layer"].toInt(), flag_fixture::kLayer);  // the vector's suggested layer
        QCOMPARE(report["layers"].toArray(), QJsonArray({3, flag_fixture::kLayer, 20}));
        const QJsonArray conversations = report["conversations"].toArray();
        QCOMPARE(conversations.size(), 2);
        QCOMPARE(conversations[0].toObject()["line"].toInt(), 1);
        QCOMPARE(conversations[0].toObject()["answer_generated"].toBool(), false);
        const QJsonObject second = conversations[1].toObject();
        QCOMPARE(second["line"].toInt(), 3);
        QCOMPARE(second["answer_generated"].toBool(), true);
        QCOMPARE(second["token_ids"].toArray().size() - second["prompt_length"].toInt(), 4);
        QCOMPARE(second["projections"].toArray().size(), 3);
        QVERIFY(second["response_avg"].isDouble());

        // Prompt only, no answer: a prediction and no response average.
        const Run promptOnly = run({"monitor", "--vector", vector_, "--prompt", "Name a colour."});
        QVERIFY2(promptOnly.exitCode == 0, promptOnly.err.constData());
        const QJsonObject c = QJsonDocument::fromJson(promptOnly.out).object()["conversations"].toArray()[0].toObject();
        QVERIFY(c["prediction"].isDouble());
        QVERIFY(c["response_avg"].isNull());
        QCOMPARE(c["token_ids"].toArray().size(), c["prompt_length"].toInt());
    }

    void monitorExitCodes() {
        QCOMPARE(run({"monitor", "--vector", vector_}).exitCode, 2);  // neither --prompt nor --input
        QCOMPARE(run({"monitor", "--prompt", "Hi"}).exitCode, 2);     // no --vector
        QCOMPARE(run({"monitor", "--vector", vector_, "--layer", "31", "--prompt", "Hi"}).exitCode, 2);
        const QString wrong = dir_.filePath("wrong.safetensors");
        persona::PersonaVector small;
        small.trait = "small";
        small.layer_count = 3;
        small.hidden_size = 576;
        small.values.assign(3 * 576, 1.0f);
        persona::write_vector_file(wrong.toStdString(), small);
        const Run r = run({"monitor", "--vector", wrong, "--layer", "1", "--prompt", "Hi"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.contains(wrong.toUtf8()) && r.err.contains("[31, 576]"), r.err.constData());
        const QString bad = dir_.filePath("bad_chats.jsonl");
        writeText(bad, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}\n{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}\n");
        const Run badLine = run({"monitor", "--vector", vector_, "--input", bad});
        QCOMPARE(badLine.exitCode, 1);
        QVERIFY2(badLine.err.contains(bad.toUtf8()) && badLine.err.contains("line 2") && badLine.err.contains("robot"),
                 badLine.err.constData());
    }

    // The monitoring study from the command line: a two-rung ladder of our own, each point's
    // projection the prediction `monitor` gives for the same conversation, the CSV beside it.
    void monitorPromptsLadder() {
        const QString csv = dir_.filePath("ladder.csv");
        const Run r = run({"monitor-prompts", "--trait", "optimistic", "--vector", vector_, "--layer", "12", "--system",
                           "pirate=Answer like a pirate.", "--system", "plain=", "--questions", "2", "-n", "4",
                           "--judge", "none", "--csv", csv});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        QVERIFY2(r.err.contains("pirate") && r.err.contains("no correlation"), r.err.constData());
        const QJsonObject study = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(study["layer"].toInt(), 12);
        QCOMPARE(study["judge"].toString(), QString("none"));
        const QJsonArray points = study["points"].toArray();
        QCOMPARE(points.size(), 4);
        QCOMPARE(readAll(csv).count('\n'), 5);
        const QString question = study["questions"].toArray()[1].toString();
        const Run alone = run({"monitor", "--vector", vector_, "--layer", "12", "--system", "Answer like a pirate.",
                               "--prompt", question, "--generate", "-n", "4", "--temperature", "0"});
        QVERIFY2(alone.exitCode == 0, alone.err.constData());
        const QJsonObject conversation = QJsonDocument::fromJson(alone.out).object()["conversations"].toArray()[0].toObject();
        const QJsonObject point = points[1].toObject();
        QCOMPARE(point["prompt"].toInt(), 0);
        QCOMPARE(point["question"].toInt(), 1);
        const double prediction = conversation["prediction"].toDouble();
        QVERIFY2(std::abs(point["projection"].toDouble() - prediction) <= 1e-5 * (1 + std::abs(prediction)),
                 qPrintable(QString("%1 vs %2").arg(point["projection"].toDouble()).arg(prediction)));
        QCOMPARE(point["answer"].toString(), conversation["answer"].toString());
        QCOMPARE(run({"monitor-prompts", "--trait", "optimistic", "--vector", vector_, "--layer", "12", "--system",
                      "no equals sign", "--judge", "none"}).exitCode, 2);
    }

    // The pirate lines rank first, the model's own answers sit at ~0; shards 0/2 and 1/2
    // merged give the unsharded ranking.
    void flagRanksShardsAndMerges() {
        const QString out = dir_.filePath("flagged.jsonl");
        const QStringList base{"flag", "--vector", vector_, "--layer", QString::number(flag_fixture::kLayer), "--input", dataset_,
                               "--max-tokens", QString::number(flag_fixture::kMaxTokens), "--batch", "4"};
        const Run r = run(base + QStringList{"--out", out});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        QVERIFY2(r.err.contains("flag 6/6"), r.err.constData());
        const QJsonObject summary = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(summary["scored"].toInt(), 6);
        QCOMPARE(summary["samples_in_shard"].toInt(), 6);
        const QJsonArray top = summary["top"].toArray();
        QCOMPARE(top.size(), 6);
        QSet<int> firstThree;
        for (int i = 0; i < 3; ++i) firstThree << top[i].toObject()["line"].toInt();
        QCOMPARE(firstThree, (QSet<int>{1, 3, 5}));
        const double lowestPirate = top[2].toObject()["difference"].toDouble();
        QVERIFY(lowestPirate > 0);
        for (int i = 3; i < 6; ++i) {
            const QJsonObject own = top[i].toObject();
            QVERIFY2(std::abs(own["difference"].toDouble()) < 0.05 * lowestPirate, qPrintable(QJsonDocument(own).toJson()));
            QCOMPARE(own["model_answer"].toString().toStdString(), answers_[std::size_t(own["line"].toInt() - 1)]);
        }
        QCOMPARE(readJsonLines(readAll(out)).size(), 6);

        QStringList shards;
        for (int shard = 0; shard < 2; ++shard) {
            shards << dir_.filePath(QString("shard%1.jsonl").arg(shard));
            const Run part = run(base + QStringList{"--shard", QString("%1/2").arg(shard), "--out", shards.back()});
            QVERIFY2(part.exitCode == 0, part.err.constData());
            QCOMPARE(QJsonDocument::fromJson(part.out).object()["samples_in_shard"].toInt(), 3);
        }
        const QString ranked = dir_.filePath("ranked.jsonl");
        const Run merged = run(QStringList{"flag", "--merge"} + shards + QStringList{"--out", ranked});
        QVERIFY2(merged.exitCode == 0, merged.err.constData());
        QCOMPARE(QJsonDocument::fromJson(merged.out).object()["samples"].toInt(), 6);
        const auto records = readJsonLines(readAll(ranked));
        QCOMPARE(records.size(), 6);
        for (int i = 0; i < 6; ++i) {
            QCOMPARE(records[i]["line"].toInt(), top[i].toObject()["line"].toInt());
            QVERIFY(std::abs(records[i]["difference"].toDouble() - top[i].toObject()["difference"].toDouble()) < 0.05 * lowestPirate);
        }
        // Without --out the ranked results go to stdout.
        const Run toStdout = run({"flag", "--merge", out});
        QVERIFY2(toStdout.exitCode == 0, toStdout.err.constData());
        const auto piped = readJsonLines(toStdout.out);
        QCOMPARE(piped.size(), 6);
        QCOMPARE(piped[0]["line"].toInt(), top[0].toObject()["line"].toInt());
    }

    void flagBadLinesAndExitCodes() {
        const QString bad = dir_.filePath("bad.jsonl");
        QByteArray text = readAll(dataset_);
        QList<QByteArray> lines = text.split('\n');
        lines[2] = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}";  // line 3: no assistant turn
        writeText(bad, lines.join('\n'));
        const QString out = dir_.filePath("bad_out.jsonl");
        const QStringList base{"flag", "--vector", vector_, "--input", bad, "--out", out, "--max-tokens", "4"};
        const Run r = run(base);
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.contains(bad.toUtf8()) && r.err.contains("line 3") && r.err.contains("no assistant turn"), r.err.constData());
        QVERIFY(!QFile::exists(out));
        // The input is checked before the model loads: with a "model" that is no model at all, the
        // error is still the input's.
        const Run inputFirst = run(base + QStringList{"--model", bad});
        QCOMPARE(inputFirst.exitCode, 1);
        QVERIFY2(inputFirst.err.contains("line 3") && !inputFirst.err.contains("GGUF"), inputFirst.err.constData());

        const Run skipped = run(base + QStringList{"--skip-bad", "--shard", "0/2"});
        QVERIFY2(skipped.exitCode == 0, skipped.err.constData());
        QVERIFY2(skipped.err.contains("warning") && skipped.err.contains("line 3"), skipped.err.constData());
        const QJsonObject summary = QJsonDocument::fromJson(skipped.out).object();
        QCOMPARE(summary["bad_lines_skipped"].toInt(), 1);
        QCOMPARE(summary["scored"].toInt(), 2);  // lines 1 and 5

        QCOMPARE(run(base + QStringList{"--shard", "2/2"}).exitCode, 2);
        QCOMPARE(run(base + QStringList{"--shard", "x"}).exitCode, 2);
        QCOMPARE(run({"flag", "--input", bad, "--out", out}).exitCode, 2);  // no --vector
        const Run missing = run({"flag", "--vector", vector_, "--input", dir_.filePath("none.jsonl"), "--out", out});
        QCOMPARE(missing.exitCode, 1);
        QVERIFY(missing.err.contains("none.jsonl"));
        const Run mixed = run({"flag", "--merge", dir_.filePath("flagged.jsonl"), out});
        QCOMPARE(mixed.exitCode, 1);  // results of different runs (other max tokens)
        QVERIFY2(mixed.err.contains(out.toUtf8()), mixed.err.constData());
    }

    // A number no double holds (1e400) is a bad line like any other: named with its line, and
    // skipped with --skip-bad (it used to escape the reader and abort the run). A FIFO given as
    // the dataset fails at once instead of waiting for a writer.
    void flagRefusesOverflowsAndFifos() {
        const QString overflow = dir_.filePath("overflow.jsonl");
        QList<QByteArray> lines = readAll(dataset_).split('\n');
        lines[1] = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Yo\"}],"
                   "\"weight\":1e400}";
        writeText(overflow, lines.join('\n'));
        const QString out = dir_.filePath("overflow_out.jsonl");
        const QStringList base{"flag", "--vector", vector_, "--input", overflow, "--out", out, "--max-tokens", "4", "--shard", "1/2"};
        const Run refused = run(base);
        QCOMPARE(refused.exitCode, 1);
        QVERIFY2(refused.err.contains(overflow.toUtf8()) && refused.err.contains("line 2"), refused.err.constData());
        const Run skipped = run(base + QStringList{"--skip-bad"});
        QVERIFY2(skipped.exitCode == 0, skipped.err.constData());
        QCOMPARE(QJsonDocument::fromJson(skipped.out).object()["bad_lines_skipped"].toInt(), 1);

        const QString fifo = dir_.filePath("dataset.fifo");
        QCOMPARE(::mkfifo(fifo.toLocal8Bit().constData(), 0600), 0);
        const Run blocked = run({"flag", "--vector", vector_, "--input", fifo, "--out", dir_.filePath("fifo_out.jsonl")}, 60000);
        QCOMPARE(blocked.exitCode, 1);
        QVERIFY2(blocked.err.contains(fifo.toUtf8()) && blocked.err.contains("FIFO"), blocked.err.constData());
    }

    // SIGTERM (as Ctrl-C's SIGINT) after the first batch: exit 130, the results so far kept; the
    // same command again resumes.
    void flagResumesAfterBeingStopped() {
        const QString out = dir_.filePath("stopped.jsonl");
        const QStringList arguments{"flag", "--vector", vector_, "--input", dataset_, "--out", out, "--batch", "1",
                                    "--max-tokens", "32"};
        QProcess process;
        process.setReadChannel(QProcess::StandardError);
        process.start(PERSONA_CLI_PATH, kOneThread + arguments);
        QByteArray err;
        while (!err.contains("flag 1/6")) {
            QVERIFY2(process.waitForReadyRead(120000), err.constData());
            err += process.readAllStandardError();
        }
        process.terminate();
        QVERIFY(process.waitForFinished(120000));
        err += process.readAllStandardError();
        QCOMPARE(process.exitCode(), 130);
        QVERIFY2(err.contains("resume") && err.contains(out.toUtf8()), err.constData());
        const int before = int(readJsonLines(readAll(out)).size());
        QVERIFY(before >= 1 && before < 6);

        const Run resumed = run(arguments);
        QVERIFY2(resumed.exitCode == 0, resumed.err.constData());
        const QJsonObject summary = QJsonDocument::fromJson(resumed.out).object();
        QCOMPARE(summary["resumed"].toInt(), before);
        QCOMPARE(summary["scored"].toInt(), 6 - before);
        QCOMPARE(readJsonLines(readAll(out)).size(), 6);
    }
};

QTEST_GUILESS_MAIN(TestCliMonitorFlag)
#include "test_cli_monitor_flag.moc"
