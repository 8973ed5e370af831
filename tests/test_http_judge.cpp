// The OpenAI-compatible HTTP judge against a real HTTP server in this process: the request it
// sends, the score it computes from top logprobs, the refusal rule, retries and the errors a
// user can meet; then a tiny extraction where the real default model generates and the server
// judges.
#include "openai_test_server.h"  // before Qt: see the header

#include "persona/chat_endpoint.h"
#include "persona/errors.h"
#include "persona/extraction.h"
#include "persona/judge.h"
#include "persona/model.h"
#include "persona/shift.h"
#include "persona/trait.h"
#include "persona/vector_files.h"
#include "cli_runner.h"
#include "test_support.h"

#include <QProcess>
#include <QTemporaryDir>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>

using persona::JudgeKind;
using persona::JudgeSettings;
using persona_test::logprob_completion;
using persona_test::OpenAiTestServer;
using persona_test::ServerReply;

namespace {

constexpr const char* kKeyVariable = "PERSONA_TEST_JUDGE_KEY";
constexpr const char* kTraitMarker = "RATE-TRAIT";
constexpr const char* kCoherenceMarker = "RATE-COHERENCE";

JudgeSettings httpJudge(const OpenAiTestServer& server) {
    JudgeSettings settings(JudgeKind::Http);
    settings.endpoint.base_url = server.base_url();
    settings.endpoint.model = "test-judge";
    settings.endpoint.api_key_env = kKeyVariable;
    settings.endpoint.timeout_seconds = 10;
    settings.endpoint.retries = 2;
    settings.endpoint.retry_delay_seconds = 0.01;
    return settings;
}

std::unique_ptr<persona::Judge> makeHttpJudge(const JudgeSettings& settings) {
    return persona::make_http_judge(settings.endpoint);
}

// What the text between two markers of a rendered rubric says.
std::string between(const std::string& text, const std::string& open, const std::string& close) {
    const auto start = text.find(open);
    if (start == std::string::npos) return {};
    const auto from = start + open.size();
    const auto end = text.find(close, from);
    return text.substr(from, end == std::string::npos ? std::string::npos : end - from);
}

std::string errorOf(const std::function<void()>& action) {
    try {
        action();
    } catch (const persona::Cancelled&) {
        return "cancelled";
    } catch (const persona::Error& e) {
        return e.what();
    }
    return {};
}

}  // namespace

class TestHttpJudge : public QObject {
    Q_OBJECT

    OpenAiTestServer server_;

private slots:
    void init() {
        server_.clear_requests();
        qputenv(kKeyVariable, "sk-test-123");
    }

    void namesTheHttpJudge() {
        QCOMPARE(persona::judge_kind_from_name("http"), std::optional<JudgeKind>(JudgeKind::Http));
        QCOMPARE(QString(persona::judge_kind_name(JudgeKind::Http)), QString("http"));
        JudgeSettings settings(JudgeKind::Http);
        settings.endpoint.base_url = "http://localhost:8080/v1";
        settings.endpoint.model = "qwen2.5-7b";
        QCOMPARE(QString::fromStdString(persona::judge_label(settings)), QString("http:http://localhost:8080/v1#qwen2.5-7b"));
        // The key is never part of what gets stored.
        qputenv("OPENAI_API_KEY", "sk-secret-should-not-appear");
        QVERIFY(persona::judge_label(settings).find("sk-secret") == std::string::npos);
    }

