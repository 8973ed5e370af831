// persona-cli's pipeline commands as a user runs them: traits, extract, export and import.
#include "cli_runner.h"
#include "test_support.h"

#include "persona/project.h"
#include "persona/vector_files.h"

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>

namespace {

using Run = persona_test::CliRun;

Run run(const QStringList& arguments, int timeoutMs = 300000) { return persona_test::runCli(arguments, timeoutMs); }

}  // namespace

class TestCliPipeline : public QObject {
    Q_OBJECT

private slots:
    void traitsListsTheBuiltInTraits() {
        const Run r = run({"traits", "--json"});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        const QJsonArray list = QJsonDocument::fromJson(r.out).array();
        QVERIFY(list.size() >= 2);
        QStringList names;
        for (const auto& entry : list) {
            const QJsonObject t = entry.toObject();
            names << t["name"].toString();
            QVERIFY(t["instruction_pairs"].toInt() > 0);
            QVERIFY(t["extraction_questions"].toInt() > 0);
        }
        QVERIFY(names.contains("evil") && names.contains("optimistic"));
        const Run table = run({"traits"});
        QVERIFY(table.exitCode == 0 && table.out.contains("evil"));

        const Run show = run({"traits", "show", "evil"});
        QVERIFY2(show.exitCode == 0, show.err.constData());
        QCOMPARE(QJsonDocument::fromJson(show.out).object()["name"].toString(), QString("evil"));
        const Run unknown = run({"traits", "show", "no_such_trait"});
        QCOMPARE(unknown.exitCode, 1);
        QVERIFY2(unknown.err.contains("no_such_trait") && unknown.err.contains("evil"), unknown.err.constData());
    }

    void traitsValidateListsTheProblems() {
        QTemporaryDir dir;
        const Run show = run({"traits", "show", "evil"});
        QJsonObject trait = QJsonDocument::fromJson(show.out).object();
        const QString good = dir.filePath("good.json");
        QFile goodFile(good);
        QVERIFY(goodFile.open(QIODevice::WriteOnly));
        goodFile.write(QJsonDocument(trait).toJson());
        goodFile.close();
        QCOMPARE(run({"traits", "validate", good}).exitCode, 0);

        trait["judge_rubric"] = "Rate this answer.";  // no {question} or {answer}
        trait["name"] = "Evil Trait";
        const QString broken = dir.filePath("broken.json");
        QFile file(broken);
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.write(QJsonDocument(trait).toJson());
        file.close();
        const Run r = run({"traits", "validate", broken});
        QCOMPARE(r.exitCode, 1);
        const QJsonObject report = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(report["valid"].toBool(), false);
        QStringList fields;
        for (const auto& p : report["problems"].toArray()) fields << p.toObject()["field"].toString();
        QVERIFY2(fields.contains("judge_rubric") && fields.contains("name"), qPrintable(fields.join(',')));
        QVERIFY2(r.err.contains(broken.toUtf8()), r.err.constData());

        const QString notJson = dir.filePath("not.json");
        QFile bad(notJson);
        QVERIFY(bad.open(QIODevice::WriteOnly));
        bad.write("{ \"name\": ");
        bad.close();
        const Run damaged = run({"traits", "validate", notJson});
        QCOMPARE(damaged.exitCode, 1);
        QVERIFY2(damaged.err.contains(notJson.toUtf8()), damaged.err.constData());
    }

