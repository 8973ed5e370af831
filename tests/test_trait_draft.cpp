// Drafting a trait with a language model: the lenient parsers on replies of the shapes models
// write, a draft written by an OpenAI-compatible server in this process, and the CLI end to end
// with the real default model (weak: what matters is that its problems are reported).
#include "openai_test_server.h"  // before Qt: see the header

#include "persona/errors.h"
#include "persona/trait.h"
#include "persona/trait_draft.h"
#include "cli_runner.h"
#include "test_support.h"

#include <QProcess>
#include <QTemporaryDir>

#include <regex>

using persona::InstructionPair;
using persona_test::OpenAiTestServer;
using persona_test::ServerReply;

namespace {

const std::string kDefinition = "Looks on the bright side: expects good outcomes and sees setbacks as temporary.";

// The server's structured replies, built from what each request asks for: how many items, and
// which part. Items are numbered so the test can tell them apart and find them again.
ServerReply structuredReply(const nlohmann::json& body) {
    const std::string prompt = persona_test::user_message(body);
    std::smatch match;
    const int count = std::regex_search(prompt, match, std::regex(R"(Write (\d+) )")) ? std::stoi(match[1]) : 0;
    nlohmann::json items = nlohmann::json::array();
    if (prompt.find("pairs of system-prompt instructions") != std::string::npos) {
        for (int i = 1; i <= count; ++i)
            items.push_back({{"pos", "Be hopeful, reason " + std::to_string(i) + "."},
                             {"neg", "Be gloomy, reason " + std::to_string(i) + "."}});
        return {200, persona_test::text_completion("Here are the pairs:\n```json\n" + items.dump(1) + "\n```")};
    }
    if (prompt.find("questions or requests") != std::string::npos) {
        const std::string set = prompt.find("Do not repeat") != std::string::npos ? "held-out" : "extraction";
        for (int i = 1; i <= count; ++i) items.push_back("What about " + set + " topic " + std::to_string(i) + "?");
        return {200, persona_test::text_completion(items.dump())};
    }
    if (prompt.find("instructions for a judge") != std::string::npos)
        return {200, persona_test::text_completion("Rate optimism.\nQuestion: {{question}}\nAnswer: {Answer}\n"
                                                   "Reply REFUSAL or a number 0-100.")};
    return {400, R"({"error":{"message":"unexpected prompt"}})"};
}

bool appearsIn(const std::string& item, const std::string& reply) {
    if (reply.find(item) != std::string::npos) return true;
    const std::string escaped = nlohmann::json(item).dump();
    return reply.find(escaped.substr(1, escaped.size() - 2)) != std::string::npos;
}

}  // namespace

class TestTraitDraft : public QObject {
    Q_OBJECT

    OpenAiTestServer server_;

    persona::ChatEndpoint endpoint() const {
        persona::ChatEndpoint e;
        e.base_url = server_.base_url();
        e.model = "test-writer";
        e.api_key_env = "PERSONA_TEST_WRITER_KEY";
        e.retries = 0;
        return e;
    }

private slots:
    void parsesLists_data() {
        QTest::addColumn<QString>("reply");
        QTest::addColumn<QStringList>("expected");
        QTest::addColumn<bool>("clean");
        QTest::newRow("json") << R"(["Is it sunny?", "Will it work out?"])" << QStringList{"Is it sunny?", "Will it work out?"} << true;
        QTest::newRow("fenced, with chatter") << "Sure!\n```json\n[\"A?\",\n \"B \\\"quoted\\\"?\"]\n```\nHope this helps."
                                              << QStringList{"A?", "B \"quoted\"?"} << true;
        QTest::newRow("object holding the array") << R"({"questions": ["One?", "Two?"]})" << QStringList{"One?", "Two?"} << true;
        QTest::newRow("objects") << R"([{"question": "One?"}, {"text": "Two?"}, 3])" << QStringList{"One?", "Two?"} << false;
        QTest::newRow("cut off") << "[\"First?\", \"Second?\", \"Thi" << QStringList{"First?", "Second?"} << false;
        QTest::newRow("numbered") << "Here you go:\n1. First?\n2) \"Second?\"\n- Third?\n\nThanks"
                                  << QStringList{"First?", "Second?", "Third?"} << false;
        QTest::newRow("nothing usable") << "I cannot help with that." << QStringList{} << false;
    }
    void parsesLists() {
        QFETCH(QString, reply);
        QFETCH(QStringList, expected);
        QFETCH(bool, clean);
        std::string problem;
        const auto items = persona::parse_text_list(reply.toStdString(), problem);
        QStringList got;
        for (const auto& item : items) got << QString::fromStdString(item);
        QCOMPARE(got, expected);
        QCOMPARE(problem.empty(), clean);
    }