    // Scores computed by the client against the probability-weighted mean computed here, for a
    // distribution the server builds from what the rubric says.
    void scoresTheTopLogprobsTheServerSends() {
        // Each answer names the distribution the server sends back for it.
        const std::map<std::string, std::vector<std::pair<std::string, double>>> distributions = {
            {"answer-a", {{"42", 0.5}, {" 60", 0.3}, {"The", 0.2}}},
            {"answer-b", {{"100", 0.6}, {"0", 0.25}, {"I", 0.1}, {"101", 0.05}}},
            {"answer-c", {{"7", 0.4}, {"7 ", 0.2}, {"-5", 0.2}, {"3.5", 0.1}, {"x", 0.1}}},
        };
        server_.set_handler([&](const nlohmann::json& body, int) {
            const std::string answer = between(persona_test::user_message(body), "ANSWER<<", ">>");
            return ServerReply{200, logprob_completion(distributions.at(answer))};
        });
        auto judge = makeHttpJudge(httpJudge(server_));
        const std::string rubric = "Rate it. QUESTION<<{question}>> ANSWER<<{answer}>> Reply with a number 0-100.";
        for (const auto& [answer, distribution] : distributions) {
            double mass = 0, weighted = 0;
            for (const auto& [token, p] : distribution) {
                QString text = QString::fromStdString(token).trimmed();
                bool ok = false;
                const int value = text.toInt(&ok);
                if (!ok || text.contains('-') || text.contains('+') || value < 0 || value > 100) continue;
                mass += p;
                weighted += p * value;
            }
            const persona::JudgeScore score = judge->score(rubric, "How is the weather?", answer, {});
            QVERIFY2(!score.refusal, answer.c_str());
            QVERIFY(score.score);
            QVERIFY2(std::abs(*score.score - weighted / mass) < 1e-9,
                     qPrintable(QString("%1: %2 vs %3").arg(answer.c_str()).arg(*score.score).arg(weighted / mass)));
            QVERIFY(std::abs(score.numeric_mass - mass) < 1e-9);
        }
        QCOMPARE(std::round(*judge->score(rubric, "q", "answer-a", {}).score * 1000) / 1000, 48.75);

        // What went over the wire: docs/method.md's request, the rubric rendered as the user message,
        // and the key from the environment.
        const auto requests = server_.requests();
        QCOMPARE(int(requests.size()), 4);
        const auto& body = requests.front().body;
        QCOMPARE(body.at("model").get<std::string>(), std::string("test-judge"));
        QCOMPARE(body.at("max_tokens").get<int>(), 1);
        QCOMPARE(body.at("temperature").get<double>(), 0.0);
        QCOMPARE(body.at("logprobs").get<bool>(), true);
        QCOMPARE(body.at("top_logprobs").get<int>(), 20);
        QCOMPARE(body.at("messages").size(), std::size_t(1));
        QCOMPARE(persona_test::user_message(body),
                 persona::render_rubric(rubric, "How is the weather?", distributions.begin()->first));
        for (const auto& request : requests) {
            QCOMPARE(request.authorization, std::string("Bearer sk-test-123"));
            QCOMPARE(request.client_port, requests.front().client_port);  // one connection, kept open
        }

        qunsetenv(kKeyVariable);
        judge->score(rubric, "q", "answer-a", {});
        QCOMPARE(server_.requests().back().authorization, std::string());  // no key, no header
    }

    // The pairwise question over HTTP: the letters' probabilities from top_logprobs, both orders
    // asked, the server's taste for "A" cancelled.
    void picksBetweenTwoAnswersOverHttp() {
        server_.set_handler([&](const nlohmann::json& body, int) {
            const std::string prompt = persona_test::user_message(body);
            const bool markedFirst = prompt.find("MARK") < prompt.find("Answer B:");
            // Prefers the marked answer 0.7 to 0.3, plus 0.2 for whatever comes first.
            const double a = markedFirst ? 0.9 : 0.5;
            return ServerReply{200, logprob_completion({{"A", a * 0.9}, {" B", (1 - a) * 0.9}, {"The", 0.1}})};
        });
        auto judge = makeHttpJudge(httpJudge(server_));
        const persona::JudgePick pick = persona::judge_pair(*judge, "evil", "Harms.", "Q?", "MARK", "plain");
        QVERIFY(!pick.refusal);
        QVERIFY2(std::abs(*pick.a_wins - 0.7) < 1e-9, qPrintable(QString::number(*pick.a_wins)));
        QVERIFY(std::abs(pick.letter_mass - 0.9) < 1e-9);
        QCOMPARE(int(server_.requests().size()), 2);
        QCOMPARE(server_.requests().front().body.at("max_tokens").get<int>(), 1);
        QCOMPARE(persona_test::user_message(server_.requests().front().body),
                 persona::pairwise_judge_prompt("evil", "Harms.", "Q?", "MARK", "plain"));
    }

