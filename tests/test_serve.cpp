// persona-cli serve over real HTTP on loopback, on the default model: the OpenAI-style
// endpoints, per-request steering that equals `persona-cli generate --steer`, streaming that
// adds up to the plain answer, and bad requests answered with the right status and a JSON error
// while the server keeps serving.
#include "cli_runner.h"
#include "test_support.h"

#include "persona/chat_endpoint.h"
#include "persona/judge.h"
#include "persona/model.h"
#include "persona/tokenizer.h"

#include <httplib.h>

#include <QFile>
#include <QProcess>
#include <QRegularExpression>
#include <QThread>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

using nlohmann::json;

namespace {

const QString kVectors = QStringLiteral(PERSONA_SOURCE_DIR "/projects");
const std::string kEvil = "evil.persona/vectors/evil.response_avg.safetensors";
const std::string kKey = "test-key-1234";

}  // namespace

class TestServe : public QObject {
    Q_OBJECT
    QProcess server_;
    int port_ = 0;
    QTemporaryDir outside_;  // a served folder holding a link to a file outside it

    httplib::Client client(const std::string& key = kKey) {
        httplib::Client c("127.0.0.1", port_);
        c.set_read_timeout(300, 0);
        if (!key.empty()) c.set_bearer_token_auth(key);
        return c;
    }

    json chat(const json& request, int expected_status = 200) {
        auto c = client();
        const auto response = c.Post("/v1/chat/completions", request.dump(), "application/json");
        if (!response) qFatal("no response from the server");
        if (response->status != expected_status)
            qWarning("status %d: %s", response->status, response->body.c_str());
        [&] { QCOMPARE(response->status, expected_status); }();
        return json::parse(response->body);
    }

    // A chat completion request, streamed, to send with a content receiver.
    static httplib::Request streamingRequest(json body) {
        body["stream"] = true;
        httplib::Request request;
        request.method = "POST";
        request.path = "/v1/chat/completions";
        request.body = body.dump();
        request.set_header("Content-Type", "application/json");
        return request;
    }

    static json question(int max_tokens) {
        return {{"messages", {{{"role", "user"}, {"content", "How should I treat my neighbours?"}}}},
                {"max_tokens", max_tokens}, {"temperature", 0}};
    }

private slots:
    void initTestCase() {
        QVERIFY(QFile::link(kVectors + "/" + QString::fromStdString(kEvil), outside_.filePath("escape.safetensors")));
        port_ = persona_test::startServe(server_, {"--api-key", QString::fromStdString(kKey), "--vectors", kVectors, "--vectors",
                                       outside_.path(), "--project", kVectors + "/evil.persona", "--max-body", "100000",
                                       "--max-tokens", "512"});
        QVERIFY(port_ > 0);
    }

    void cleanupTestCase() {
        server_.terminate();  // SIGTERM: the default action ends it; SIGINT is what a user sends
        server_.waitForFinished(10000);
    }

    void listsHealthModelsAndVectors() {
        auto open = client("");
        const auto health = open.Get("/health");  // no key needed: load balancers probe it
        QVERIFY(health && health->status == 200);
        auto c = client();
        const json models = json::parse(c.Get("/v1/models")->body);
        QCOMPARE(models["data"][0]["layers"].get<int>(), 30);
        const json vectors = json::parse(c.Get("/v1/vectors")->body);
        bool found = false;
        std::string project_vector;
        for (const auto& v : vectors["data"]) {
            found |= v["id"] == kEvil;
            QVERIFY(v["id"] != "escape.safetensors");  // a link out of its folder is not offered
            if (v.value("trait", "") == "evil") project_vector = v["id"];
        }
        QVERIFY2(found, vectors.dump().c_str());
        // The project's evil vector is the same file as the served one: the same steered tokens.
        QVERIFY2(!project_vector.empty(), vectors.dump().c_str());
        json request = question(6);
        request["steering"] = {{{"vector", project_vector}, {"layer", 8}, {"coefficient", 6}}};
        const json by_project = chat(request);
        request["steering"][0]["vector"] = kEvil;
        QCOMPARE(by_project["tokens"], chat(request)["tokens"]);
    }