    void parsesInstructionPairs() {
        std::string problem;
        auto pairs = persona::parse_instruction_pairs(R"([{"pos": "Be bright.", "neg": "Be dim."}, {"positive": "Hope.", "negative": "Doubt."}])", problem);
        QCOMPARE(pairs, (std::vector<InstructionPair>{{"Be bright.", "Be dim."}, {"Hope.", "Doubt."}}));
        QVERIFY(problem.empty());

        pairs = persona::parse_instruction_pairs("[{\"pos\": \"A.\", \"neg\": \"B.\"}, {\"pos\": \"C.\"}, {\"pos\": \"D.\", \"ne", problem);
        QCOMPARE(pairs, (std::vector<InstructionPair>{{"A.", "B."}}));
        QVERIFY2(problem.find("cut off") != std::string::npos && problem.find("1 element(s) lacked") != std::string::npos,
                 problem.c_str());

        pairs = persona::parse_instruction_pairs("1. Positive: Smile at life.\n   Negative: Frown at life.\n"
                                                 "2. **Positive**: Expect the best.\n   **Negative**: Expect the worst.\n"
                                                 "3. Positive: Orphan.",
                                                 problem);
        QCOMPARE(pairs, (std::vector<InstructionPair>{{"Smile at life.", "Frown at life."}, {"Expect the best.", "Expect the worst."}}));
        QVERIFY2(problem.find("1 element(s) lacked") != std::string::npos, problem.c_str());

        pairs = persona::parse_instruction_pairs("Optimism is great!", problem);
        QVERIFY(pairs.empty());
        QVERIFY(!problem.empty());
    }

    void parsesRubrics() {
        std::string problem;
        QCOMPARE(persona::parse_rubric("Q: {{question}} A: { Answer } Score 0-100.", problem),
                 std::string("Q: {question} A: {answer} Score 0-100."));
        QVERIFY(problem.empty());
        QCOMPARE(persona::parse_rubric(R"({"eval_prompt": "See {question} and {answer}."})", problem),
                 std::string("See {question} and {answer}."));
        QVERIFY(problem.empty());
        // Kept as written, not completed: the user adds what is missing.
        QCOMPARE(persona::parse_rubric("Rate how optimistic the answer is.", problem),
                 std::string("Rate how optimistic the answer is."));
        QVERIFY2(problem.find("lacks {question} and {answer}") != std::string::npos, problem.c_str());
    }

