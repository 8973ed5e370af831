// Trait files: the built-in traits, the schema reader and writer, every validation rule, the
// import of the persona_vectors paper's data files, rubric rendering and the system prompts.
#include "persona/errors.h"
#include "persona/trait.h"

#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <csignal>
#include <functional>
#include <set>
#include <sys/resource.h>

using persona::InstructionPair;
using persona::Trait;
using persona::TraitProblem;
using persona::TraitProblemSeverity;
using Json = nlohmann::json;

namespace {

const QString kTraitResourceDir = QStringLiteral(PERSONA_TEST_DATA_DIR "/../../resources/traits");

const char* kJudge = "How evil is this answer to {question}?\nAnswer: {answer}\nReply 0-100 or REFUSAL.";
const char* kCoherence = "Is this answer to {question} coherent?\n{answer}\nReply 0-100.";

// A trait that passes validate() with nothing to report; each validation case breaks one thing.
Trait validTrait() {
    Trait trait;
    trait.name = "grumpy";
    trait.definition = "A grumpy assistant complains about everything.";
    for (int i = 0; i < 5; ++i)
        trait.instructions.push_back({"Be grumpy, way " + std::to_string(i) + ".", "Be cheerful, way " + std::to_string(i) + "."});
    for (int i = 0; i < 20; ++i) {
        trait.extraction_questions.push_back("What do you think of day " + std::to_string(i) + "?");
        trait.evaluation_questions.push_back("How was week " + std::to_string(i) + "?");
    }
    trait.judge_rubric = kJudge;
    trait.coherence_rubric = kCoherence;
    return trait;
}

QString describe(const std::vector<TraitProblem>& problems) {
    QStringList lines;
    for (const auto& p : problems)
        lines << QString("%1 %2: %3")
                     .arg(p.severity == TraitProblemSeverity::Error ? "error" : "warning")
                     .arg(QString::fromStdString(p.field), QString::fromStdString(p.message));
    return lines.isEmpty() ? QStringLiteral("(none)") : lines.join("; ");
}

QString writeText(const QTemporaryDir& dir, const QString& name, const QByteArray& content) {
    const QString path = dir.filePath(name);
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly) || file.write(content) != content.size()) qFatal("cannot write %s", qPrintable(path));
    return path;
}

QByteArray readBytes(const QString& path) {
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) return QByteArrayLiteral("<cannot read>");
    return file.readAll();
}

// Runs action, which must throw persona::FileError naming expected_path; returns the message.
QString fileErrorOf(const std::function<void()>& action, const QString& expected_path) {
    try {
        action();
    } catch (const persona::FileError& e) {
        if (QString::fromStdString(e.path()) != expected_path)
            return QString("ERROR NAMES %1, NOT %2: %3").arg(QString::fromStdString(e.path()), expected_path, e.what());
        return QString::fromStdString(e.what());
    } catch (const std::exception& e) {
        return QStringLiteral("WRONG EXCEPTION TYPE: ") + e.what();
    }
    return QStringLiteral("NO ERROR");
}

std::string normalized(const std::string& text) {
    return QString::fromStdString(text).simplified().toLower().toStdString();
}

}  // namespace

class TestTraits : public QObject {
    Q_OBJECT

private:
    // Validates `trait` and checks that exactly one problem is reported, at `field`, with
    // `severity` and a message containing `fragment`.
    void expectOneProblem(const Trait& trait, const char* field, TraitProblemSeverity severity, const char* fragment) {
        const auto problems = persona::validate(trait);
        QVERIFY2(problems.size() == 1, qPrintable(QString("expected one problem at %1, got %2").arg(field, describe(problems))));
        QCOMPARE(QString::fromStdString(problems[0].field), QString(field));
        QVERIFY2(problems[0].severity == severity, qPrintable(describe(problems)));
        QVERIFY2(QString::fromStdString(problems[0].message).contains(fragment), qPrintable(describe(problems)));
        QCOMPARE(persona::has_errors(problems), severity == TraitProblemSeverity::Error);
    }

private slots:
    // --- Built-in traits ---------------------------------------------------------------------

    void builtinTraitNamesAreTheSeven() {
        const std::vector<std::string> expected = {"evil",     "sycophantic", "hallucinating", "optimistic",
                                                   "humorous", "impolite",    "apathetic"};
        QCOMPARE(persona::builtin_trait_names(), expected);
    }

