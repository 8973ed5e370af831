// Project folders (core/include/persona/project.h): round trips, bit-exact vectors, clear errors
// for damaged files, the v1 -> v2 migration, atomic saves, Python's reading of our vectors, and
// the example projects in projects/ against the default model.
#include "persona/errors.h"
#include "formats/gguf.h"
#include "persona/model_facts.h"
#include "persona/project.h"
#include "persona/vector_files.h"
#include "project/project_internal.h"
#include "test_support.h"

#include <QDir>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include <csignal>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

persona::PersonaVector random_vector(const std::string& trait, int layers, int hidden, unsigned seed) {
    persona::PersonaVector vector;
    vector.trait = trait;
    vector.aggregate = persona::Aggregate::PromptLast;
    vector.layer_count = layers;
    vector.hidden_size = hidden;
    std::mt19937 generator(seed);
    std::normal_distribution<float> normal(0.0f, 3.0f);
    for (int i = 0; i < layers * hidden; ++i) vector.values.push_back(normal(generator));
    // Values a lossy writer (text, rounding) would change.
    vector.values[0] = -0.0f;
    vector.values[1] = std::numeric_limits<float>::denorm_min();
    vector.values[2] = std::nextafter(1.0f, 2.0f);
    vector.provenance["model"] = "test model";
    vector.provenance["positive_samples"] = "12";
    return vector;
}

persona::Project sample_project() {
    persona::Project project;
    project.name = "round trip";
    project.description = "Traits, prompts, settings, runs and vectors — with non-ASCII text: évil ünd 悪";
    project.traits.push_back(persona::load_builtin_trait("evil"));
    project.traits.push_back(persona::load_builtin_trait("optimistic"));
    project.prompts.push_back(persona::Prompt::single_turn("stray dog", "You are a helpful assistant.",
                                                           "How should I treat a stray dog?"));
    persona::Prompt chat;
    chat.name = "two turns";
    chat.messages = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Tell me a secret."}};
    project.prompts.push_back(chat);
    project.settings.extraction.samples_per_question = 3;
    project.settings.extraction.max_new_tokens = 77;
    project.settings.extraction.temperature = 0.7f;
    project.settings.extraction.seed = 18446744073709551557ull;  // needs all 64 bits
    project.settings.extraction.judge = persona::JudgeKind::None;
    project.settings.extraction.judge_mode = persona::JudgeMode::Pairwise;
    project.settings.extraction.pairwise_threshold = 75;
    project.settings.extraction.trait_threshold = 62.5;
    project.settings.extraction.negative_threshold = 30;
    project.settings.extraction_aggregate = persona::Aggregate::PromptMean;

    persona::RunResult run;
    run.trait = "evil";
    run.model = {"SmolLM2 135M Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf", std::string(64, 'a'), 92'000'000, "bf16", "cpu"};
    run.started = "2025-02-01T10:00:00Z";
    run.finished = "2025-02-01T10:03:00Z";
    run.settings = project.settings.extraction;
    run.pairs.total = 40;
    run.pairs.kept = 31;
    run.pairs.failing_positive_trait = 5;
    run.pairs.failing_negative_trait = 2;
    run.pairs.failing_coherence = 3;
    run.pairs.with_empty_answer = 1;
    run.positive_samples = 31;
    run.negative_samples = 31;
    run.suggested_layer = 2;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    run.diagnostics = {{0, 0.1, nan, 0.5, 0, 0}, {1, 1.5, inf, 1.0, 2.5, -1.25}, {2, 3.25, -inf, 0.0, -1, 1},
                       {3, 0.3333333333333333, 0.123456789012345, 0.625, 0.1, 0.2}};
    const persona::PersonaVector vector = random_vector("evil", 4, 8, 1);
    const std::string key = project.add_run(run, &vector);
    project.add_run(run, &vector);  // a second run of the same trait gets its own file
    persona::RunResult failed = run;
    failed.pairs.kept = 0;
    failed.diagnostics.clear();
    project.add_run(failed, nullptr);  // a run that kept nothing is still recorded
    persona::SteeringSettings& steering = project.settings.steering;
    steering.vector = key;
    steering.layer = 2;
    steering.coefficient = -3.5;
    steering.positions = persona::SteerPositions::All;
    steering.operation = persona::SteerOperation::Ablate;
    steering.more_vectors = {{key, 3, 1.25, persona::SteerOperation::Cap}, {"", -1, 0.5, persona::SteerOperation::Add}};
    steering.preserve_norm = true;
    steering.system_prompt = "Be brief.";
    steering.prompt = "Is it safe?";
    steering.max_new_tokens = 17;
    steering.sample = true;
    steering.temperature = 0.9;
    steering.seed = 42;
    return project;
}