    // The steered answer is the CLI's, token for token; the unsteered one differs.
    void steeringEqualsTheCli() {
        json request = question(16);
        const json plain = chat(request);
        request["steering"] = {{{"vector", kEvil}, {"layer", 8}, {"coefficient", 6}}};
        const json steered = chat(request);
        const auto cli = persona_test::runCli({"--device", "cpu", "generate", "-p", "How should I treat my neighbours?", "-n",
                                               "16", "--steer", kVectors + "/" + QString::fromStdString(kEvil) + ":8:6", "--json"});
        QCOMPARE(cli.exitCode, 0);
        const json expected = json::parse(cli.out.toStdString());
        QCOMPARE(steered["tokens"], expected["tokens"]);
        QCOMPARE(steered["choices"][0]["message"]["content"], expected["text"]);
        QVERIFY(steered["tokens"] != plain["tokens"]);
        QCOMPARE(steered["usage"]["completion_tokens"].get<int>(), 16);
        QCOMPARE(steered["choices"][0]["finish_reason"], json("length"));

        // A cap is generate --cap's: the projection on the direction kept at most the value.
        request["steering"] = {{{"vector", kEvil}, {"layer", 8}, {"coefficient", -20}, {"op", "cap"}}};
        const json capped = chat(request);
        const auto cliCap = persona_test::runCli({"--device", "cpu", "generate", "-p", "How should I treat my neighbours?", "-n",
                                                  "16", "--cap", kVectors + "/" + QString::fromStdString(kEvil) + ":8:-20", "--json"});
        QCOMPARE(cliCap.exitCode, 0);
        QCOMPARE(capped["tokens"], json::parse(cliCap.out.toStdString())["tokens"]);
        QVERIFY(capped["tokens"] != plain["tokens"]);
    }

    void streamAddsUpToTheAnswer() {
        json request = question(12);
        request["steering"] = {{{"vector", kEvil}, {"layer", 8}, {"strength", 0.3}}};
        const json whole = chat(request);
        request["stream"] = true;
        auto c = client();
        std::string events;
        const auto response = c.Post("/v1/chat/completions", request.dump(), "application/json");
        QVERIFY(response && response->status == 200);
        QCOMPARE(QString::fromStdString(response->get_header_value("Content-Type")), QString("text/event-stream"));
        std::string text;
        QStringList lines = QString::fromStdString(response->body).split("\n\n", Qt::SkipEmptyParts);
        QCOMPARE(lines.last(), QString("data: [DONE]"));
        lines.removeLast();
        for (const QString& line : lines) {
            QVERIFY(line.startsWith("data: "));
            const json chunk = json::parse(line.mid(6).toStdString());
            QCOMPARE(chunk["object"], json("chat.completion.chunk"));
            if (chunk["choices"][0]["delta"].contains("content")) text += chunk["choices"][0]["delta"]["content"].get<std::string>();
        }
        QCOMPARE(text, whole["choices"][0]["message"]["content"].get<std::string>());
        QCOMPARE(json::parse(lines.last().mid(6).toStdString())["choices"][0]["finish_reason"], json("length"));
    }

    void completionsTakeRawText() {
        auto c = client();
        const auto response = c.Post("/v1/completions", json{{"prompt", "The capital of France is"}, {"max_tokens", 4},
                                                             {"temperature", 0}}.dump(), "application/json");
        QVERIFY(response && response->status == 200);
        const json body = json::parse(response->body);
        QCOMPARE(body["object"], json("text_completion"));
        QVERIFY(!body["choices"][0]["text"].get<std::string>().empty());
    }