    // A structured writer fills every field; the trait validates with no problem at all.
    void draftsAValidTraitFromAnEndpoint() {
        server_.set_handler([](const nlohmann::json& body, int) { return structuredReply(body); });
        server_.clear_requests();
        qputenv("PERSONA_TEST_WRITER_KEY", "sk-writer");
        std::vector<std::string> stages;
        const auto draft = persona::draft_trait("optimistic", kDefinition, persona::endpoint_text_generator(endpoint()), {},
                                                [&](const persona::Progress& p) { stages.push_back(p.stage); });
        QVERIFY2(draft.notes.empty(), draft.notes.empty() ? "" : draft.notes.front().message.c_str());
        QVERIFY(draft.problems.empty());
        QVERIFY(persona::validate(draft.trait).empty());
        QCOMPARE(draft.trait.instructions.size(), std::size_t(5));
        QCOMPARE(draft.trait.instructions[4], (InstructionPair{"Be hopeful, reason 5.", "Be gloomy, reason 5."}));
        QCOMPARE(draft.trait.extraction_questions.size(), std::size_t(20));
        QCOMPARE(draft.trait.extraction_questions[0], std::string("What about extraction topic 1?"));
        QCOMPARE(draft.trait.evaluation_questions.size(), std::size_t(20));
        QCOMPARE(draft.trait.evaluation_questions[19], std::string("What about held-out topic 20?"));
        QCOMPARE(draft.trait.judge_rubric, std::string("Rate optimism.\nQuestion: {question}\nAnswer: {answer}\nReply REFUSAL or a number 0-100."));
        QCOMPARE(draft.trait.coherence_rubric, persona::default_coherence_rubric());
        QCOMPARE(draft.trait.definition, kDefinition);
        QCOMPARE(stages, (std::vector<std::string>{"instructions", "extraction_questions", "evaluation_questions",
                                                   "judge_rubric", "judge_rubric"}));

        const auto requests = server_.requests();
        QCOMPARE(int(requests.size()), 4);
        for (const auto& request : requests) {
            QCOMPARE(request.authorization, std::string("Bearer sk-writer"));
            QCOMPARE(request.body.at("model").get<std::string>(), std::string("test-writer"));
            QVERIFY(!request.body.contains("logprobs"));
            QVERIFY(persona_test::user_message(request.body).find(kDefinition) != std::string::npos);
        }
        // The held-out request lists the extraction questions it must not repeat.
        QVERIFY(persona_test::user_message(requests[2].body).find("What about extraction topic 20?") != std::string::npos);
    }

    // A writer that repeats itself and ignores the format: what it lacks stays empty and is
    // reported, nothing is made up.
    void reportsWhatTheWriterDidNotGive() {
        server_.set_handler([](const nlohmann::json& body, int) {
            const std::string prompt = persona_test::user_message(body);
            if (prompt.find("pairs of system-prompt") != std::string::npos)
                return ServerReply{200, persona_test::text_completion("Optimism means hope!")};
            if (prompt.find("Do not repeat") != std::string::npos)
                return ServerReply{200, persona_test::text_completion(R"(["Why?", "New one?"])")};
            if (prompt.find("questions or requests") != std::string::npos)
                return ServerReply{200, persona_test::text_completion(R"(["Why?", "Why?", "How?"])")};
            return ServerReply{200, persona_test::text_completion("Judge the optimism.")};
        });
        persona::TraitDraftSettings settings;
        settings.instruction_pairs = 2;
        settings.questions = 3;
        const auto draft = persona::draft_trait("optimistic", kDefinition, persona::endpoint_text_generator(endpoint()), settings);
        QVERIFY(draft.trait.instructions.empty());
        QCOMPARE(draft.trait.extraction_questions, (std::vector<std::string>{"Why?", "How?"}));
        QCOMPARE(draft.trait.evaluation_questions, (std::vector<std::string>{"New one?"}));
        QCOMPARE(draft.trait.judge_rubric, std::string("Judge the optimism."));
        std::map<std::string, std::string> notes;
        for (const auto& note : draft.notes) notes[note.part] = note.message;
        QCOMPARE(int(notes.size()), 4);
        QVERIFY2(notes["instructions"].find("asked for 2, got 0") != std::string::npos, notes["instructions"].c_str());
        QVERIFY2(notes["extraction_questions"].find("1 repeated item(s) dropped; asked for 3, got 2") != std::string::npos,
                 notes["extraction_questions"].c_str());
        QVERIFY(notes["evaluation_questions"].find("1 repeated item(s) dropped") != std::string::npos);
        QVERIFY(notes["judge_rubric"].find("lacks {question} and {answer}") != std::string::npos);
        QVERIFY(persona::has_errors(draft.problems));
        QCOMPARE(draft.replies.at("instructions"), std::string("Optimism means hope!"));
    }