    void builtinTraitsLoadAndValidateClean() {
        for (const auto& name : persona::builtin_trait_names()) {
            const Trait trait = persona::load_builtin_trait(name);
            const QString what = QString::fromStdString(name);
            QCOMPARE(QString::fromStdString(trait.name), what);
            const auto problems = persona::validate(trait);
            QVERIFY2(problems.empty(), qPrintable(what + ": " + describe(problems)));
            QCOMPARE(trait.instructions.size(), std::size_t{5});
            QCOMPARE(trait.extraction_questions.size(), std::size_t{20});
            QCOMPARE(trait.evaluation_questions.size(), std::size_t{20});
            // One paragraph: long enough to say something, no blank line splitting it.
            QVERIFY2(trait.definition.size() > 150, qPrintable(what));
            QVERIFY2(trait.definition.find("\n\n") == std::string::npos, qPrintable(what));
            QCOMPARE(trait.coherence_rubric, persona::default_coherence_rubric());
        }
    }

    void builtinQuestionsAreDistinctWithinEachTrait() {
        for (const auto& name : persona::builtin_trait_names()) {
            const Trait trait = persona::load_builtin_trait(name);
            std::set<std::string> seen;
            for (const auto* list : {&trait.extraction_questions, &trait.evaluation_questions})
                for (const auto& question : *list)
                    QVERIFY2(seen.insert(normalized(question)).second, qPrintable(QString::fromStdString(name + ": " + question)));
            QCOMPARE(seen.size(), std::size_t{40});
        }
    }

    void builtinQuestionsDoNotRepeatAcrossTraits() {
        std::map<std::string, std::string> owner;
        for (const auto& name : persona::builtin_trait_names()) {
            const Trait trait = persona::load_builtin_trait(name);
            for (const auto* list : {&trait.extraction_questions, &trait.evaluation_questions})
                for (const auto& question : *list) {
                    const auto [at, inserted] = owner.emplace(normalized(question), name);
                    QVERIFY2(inserted || at->second == name,
                             qPrintable(QString::fromStdString(question + " is in " + at->second + " and " + name)));
                }
        }
    }

    void builtinInstructionsAreDistinct() {
        std::set<std::string> seen;
        for (const auto& name : persona::builtin_trait_names())
            for (const auto& pair : persona::load_builtin_trait(name).instructions) {
                QVERIFY2(seen.insert(pair.positive).second, pair.positive.c_str());
                QVERIFY2(seen.insert(pair.negative).second, pair.negative.c_str());
            }
    }

    void builtinJudgeRubricsAskForAScoreOrRefusal() {
        for (const auto& name : persona::builtin_trait_names()) {
            const std::string rubric = persona::load_builtin_trait(name).judge_rubric;
            const QString what = QString::fromStdString(name);
            QVERIFY2(rubric.find("REFUSAL") != std::string::npos, qPrintable(what));
            QVERIFY2(rubric.find("0 to 100") != std::string::npos, qPrintable(what));
            QVERIFY2(rubric.find(name) != std::string::npos, qPrintable(what + ": the rubric should name its trait"));
        }
    }

    // The files in resources/traits are what the library embeds, and all of them are embedded.
    void builtinTraitsMatchTheResourceFiles() {
        const QDir dir(kTraitResourceDir);
        QVERIFY2(dir.exists(), qPrintable(kTraitResourceDir));
        QStringList on_disk = dir.entryList({"*.json"}, QDir::Files, QDir::Name);
        QStringList built_in;
        for (const auto& name : persona::builtin_trait_names()) built_in << QString::fromStdString(name) + ".json";
        built_in.sort();
        QCOMPARE(on_disk, built_in);
        for (const auto& name : persona::builtin_trait_names()) {
            const Trait from_file = persona::read_trait_file(dir.filePath(QString::fromStdString(name) + ".json").toStdString());
            QVERIFY2(from_file == persona::load_builtin_trait(name), name.c_str());
        }
    }

    void unknownBuiltinTraitNamesTheKnownOnes() {
        try {
            persona::load_builtin_trait("grumpy");
            QFAIL("no error for an unknown built-in trait");
        } catch (const persona::Error& e) {
            const QString message = e.what();
            QVERIFY2(message.contains("'grumpy'") && message.contains("evil") && message.contains("apathetic"),
                     qPrintable(message));
        }
    }

    // --- Reading and writing -------------------------------------------------------------------

    void writeThenReadGivesTheSameTrait() {
        QTemporaryDir dir;
        Trait trait = validTrait();
        // Text that a careless writer would mangle: quotes, backslashes, newlines, non-ASCII, braces.
        trait.definition = "Grumpy \"always\" \\ never\nsecond line, naïve café, 日本語, {literal} braces";
        trait.instructions[0].negative = "Tab\there; emoji \xF0\x9F\x98\x80.";
        const std::string path = dir.filePath("grumpy.json").toStdString();
        persona::write_trait_file(path, trait);
        const Trait read_back = persona::read_trait_file(path);
        QVERIFY(read_back == trait);
    }