    void refusesUnderAQuarterOfNumericMass() {
        double numericShare = 0.2;
        server_.set_handler([&](const nlohmann::json&, int) {
            return ServerReply{200, logprob_completion({{"REFUSAL", 1 - numericShare}, {"80", numericShare}})};
        });
        auto judge = makeHttpJudge(httpJudge(server_));
        auto score = judge->score("{question} {answer}", "q", "a", {});
        QVERIFY(score.refusal);
        QVERIFY(!score.score);
        QVERIFY(std::abs(score.numeric_mass - 0.2) < 1e-9);
        numericShare = 0.3;
        score = judge->score("{question} {answer}", "q", "a", {});
        QVERIFY(!score.refusal);
        QVERIFY(std::abs(*score.score - 80) < 1e-9);

        // The pure scoring, on its own.
        QVERIFY(persona::score_top_logprobs({}).refusal);
        QVERIFY(persona::score_top_logprobs({{"24", std::log(0.249)}, {"no", std::log(0.751)}}).refusal);
    }

    // A server whose tokenizer writes numbers digit by digit (what persona-cli serve gives for
    // Qwen2.5 and SmolLM2) lists only digits: no 0-100 score can be read, and the judge says so
    // rather than return a mean on a 0-9 scale. One digit, or larger numbers beside digits, score.
    void refusesToScoreDigitByDigitTokenizers() {
        std::vector<std::pair<std::string, double>> distribution{{"REF", 0.2}, {"9", 0.2}, {"8", 0.15}, {"1", 0.1}, {"5", 0.1}};
        server_.set_handler([&](const nlohmann::json&, int) { return ServerReply{200, logprob_completion(distribution)}; });
        auto judge = makeHttpJudge(httpJudge(server_));
        try {
            judge->score("{question} {answer}", "q", "a", {});
            QFAIL("scored digits as if they were whole numbers");
        } catch (const persona::Error& e) {
            const QString message = QString::fromUtf8(e.what());
            QVERIFY2(message.contains("test-judge") && message.contains("digit by digit"), e.what());
        }
        distribution = {{"9", 0.5}, {"90", 0.3}, {"8", 0.1}, {"1", 0.1}};
        QVERIFY(std::abs(*judge->score("{question} {answer}", "q", "a", {}).score - (4.5 + 27 + 0.8 + 0.1)) < 1e-9);
        distribution = {{"7", 0.6}, {" 7", 0.2}, {"The", 0.2}};
        QVERIFY(std::abs(*judge->score("{question} {answer}", "q", "a", {}).score - 7) < 1e-9);
    }

    void retriesAfterServerErrors() {
        server_.set_handler([](const nlohmann::json&, int number) {
            if (number == 1) return ServerReply{500, R"({"error":{"message":"overloaded"}})"};
            if (number == 2) return ServerReply{429, R"({"error":{"message":"slow down"}})"};
            return ServerReply{200, logprob_completion({{"30", 1.0}})};
        });
        auto judge = makeHttpJudge(httpJudge(server_));
        const auto score = judge->score("{question} {answer}", "q", "a", {});
        QCOMPARE(int(server_.requests().size()), 3);
        QVERIFY(std::abs(*score.score - 30) < 1e-9);

        // A server that keeps failing: retries + 1 attempts, then its message.
        server_.clear_requests();
        server_.set_handler([](const nlohmann::json&, int) { return ServerReply{503, R"({"error":{"message":"down for maintenance"}})"}; });
        const std::string error = errorOf([&] { judge->score("{question} {answer}", "q", "a", {}); });
        QCOMPARE(int(server_.requests().size()), 3);
        QVERIFY2(error.find("HTTP 503") != std::string::npos && error.find("down for maintenance") != std::string::npos &&
                     error.find(server_.base_url()) != std::string::npos,
                 error.c_str());
    }