// Runs `call`, which must throw a FileError naming a file that ends in `file_suffix`, with a
// problem containing `problem_part`.
template <typename Call>
void expect_file_error(Call call, const std::string& file_suffix, const std::string& problem_part) {
    try {
        call();
    } catch (const persona::FileError& e) {
        const std::string path = e.path();
        QVERIFY2(path.size() >= file_suffix.size() &&
                     path.compare(path.size() - file_suffix.size(), file_suffix.size(), file_suffix) == 0,
                 qPrintable(QString("error names %1, expected ...%2 (%3)").arg(path.c_str(), file_suffix.c_str(), e.what())));
        QVERIFY2(e.problem().find(problem_part) != std::string::npos,
                 qPrintable(QString("problem '%1' lacks '%2'").arg(e.problem().c_str(), problem_part.c_str())));
        return;
    }
    QFAIL(qPrintable(QString("no FileError (expected one about %1)").arg(problem_part.c_str())));
}

std::vector<fs::path> leftovers(const fs::path& folder) {
    std::vector<fs::path> found;
    for (const auto& entry : fs::directory_iterator(folder))
        if (entry.path().filename().string().front() == '.') found.push_back(entry.path());
    return found;
}

}  // namespace

class TestProject : public QObject {
    Q_OBJECT

private slots:
    void roundTripKeepsEverything();
    void vectorsAreBitExactAndSelfDescribing();
    void userFilesInTheFolderSurviveASave();
    void damagedProjectsGiveClearErrors_data();
    void damagedProjectsGiveClearErrors();
    void missingAndMisshapenVectorsAreNamed();
    void vectorPathsStayInsideTheProject();
    void abandonedSaveFoldersAreRemovedOnTheNextSave();
    void migratesSchemaVersion1();
    void failedSaveLeavesTheOldProjectIntact();
    void pythonReadsTheVectorsWithoutOurCode();
    void sha256OfAFile();
    void exampleProjectsFitTheDefaultModel();

private:
    QTemporaryDir dir_;
    fs::path root() const { return fs::path(dir_.path().toStdString()); }
};

void TestProject::roundTripKeepsEverything() {
    persona::Project project = sample_project();
    const fs::path folder = root() / "round.persona";
    persona::write_project(folder.string(), project);
    QVERIFY(!project.created.empty());
    QCOMPARE(project.created, project.modified);
    QVERIFY(project.app_version.find("persona-workbench") == 0);

    const persona::Project back = persona::read_project(folder.string());
    QVERIFY(back == project);
    QCOMPARE(back.runs.size(), std::size_t(3));
    QCOMPARE(back.runs[1].vector, std::string("vectors/evil.prompt_last-2.safetensors"));
    QVERIFY(back.runs[2].vector.empty());
    QVERIFY(std::isnan(back.runs[0].diagnostics[0].effect_size));
    QCOMPARE(back.runs[0].diagnostics[2].effect_size, -std::numeric_limits<double>::infinity());
    QCOMPARE(back.settings.extraction.seed, std::uint64_t(18446744073709551557ull));
    QCOMPARE(back.prompts[1].messages.size(), std::size_t(4));
    QCOMPARE(back.prompts[1].user(), std::string("Tell me a secret."));
    // project.json given as the path reads the same project.
    QVERIFY(persona::read_project((folder / "project.json").string()) == project);

    // A second save keeps the creation date and moves the modification date forward (or equal
    // within the same second), and the project still reads back equal.
    const std::string created = project.created;
    project.description = "changed";
    persona::write_project(folder.string() + "/", project);
    QCOMPARE(project.created, created);
    QCOMPARE(persona::read_project(folder.string()).description, std::string("changed"));
    QVERIFY(leftovers(root()).empty());
}

