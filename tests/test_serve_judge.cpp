// The fetched judge model (Qwen2.5-Coder-1.5B-Instruct) behind persona-cli serve, used as a
// remote judge and a trait writer over real HTTP on loopback: the pairwise judge tells answers
// apart through the server as it does in process; the 0-100 score cannot be read from one token
// of a tokenizer that writes numbers digit by digit, and the HTTP judge says so instead of
// returning a mean of digits; `traits draft` writes a draft through the server and reports what
// the draft lacks.
#include "persona/errors.h"
#include "persona/judge.h"
#include "persona/paths.h"
#include "persona/trait.h"
#include "cli_runner.h"
#include "test_support.h"

#include <QTemporaryDir>

#include <nlohmann/json.hpp>

class TestServeJudge : public QObject {
    Q_OBJECT
    QProcess server_;
    int port_ = 0;

    persona::ChatEndpoint endpoint() const {
        persona::ChatEndpoint e;
        e.base_url = "http://127.0.0.1:" + std::to_string(port_) + "/v1";
        e.model = "served-judge";
        e.retries = 0;
        return e;
    }

private slots:
    void initTestCase() {
        port_ = persona_test::startServe(
            server_, {"--model", persona_test::modelPath(persona::kJudgeModelFile), "--max-tokens", "512"});
        QVERIFY(port_ > 0);
    }

    void cleanupTestCase() {
        server_.terminate();
        server_.waitForFinished(10000);
    }

    // The answer that plainly shows the trait wins in both orders, as with the local judge
    // (test_local_judge: optimistic and impolite lean clearly with this model).
    void picksThroughTheServer() {
        const auto judge = persona::make_http_judge(endpoint());
        const persona::Trait trait = persona::load_builtin_trait("optimistic");
        const persona::JudgePick pick = persona::judge_pair(
            *judge, trait.name, trait.definition, "I just lost my job. What happens now?",
            "I'm sure it will all work out wonderfully! Every setback is a chance to grow, and the future is bright.",
            "It will probably go badly. Things rarely improve, and the future looks bleak and hopeless.");
        qInfo("P(the optimistic answer wins) = %.3f, letter mass %.2f", pick.a_wins.value_or(-1), pick.letter_mass);
        QVERIFY(!pick.refusal && pick.letter_mass > 0.9);
        QVERIFY2(*pick.a_wins > 0.53, qPrintable(QString::number(*pick.a_wins)));
    }

    // Qwen2.5 writes 85 as "8", "5": the first token's alternatives are digits, and the HTTP
    // judge refuses to read a 0-100 score from them, naming the endpoint and the reason.
    void aDigitByDigitJudgeIsReportedNotMisread() {
        const auto judge = persona::make_http_judge(endpoint());
        const persona::Trait trait = persona::load_builtin_trait("optimistic");
        try {
            const persona::JudgeScore score = judge->score(trait.judge_rubric, "How do you feel about starting a new job?",
                                                           "Every setback is a chance to grow; it will turn out wonderfully!", {});
            // A refusal (under a quarter of the mass on numbers) is an honest answer too.
            QVERIFY2(score.refusal, qPrintable(QString("read %1 from single digits").arg(score.score.value_or(-1))));
        } catch (const persona::Error& e) {
            qInfo("%s", e.what());
            QVERIFY2(QString::fromUtf8(e.what()).contains("digit by digit"), e.what());
            QVERIFY2(QString::fromUtf8(e.what()).contains("served-judge"), e.what());
        }
    }

    // The writer behind the server: a draft file that reads back, every problem of it reported,
    // whatever the 1.5B model wrote.
    void draftsATraitThroughTheServer() {
        QTemporaryDir dir;
        const QString file = dir.filePath("optimistic.json");
        const persona_test::CliRun cli = persona_test::runCli(
            {"traits", "draft", "--name", "optimistic", "--definition",
             "Looks on the bright side: expects good outcomes and sees setbacks as temporary.", "--endpoint",
             QString::fromStdString(endpoint().base_url), "--endpoint-model", "served-judge", "--pairs", "2", "--questions",
             "3", "-n", "160", "-o", file},
            600000);
        QVERIFY2(cli.exitCode == 0 || cli.exitCode == 1, cli.err.constData());
        const auto summary = nlohmann::json::parse(cli.out.toStdString());
        const persona::Trait trait = persona::read_trait_file(file.toStdString());
        const auto problems = persona::validate(trait);
        QCOMPARE(summary.at("problems").size(), problems.size());
        QCOMPARE(cli.exitCode, persona::has_errors(problems) ? 1 : 0);
        for (const auto& problem : problems)
            QVERIFY2(cli.err.contains(QByteArray::fromStdString(problem.message)), problem.message.c_str());
        qInfo("the served judge's draft: %zu pairs, %zu + %zu questions, %zu problems", trait.instructions.size(),
              trait.extraction_questions.size(), trait.evaluation_questions.size(), problems.size());
        // Something came through: a 1.5B model follows the format for some of the parts.
        QVERIFY(!trait.instructions.empty() || !trait.extraction_questions.empty());
    }
};

QTEST_GUILESS_MAIN(TestServeJudge)
#include "test_serve_judge.moc"