    void reportsWhatWentWrong_data() {
        QTest::addColumn<int>("status");
        QTest::addColumn<QString>("body");
        QTest::addColumn<QString>("expected");
        QTest::newRow("401") << 401 << R"({"error":{"message":"Incorrect API key provided: sk-te***23"}})"
                             << "HTTP 401: Incorrect API key provided: sk-te***23 (check the API key in $PERSONA_TEST_JUDGE_KEY)";
        QTest::newRow("404") << 404 << R"({"error":{"message":"The model `test-judge` does not exist"}})"
                             << "HTTP 404: The model `test-judge` does not exist (check the base URL";
        QTest::newRow("malformed") << 200 << "{\"choices\": [ {\"message\": " << "sent a reply that is not JSON";
        QTest::newRow("not a completion") << 200 << R"({"object":"list","data":[]})"
                                          << "sent JSON that is not a chat completion: no choices";
        QTest::newRow("no logprobs") << 200 << QString::fromStdString(persona_test::text_completion("42"))
                                     << "this endpoint does not return logprobs; the judge needs them";
    }
    void reportsWhatWentWrong() {
        QFETCH(int, status);
        QFETCH(QString, body);
        QFETCH(QString, expected);
        server_.set_handler([&](const nlohmann::json&, int) { return ServerReply{status, body.toStdString()}; });
        auto judge = makeHttpJudge(httpJudge(server_));
        const std::string error = errorOf([&] { judge->score("{question} {answer}", "q", "a", {}); });
        QVERIFY2(error.find(expected.toStdString()) != std::string::npos, error.c_str());
        QVERIFY2(error.find(server_.base_url() + "/chat/completions") != std::string::npos, error.c_str());
        QCOMPARE(int(server_.requests().size()), 1);  // none of these is worth a retry
    }

    void reportsAnUnsetKeyOn401() {
        qunsetenv(kKeyVariable);
        server_.set_handler([](const nlohmann::json&, int) { return ServerReply{401, R"({"error":{"message":"missing key"}})"}; });
        const std::string error = errorOf([&] { makeHttpJudge(httpJudge(server_))->score("{question} {answer}", "q", "a", {}); });
        QVERIFY2(error.find("$PERSONA_TEST_JUDGE_KEY is not set") != std::string::npos, error.c_str());
    }

    void reportsARefusedConnection() {
        int closedPort = 0;
        {
            OpenAiTestServer gone;
            closedPort = gone.port();
        }
        JudgeSettings settings = httpJudge(server_);
        settings.endpoint.base_url = "http://127.0.0.1:" + std::to_string(closedPort) + "/v1";
        const auto start = std::chrono::steady_clock::now();
        const std::string error = errorOf([&] { makeHttpJudge(settings)->score("{question} {answer}", "q", "a", {}); });
        QVERIFY2(error.find("cannot get a chat completion from " + settings.endpoint.base_url + "/chat/completions") !=
                         std::string::npos &&
                     error.find("is the server running?") != std::string::npos,
                 error.c_str());
        QVERIFY(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));