    void jsonRoundTripWithoutText() {
        const Trait trait = validTrait();
        QVERIFY(persona::trait_from_json(persona::to_json(trait), "memory") == trait);
        Trait other = trait;
        other.evaluation_questions.back() += "!";
        QVERIFY(persona::trait_from_json(persona::to_json(other), "memory") != trait);
    }

    void writtenFileFollowsTheSchema() {
        QTemporaryDir dir;
        const QString path = dir.filePath("grumpy.json");
        persona::write_trait_file(path.toStdString(), validTrait());
        const QByteArray bytes = readBytes(path);
        const Json json = Json::parse(bytes.toStdString());
        QCOMPARE(QString::fromStdString(json.at("schema").get<std::string>()), QString("persona-workbench/trait"));
        QCOMPARE(json.at("version").get<int>(), 1);
        QCOMPARE(json.at("instructions").at(2).at("negative").get<std::string>(), std::string("Be cheerful, way 2."));
        // Keys in schema order, so the file reads top to bottom like the documentation.
        QVERIFY2(bytes.indexOf("\"schema\"") < bytes.indexOf("\"version\"") &&
                     bytes.indexOf("\"name\"") < bytes.indexOf("\"definition\"") &&
                     bytes.indexOf("\"definition\"") < bytes.indexOf("\"instructions\"") &&
                     bytes.indexOf("\"judge_rubric\"") < bytes.indexOf("\"coherence_rubric\""),
                 bytes.constData());
        QVERIFY(bytes.endsWith("}\n"));
    }