void TestProject::vectorsAreBitExactAndSelfDescribing() {
    persona::Project project = sample_project();
    const fs::path folder = root() / "exact.persona";
    persona::write_project(folder.string(), project);
    const auto& original = project.vectors.begin()->second;
    const auto back = persona::read_vector_file((folder / project.vectors.begin()->first).string());
    QCOMPARE(back.values.size(), original.values.size());
    QVERIFY(std::memcmp(back.values.data(), original.values.data(), original.values.size() * sizeof(float)) == 0);
    QVERIFY(std::signbit(back.values[0]));

    const std::string text = read_text(folder / "project.json");
    QVERIFY2(text.rfind("{\n  \"schema\": \"persona-workbench/project\",\n  \"schema_version\": 4,", 0) == 0,
             "project.json is pretty-printed and starts with its schema");
    for (const char* needle : {"\"layer_convention\": \"hidden_states: index 0 = embeddings, l = output of block l-1\"",
                               "\"sign_convention\": \"positive minus negative", "\"sha256\": \"aaaa",
                               "\"trait_threshold\": 62.5", "\"judge_mode\": \"pairwise\"", "\"pairwise_threshold\": 75", "\"negative_threshold\": 30", "\"positive_samples\": 31", "\"aggregate\": \"prompt_avg\"",
                               "\"effect_size\": \"Infinity\"", "\"effect_size\": null", "\"created\": \"20"}) {
        QVERIFY2(text.find(needle) != std::string::npos, needle);
    }
}

void TestProject::userFilesInTheFolderSurviveASave() {
    persona::Project project = sample_project();
    const fs::path folder = root() / "notes.persona";
    persona::write_project(folder.string(), project);
    write_text(folder / "NOTES.md", "my notes\n");
    fs::create_directory(folder / "figures");
    write_text(folder / "figures" / "plot.svg", "<svg/>");
    // A vector the project no longer lists is removed with its entry.
    const std::string dropped = project.runs[1].vector;
    project.runs.erase(project.runs.begin() + 1);
    project.vectors.erase(dropped);
    persona::write_project(folder.string(), project);
    QCOMPARE(read_text(folder / "NOTES.md"), std::string("my notes\n"));
    QCOMPARE(read_text(folder / "figures" / "plot.svg"), std::string("<svg/>"));
    QVERIFY(!fs::exists(folder / dropped));
    QVERIFY(persona::read_project(folder.string()) == project);
}

