// The executables as a user runs them: persona-cli's JSON and exit codes, and the workbench's
// --screenshot mode.
#include "formats/safetensors.h"
#include "cli_runner.h"
#include "test_support.h"

#include <random>

#include <QImage>
#include <QSet>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>

namespace {

using Run = persona_test::CliRun;

Run run(const QString& program, const QStringList& arguments, int timeoutMs = 120000) {
    return persona_test::runProgram(program, arguments, timeoutMs);
}

}  // namespace

class TestCli : public QObject {
    Q_OBJECT

private slots:
    void infoPrintsTheModelFactsAsJson() {
        const Run r = run(PERSONA_CLI_PATH, {"info", persona_test::defaultModelPath()});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        const QJsonObject facts = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(facts["architecture"].toString(), QString("llama"));
        QCOMPARE(facts["layers"].toInt(), 30);
        QCOMPARE(facts["hidden_size"].toInt(), 576);
        QCOMPARE(facts["vocabulary_size"].toInt(), 49152);
        QCOMPARE(facts["attention_heads"].toInt(), 9);
        QCOMPARE(facts["kv_heads"].toInt(), 3);
        QCOMPARE(facts["has_chat_template"].toBool(), true);
        QCOMPARE(facts["device"].toString(), QString("cpu"));
        QVERIFY(facts["process_rss_bytes"].toDouble() > 0);
    }

    void infoDefaultsToTheDefaultModel() {
        const Run r = run(PERSONA_CLI_PATH, {"info"});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        QCOMPARE(QJsonDocument::fromJson(r.out).object()["path"].toString(), persona_test::defaultModelPath());
    }