        settings.endpoint.base_url = "localhost:8080";
        QVERIFY(errorOf([&] { makeHttpJudge(settings)->score("{question} {answer}", "q", "a", {}); }).find("is not an endpoint URL") !=
                std::string::npos);
        settings.endpoint.base_url.clear();
        QVERIFY(errorOf([&] { makeHttpJudge(settings); }).find("needs an endpoint URL") != std::string::npos);
        settings.endpoint.base_url = server_.base_url();
        settings.endpoint.model.clear();
        QVERIFY(errorOf([&] { makeHttpJudge(settings); }).find("needs a model name") != std::string::npos);
    }

    void cancelsBetweenRequestsAndWhileWaitingToRetry() {
        server_.set_handler([](const nlohmann::json&, int) { return ServerReply{200, logprob_completion({{"1", 1.0}})}; });
        auto judge = makeHttpJudge(httpJudge(server_));
        QCOMPARE(QString::fromStdString(errorOf([&] { judge->score("{question} {answer}", "q", "a", [] { return true; }); })),
                 QString("cancelled"));
        QCOMPARE(int(server_.requests().size()), 0);

        // A long back-off is cut short by the cancel flag.
        JudgeSettings slow = httpJudge(server_);
        slow.endpoint.retry_delay_seconds = 30;
        server_.set_handler([](const nlohmann::json&, int) { return ServerReply{500, "{}"}; });
        const auto start = std::chrono::steady_clock::now();
        const std::string error = errorOf([&] {
            makeHttpJudge(slow)->score("{question} {answer}", "q", "a",
                                       [start] { return std::chrono::steady_clock::now() - start > std::chrono::milliseconds(300); });
        });
        QCOMPARE(QString::fromStdString(error), QString("cancelled"));
        QVERIFY(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    }

    // The real default model generates; the server judges with scores this test planned per
    // answer, and the filter keeps exactly the pairs those scores allow.
    void extractsWithTheHttpJudge() {
        auto model = persona::Model::load(persona_test::defaultModelPath().toStdString());
        persona::Trait trait = persona::load_builtin_trait("optimistic");
        trait.judge_rubric = std::string(kTraitMarker) + " QUESTION<<{question}>> ANSWER<<{answer}>> END";
        trait.coherence_rubric = std::string(kCoherenceMarker) + " QUESTION<<{question}>> ANSWER<<{answer}>> END";

        // Per question index: trait scores (positive, negative) and coherence (positive, negative).
        struct Plan {
            double positive, negative, positive_coherence, negative_coherence;
        };
        const std::vector<Plan> plans = {{85, 10, 90, 80},   // kept
                                         {40, 10, 90, 90},   // positive does not show the trait
                                         {90, 15, 90, 20},   // negative incoherent
                                         {90, 70, 60, 90}};  // negative shows the trait too
        std::mutex mutex;
        std::map<std::pair<std::string, std::string>, std::pair<double, double>> planned;  // (question, answer) -> (trait, coherence)
        server_.set_handler([&](const nlohmann::json& body, int) {
            const std::string text = persona_test::user_message(body);
            const std::string question = between(text, "QUESTION<<", ">> ANSWER<<");
            const std::string answer = between(text, "ANSWER<<", ">> END");
            std::lock_guard<std::mutex> lock(mutex);
            const auto found = planned.find({question, answer});
            if (found == planned.end()) return ServerReply{400, R"({"error":{"message":"unknown answer"}})"};
            const double score = text.rfind(kTraitMarker, 0) == 0 ? found->second.first : found->second.second;
            // Two numbers around the planned score and a little non-numeric mass.
            return ServerReply{200, logprob_completion({{std::to_string(int(score) - 2), 0.45},
                                                        {std::to_string(int(score) + 2), 0.45},
                                                        {"Score", 0.1}})};
        });

        QTemporaryDir dir;
        persona::ExtractionSettings settings;
        settings.question_limit = 4;
        settings.pair_limit = 1;
        settings.max_new_tokens = 12;
        settings.seed = 5;
        settings.judge = httpJudge(server_);
        settings.checkpoint_path = dir.filePath("optimistic.json").toStdString();
        const auto result = persona::run_extraction(*model, trait, settings, {}, [&](const persona::Sample& sample) {
            if (sample.judged) return;
            const Plan& plan = plans.at(std::size_t(sample.question_index));
            const bool positive = sample.side == persona::Side::Positive;
            std::lock_guard<std::mutex> lock(mutex);
            const bool fresh = planned.emplace(std::make_pair(sample.question, sample.answer),
                                               positive ? std::make_pair(plan.positive, plan.positive_coherence)
                                                        : std::make_pair(plan.negative, plan.negative_coherence))
                                   .second;
            QVERIFY2(fresh, "two answers to one question came out the same; pick another seed");
        });
        QCOMPARE(result.pairs.total, std::size_t(4));
        QCOMPARE(result.samples_judged, std::size_t(8));
        // The trait for each answer; coherence only where it decides something: both answers of
        // questions 0 and 2, the positive of question 3 (the training set may take it), none of 1.
        QCOMPARE(int(server_.requests().size()), 8 + 5);
        const auto coherenceScored = [](const persona::Sample& sample) {
            return sample.question_index == 0 || sample.question_index == 2 ||
                   (sample.question_index == 3 && sample.side == persona::Side::Positive);
        };
        for (const auto& sample : result.samples) {
            const Plan& plan = plans.at(std::size_t(sample.question_index));
            const bool positive = sample.side == persona::Side::Positive;
            QVERIFY(sample.trait_score);
            QVERIFY(std::abs(*sample.trait_score - (positive ? plan.positive : plan.negative)) < 1e-9);
            QCOMPARE(sample.coherence_skipped, !coherenceScored(sample));
            QCOMPARE(sample.coherence.has_value(), coherenceScored(sample));
            if (sample.coherence)
                QVERIFY(std::abs(*sample.coherence - (positive ? plan.positive_coherence : plan.negative_coherence)) < 1e-9);
            QVERIFY(std::abs(sample.trait_numeric_mass - 0.9) < 1e-9);
            QCOMPARE(sample.kept, sample.question_index == 0 && !sample.answer_tokens.empty());
        }
        QCOMPARE(result.pairs.failing_positive_trait, std::size_t(1));
        QCOMPARE(result.pairs.failing_negative_trait, std::size_t(1));
        QCOMPARE(result.pairs.failing_coherence, std::size_t(1));
        QCOMPARE(result.pairs.kept, std::size_t(1));
        // Positives that show the trait and are coherent, whatever their negative did.
        QCOMPARE(persona::trait_inducing_examples(result, settings).size(), std::size_t(3));
        const persona::AggregateResult& kept = result.aggregate(persona::Aggregate::ResponseMean);
        QCOMPARE(kept.vector.provenance.at("judge"), "http:" + server_.base_url() + "#test-judge");
        // One pair separates perfectly at every layer: the run says so and suggests no layer.
        QCOMPARE(result.warnings.size(), std::size_t(1));
        QVERIFY2(result.warnings[0].find("only 1 of 4 pairs kept") != std::string::npos, result.warnings[0].c_str());
        QCOMPARE(kept.suggested_layer, -1);
        QVERIFY(!kept.vector.provenance.count("suggested_layer"));

        // Resumed with a looser negative threshold, question 3's pair passes the trait tests: the
        // judge is asked for its negative's coherence alone, and the pair is kept.
        settings.negative_threshold = 80;
        const auto resumed = persona::run_extraction(*model, trait, settings);
        QCOMPARE(resumed.samples_generated, std::size_t(0));
        QCOMPARE(int(server_.requests().size()), 8 + 5 + 1);
        const persona::Sample& negative = resumed.samples.at(7);
        QCOMPARE(negative.question_index, 3);
        QVERIFY(negative.coherence && std::abs(*negative.coherence - plans[3].negative_coherence) < 1e-9);
        QCOMPARE(resumed.pairs.kept, std::size_t(2));
    }

    // The CLI's flags reach the judge; the key comes from the variable --judge-key-env names.
    void cliExtractsWithTheHttpJudge() {
        server_.set_handler([](const nlohmann::json& body, int) {
            // The built-in trait rubric opens so; the coherence rubric does not.
            const bool trait = persona_test::user_message(body).rfind("You are grading", 0) == 0;
            return ServerReply{200, logprob_completion({{trait ? "70" : "95", 1.0}})};
        });
        QTemporaryDir dir;
        QProcessEnvironment environment = QProcessEnvironment::systemEnvironment();
        environment.insert("MY_JUDGE_KEY", "sk-from-cli");
        const persona_test::CliRun cli = persona_test::runCli(
            {"extract", "--trait", "optimistic", "--questions", "1", "--pairs", "1", "-n", "8", "--judge", "http",
             "--judge-url", QString::fromStdString(server_.base_url()), "--judge-model-name", "test-judge",
             "--judge-key-env", "MY_JUDGE_KEY", "--checkpoint", dir.filePath("run.ckpt.json"), "--out",
             dir.filePath("v.safetensors")},
            120000, environment);
        const QByteArray &out = cli.out, &err = cli.err;
        // Both sides score 70 on the trait: the negative fails the filter, so nothing is kept.
        QCOMPARE(cli.exitCode, 1);
        QVERIFY2(err.contains("no pair of answers passed"), err.constData());
        const auto summary = nlohmann::json::parse(out.toStdString());
        QCOMPARE(summary.at("judge").get<std::string>(), "http:" + server_.base_url() + "#test-judge");
        QCOMPARE(summary.at("pairs_failing_negative_trait").get<int>(), 1);
        // Both trait scores and the positive's coherence; the negative's could decide nothing.
        QCOMPARE(int(server_.requests().size()), 3);
        for (const auto& request : server_.requests()) QCOMPARE(request.authorization, std::string("Bearer sk-from-cli"));
        // The key is in neither the checkpoint nor the summary.
        QFile checkpoint(dir.filePath("run.ckpt.json"));
        QVERIFY(checkpoint.open(QIODevice::ReadOnly));
        QVERIFY(!checkpoint.readAll().contains("sk-from-cli"));
        QVERIFY(!out.contains("sk-from-cli"));

        // The same judged answers again, from the checkpoint, under the reference method's
        // negative-side rule: with a trait threshold of 25 the negative must score under
        // 100 - 25 = 75, so 70 passes (a rule of "under the trait threshold" would drop it)...
        const QStringList again = {"extract", "--trait", "optimistic", "--questions", "1", "--pairs", "1", "-n", "8",
                                   "--judge", "http", "--judge-url", QString::fromStdString(server_.base_url()),
                                   "--judge-model-name", "test-judge", "--judge-key-env", "MY_JUDGE_KEY",
                                   "--checkpoint", dir.filePath("run.ckpt.json"), "--keep-checkpoint",
                                   "--out", dir.filePath("v.safetensors"), "--trait-threshold", "25"};
        // ... unless a negative threshold of its own says otherwise.
        const persona_test::CliRun strict = persona_test::runCli(again + QStringList{"--negative-threshold", "70"}, 120000, environment);
        QCOMPARE(strict.exitCode, 1);
        QCOMPARE(nlohmann::json::parse(strict.out.toStdString()).at("pairs_failing_negative_trait").get<int>(), 1);
        const persona_test::CliRun reference = persona_test::runCli(again, 120000, environment);
        QVERIFY2(reference.exitCode == 0, reference.err.constData());
        const auto kept = nlohmann::json::parse(reference.out.toStdString());
        QCOMPARE(kept.at("pairs_kept").get<int>(), 1);
        QCOMPARE(kept.at("samples_resumed").get<int>(), 2);
        QCOMPARE(int(server_.requests().size()), 4);  // the negative's coherence, nothing twice
        // One kept pair: a warning, and no layer to suggest.
        QVERIFY(!kept.contains("suggested_layer"));
        QCOMPARE(kept.at("warnings").size(), std::size_t(1));
        QVERIFY2(reference.err.contains("warning: only 1 of 1 pairs kept"), reference.err.constData());
        const persona::PersonaVector vector = persona::read_vector_file(dir.filePath("v.safetensors").toStdString());
        QCOMPARE(vector.provenance.at("negative_threshold"), std::string("75.000000"));
        QVERIFY(!vector.provenance.count("suggested_layer"));

        const persona_test::CliRun missing = persona_test::runCli({"extract", "--trait", "optimistic", "--judge", "http"}, 60000);
        QCOMPARE(missing.exitCode, 2);
        QVERIFY(missing.err.contains("--judge-url"));
    }
};

QTEST_GUILESS_MAIN(TestHttpJudge)
#include "test_http_judge.moc"