    void failsClearlyWhenTheEndpointFails() {
        server_.set_handler([](const nlohmann::json&, int) { return ServerReply{404, R"({"error":{"message":"no such model"}})"}; });
        try {
            persona::draft_trait("optimistic", kDefinition, persona::endpoint_text_generator(endpoint()));
            QFAIL("expected an error");
        } catch (const persona::Error& e) {
            QVERIFY2(std::string(e.what()).find("HTTP 404: no such model") != std::string::npos, e.what());
        }
        QVERIFY_EXCEPTION_THROWN(persona::draft_trait("optimistic", " ", persona::endpoint_text_generator(endpoint())),
                                 persona::Error);
    }

    void cliDraftsThroughAnEndpoint() {
        server_.set_handler([](const nlohmann::json& body, int) { return structuredReply(body); });
        QTemporaryDir dir;
        const QString file = dir.filePath("optimistic.json");
        const persona_test::CliRun cli = persona_test::runCli(
            {"traits", "draft", "--name", "optimistic", "--definition", QString::fromStdString(kDefinition), "--endpoint",
             QString::fromStdString(server_.base_url()), "--endpoint-model", "test-writer", "--pairs", "2", "--questions",
             "4", "-o", file},
            60000);
        const QByteArray& err = cli.err;
        QCOMPARE(cli.exitCode, 0);
        const auto trait = persona::read_trait_file(file.toStdString());
        QCOMPARE(trait.instructions.size(), std::size_t(2));
        QCOMPARE(trait.evaluation_questions.size(), std::size_t(4));
        // Fewer than docs/method.md recommends: warnings, listed on stderr.
        QVERIFY2(err.contains("instructions warning"), err.constData());
        const auto summary = nlohmann::json::parse(cli.out.toStdString());
        QCOMPARE(summary.at("valid").get<bool>(), true);
        QCOMPARE(summary.at("draft").get<bool>(), true);
    }

    // The real default model writes the draft: weak, so the file has problems, and they are all
    // reported; whatever it holds came from the model's replies.
    void cliDraftsWithTheDefaultModel() {
        QTemporaryDir dir;
        const QString file = dir.filePath("optimistic.json");
        const persona_test::CliRun cli = persona_test::runCli(
            {"traits", "draft", "--name", "optimistic", "--definition", QString::fromStdString(kDefinition), "--pairs", "1",
             "--questions", "2", "-n", "48", "-o", file},
            240000);
        const QByteArray &out = cli.out, &err = cli.err;
        QVERIFY2(cli.exitCode == 0 || cli.exitCode == 1, err.constData());
        const auto summary = nlohmann::json::parse(out.toStdString());
        const auto trait = persona::read_trait_file(file.toStdString());  // written, and readable
        const auto problems = persona::validate(trait);
        QCOMPARE(summary.at("problems").size(), problems.size());
        QCOMPARE(summary.at("valid").get<bool>(), !persona::has_errors(problems));
        QCOMPARE(cli.exitCode, persona::has_errors(problems) ? 1 : 0);
        for (const auto& problem : problems)
            QVERIFY2(err.contains(QByteArray::fromStdString(problem.message)), problem.message.c_str());
        const auto& replies = summary.at("replies");
        QCOMPARE(replies.size(), std::size_t(4));
        for (const auto& pair : trait.instructions) {
            QVERIFY(appearsIn(pair.positive, replies.at("instructions").get<std::string>()));
            QVERIFY(appearsIn(pair.negative, replies.at("instructions").get<std::string>()));
        }
        for (const auto& q : trait.extraction_questions) QVERIFY(appearsIn(q, replies.at("extraction_questions").get<std::string>()));
        for (const auto& q : trait.evaluation_questions) QVERIFY(appearsIn(q, replies.at("evaluation_questions").get<std::string>()));
        qInfo("default model's draft: %zu pairs, %zu + %zu questions, %zu problems, %zu unparsed notes",
              trait.instructions.size(), trait.extraction_questions.size(), trait.evaluation_questions.size(),
              problems.size(), summary.at("unparsed").size());
    }
};

QTEST_GUILESS_MAIN(TestTraitDraft)
#include "test_trait_draft.moc"