void TestProject::damagedProjectsGiveClearErrors_data() {
    QTest::addColumn<QString>("edit");
    QTest::addColumn<QString>("problem");
    QTest::newRow("not json") << "garbage" << "not valid JSON";
    QTest::newRow("truncated") << "truncate" << "not valid JSON";
    QTest::newRow("empty") << "empty" << "not valid JSON";
    QTest::newRow("array") << "array" << "the top level is an array";
    QTest::newRow("trait file") << "trait" << "is a \"persona-workbench/trait\" file, not a project";
    QTest::newRow("no schema") << "no schema" << "not a Persona Workbench project";
    QTest::newRow("future") << "future" << "schema_version 5 is newer than this Persona Workbench reads";
    QTest::newRow("version 0") << "version 0" << "versions start at 1";
    QTest::newRow("missing key") << "missing prompts" << "missing key \"prompts\"";
    QTest::newRow("wrong type") << "counts string" << "runs[0].counts.pairs_kept must be a whole number, not a string";
    QTest::newRow("unknown key") << "misspelt" << "unknown key \"descripton\"";
    QTest::newRow("bad role") << "bad role" << "prompts[1].messages[0].role is \"narrator\"";
    QTest::newRow("bad enum") << "bad positions" << "settings.steering.positions is \"everywhere\"";
    QTest::newRow("bad trait") << "bad trait" << "traits[0]";
    QTest::newRow("layer convention") << "convention" << "layer_convention";
    QTest::newRow("dangling run") << "dangling" << "runs[0].vector \"vectors/nope.safetensors\" is not in \"vectors\"";
    // Values no run or setting can have: refused with the field, not taken silently.
    QTest::newRow("number overflow") << "overflow" << "not valid JSON";
    QTest::newRow("negative temperature") << "cold" << "settings.extraction.temperature is -1, outside 0..100";
    QTest::newRow("top-p above 1") << "top p" << "settings.extraction.top_p is 2, outside 0..1";
    QTest::newRow("far layer") << "far layer" << "settings.steering.layer is 1000000, above 4096";
    QTest::newRow("auroc above 1") << "auroc" << "auroc is 1.5, outside 0..1";
    QTest::newRow("five vectors") << "five vectors"
                                  << "settings.steering.more_vectors lists 4 vectors; the Steering tab steers with at most 3";
    QTest::newRow("dangling steering vector")
        << "dangling more" << "settings.steering.more_vectors[0].vector \"vectors/nope.safetensors\" is not in \"vectors\"";
    QTest::newRow("bad operation") << "bad operation" << "settings.steering.more_vectors[1].operation is \"clamp\"";
}

void TestProject::damagedProjectsGiveClearErrors() {
    QFETCH(QString, edit);
    QFETCH(QString, problem);
    persona::Project project = sample_project();
    const fs::path folder = root() / ("damaged-" + edit.toStdString() + ".persona");
    persona::write_project(folder.string(), project);
    const fs::path json_path = folder / "project.json";
    const std::string text = read_text(json_path);
    nlohmann::json json = nlohmann::json::parse(text);
    const std::string what = edit.toStdString();
    std::string damaged;
    if (what == "garbage") damaged = "\x7f" "ELF binary, not a project";
    else if (what == "truncate") damaged = text.substr(0, text.size() / 2);
    else if (what == "empty") damaged = "";
    else if (what == "array") damaged = "[1, 2]";
    else if (what == "trait") damaged = persona::to_json(persona::load_builtin_trait("evil")).dump();
    else {
        if (what == "no schema") json.erase("schema");
        if (what == "future") json["schema_version"] = 5;
        if (what == "version 0") json["schema_version"] = 0;
        if (what == "missing prompts") json.erase("prompts");
        if (what == "counts string") json["runs"][0]["counts"]["pairs_kept"] = "31";
        if (what == "misspelt") json["descripton"] = "x";
        if (what == "bad role") json["prompts"][1]["messages"][0]["role"] = "narrator";
        if (what == "bad positions") json["settings"]["steering"]["positions"] = "everywhere";
        if (what == "bad trait") json["traits"][0].erase("definition");
        if (what == "convention") json["layer_convention"] = "direction.N = block N";
        if (what == "dangling") json["runs"][0]["vector"] = "vectors/nope.safetensors";
        if (what == "overflow") json["settings"]["steering"]["coefficient"] = 12345.5;
        if (what == "cold") json["settings"]["extraction"]["temperature"] = -1;
        if (what == "top p") json["settings"]["extraction"]["top_p"] = 2;
        if (what == "far layer") json["settings"]["steering"]["layer"] = 1000000;
        if (what == "auroc") json["runs"][0]["layers"][1]["auroc"] = 1.5;
        nlohmann::json& more = json["settings"]["steering"]["more_vectors"];
        if (what == "five vectors") more.insert(more.end(), {more[0], more[1]});
        if (what == "dangling more") more[0]["vector"] = "vectors/nope.safetensors";
        if (what == "bad operation") more[1]["operation"] = "clamp";
        damaged = json.dump(2);
        if (what == "overflow") damaged.replace(damaged.find("12345.5"), 7, "1e400");
    }
    write_text(json_path, damaged);
    expect_file_error([&] { persona::read_project(folder.string()); }, "project.json", problem.toStdString());
}