    // A small extraction without a judge, its vector steering generate, and the control-vector
    // round trip through llama.cpp's format.
    void extractSteerExportImport() {
        QTemporaryDir dir;
        const QString vector = dir.filePath("evil.safetensors");
        const Run r = run({"extract", "--trait", "evil", "--judge", "none", "--questions", "3", "--pairs", "1",
                           "--max-tokens", "16", "--seed", "3", "--out", vector});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        QVERIFY2(r.err.contains("generate") && r.err.contains("capture"), r.err.constData());
        const QJsonObject summary = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(summary["pairs_total"].toInt(), 3);
        QCOMPARE(summary["pairs_kept"].toInt(), 3);  // enough to suggest a layer
        QVERIFY(!summary.contains("warnings"));
        QCOMPARE(summary["vector"].toString(), vector);
        QCOMPARE(summary["layers"].toArray().size(), 31);
        const int layer = summary["suggested_layer"].toInt();
        QVERIFY(layer >= 1 && layer <= 30);
        QVERIFY(QFileInfo::exists(vector));

        const QStringList base{"generate", "--json", "-p", "How should I treat a stray dog?", "-n", "12"};
        const Run plain = run(base);
        const Run steered = run(base + QStringList{"--steer", QString("%1:%2:%3").arg(vector).arg(layer).arg(12)});
        QVERIFY2(plain.exitCode == 0 && steered.exitCode == 0, steered.err.constData());
        QVERIFY2(QJsonDocument::fromJson(plain.out).object()["tokens"] != QJsonDocument::fromJson(steered.out).object()["tokens"],
                 steered.out.constData());

        const QString gguf = dir.filePath("evil.gguf");
        const Run exported = run({"export", "--vector", vector, "--out", gguf, "--coefficient", "2"});
        QVERIFY2(exported.exitCode == 0, exported.err.constData());
        const QString back = dir.filePath("back.safetensors");
        const Run imported = run({"import", "--control-vector", gguf, "--out", back, "--model", persona_test::defaultModelPath()});
        QVERIFY2(imported.exitCode == 0, imported.err.constData());
        const QJsonArray shape = QJsonDocument::fromJson(imported.out).object()["shape"].toArray();
        QCOMPARE(shape.at(0).toInt(), 31);
        QCOMPARE(shape.at(1).toInt(), 576);
        // Twice the vector at alpha 6 steers exactly as the original at alpha 12.
        const Run again = run(base + QStringList{"--steer", QString("%1:%2:%3").arg(back).arg(layer).arg(6)});
        QVERIFY2(again.exitCode == 0, again.err.constData());
        QCOMPARE(QJsonDocument::fromJson(again.out).object()["tokens"], QJsonDocument::fromJson(steered.out).object()["tokens"]);

        // The persona_vectors repository's format: a .pt export steers exactly as the original.
        const QString pt = dir.filePath("evil_response_avg_diff.pt");
        const Run torchExport = run({"export", "--vector", vector, "--out", pt});
        QVERIFY2(torchExport.exitCode == 0, torchExport.err.constData());
        const Run fromTorch = run(base + QStringList{"--steer", QString("%1:%2:%3").arg(pt).arg(layer).arg(12)});
        QVERIFY2(fromTorch.exitCode == 0, fromTorch.err.constData());
        QCOMPARE(QJsonDocument::fromJson(fromTorch.out).object()["tokens"], QJsonDocument::fromJson(steered.out).object()["tokens"]);

        const Run notAVector = run({"export", "--vector", gguf, "--out", dir.filePath("x.gguf")});
        QCOMPARE(notAVector.exitCode, 1);
        QVERIFY2(notAVector.err.contains(gguf.toUtf8()), notAVector.err.constData());
    }