    // Every generated token's log-probability and its most likely alternatives, in OpenAI's
    // shape; greedy tokens are each step's first alternative; the stream carries the same.
    void logprobsOfEveryToken() {
        json request = question(8);
        request["logprobs"] = true;
        request["top_logprobs"] = 3;
        const json whole = chat(request);
        const json& content = whole["choices"][0]["logprobs"]["content"];
        QCOMPARE(content.size(), whole["tokens"].size());
        std::string text;
        for (const json& entry : content) {
            text += entry["token"].get<std::string>();
            const json& top = entry["top_logprobs"];
            QCOMPARE(top.size(), std::size_t(3));
            QCOMPARE(top[0]["token"], entry["token"]);
            QCOMPARE(top[0]["logprob"], entry["logprob"]);
            double mass = 0;
            for (std::size_t i = 0; i < top.size(); ++i) {
                QVERIFY(top[i]["logprob"].get<double>() <= 0);
                if (i > 0) QVERIFY(top[i]["logprob"].get<double>() <= top[i - 1]["logprob"].get<double>());
                mass += std::exp(top[i]["logprob"].get<double>());
            }
            QVERIFY2(mass <= 1.0 + 1e-5, entry.dump().c_str());
        }
        QCOMPARE(text, whole["choices"][0]["message"]["content"].get<std::string>());
        QVERIFY(chat(question(2))["choices"][0]["logprobs"].is_null());  // only when asked

        request["stream"] = true;
        const auto response = client().Post("/v1/chat/completions", request.dump(), "application/json");
        QVERIFY(response && response->status == 200);
        json streamed = json::array();
        for (const QString& line : QString::fromStdString(response->body).split("\n\n", Qt::SkipEmptyParts)) {
            if (line == "data: [DONE]") continue;
            const json chunk = json::parse(line.mid(6).toStdString());
            for (const json& entry : chunk["choices"][0]["logprobs"]["content"]) streamed.push_back(entry);
        }
        QCOMPARE(streamed, content);

        const auto completion = client().Post("/v1/completions", json{{"prompt", "The capital of France is"}, {"max_tokens", 3},
                                                                      {"temperature", 0}, {"logprobs", 2}}.dump(), "application/json");
        QVERIFY(completion && completion->status == 200);
        const json legacy = json::parse(completion->body)["choices"][0]["logprobs"];
        QCOMPARE(legacy["tokens"].size(), std::size_t(3));
        QCOMPARE(legacy["token_logprobs"].size(), std::size_t(3));
        QCOMPARE(legacy["top_logprobs"][0].size(), std::size_t(2));
    }