void TestProject::missingAndMisshapenVectorsAreNamed() {
    persona::Project project = sample_project();
    const fs::path folder = root() / "vectors.persona";
    persona::write_project(folder.string(), project);
    const std::string key = project.runs[0].vector;

    // The file of a listed vector is gone.
    fs::rename(folder / key, root() / "moved.safetensors");
    expect_file_error([&] { persona::read_project(folder.string()); }, key, "missing");
    // Another shape than project.json records (a vector for another model put in its place).
    persona::write_vector_file((folder / key).string(), random_vector("evil", 4, 16, 2));
    expect_file_error([&] { persona::read_project(folder.string()); }, key, "shape [4, 16] differs from the [4, 8]");
    // Not a safetensors file at all.
    write_text(folder / key, "not a tensor");
    expect_file_error([&] { persona::read_project(folder.string()); }, key, "");
    // No project.json, or no folder.
    fs::create_directory(root() / "empty.persona");
    expect_file_error([&] { persona::read_project((root() / "empty.persona").string()); }, "project.json",
                      "holds no project.json");
    expect_file_error([&] { persona::read_project((root() / "absent.persona").string()); }, "absent.persona",
                      "no such project folder");
}

void TestProject::vectorPathsStayInsideTheProject() {
    persona::Project project = sample_project();
    const fs::path folder = root() / "escape.persona";
    persona::write_project(folder.string(), project);
    nlohmann::json json = nlohmann::json::parse(read_text(folder / "project.json"));
    json["vectors"][0]["file"] = "vectors/../../../etc/passwd.safetensors";
    write_text(folder / "project.json", json.dump(2));
    expect_file_error([&] { persona::read_project(folder.string()); }, "project.json", "inside the project folder");

    persona::Project bad = sample_project();
    bad.vectors["../outside.safetensors"] = bad.vectors.begin()->second;
    expect_file_error([&] { persona::write_project((root() / "bad.persona").string(), bad); }, "bad.persona",
                      "inside the project folder");
    QVERIFY(!fs::exists(root() / "bad.persona"));
    QVERIFY(!fs::exists(root() / "outside.safetensors"));

    // A vector file that is a link to a file outside the folder is refused, and nothing of the
    // outside file shows in the message.
    persona::Project linked = sample_project();
    const fs::path linkedFolder = root() / "linked.persona";
    persona::write_project(linkedFolder.string(), linked);
    write_text(root() / "secret.txt", "SECRET-CONTENT of a file outside the project");
    const fs::path vectorFile = linkedFolder / linked.runs[0].vector;
    fs::remove(vectorFile);
    fs::create_symlink(root() / "secret.txt", vectorFile);
    expect_file_error([&] { persona::read_project(linkedFolder.string()); }, linked.runs[0].vector, "outside the project folder");
    try {
        persona::read_project(linkedFolder.string());
    } catch (const persona::FileError& e) {
        QVERIFY2(std::string(e.what()).find("SECRET") == std::string::npos, e.what());
    }
    // So is a project.json that links out.
    fs::remove(linkedFolder / "project.json");
    fs::create_symlink(root() / "secret.txt", linkedFolder / "project.json");
    expect_file_error([&] { persona::read_project(linkedFolder.string()); }, "project.json", "outside the project folder");
}