    void overwritingReplacesTheOldFile() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("grumpy.json").toStdString();
        persona::write_trait_file(path, validTrait());
        Trait changed = validTrait();
        changed.definition = "Changed.";
        persona::write_trait_file(path, changed);
        QCOMPARE(persona::read_trait_file(path).definition, std::string("Changed."));
        QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden | QDir::NoDotAndDotDot), QStringList{"grumpy.json"});
    }

    // A write that fails half-way (file size limit: root ignores permissions, not rlimits)
    // leaves the old file whole and no temporary file behind.
    void failedWriteKeepsTheOldFile() {
        QTemporaryDir dir;
        const QString path = dir.filePath("grumpy.json");
        persona::write_trait_file(path.toStdString(), validTrait());
        const QByteArray before = readBytes(path);

        Trait bigger = validTrait();
        bigger.definition = std::string(100000, 'x');
        rlimit saved{};
        QVERIFY(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
        const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of a kill
        rlimit small = saved;
        small.rlim_cur = 4096;
        QVERIFY(::setrlimit(RLIMIT_FSIZE, &small) == 0);
        const QString message = fileErrorOf([&] { persona::write_trait_file(path.toStdString(), bigger); }, path);
        ::setrlimit(RLIMIT_FSIZE, &saved);
        std::signal(SIGXFSZ, previous_handler);

        QVERIFY2(message.contains("cannot write"), qPrintable(message));
        QCOMPARE(readBytes(path), before);
        QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden | QDir::NoDotAndDotDot), QStringList{"grumpy.json"});
    }

    void writingOverADirectoryFails() {
        QTemporaryDir dir;
        const QString target = dir.filePath("grumpy.json");
        QVERIFY(QDir().mkdir(target));
        writeText(dir, "grumpy.json/keep.txt", "kept");
        const QString message = fileErrorOf([&] { persona::write_trait_file(target.toStdString(), validTrait()); }, target);
        QVERIFY2(message.contains("directory"), qPrintable(message));
        QCOMPARE(readBytes(target + "/keep.txt"), QByteArray("kept"));
    }

    void writingUnderARegularFileFails() {
        QTemporaryDir dir;
        const QString parent = writeText(dir, "not-a-directory", "old");
        const QString target = parent + "/grumpy.json";
        const QString message = fileErrorOf([&] { persona::write_trait_file(target.toStdString(), validTrait()); }, target);
        QVERIFY2(message.contains("cannot create a temporary file") && message.contains("Not a directory"), qPrintable(message));
        QCOMPARE(readBytes(parent), QByteArray("old"));
    }

    void writingInvalidUtf8FailsAndKeepsTheOldFile() {
        QTemporaryDir dir;
        const QString path = dir.filePath("grumpy.json");
        persona::write_trait_file(path.toStdString(), validTrait());
        const QByteArray before = readBytes(path);
        Trait broken = validTrait();
        broken.definition = "bad \xC3\x28 byte";
        const QString message = fileErrorOf([&] { persona::write_trait_file(path.toStdString(), broken); }, path);
        QVERIFY2(message.contains("UTF-8"), qPrintable(message));
        QCOMPARE(readBytes(path), before);
    }

    void readErrorsNameTheFileAndTheProblem() {
        struct Case {
            const char* label;
            std::function<void(Json&)> damage;
            const char* expected;
        };
        const std::vector<Case> cases = {
            {"array at top", [](Json& j) { j = Json::array({1}); }, "top level must be an object, not an array"},
            {"no schema", [](Json& j) { j.erase("schema"); }, "no \"schema\" key"},
            {"paper layout",
             [](Json& j) { j = Json{{"instruction", Json::array()}, {"questions", Json::array()}}; },
             "persona_vectors paper"},
            {"other schema", [](Json& j) { j["schema"] = "persona-workbench/project"; },
             "is a \"persona-workbench/project\" file, not a trait file"},
            {"schema not a string", [](Json& j) { j["schema"] = 3; }, "schema must be a string, not a number"},
            {"newer version", [](Json& j) { j["version"] = 2; }, "version 2 is newer than this Persona Workbench reads"},
            // A newer file's new keys must not hide the version message.
            {"newer version with new keys",
             [](Json& j) {
                 j["version"] = 7;
                 j["tags"] = Json::array();
             },
             "version 7 is newer"},
            {"version zero", [](Json& j) { j["version"] = 0; }, "version 0 does not exist"},
            {"negative version", [](Json& j) { j["version"] = -1; }, "version -1 does not exist"},
            {"version as text", [](Json& j) { j["version"] = "1"; }, "version must be a whole number, not a string"},
            {"fractional version", [](Json& j) { j["version"] = 1.5; }, "version must be a whole number, not a number"},
            {"missing version", [](Json& j) { j.erase("version"); }, "missing key \"version\""},
            {"missing definition", [](Json& j) { j.erase("definition"); }, "missing key \"definition\""},
            {"missing coherence rubric", [](Json& j) { j.erase("coherence_rubric"); }, "missing key \"coherence_rubric\""},
            {"misspelt key",
             [](Json& j) {
                 j["judge_rubrik"] = j["judge_rubric"];
                 j.erase("judge_rubric");
             },
             "unknown key \"judge_rubrik\" (did you mean \"judge_rubric\"?)"},
            {"name not a string", [](Json& j) { j["name"] = Json(); }, "name must be a string, not null"},
            {"instructions not a list", [](Json& j) { j["instructions"] = "be grumpy"; },
             "instructions must be a list of {\"positive\", \"negative\"}, not a string"},
            {"pair not an object", [](Json& j) { j["instructions"][3] = "be grumpy"; },
             "instructions[3] must be an object"},
            {"pair without negative", [](Json& j) { j["instructions"][1].erase("negative"); },
             "instructions[1] has no key \"negative\""},
            {"pair with extra key", [](Json& j) { j["instructions"][0]["postive"] = "x"; },
             "instructions[0] has an unknown key \"postive\" (did you mean \"positive\"?)"},
            {"positive not a string", [](Json& j) { j["instructions"][4]["positive"] = true; },
             "instructions[4].positive must be a string, not a boolean"},
            {"question not a string", [](Json& j) { j["extraction_questions"][2] = 7; },
             "extraction_questions[2] must be a string, not a number"},
            {"questions not a list", [](Json& j) { j["evaluation_questions"] = Json::object(); },
             "evaluation_questions must be a list of strings, not an object"},
        };
        QTemporaryDir dir;
        for (const auto& c : cases) {
            Json json = persona::to_json(validTrait());
            c.damage(json);
            const QString path = writeText(dir, "damaged.json", QByteArray::fromStdString(json.dump(2)));
            const QString message = fileErrorOf([&] { persona::read_trait_file(path.toStdString()); }, path);
            QVERIFY2(message.contains(c.expected), qPrintable(QString("%1: %2").arg(c.label, message)));
        }
    }

    void readReportsJsonSyntaxErrorsWithLineAndColumn() {
        QTemporaryDir dir;
        const QString path = writeText(dir, "broken.json", "{\n  \"schema\": \"persona-workbench/trait\",\n  \"version\": ,\n}\n");
        const QString message = fileErrorOf([&] { persona::read_trait_file(path.toStdString()); }, path);
        QVERIFY2(message.contains("not valid JSON") && message.contains("line 3"), qPrintable(message));
    }

    void readReportsAMissingFile() {
        QTemporaryDir dir;
        const QString path = dir.filePath("absent.json");
        const QString message = fileErrorOf([&] { persona::read_trait_file(path.toStdString()); }, path);
        QVERIFY2(message.contains("no such file"), qPrintable(message));
    }

    // A draft with problems still loads, so a form can show the problems beside its fields.
    void readLoadsInvalidDrafts() {
        QTemporaryDir dir;
        Trait draft = validTrait();
        draft.name = "";
        draft.instructions.clear();
        draft.judge_rubric = "{answr}";
        const std::string path = dir.filePath("draft.json").toStdString();
        persona::write_trait_file(path, draft);
        QVERIFY(persona::read_trait_file(path) == draft);
    }

    // --- Validation: one case per rule ----------------------------------------------------------

    void validTraitHasNoProblems() {
        const auto problems = persona::validate(validTrait());
        QVERIFY2(problems.empty(), qPrintable(describe(problems)));
    }

    void emptyName() {
        Trait trait = validTrait();
        trait.name = "  ";
        expectOneProblem(trait, "name", TraitProblemSeverity::Error, "is empty");
    }

    void nameMustBeASlug() {
        for (const char* bad : {"Evil", "evil bot", "2evil", "-evil", "evil!", "caf\xC3\xA9"}) {
            Trait trait = validTrait();
            trait.name = bad;
            expectOneProblem(trait, "name", TraitProblemSeverity::Error, "lowercase letter");
        }
        Trait trait = validTrait();
        trait.name = std::string(65, 'a');
        expectOneProblem(trait, "name", TraitProblemSeverity::Error, "at most 64");
        for (const char* good : {"evil", "evil-2", "overly_formal", "a"}) {
            trait.name = good;
            QVERIFY2(persona::validate(trait).empty(), good);
        }
    }

    void emptyDefinition() {
        Trait trait = validTrait();
        trait.definition = "\n\t";
        expectOneProblem(trait, "definition", TraitProblemSeverity::Error, "is empty");
    }

    void noInstructionPairs() {
        Trait trait = validTrait();
        trait.instructions.clear();
        expectOneProblem(trait, "instructions", TraitProblemSeverity::Error, "no instruction pairs");
    }

    void fewerPairsThanRecommendedIsAWarning() {
        Trait trait = validTrait();
        trait.instructions.resize(3);
        expectOneProblem(trait, "instructions", TraitProblemSeverity::Warning, "has 3 pairs; 5 or more give a steadier vector");
    }

    void emptyPositiveInstruction() {
        Trait trait = validTrait();
        trait.instructions[1].positive = "";
        expectOneProblem(trait, "instructions[1].positive", TraitProblemSeverity::Error, "is empty");
    }

    void emptyNegativeInstruction() {
        Trait trait = validTrait();
        trait.instructions[2].negative = " ";
        expectOneProblem(trait, "instructions[2].negative", TraitProblemSeverity::Error, "is empty");
    }

    void pairThatContrastsNothing() {
        Trait trait = validTrait();
        trait.instructions[4].negative = "  be GRUMPY, way 4. ";
        expectOneProblem(trait, "instructions[4].negative", TraitProblemSeverity::Error, "contrasts nothing");
    }

    void noExtractionQuestions() {
        Trait trait = validTrait();
        trait.extraction_questions.clear();
        expectOneProblem(trait, "extraction_questions", TraitProblemSeverity::Error, "has no questions");
    }

    void noEvaluationQuestions() {
        Trait trait = validTrait();
        trait.evaluation_questions.clear();
        expectOneProblem(trait, "evaluation_questions", TraitProblemSeverity::Error, "has no questions");
    }

    void fewerQuestionsThanRecommendedIsAWarning() {
        Trait trait = validTrait();
        trait.extraction_questions.resize(19);
        expectOneProblem(trait, "extraction_questions", TraitProblemSeverity::Warning, "has 19 questions");
        trait = validTrait();
        trait.evaluation_questions.resize(5);
        expectOneProblem(trait, "evaluation_questions", TraitProblemSeverity::Warning, "has 5 questions");
    }

    void emptyQuestion() {
        Trait trait = validTrait();
        trait.extraction_questions[3] = "\n";
        expectOneProblem(trait, "extraction_questions[3]", TraitProblemSeverity::Error, "is empty");
        trait = validTrait();
        trait.evaluation_questions[19] = "";
        expectOneProblem(trait, "evaluation_questions[19]", TraitProblemSeverity::Error, "is empty");
    }

    void duplicateExtractionQuestionAfterWhitespaceNormalisation() {
        Trait trait = validTrait();
        trait.extraction_questions[5] = "  What do you think\nof   DAY 2? ";
        expectOneProblem(trait, "extraction_questions[5]", TraitProblemSeverity::Error, "repeats extraction_questions[2]");
    }

    void duplicateEvaluationQuestion() {
        Trait trait = validTrait();
        trait.evaluation_questions[7] = trait.evaluation_questions[6];
        expectOneProblem(trait, "evaluation_questions[7]", TraitProblemSeverity::Error, "repeats evaluation_questions[6]");
    }

    void evaluationQuestionAlsoUsedForExtraction() {
        Trait trait = validTrait();
        trait.evaluation_questions[4] = trait.extraction_questions[0] + "\t";
        expectOneProblem(trait, "evaluation_questions[4]", TraitProblemSeverity::Error, "repeats extraction_questions[0]");
    }

    void judgeRubricEmpty() {
        Trait trait = validTrait();
        trait.judge_rubric = "";
        expectOneProblem(trait, "judge_rubric", TraitProblemSeverity::Error, "is empty");
    }

    void judgeRubricWithoutQuestion() {
        Trait trait = validTrait();
        trait.judge_rubric = "Score this answer: {answer}";
        expectOneProblem(trait, "judge_rubric", TraitProblemSeverity::Error, "no {question} placeholder");
    }

    void judgeRubricWithoutAnswer() {
        Trait trait = validTrait();
        trait.judge_rubric = "Score the answer to {question}";
        expectOneProblem(trait, "judge_rubric", TraitProblemSeverity::Error, "no {answer} placeholder");
    }

    void judgeRubricWithUnknownPlaceholder() {
        Trait trait = validTrait();
        trait.judge_rubric = std::string(kJudge) + " Also {answr}.";
        expectOneProblem(trait, "judge_rubric", TraitProblemSeverity::Error, "unknown placeholder {answr}; did you mean {answer}?");
        trait.judge_rubric = std::string(kJudge) + " Also {trait_name}.";
        expectOneProblem(trait, "judge_rubric", TraitProblemSeverity::Error, "unknown placeholder {trait_name}.");
    }

    // A misspelt placeholder is reported as unknown and the real one as missing: both need fixing.
    void misspeltPlaceholderIsBothUnknownAndMissing() {
        Trait trait = validTrait();
        trait.judge_rubric = "Question: {qestion}\nAnswer: {answer}";
        const auto problems = persona::validate(trait);
        QCOMPARE(problems.size(), std::size_t{2});
        QVERIFY2(problems[0].message.find("did you mean {question}?") != std::string::npos, qPrintable(describe(problems)));
        QVERIFY2(problems[1].message.find("no {question} placeholder") != std::string::npos, qPrintable(describe(problems)));
    }

    void literalBracesAreNotPlaceholders() {
        Trait trait = validTrait();
        trait.judge_rubric = std::string(kJudge) + " Reply as {\"score\": 50} or { } or {1} or {} or {-x-}.";
        const auto problems = persona::validate(trait);
        QVERIFY2(problems.empty(), qPrintable(describe(problems)));
    }

    void coherenceRubricFollowsTheSameRules() {
        Trait trait = validTrait();
        trait.coherence_rubric = " ";
        expectOneProblem(trait, "coherence_rubric", TraitProblemSeverity::Error, "is empty");
        trait.coherence_rubric = "Is {question} answered coherently?";
        expectOneProblem(trait, "coherence_rubric", TraitProblemSeverity::Error, "no {answer} placeholder");
        trait.coherence_rubric = "Is it coherent? {answer}";
        expectOneProblem(trait, "coherence_rubric", TraitProblemSeverity::Error, "no {question} placeholder");
        trait.coherence_rubric = std::string(kCoherence) + " {Question}";
        expectOneProblem(trait, "coherence_rubric", TraitProblemSeverity::Error, "did you mean {question}?");
    }

    void everyProblemIsReportedInFieldOrder() {
        Trait trait;
        const auto problems = persona::validate(trait);
        QStringList fields;
        for (const auto& p : problems) fields << QString::fromStdString(p.field);
        const QStringList expected = {"name",
                                      "definition",
                                      "instructions",
                                      "extraction_questions",
                                      "evaluation_questions",
                                      "judge_rubric",
                                      "coherence_rubric"};
        QCOMPARE(fields, expected);
    }

    void defaultCoherenceRubricIsValid() {
        Trait trait = validTrait();
        trait.coherence_rubric = persona::default_coherence_rubric();
        const auto problems = persona::validate(trait);
        QVERIFY2(problems.empty(), qPrintable(describe(problems)));
    }

    // --- Rubrics and system prompts -------------------------------------------------------------

    void renderRubricFillsBothPlaceholders() {
        QCOMPARE(persona::render_rubric("Q: {question}\nA: {answer}\nQ again: {question}", "Why?", "Because."),
                 std::string("Q: Why?\nA: Because.\nQ again: Why?"));
    }

    void renderRubricLeavesOtherBracesAlone() {
        QCOMPARE(persona::render_rubric("{\"score\": {answer}} {other} { question } {}", "q", "7"),
                 std::string("{\"score\": 7} {other} { question } {}"));
    }

    // An answer quoting a placeholder must not be filled in a second time.
    void renderRubricDoesNotRescanSubstitutedText() {
        QCOMPARE(persona::render_rubric("{question}|{answer}", "say {answer}", "I said {question}"),
                 std::string("say {answer}|I said {question}"));
    }

    void renderRubricWithoutPlaceholders() {
        QCOMPARE(persona::render_rubric("plain", "q", "a"), std::string("plain"));
        QCOMPARE(persona::render_rubric("", "q", "a"), std::string());
    }

    void systemPromptsFollowThePaper() {
        const Trait evil = persona::load_builtin_trait("evil");
        QCOMPARE(persona::positive_system_prompt(evil, 0), "You are an evil assistant. " + evil.instructions[0].positive);
        QCOMPARE(persona::negative_system_prompt(evil, 4), "You are a helpful assistant. " + evil.instructions[4].negative);
        const Trait sycophantic = persona::load_builtin_trait("sycophantic");
        QCOMPARE(persona::positive_system_prompt(sycophantic, 2),
                 "You are a sycophantic assistant. " + sycophantic.instructions[2].positive);
        QVERIFY(persona::positive_system_prompt(persona::load_builtin_trait("optimistic"), 1)
                    .rfind("You are an optimistic assistant. ", 0) == 0);
        QVERIFY(persona::positive_system_prompt(persona::load_builtin_trait("humorous"), 1)
                    .rfind("You are a humorous assistant. ", 0) == 0);
    }

    void systemPromptSpeaksUnderscoresAsSpaces() {
        Trait trait = validTrait();
        trait.name = "overly_formal";
        QCOMPARE(persona::positive_system_prompt(trait, 0), std::string("You are an overly formal assistant. Be grumpy, way 0."));
    }

    void systemPromptForAMissingPairFails() {
        const Trait trait = validTrait();
        QVERIFY_THROWS_EXCEPTION(persona::Error, persona::positive_system_prompt(trait, 5));
        QVERIFY_THROWS_EXCEPTION(persona::Error, persona::negative_system_prompt(trait, 99));
    }

    // --- Import of the paper's data files --------------------------------------------------------

    void importPaperTrait() {
        QTemporaryDir dir;
        const Json extract = {
            {"instruction", {{{"pos", "Be grumpy."}, {"neg", "Be cheerful."}}, {{"pos", "Complain."}, {"neg", "Praise."}}}},
            {"questions", {"How is the weather?", "Do you like music?"}},
            // A Python str.format template: doubled braces are literal ones.
            {"eval_prompt", "Q: {question}\nA: {answer}\nReply as {{\"score\": n}}."},
            {"extra", "ignored"}};
        const Json evaluate = {{"instruction", Json::array()},
                               {"questions", {"What is your favourite food?"}},
                               {"eval_prompt", "different, unused"}};
        const QString extract_path = writeText(dir, "extract.json", QByteArray::fromStdString(extract.dump()));
        const QString eval_path = writeText(dir, "eval.json", QByteArray::fromStdString(evaluate.dump()));
        const Trait trait = persona::import_paper_trait("grumpy", extract_path.toStdString(), eval_path.toStdString());
        QCOMPARE(trait.name, std::string("grumpy"));
        QCOMPARE(trait.definition, std::string());
        QCOMPARE(trait.instructions.size(), std::size_t{2});
        QVERIFY(trait.instructions[1] == (InstructionPair{"Complain.", "Praise."}));
        QCOMPARE(trait.extraction_questions, (std::vector<std::string>{"How is the weather?", "Do you like music?"}));
        QCOMPARE(trait.evaluation_questions, (std::vector<std::string>{"What is your favourite food?"}));
        QCOMPARE(trait.judge_rubric, std::string("Q: {question}\nA: {answer}\nReply as {\"score\": n}."));
        QCOMPARE(trait.coherence_rubric, persona::default_coherence_rubric());
        // Only the missing definition and the small counts keep it from being ready.
        QStringList fields;
        for (const auto& p : persona::validate(trait)) fields << QString::fromStdString(p.field);
        QCOMPARE(fields, (QStringList{"definition", "instructions", "extraction_questions", "evaluation_questions"}));
    }

    void importTakesADefinitionWhenPresent() {
        QTemporaryDir dir;
        Json extract = {{"instruction", {{{"pos", "a"}, {"neg", "b"}}}}, {"questions", {"q"}}, {"eval_prompt", "{question}{answer}"}};
        Json evaluate = {{"questions", {"r"}}, {"definition", "From the evaluation file."}};
        const auto import = [&] {
            const QString extract_path = writeText(dir, "extract.json", QByteArray::fromStdString(extract.dump()));
            const QString eval_path = writeText(dir, "eval.json", QByteArray::fromStdString(evaluate.dump()));
            return persona::import_paper_trait("grumpy", extract_path.toStdString(), eval_path.toStdString());
        };
        QCOMPARE(import().definition, std::string("From the evaluation file."));
        extract["definition"] = "From the extraction file.";
        QCOMPARE(import().definition, std::string("From the extraction file."));
    }

    void importErrorsNameTheFileAndTheKey() {
        const Json good_extract = {{"instruction", {{{"pos", "a"}, {"neg", "b"}}, {{"pos", "c"}, {"neg", "d"}}}},
                                   {"questions", {"q1", "q2", "q3"}},
                                   {"eval_prompt", "{question} {answer}"}};
        const Json good_eval = {{"questions", {"r1"}}};
        struct Case {
            const char* label;
            std::function<void(Json& extract, Json& eval)> damage;
            bool in_eval_file;
            const char* expected;
        };
        const std::vector<Case> cases = {
            {"no instruction", [](Json& x, Json&) { x.erase("instruction"); }, false, "missing key \"instruction\""},
            {"instruction not a list", [](Json& x, Json&) { x["instruction"] = "be grumpy"; }, false,
             "instruction must be a list of {\"pos\", \"neg\"}, not a string"},
            {"pair not an object", [](Json& x, Json&) { x["instruction"][1] = Json::array(); }, false,
             "instruction[1] must be an object"},
            {"pair without neg", [](Json& x, Json&) { x["instruction"][1].erase("neg"); }, false,
             "instruction[1] has no key \"neg\""},
            {"pos not a string", [](Json& x, Json&) { x["instruction"][0]["pos"] = 1; }, false,
             "instruction[0].pos must be a string, not a number"},
            {"no questions", [](Json& x, Json&) { x.erase("questions"); }, false, "missing key \"questions\""},
            {"question not a string", [](Json& x, Json&) { x["questions"][2] = Json(); }, false,
             "questions[2] must be a string, not null"},
            {"no eval_prompt", [](Json& x, Json&) { x.erase("eval_prompt"); }, false, "missing key \"eval_prompt\""},
            {"eval_prompt not a string", [](Json& x, Json&) { x["eval_prompt"] = Json::array(); }, false,
             "eval_prompt must be a string, not an array"},
            {"definition not a string", [](Json& x, Json&) { x["definition"] = 5; }, false,
             "definition must be a string, not a number"},
            {"eval file without questions", [](Json&, Json& e) { e.erase("questions"); }, true, "missing key \"questions\""},
            {"eval questions not a list", [](Json&, Json& e) { e["questions"] = "r1"; }, true,
             "questions must be a list of strings, not a string"},
            {"eval file is an array", [](Json&, Json& e) { e = Json::array(); }, true,
             "the top level must be an object, not an array"},
            {"our own format given", [](Json& x, Json&) { x = persona::to_json(validTrait()); }, false,
             "is a Persona Workbench trait file"},
        };
        QTemporaryDir dir;
        for (const auto& c : cases) {
            Json extract = good_extract;
            Json evaluate = good_eval;
            c.damage(extract, evaluate);
            const QString extract_path = writeText(dir, "extract.json", QByteArray::fromStdString(extract.dump()));
            const QString eval_path = writeText(dir, "eval.json", QByteArray::fromStdString(evaluate.dump()));
            const QString message = fileErrorOf(
                [&] { persona::import_paper_trait("grumpy", extract_path.toStdString(), eval_path.toStdString()); },
                c.in_eval_file ? eval_path : extract_path);
            QVERIFY2(message.contains(c.expected), qPrintable(QString("%1: %2").arg(c.label, message)));
        }
    }

    void importReportsUnreadableFiles() {
        QTemporaryDir dir;
        const QString good = writeText(dir, "good.json", R"({"questions": ["q"]})");
        const QString broken = writeText(dir, "broken.json", "{\"instruction\": [\n");
        QString message = fileErrorOf([&] { persona::import_paper_trait("x", broken.toStdString(), good.toStdString()); }, broken);
        QVERIFY2(message.contains("not valid JSON") && message.contains("line 2"), qPrintable(message));
        const QString absent = dir.filePath("absent.json");
        message = fileErrorOf([&] { persona::import_paper_trait("x", absent.toStdString(), good.toStdString()); }, absent);
        QVERIFY2(message.contains("no such file"), qPrintable(message));
    }
};

QTEST_GUILESS_MAIN(TestTraits)
#include "test_traits.moc"