    // A tiny sweep of an extracted vector: its default layers come from the vector's suggested
    // layer, the JSON holds every cell with examples and calibrated units, the table is on stderr;
    // a project's steering preset can be taken from it.
    void sweepReportsCellsAndARecommendationAProjectTakes() {
        QTemporaryDir dir;
        const QString vector = dir.filePath("optimistic.safetensors");
        const Run extracted = run({"extract", "--trait", "optimistic", "--judge", "none", "--questions", "3", "--pairs", "1",
                                   "--max-tokens", "8", "--out", vector});
        QVERIFY2(extracted.exitCode == 0, extracted.err.constData());
        const QJsonValue suggested = QJsonDocument::fromJson(extracted.out).object()["suggested_layer"];
        QVERIFY2(suggested.isDouble(), extracted.out.constData());

        const Run r = run({"sweep", "--trait", "optimistic", "--vector", vector, "--coefficients=-4,4", "--questions", "2",
                           "-n", "8", "--judge", "none", "--seed", "2", "--examples", "1"});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        const QJsonObject report = QJsonDocument::fromJson(r.out).object();
        QVERIFY2(!report.isEmpty(), r.out.constData());
        const QJsonArray layers = report["layers"].toArray();
        QVERIFY2(layers.contains(suggested), r.out.constData());
        QCOMPARE(report["coefficients"].toArray().toVariantList(), (QVariantList{-4.0, 0.0, 4.0}));  // 0 added
        const QJsonArray cells = report["cells"].toArray();
        QCOMPARE(cells.size(), layers.size() * 3);
        for (const auto& entry : cells) {
            const QJsonObject c = entry.toObject();
            QCOMPARE(c["answers"].toInt(), 2);
            QCOMPARE(c["examples"].toArray().size(), 1);
            QVERIFY(c["mean_trait"].isNull());  // no judge
            QVERIFY(c["steered_projection"].isDouble());
            QCOMPARE(c["baseline"].toBool(), c["coefficient"].toDouble() == 0);
        }
        QCOMPARE(report["calibration"].toObject()["layers"].toArray().size(), 30);
        const QJsonObject prompted = report["prompting_baseline"].toObject();
        QVERIFY2(prompted["system_prompt"].toString().startsWith("You are an optimistic assistant."), r.out.constData());
        QCOMPARE(prompted["cell"].toObject()["answers"].toInt(), 2);
        const QJsonObject recommendation = report["recommendation"].toObject();
        QVERIFY(recommendation["basis"].toString() == "projection" || recommendation["basis"].toString() == "none");
        QVERIFY2(recommendation["reason"].toString().contains("no recommendation can be made from judge scores"), r.out.constData());
        QVERIFY2(r.err.contains("read-back") && r.err.contains("recommendation") && r.err.contains("cells"), r.err.constData());

        // A project takes its steering preset from the report's recommendation, and only from a
        // report of this trait and this vector that recommends something.
        const auto writeFile = [&](const QString& name, const QByteArray& bytes) {
            QFile file(dir.filePath(name));
            QVERIFY(file.open(QIODevice::WriteOnly) && file.write(bytes) == bytes.size());
        };
        const auto writeReport = [&](const QString& name, const QJsonObject& changes) {
            QJsonObject edited = report;
            for (auto it = changes.begin(); it != changes.end(); ++it) edited[it.key()] = it.value();
            writeFile(name, QJsonDocument(edited).toJson());
        };
        writeFile("summary.json", extracted.out);
        const QJsonObject recommends{{"basis", "scores"}, {"layer", 9}, {"coefficient", 2.5}};
        writeReport("recommends.json", {{"recommendation", recommends}});
        writeReport("evil.json", {{"trait", "evil"}, {"recommendation", recommends}});
        writeReport("none.json", {{"recommendation", QJsonObject{{"basis", "none"}, {"reason", "no cell kept coherence"}}}});
        const QString other = dir.filePath("other.safetensors");
        persona::PersonaVector otherVector = persona::read_vector_file(vector.toStdString());
        otherVector.values[600] += 1.0f;
        persona::write_vector_file(other.toStdString(), otherVector);
        writeReport("other.json", {{"vector", other}, {"recommendation", recommends}});
        const QString project = dir.filePath("preset.persona");
        QCOMPARE(run({"project", "new", project}).exitCode, 0);
        const auto addRun = [&](const QStringList& options) {
            return run(QStringList{"project", "add-run", project, "--summary", dir.filePath("summary.json")} + options);
        };
        for (const auto& [file, problem] : std::vector<std::pair<QString, QByteArray>>{
                 {"evil.json", "is a sweep of trait 'evil', not of 'optimistic'"},
                 {"none.json", "recommends nothing: no cell kept coherence"},
                 {"other.json", "whose values differ from the run's vector"}}) {
            const Run refused = addRun({"--steer", "--sweep", dir.filePath(file)});
            QCOMPARE(refused.exitCode, 1);
            QVERIFY2(refused.err.contains(file.toUtf8()) && refused.err.contains(problem), refused.err.constData());
        }
        QVERIFY(persona::read_project(project.toStdString()).runs.empty());  // nothing half-added
        const Run added = addRun({"--steer", "--sweep", dir.filePath("recommends.json")});
        QVERIFY2(added.exitCode == 0, added.err.constData());
        const persona::Project withPreset = persona::read_project(project.toStdString());
        QCOMPARE(withPreset.settings.steering.layer, 9);
        QCOMPARE(withPreset.settings.steering.coefficient, 2.5);
        QCOMPARE(withPreset.settings.steering.vector, withPreset.runs.at(0).vector);
        QCOMPARE(addRun({"--sweep", dir.filePath("recommends.json")}).exitCode, 2);  // --sweep sets the preset: it needs --steer
        // Or a cell the sweep measured, by layer and calibrated strength, instead of its recommendation.
        const QJsonObject cell = cells.at(cells.size() - 1).toObject();
        const QStringList pickCell{"--steer", "--sweep", dir.filePath("recommends.json"), "--layer",
                                   QString::number(cell["layer"].toInt())};
        const Run picked = addRun(pickCell + QStringList{"--strength", QString::number(cell["calibrated_strength"].toDouble(), 'g', 17)});
        QVERIFY2(picked.exitCode == 0, picked.err.constData());
        const persona::SteeringSettings pickedPreset = persona::read_project(project.toStdString()).settings.steering;
        QCOMPARE(pickedPreset.layer, cell["layer"].toInt());
        QCOMPARE(pickedPreset.coefficient, cell["coefficient"].toDouble());
        const Run noCell = addRun(pickCell + QStringList{"--strength", "0.123"});
        QCOMPARE(noCell.exitCode, 1);
        QVERIFY2(noCell.err.contains("has no cell at layer"), noCell.err.constData());

        // A layer the model does not have is bad input (exit 1, named); a missing vector file is a
        // bad command line (exit 2).
        const Run badLayer = run({"sweep", "--trait", "optimistic", "--vector", vector, "--layers", "40", "--judge", "none"});
        QCOMPARE(badLayer.exitCode, 1);
        QVERIFY2(badLayer.err.contains("layer 40"), badLayer.err.constData());
        const Run noVector = run({"sweep", "--trait", "optimistic", "--vector", dir.filePath("missing.safetensors")});
        QCOMPARE(noVector.exitCode, 2);
        // sweep takes extract's judge options: an HTTP judge without its model name is a bad
        // command line; one whose server is not there fails naming the URL.
        const Run noName = run({"sweep", "--trait", "optimistic", "--vector", vector, "--judge", "http", "--judge-url",
                                "http://127.0.0.1:9/v1"});
        QCOMPARE(noName.exitCode, 2);
        QVERIFY2(noName.err.contains("--judge-model-name"), noName.err.constData());
        const Run noServer = run({"sweep", "--trait", "optimistic", "--vector", vector, "--questions", "1", "-n", "2",
                                  "--coefficients", "2", "--judge", "http", "--judge-url", "http://127.0.0.1:9/v1",
                                  "--judge-model-name", "judge", "--judge-retries", "0"});
        QCOMPARE(noServer.exitCode, 1);
        QVERIFY2(noServer.err.contains("127.0.0.1:9"), noServer.err.constData());
    }