// A save killed mid-way leaves its staging folder; the next save of the project removes those of
// processes that are gone, and leaves a live process's alone.
void TestProject::abandonedSaveFoldersAreRemovedOnTheNextSave() {
    persona::Project project = sample_project();
    const fs::path folder = root() / "stale.persona";
    const fs::path dead = root() / ".stale.persona.saving-999999-0";
    const fs::path live = root() / (".stale.persona.saving-" + std::to_string(::getppid()) + "-0");
    QVERIFY(::kill(999999, 0) != 0);
    fs::create_directory(dead);
    write_text(dead / "project.json", "{}");
    fs::create_directory(live);
    persona::write_project(folder.string(), project);
    QVERIFY(!fs::exists(dead));
    QVERIFY(fs::exists(live));
    fs::remove_all(live);
    QVERIFY(persona::read_project(folder.string()) == project);
}

void TestProject::migratesSchemaVersion1() {
    const fs::path v1 = fs::path(PERSONA_TEST_DATA_DIR) / "project_v1.persona";
    QVERIFY(read_text(v1 / "project.json").find("\"schema_version\": 1") != std::string::npos);
    persona::Project project = persona::read_project(v1.string());
    QCOMPARE(project.name, std::string("cheerful (schema version 1)"));
    QCOMPARE(project.prompts.size(), std::size_t(2));
    QCOMPARE(project.prompts[0].messages.size(), std::size_t(2));
    QCOMPARE(project.prompts[0].messages[0].role, std::string("system"));
    QCOMPARE(project.prompts[0].system(), std::string("You are a helpful assistant."));
    QCOMPARE(project.prompts[0].user(), std::string("How should I treat a stray dog?"));
    // An empty v1 system prompt means none, not an empty system message.
    QCOMPARE(project.prompts[1].messages.size(), std::size_t(1));
    QCOMPARE(project.prompts[1].messages[0].role, std::string("user"));
    QCOMPARE(project.settings.steering.coefficient, 2.5);
    QCOMPARE(project.settings.steering.layer, 1);
    // Version 3's Steering setup: the first prompt, sampled as the panel then did.
    QCOMPARE(project.settings.steering.system_prompt, std::string("You are a helpful assistant."));
    QCOMPARE(project.settings.steering.prompt, std::string("How should I treat a stray dog?"));
    QVERIFY(project.settings.steering.sample);
    QCOMPARE(project.settings.steering.temperature, 0.7);
    QCOMPARE(project.vectors.size(), std::size_t(1));
    const auto& vector = project.vectors.begin()->second;
    QCOMPARE(vector.layer_count, 3);
    QCOMPARE(vector.values[0], -5.5f / 4);
    QVERIFY(std::isinf(project.runs[0].diagnostics[1].effect_size));
    QCOMPARE(project.created, std::string("2025-01-10T09:00:00Z"));

    // Saving writes the newest version, which reads back the same.
    const fs::path copy = root() / "migrated.persona";
    persona::write_project(copy.string(), project);
    const std::string text = read_text(copy / "project.json");
    QVERIFY(text.find("\"schema_version\": 4") != std::string::npos);
    QVERIFY(text.find("\"alpha\"") == std::string::npos);
    QVERIFY(persona::read_project(copy.string()) == project);
}