    void badModelFileGivesAClearErrorAndExitCode1() {
        QTemporaryDir dir;
        const QString path = dir.filePath("cut.gguf");
        QFile cut(path);
        QVERIFY(cut.open(QIODevice::WriteOnly));
        cut.write(persona_test::readPrefix(persona_test::defaultModelPath(), 3000000));
        cut.close();
        const Run r = run(PERSONA_CLI_PATH, {"info", path});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.contains(path.toUtf8()) && r.err.contains("truncated"), r.err.constData());
        QVERIFY(r.out.isEmpty());
    }

    void helpAndUsageErrors() {
        const Run help = run(PERSONA_CLI_PATH, {"--help"});
        QCOMPARE(help.exitCode, 0);
        QVERIFY(help.out.contains("info"));
        const Run infoHelp = run(PERSONA_CLI_PATH, {"info", "--help"});
        QCOMPARE(infoHelp.exitCode, 0);
        QVERIFY(infoHelp.out.contains("model"));
        QCOMPARE(run(PERSONA_CLI_PATH, {"no-such-command"}).exitCode, 2);
        QCOMPARE(run(PERSONA_CLI_PATH, {}).exitCode, 2);
        QCOMPARE(run(PERSONA_CLI_PATH, {"--device", "tpu", "info"}).exitCode, 2);
    }

    void generateStreamsTheAnswer() {
        const Run r = run(PERSONA_CLI_PATH, {"generate", "-p", "What is the capital of France?", "-n", "24"});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        QVERIFY2(r.out.contains("Paris"), r.out.constData());
        QVERIFY2(r.err.contains("end_of_sequence"), r.err.constData());
    }

    void generateSteeredByAVectorFile() {
        QTemporaryDir dir;
        // A [L+1, hidden] vector file as the pipeline will save them, with a strong random
        // direction at layer 12.
        std::vector<float> vectors(31 * 576, 0.0f);
        std::mt19937 generator(5);
        std::normal_distribution<float> normal;
        for (int i = 0; i < 576; ++i) vectors[12 * 576 + i] = normal(generator);
        const QString file = dir.filePath("random.safetensors");
        persona::write_safetensors(file.toStdString(), {{"vector", {31, 576}, vectors.data(), vectors.size()}}, {});

        const QStringList base{"generate", "--json", "-p", "How should I treat a stray dog?", "-n", "16"};
        const Run plain = run(PERSONA_CLI_PATH, base);
        const Run steered = run(PERSONA_CLI_PATH, base + QStringList{"--steer", file + ":12:8"});
        QVERIFY2(plain.exitCode == 0 && steered.exitCode == 0, steered.err.constData());
        const QJsonObject a = QJsonDocument::fromJson(plain.out).object();
        const QJsonObject b = QJsonDocument::fromJson(steered.out).object();
        QVERIFY(!a["text"].toString().isEmpty());
        QVERIFY2(a["tokens"] != b["tokens"], qPrintable(b["text"].toString()));
        // Zero alpha steers nothing.
        const Run zero = run(PERSONA_CLI_PATH, base + QStringList{"--steer", file + ":12:0"});
        QCOMPARE(QJsonDocument::fromJson(zero.out).object()["tokens"], a["tokens"]);
        // A cap no activation reaches changes nothing; one far below them all changes the answer.
        const Run loose = run(PERSONA_CLI_PATH, base + QStringList{"--cap", file + ":12:1000000"});
        QVERIFY2(loose.exitCode == 0, loose.err.constData());
        QCOMPARE(QJsonDocument::fromJson(loose.out).object()["tokens"], a["tokens"]);
        const Run tight = run(PERSONA_CLI_PATH, base + QStringList{"--cap", file + ":12:-100"});
        QVERIFY2(tight.exitCode == 0, tight.err.constData());
        QVERIFY(QJsonDocument::fromJson(tight.out).object()["tokens"] != a["tokens"]);

        const Run wrongLayer = run(PERSONA_CLI_PATH, base + QStringList{"--steer", file + ":40:1"});
        QCOMPARE(wrongLayer.exitCode, 1);
        QVERIFY2(wrongLayer.err.contains(file.toUtf8()) && wrongLayer.err.contains("outside"), wrongLayer.err.constData());
        const Run missing = run(PERSONA_CLI_PATH, base + QStringList{"--steer", dir.filePath("none.safetensors") + ":3:1"});
        QCOMPARE(missing.exitCode, 1);
        QVERIFY(missing.err.contains("none.safetensors"));
        const Run malformed = run(PERSONA_CLI_PATH, base + QStringList{"--steer", file});
        QCOMPARE(malformed.exitCode, 1);
        QVERIFY(malformed.err.contains("FILE:LAYER:ALPHA"));
        // strtof reads "nan" and "inf"; a NaN alpha used to give no tokens and no error.
        for (const char* alpha : {"nan", "inf"}) {
            const Run notFinite = run(PERSONA_CLI_PATH, base + QStringList{"--steer", file + ":12:" + alpha});
            QCOMPARE(notFinite.exitCode, 1);
            QVERIFY2(notFinite.err.contains("finite"), notFinite.err.constData());
        }
    }

    void generateRefusesAPromptBeyondTheContext() {
        const Run r = run(PERSONA_CLI_PATH, {"generate", "-p", "hello", "-n", "9000"});
        QCOMPARE(r.exitCode, 1);
        QVERIFY2(r.err.contains("exceeds the model's context of 8192"), r.err.constData());
    }

    // The reference code's trait files through the CLI: imported with its own coherence rubric,
    // a missing definition named (and the trait then refused by extract before any model loads),
    // a definition given on the command line makes it valid.
    void importsTheReferenceTraitFiles() {
        QTemporaryDir dir;
        const auto write = [&](const QString& name, const QByteArray& text) {
            QFile file(dir.filePath(name));
            QVERIFY(file.open(QIODevice::WriteOnly));
            file.write(text);
        };
        QByteArray instructions = "[";
        for (int i = 0; i < 5; ++i)
            instructions += QByteArray(i ? "," : "") + "{\"pos\": \"Be grumpy " + QByteArray::number(i) +
                            ".\", \"neg\": \"Be cheerful " + QByteArray::number(i) + ".\"}";
        instructions += "]";
        QByteArray questions = "[";
        for (int i = 0; i < 20; ++i) questions += QByteArray(i ? "," : "") + "\"Question " + QByteArray::number(i) + "?\"";
        questions += "]";
        write("grumpy.json", "{\"instruction\": " + instructions + ", \"questions\": " + questions +
                                 ", \"eval_prompt\": \"Q: {question} A: {answer} Score {{0-100}}.\", "
                                 "\"coherence_prompt\": \"Coherent? {question} {answer}\"}");
        write("grumpy-eval.json", "{\"questions\": " + QByteArray(questions).replace("Question", "Evaluation") + "}");
        const QString out = dir.filePath("grumpy.trait.json");

        const Run bare = run(PERSONA_CLI_PATH, {"traits", "import", dir.filePath("grumpy.json"), dir.filePath("grumpy-eval.json"), "-o", out});
        QCOMPARE(bare.exitCode, 1);
        QVERIFY2(bare.err.contains("no definition of 'grumpy'") && bare.err.contains("--definition"), bare.err.constData());
        QVERIFY(QFile::exists(out));  // written, so it can be finished by hand
        const Run refused = run(PERSONA_CLI_PATH, {"extract", "--trait", out, "--judge", "none"});
        QCOMPARE(refused.exitCode, 1);
        QVERIFY2(refused.err.contains("trait 'grumpy' definition"), refused.err.constData());

        const Run defined = run(PERSONA_CLI_PATH, {"traits", "import", dir.filePath("grumpy.json"), dir.filePath("grumpy-eval.json"),
                                                   "-o", out, "--definition", "Complains about everything."});
        QVERIFY2(defined.exitCode == 0, defined.err.constData());
        QVERIFY(QJsonDocument::fromJson(defined.out).object()["valid"].toBool());
        const Run shown = run(PERSONA_CLI_PATH, {"traits", "show", out});
        const QJsonObject trait = QJsonDocument::fromJson(shown.out).object();
        QCOMPARE(trait["coherence_rubric"].toString(), QString("Coherent? {question} {answer}"));
        QCOMPARE(trait["judge_rubric"].toString(), QString("Q: {question} A: {answer} Score {0-100}."));
        QCOMPARE(trait["definition"].toString(), QString("Complains about everything."));
        QCOMPARE(run(PERSONA_CLI_PATH, {"traits", "validate", out}).exitCode, 0);
    }

    void benchPrintsItsFigures() {
        const Run r = run(PERSONA_CLI_PATH, {"bench", "--json", "--prompt-tokens", "16", "--new-tokens", "4", "--batch", "1",
                                             "--batch", "2", "--steering-prompt-tokens", "16", "--steering-rounds", "3",
                                             "--judge-answers", "2", "--contention", "--judged-extraction"});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        const QJsonObject report = QJsonDocument::fromJson(r.out).object();
        QVERIFY(report["load_seconds"].toDouble() > 0);
        QVERIFY(report["prefill_tokens_per_second"].toDouble() > 0);
        QCOMPARE(report["decode"].toArray().size(), 2);
        QCOMPARE(report["decode"].toArray()[1].toObject()["batch"].toInt(), 2);
        QVERIFY(report["decode"].toArray()[1].toObject()["tokens_per_second_total"].toDouble() > 0);
        QVERIFY(report["peak_rss_bytes"].toDouble() > 100e6);
        QVERIFY(report["rss_before_model_bytes"].toDouble() > 0);
        QVERIFY(report["rss_before_model_bytes"].toDouble() < report["peak_rss_bytes"].toDouble());
        QCOMPARE(report["dtype"].toString(), persona_test::autoCpuDtype());
        const QJsonObject change = report["steering_change_to_first_token"].toObject();
        QCOMPARE(change["rounds"].toInt(), 3);
        QCOMPARE(change["prompt_tokens"].toInt(), 16);
        QVERIFY(change["median_ms"].toDouble() > 0 && change["median_ms"].toDouble() <= change["max_ms"].toDouble());
        // Two answers on two rubrics each, the second answer's prompts starting from the first's.
        const QJsonObject judge = report["judge"].toObject();
        QCOMPARE(judge["scores"].toInt(), 4);
        QVERIFY(judge["mean_reused_prompt_tokens"].toDouble() > 10);
        QVERIFY(judge["whole_prompt_scores_per_second"].toDouble() > 0 && judge["reused_prefix_scores_per_second"].toDouble() > 0);
        // The same speeds again beside a busy process, as ratios to the quiet run.
        const QJsonObject ratios = report["contention"].toObject()["ratio_to_quiet"].toObject();
        QCOMPARE(ratios.size(), 3);
        for (const QString& key : {QString("prefill"), QString("decode_batch_1"), QString("decode_batch_2")})
            QVERIFY2(ratios[key].toDouble() > 0, qPrintable(key));
        // The standard judged extraction (the model judges itself here), stage by stage.
        const QJsonObject extraction = report["judged_extraction"].toObject();
        QCOMPARE(extraction["trait"].toString(), QString("optimistic"));
        QCOMPARE(extraction["judge"].toString(), QString("local"));
        const QJsonObject stages = extraction["stage_seconds"].toObject();
        double staged = 0;
        for (const QString& stage : stages.keys()) staged += stages[stage].toDouble();
        QVERIFY2(stages["generate"].toDouble() > 0 && stages["judge"].toDouble() > 0, qPrintable(stages.keys().join(' ')));
        QVERIFY(staged <= extraction["seconds"].toDouble() && staged > 0.9 * extraction["seconds"].toDouble());
        const QJsonObject ui = report["ui_timer_lateness_ms"].toObject();
        QVERIFY(ui["wakeups"].toInt() > 0 && ui["p50"].toDouble() <= ui["max"].toDouble());
    }

    // --help needs no display: a server or an SSH session asks it too.
    void workbenchHelpWithoutADisplay() {
        QProcessEnvironment environment = QProcessEnvironment::systemEnvironment();
        environment.remove("DISPLAY");
        environment.remove("WAYLAND_DISPLAY");
        environment.remove("QT_QPA_PLATFORM");
        const Run help = persona_test::runProgram(PERSONA_GUI_PATH, {"--help"}, 30000, environment);
        QVERIFY2(help.exitCode == 0, help.err.constData());
        QVERIFY2(help.out.contains("--project") && help.out.contains("--screenshot"), help.out.constData());
    }

    // The picture is the window after the model loaded: a full window with text and widgets,
    // visibly different from the window whose model failed to load.
    void workbenchScreenshotShowsTheLoadedWindow() {
        QTemporaryDir dir;
        const QString loadedPng = dir.filePath("window.png"), failedPng = dir.filePath("bad.png");
        const Run loaded = run(PERSONA_GUI_PATH, {"--screenshot", loadedPng, persona_test::defaultModelPath()});
        QVERIFY2(loaded.exitCode == 0, loaded.err.constData());
        const Run failed = run(PERSONA_GUI_PATH, {"--screenshot", failedPng, dir.filePath("missing.gguf")});
        QCOMPARE(failed.exitCode, 1);
        QVERIFY(QFileInfo::exists(failedPng));  // the error is on the picture

        const QImage image = QImage(loadedPng).convertToFormat(QImage::Format_RGB32);
        const QImage other = QImage(failedPng).convertToFormat(QImage::Format_RGB32);
        QVERIFY(!image.isNull() && !other.isNull());
        QVERIFY(image.width() >= 800 && image.height() >= 500);
        QSet<QRgb> colours;
        for (int y = 0; y < image.height(); y += 2)
            for (int x = 0; x < image.width(); x += 2) colours.insert(image.pixel(x, y));
        QVERIFY2(colours.size() >= 16, qPrintable(QString::number(colours.size())));  // not a blank frame
        QCOMPARE(other.size(), image.size());
        int differing = 0;
        for (int y = 0; y < image.height(); ++y)
            for (int x = 0; x < image.width(); ++x) differing += image.pixel(x, y) != other.pixel(x, y);
        QVERIFY2(differing > image.width() * image.height() / 200, qPrintable(QString::number(differing)));
    }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