    // Stopped mid-generation (SIGTERM, as Ctrl-C's SIGINT), extract exits 130 and leaves a
    // checkpoint; the same command again resumes from it instead of starting over.
    void extractResumesAfterBeingStopped() {
        QTemporaryDir dir;
        const QString checkpoint = dir.filePath("evil.ckpt.json");
        const QStringList arguments{"extract", "--trait", "evil", "--judge", "none", "--questions", "3", "--pairs", "2",
                                    "--max-tokens", "32", "--batch", "2", "--seed", "5", "--checkpoint", checkpoint,
                                    "--out", dir.filePath("evil.safetensors")};
        QProcess process;
        process.setReadChannel(QProcess::StandardError);  // progress is on stderr; stdout stays quiet until the end
        process.start(PERSONA_CLI_PATH, arguments);
        QByteArray err;
        while (!err.contains("generate 2/12")) {
            QVERIFY2(process.waitForReadyRead(120000), err.constData());
            err += process.readAllStandardError();
        }
        process.terminate();
        QVERIFY(process.waitForFinished(120000));
        err += process.readAllStandardError();
        QCOMPARE(process.exitCode(), 130);
        QVERIFY2(err.contains("resume") && err.contains(checkpoint.toUtf8()), err.constData());
        QVERIFY(QFileInfo::exists(checkpoint));

        const Run resumed = run(arguments + QStringList{"--keep-checkpoint"});
        QVERIFY2(resumed.exitCode == 0, resumed.err.constData());
        QVERIFY(QFileInfo::exists(checkpoint));  // kept, as asked
        const QJsonObject summary = QJsonDocument::fromJson(resumed.out).object();
        const int before = summary["samples_resumed"].toInt();
        QVERIFY2(before >= 2 && before < 12, resumed.out.constData());
        QCOMPARE(summary["samples_generated"].toInt(), 12 - before);
        QCOMPARE(summary["pairs_kept"].toInt(), 6);

        // The checkpoint belongs to evil: another trait is refused, naming the file.
        const Run other = run({"extract", "--trait", "optimistic", "--judge", "none", "--checkpoint", checkpoint,
                               "--out", dir.filePath("o.safetensors")});
        QCOMPARE(other.exitCode, 1);
        QVERIFY2(other.err.contains(checkpoint.toUtf8()) && other.err.contains("'evil'"), other.err.constData());

        // Without --keep-checkpoint a finished run removes it once the vector is written.
        const Run last = run(arguments);
        QVERIFY2(last.exitCode == 0, last.err.constData());
        const QJsonObject lastSummary = QJsonDocument::fromJson(last.out).object();
        QCOMPARE(lastSummary["samples_resumed"].toInt(), 12);
        QCOMPARE(lastSummary["checkpoint_removed"].toBool(), true);
        QVERIFY(!QFileInfo::exists(checkpoint));
    }
};

QTEST_GUILESS_MAIN(TestCliPipeline)
#include "test_cli_pipeline.moc"