    // The HTTP judge scores through this server exactly what the same model's first-token
    // distribution gives, computed here in-process with the same template.
    void httpJudgeScoresThroughTheServer() {
        qputenv("PERSONA_TEST_SERVE_KEY", QByteArray::fromStdString(kKey));
        persona::ChatEndpoint endpoint;
        endpoint.base_url = "http://127.0.0.1:" + std::to_string(port_) + "/v1";
        endpoint.model = "served";
        endpoint.api_key_env = "PERSONA_TEST_SERVE_KEY";
        const auto judge = persona::make_http_judge(endpoint);
        const std::string rubric = "Rate from 0 to 100 how kind this answer is. Reply with the number only.\n"
                                   "Question: {question}\nAnswer: {answer}";
        const std::string question = "How should I treat my neighbours?";
        const std::string answer = "With kindness, patience and respect.";
        const persona::JudgeScore served = judge->score(rubric, question, answer, {});

        const auto model = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu"});
        const auto request = persona::http_judge_request(rubric, question, answer);
        auto state = model->prefill(model->encode_chat(request.messages, true));
        const std::vector<float> probabilities = model->next_token_probabilities(*state, {}).front();
        std::vector<std::int32_t> order(probabilities.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = std::int32_t(i);
        std::partial_sort(order.begin(), order.begin() + request.top_logprobs, order.end(),
                          [&](std::int32_t a, std::int32_t b) { return probabilities[std::size_t(a)] > probabilities[std::size_t(b)]; });
        std::vector<persona::TopLogprob> alternatives;
        for (int i = 0; i < request.top_logprobs; ++i)
            alternatives.push_back({model->tokenizer().decode({order[std::size_t(i)]}), std::log(double(probabilities[std::size_t(order[std::size_t(i)])]))});
        const persona::JudgeScore expected = persona::score_top_logprobs(alternatives);
        QVERIFY2(expected.numeric_mass > 0, "the model puts no mass on a number: the comparison would be empty");
        QVERIFY2(std::abs(served.numeric_mass - expected.numeric_mass) < 1e-3,
                 qPrintable(QString("%1 vs %2").arg(served.numeric_mass).arg(expected.numeric_mass)));
        QCOMPARE(served.refusal, expected.refusal);
        if (expected.score) QVERIFY2(served.score && std::abs(*served.score - *expected.score) < 0.05,
                                     qPrintable(QString("%1 vs %2").arg(served.score.value_or(-1)).arg(*expected.score)));
    }

    // With --max-queue 1, a request that comes while another streams gets 429; a client that
    // hangs up mid-stream has its generation cancelled (the server says after how many tokens)
    // and its place freed for the next request; a request longer than --request-timeout gets 408.
    // Continuous batching: B, steered with the evil vector, arrives while A, steered along an
    // inline direction, streams 240 tokens; B is answered within a few of A's steps, not after
    // A, and each gets the tokens it gets alone.
    void aRequestJoinsTheRunningBatch() {
        json b = question(8);
        b["steering"] = {{{"vector", kEvil}, {"layer", 8}, {"strength", 0.3}}};
        json a = question(240);
        a["ignore_eos"] = true;  // exactly 240 tokens
        a["temperature"] = 0.8;
        a["seed"] = 3;
        std::vector<float> direction(576);
        for (std::size_t i = 0; i < direction.size(); ++i) direction[i] = std::sin(0.37 * double(i));
        a["steering"] = {{{"vector", direction}, {"layer", 12}, {"coefficient", 4}}};
        const json a_alone = chat(a);
        const json b_alone = chat(b);
        httplib::Request streaming = streamingRequest(a);
        streaming.set_header("Authorization", "Bearer " + kKey);
        std::atomic<int> a_tokens{0};
        std::string a_stream;
        json a_streamed_tokens = json::array();
        streaming.content_receiver = [&](const char* data, std::size_t size, std::uint64_t, std::uint64_t) {
            a_stream.append(data, size);
            for (std::size_t end; (end = a_stream.find("\n\n")) != std::string::npos; a_stream.erase(0, end + 2)) {
                const std::string event = a_stream.substr(6, end - 6);  // after "data: "
                if (event == "[DONE]") continue;
                const json chunk = json::parse(event);
                for (const json& token : chunk["tokens"]) a_streamed_tokens.push_back(token);
                a_tokens = int(a_streamed_tokens.size());
            }
            return true;
        };
        std::atomic<bool> a_ended{false};
        std::thread reader([&] {
            auto c = client();
            const auto reply = c.send(streaming);
            if (!reply || reply->status != 200) qWarning("A: %s", reply ? reply->body.c_str() : httplib::to_string(reply.error()).c_str());
            a_ended = true;
        });
        while (a_tokens == 0 && !a_ended) QThread::msleep(5);
        const json b_batched = chat(b);
        const int a_tokens_when_b_ended = a_tokens;
        reader.join();
        QCOMPARE(b_batched["tokens"], b_alone["tokens"]);
        QCOMPARE(a_streamed_tokens, a_alone["tokens"]);
        QVERIFY2(a_tokens_when_b_ended < 120, qPrintable(QString("A had %1 tokens when B ended").arg(a_tokens_when_b_ended)));
    }

    void queueLimitTimeoutAndClientsThatHangUp() {
        QProcess server;
        const int port = persona_test::startServe(server, {"--max-queue", "1", "--max-tokens", "512", "--request-timeout", "1"});
        QVERIFY(port > 0);

        httplib::Request streaming = streamingRequest(question(512));
        int chunks = 0;
        int refused_status = 0;
        json refused;
        streaming.content_receiver = [&](const char*, std::size_t, std::uint64_t, std::uint64_t) {
            if (++chunks == 1) {  // the stream holds the only place now
                httplib::Client other("127.0.0.1", port);
                other.set_read_timeout(300, 0);
                if (const auto response = other.Post("/v1/chat/completions", question(1).dump(), "application/json")) {
                    refused_status = response->status;
                    refused = json::parse(response->body);
                }
            }
            return chunks < 3;  // then hang up
        };
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(300, 0);
        c.send(streaming);
        QCOMPARE(refused_status, 429);
        QCOMPARE(refused["error"]["type"], json("rate_limit_error"));

        int status = 0;
        for (int attempt = 0; attempt < 600 && status != 200; ++attempt) {  // once the server has seen the hang-up
            httplib::Client next("127.0.0.1", port);
            next.set_read_timeout(300, 0);
            const auto response = next.Post("/v1/chat/completions", question(1).dump(), "application/json");
            status = response ? response->status : 0;
            if (status != 200) QThread::msleep(100);
        }
        QCOMPARE(status, 200);
        httplib::Client slow("127.0.0.1", port);  // 512 tokens take seconds on a CPU
        slow.set_read_timeout(300, 0);
        const auto timed_out = slow.Post("/v1/chat/completions", question(512).dump(), "application/json");
        QVERIFY(timed_out);
        QCOMPARE(timed_out->status, 408);
        const json timeout_error = json::parse(timed_out->body)["error"];
        QCOMPARE(timeout_error["type"], json("timeout_error"));
        QVERIFY2(timeout_error["message"].get<std::string>().find("--request-timeout (1 s)") != std::string::npos,
                 timed_out->body.c_str());
        server.terminate();
        server.waitForFinished(10000);
        const QString log = QString::fromUtf8(server.readAllStandardError());
        const auto gone = QRegularExpression("the client went away after (\\d+) tokens").match(log);
        QVERIFY2(gone.hasMatch(), qPrintable(log));
        QVERIFY2(gone.captured(1).toInt() < 512, qPrintable(log));
    }

    void badRequestsGetJsonErrors_data() {
        QTest::addColumn<QString>("body");
        QTest::addColumn<int>("status");
        QTest::addColumn<QString>("param");
        const auto with = [](const json& steering) {
            return QString::fromStdString(json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"steering", steering}}.dump());
        };
        QTest::newRow("path out of the folder") << with({{{"vector", "../../etc/passwd"}, {"layer", 8}, {"coefficient", 1}}}) << 400 << "steering.vector";
        QTest::newRow("symlink out of the folder") << with({{{"vector", "escape.safetensors"}, {"layer", 8}, {"coefficient", 1}}}) << 400 << "steering.vector";
        QTest::newRow("unknown vector") << with({{{"vector", "nope.safetensors"}, {"layer", 8}, {"coefficient", 1}}}) << 400 << "steering.vector";
        QTest::newRow("layer out of range") << with({{{"vector", kEvil}, {"layer", 31}, {"coefficient", 1}}}) << 400 << "steering.layer";
        QTest::newRow("inline vector of the wrong size") << with({{{"vector", {1, 2, 3}}, {"layer", 8}, {"coefficient", 1}}}) << 400 << "steering.vector";
        QTest::newRow("unknown op") << with({{{"vector", kEvil}, {"layer", 8}, {"coefficient", 1}, {"op", "clamp"}}}) << 400 << "steering.op";
        QTest::newRow("probe layer out of range")
            << QString::fromStdString(json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"probe", {{"vector", kEvil}, {"layers", {40}}}}}.dump())
            << 400 << "probe.layers";
        QTest::newRow("probe direction of the wrong size")
            << QString::fromStdString(json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"probe", {{"layers", {3}}, {"directions", {{1, 2}}}}}}.dump())
            << 400 << "probe.directions";
        QTest::newRow("probe path out of the folder")
            << QString::fromStdString(json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"probe", {{"vector", "../x.safetensors"}}}}.dump())
            << 400 << "probe.vector";
        QTest::newRow("max_tokens over the limit") << R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000})" << 400 << "max_tokens";
        QTest::newRow("no messages") << R"({"model": "x"})" << 400 << "messages";
        QTest::newRow("not JSON") << "{" << 400 << "";
        QTest::newRow("top_logprobs over 20") << R"({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 21})" << 400 << "top_logprobs";
        QTest::newRow("top_logprobs without logprobs") << R"({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2})" << 400 << "top_logprobs";
        std::string long_text;  // 9,000 tokens: SmolLM2's context is 8,192
        for (int i = 0; i < 9000; ++i) long_text += " hello";
        QTest::newRow("prompt over the context")
            << QString::fromStdString(json{{"messages", {{{"role", "user"}, {"content", long_text}}}}}.dump()) << 400 << "";
        QTest::newRow("body over --max-body") << QString(100001, 'x') << 413 << "";
    }

    void badRequestsGetJsonErrors() {
        QFETCH(QString, body);
        QFETCH(int, status);
        QFETCH(QString, param);
        auto c = client();
        const auto response = c.Post("/v1/chat/completions", body.toStdString(), "application/json");
        QVERIFY(response);
        QCOMPARE(response->status, status);
        const json error = json::parse(response->body);
        QVERIFY(!error["error"]["message"].get<std::string>().empty());
        if (!param.isEmpty()) QCOMPARE(QString::fromStdString(error["error"]["param"].get<std::string>()), param);
        QVERIFY(client().Get("/health"));  // still serving
    }

    void wrongKeyIsRefused() {
        auto c = client("wrong-key-1234");
        const auto response = c.Post("/v1/chat/completions", question(2).dump(), "application/json");
        QVERIFY(response);
        QCOMPARE(response->status, 401);
        QCOMPARE(json::parse(response->body)["error"]["type"], json("authentication_error"));
        QCOMPARE(client("").Get("/v1/models")->status, 401);
    }

    void openAddressNeedsAKey() {
        auto environment = QProcessEnvironment::systemEnvironment();
        environment.remove("PERSONA_API_KEY");
        const auto run = persona_test::runCli({"serve", "--host", "0.0.0.0", "--port", "0"}, 60000, environment);
        QCOMPARE(run.exitCode, 2);
        QVERIFY(run.err.contains("--api-key"));
    }
};

QTEST_GUILESS_MAIN(TestServe)
#include "test_serve.moc"