void TestProject::failedSaveLeavesTheOldProjectIntact() {
    persona::Project project = sample_project();
    const fs::path folder = root() / "atomic.persona";
    persona::write_project(folder.string(), project);
    write_text(folder / "NOTES.md", "kept\n");
    const std::string old_json = read_text(folder / "project.json");
    const persona::Project old = persona::read_project(folder.string());

    persona::Project changed = project;
    changed.name = "changed";
    changed.traits.pop_back();
    changed.vectors.begin()->second.values[5] += 1.0f;
    changed.vectors["vectors/extra.safetensors"] = random_vector("extra", 4, 8, 9);

    // Fail at every stage a save goes through, one save at a time.
    std::vector<std::string> stages;
    persona::detail::project_save_fault_hook = [&](const std::string& stage) { stages.push_back(stage); };
    persona::Project probe = changed;
    persona::write_project((root() / "probe.persona").string(), probe);
    QVERIFY(stages.size() >= 5);  // foreign files, 3 vectors, project.json, before replacing
    for (const std::string& failing : stages) {
        persona::detail::project_save_fault_hook = [&](const std::string& stage) {
            if (stage == failing) throw persona::FileError("injected", "failure at " + stage);
        };
        persona::Project attempt = changed;
        bool threw = false;
        try {
            persona::write_project(folder.string(), attempt);
        } catch (const persona::FileError&) {
            threw = true;
        }
        QVERIFY2(threw, failing.c_str());
        QCOMPARE(read_text(folder / "project.json"), old_json);
        QCOMPARE(read_text(folder / "NOTES.md"), std::string("kept\n"));
        QVERIFY2(persona::read_project(folder.string()) == old, failing.c_str());
        QVERIFY2(leftovers(root()).empty(), failing.c_str());
    }
    persona::detail::project_save_fault_hook = nullptr;

    // A real failure: a vector whose values do not fill its shape is refused before anything is written.
    persona::Project broken = changed;
    broken.vectors.begin()->second.values.pop_back();
    expect_file_error([&] { persona::write_project(folder.string(), broken); }, "atomic.persona", "cannot save");
    QCOMPARE(read_text(folder / "project.json"), old_json);

    // And the save that is allowed to finish replaces everything.
    persona::write_project(folder.string(), changed);
    QVERIFY(persona::read_project(folder.string()) == changed);
    QVERIFY(leftovers(root()).empty());
}

void TestProject::pythonReadsTheVectorsWithoutOurCode() {
    const QString python = qEnvironmentVariable("PERSONA_PYTHON", "python3");
    QProcess probe;
    probe.start(python, {"-c", "import safetensors, numpy"});
    if (!probe.waitForFinished(60000) || probe.exitStatus() != QProcess::NormalExit || probe.exitCode() != 0)
        QSKIP("no Python with safetensors and numpy (set PERSONA_PYTHON to one, e.g. a venv's python)");

    persona::Project project = sample_project();
    const fs::path folder = root() / "python.persona";
    persona::write_project(folder.string(), project);
    const std::string key = project.runs[0].vector;
    const auto& vector = project.vectors.at(key);
    QProcess reader;
    reader.start(python, {"-c",
                          "import sys, json\n"
                          "from safetensors import safe_open\n"
                          "with safe_open(sys.argv[1], framework='numpy') as f:\n"
                          "    v = f.get_tensor('vector')\n"
                          "    meta = f.metadata()\n"
                          "print(json.dumps({'shape': list(v.shape), 'dtype': str(v.dtype), 'hex': v.tobytes().hex(),\n"
                          "                  'trait': meta['trait'], 'layers': meta['layer_convention']}))\n",
                          QString::fromStdString((folder / key).string())});
    QVERIFY(reader.waitForFinished(60000));
    QVERIFY2(reader.exitCode() == 0, reader.readAllStandardError().constData());
    const auto out = nlohmann::json::parse(reader.readAllStandardOutput().toStdString());
    QCOMPARE(out["shape"], nlohmann::json({4, 8}));
    QCOMPARE(out["dtype"].get<std::string>(), std::string("float32"));
    QCOMPARE(out["trait"].get<std::string>(), std::string("evil"));
    QCOMPARE(out["layers"].get<std::string>(), std::string(persona::kVectorLayerConvention));
    const QByteArray ours(reinterpret_cast<const char*>(vector.values.data()), int(vector.values.size() * sizeof(float)));
    QCOMPARE(QString::fromStdString(out["hex"].get<std::string>()), QString(ours.toHex()));
}

void TestProject::sha256OfAFile() {
    const fs::path file = root() / "abc.txt";
    write_text(file, "abc");
    QCOMPARE(persona::file_sha256(file.string()),
             std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    expect_file_error([&] { persona::file_sha256((root() / "none").string()); }, "none", "cannot open");
    const std::string stamp = persona::utc_timestamp();
    QCOMPARE(stamp.size(), std::size_t(20));
    QCOMPARE(stamp.back(), 'Z');
}

void TestProject::exampleProjectsFitTheDefaultModel() {
    const QString model = persona_test::defaultModelPath();
    const auto facts = persona::inspect_model(model.toStdString());
    const std::string defaultModelFingerprint = persona::model_fingerprint(model.toStdString());
    const fs::path examples = fs::path(PERSONA_SOURCE_DIR) / "projects";
    int found = 0;
    for (const auto& entry : fs::directory_iterator(examples)) {
        if (entry.path().extension() != persona::kProjectExtension) continue;
        ++found;
        const std::string name = entry.path().filename().string();
        const persona::Project project = persona::read_project(entry.path().string());
        QVERIFY2(!project.description.empty(), name.c_str());
        QVERIFY2(project.traits.size() >= 2, name.c_str());
        QVERIFY2(!project.prompts.empty(), name.c_str());
        QVERIFY2(!project.vectors.empty(), name.c_str());
        for (const auto& trait : project.traits) {
            QVERIFY2(!persona::has_errors(persona::validate(trait)), (name + ": " + trait.name).c_str());
            const persona::RunResult* run = project.latest_run(trait.name);
            QVERIFY2(run, (name + ": no run for " + trait.name).c_str());
            QVERIFY2(run->model.file == persona::kDefaultModelFile, (name + ": " + run->model.file).c_str());
            QCOMPARE(run->model.file_bytes, facts.file_bytes);
            QCOMPARE(run->model.sha256, defaultModelFingerprint);  // made with the very model setup fetches
            QCOMPARE(int(run->diagnostics.size()), facts.layers + 1);
            QVERIFY(run->suggested_layer >= 1 && run->suggested_layer <= facts.layers);
        }
        for (const auto& [key, vector] : project.vectors) {
            QVERIFY2(vector.layer_count == facts.layers + 1 && vector.hidden_size == facts.hidden_size,
                     (name + ": " + key + " does not fit " + facts.name).c_str());
            double norm = 0;
            for (float x : vector.values) norm += double(x) * x;
            QVERIFY2(norm > 0 && std::isfinite(norm), (name + ": " + key).c_str());
        }
        const auto& steering = project.settings.steering;
        QVERIFY2(project.vectors.count(steering.vector), (name + ": steering vector " + steering.vector).c_str());
        // The preset a judged sweep recommended (make-examples.sh): a layer of this model, a push.
        QVERIFY2(steering.layer >= 1 && steering.layer <= facts.layers && steering.coefficient != 0, name.c_str());
        // Results kept beside the project: every one read, and the preset is a cell the kept sweep measured.
        QVERIFY2(project.skipped_files.empty(), (name + ": " + (project.skipped_files.empty() ? "" : project.skipped_files[0])).c_str());
        QCOMPARE(project.sweeps.size(), std::size_t(1));
        const persona::SweepResult& sweep = project.sweeps[0].second;
        QCOMPARE("vectors/" + sweep.trait + ".response_avg.safetensors", steering.vector);
        QVERIFY2(std::any_of(sweep.cells.begin(), sweep.cells.end(), [&](const persona::SweepCell& cell) {
                     return cell.layer == steering.layer && std::abs(cell.coefficient - steering.coefficient) < 1e-9;
                 }), name.c_str());
        for (const auto& [key, study] : project.monitoring) QVERIFY2(study.correlation && study.points.size() >= 30, key.c_str());
    }
    QVERIFY2(found >= 2, "projects/ holds the example projects");
}

QTEST_GUILESS_MAIN(TestProject)
#include "test_project.moc"
