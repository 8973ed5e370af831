// A model served by persona-cli serve, used as the workbench uses it in place of a local one
// (real HTTP on loopback, the real default model on both sides): its facts, and streamed
// generation whose tokens, text, stop reason and per-token projections are what the local
// Model::generate gives for the same row; a cancel frees the row at once; refusals are clear.
#include "cli_runner.h"
#include "test_support.h"

#include "persona/errors.h"
#include "persona/model.h"
#include "persona/served_model.h"

#include <QElapsedTimer>

#include <algorithm>
#include <cmath>

using persona::GenerationRow;

namespace {
const std::string kKey = "served-model-key";
}

class TestServedModel : public QObject {
    Q_OBJECT
    QProcess server_;
    persona::ServerAddress address_;
    std::unique_ptr<persona::Model> local_;

    static GenerationRow row(const std::string& prompt, int tokens) {
        GenerationRow r;
        r.messages = {{"system", "You are a helpful assistant."}, {"user", prompt}};
        r.sampling.max_new_tokens = tokens;
        return r;
    }

    struct Streamed {
        persona::GenerationResult result;
        std::vector<persona::TokenEvent> events;
        std::string text;
    };
    Streamed local(const GenerationRow& r, const persona::ProjectionProbe* probe = nullptr) {
        Streamed out;
        out.result = local_->generate({r}, [&](const persona::TokenEvent& e) { out.events.push_back(e); out.text += e.text; }, probe).front();
        return out;
    }
    Streamed served(const GenerationRow& r, const persona::ProjectionProbe* probe = nullptr) {
        Streamed out;
        out.result = persona::generate_served(address_, r, probe, [&](const persona::TokenEvent& e) { out.events.push_back(e); out.text += e.text; }, {});
        return out;
    }
    static void expectSame(const Streamed& here, const Streamed& there) {
        QCOMPARE(persona_test::ids_text(there.result.tokens), persona_test::ids_text(here.result.tokens));
        QCOMPARE(there.result.text, here.result.text);
        QCOMPARE(there.text, here.text);
        QCOMPARE(int(there.result.stop_reason), int(here.result.stop_reason));
        QCOMPARE(there.events.size(), here.events.size());
        for (std::size_t t = 0; t < here.events.size(); ++t) {
            QCOMPARE(there.events[t].step, here.events[t].step);
            QCOMPARE(there.events[t].token, here.events[t].token);
            QCOMPARE(there.events[t].text, here.events[t].text);
        }
    }

private slots:
    void initTestCase() {
        const int port = persona_test::startServe(server_, {"--api-key", QString::fromStdString(kKey)});
        QVERIFY(port > 0);
        address_.url = "http://127.0.0.1:" + std::to_string(port);
        address_.api_key = kKey;
        local_ = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "auto"});
    }

    void cleanupTestCase() {
        server_.terminate();
        server_.waitForFinished(10000);
    }

    void factsOfTheServedModel() {
        const persona::ModelFacts facts = persona::fetch_served_facts(address_);
        QCOMPARE(facts.layers, local_->layer_count());
        QCOMPARE(facts.hidden_size, local_->hidden_size());
        QCOMPARE(facts.fingerprint, local_->facts().fingerprint);
        QCOMPARE(facts.typical_residual_norms.size(), std::size_t(facts.layers + 1));  // the slider's calibration
        QVERIFY(facts.typical_residual_norms.back() > 0);
        QCOMPARE(facts.path, address_.url);
        persona::ServerAddress with_v1 = address_;
        with_v1.url += "/v1/";
        QCOMPARE(persona::fetch_served_facts(with_v1).name, facts.name);
    }

    // The Steering tab's pair: one steered and probed row, sampled with a seed.
    void aSteeredProbedRowIsTheLocalOne() {
        GenerationRow r = row("Describe your ideal weekend.", 24);
        r.sampling.temperature = 0.8f;
        r.sampling.top_p = 0.9f;
        r.sampling.top_k = 40;
        r.sampling.seed = 11;
        persona::Steering add;
        add.layer = 15;
        add.vector = persona_test::random_direction(local_->hidden_size(), 3);
        add.alpha = 6.0f;
        add.preserve_norm = true;
        persona::Steering cap = add;
        cap.operation = persona::SteerOperation::Cap;
        cap.layer = 10;
        cap.alpha = 0.5f;
        cap.preserve_norm = false;
        r.steering = {add, cap};
        persona::ProjectionProbe probe;
        for (int layer = 0; layer <= local_->layer_count(); layer += 6) {
            probe.layers.push_back(layer);
            probe.directions.push_back(persona_test::random_direction(local_->hidden_size(), 50 + unsigned(layer)));
        }
        const Streamed here = local(r, &probe);
        const Streamed there = served(r, &probe);
        expectSame(here, there);
        double largest = 0, scale = 0;
        for (std::size_t t = 0; t < here.events.size(); ++t) {
            QCOMPARE(there.events[t].projections.size(), probe.layers.size());
            for (std::size_t i = 0; i < probe.layers.size(); ++i) {
                largest = std::max(largest, double(std::abs(there.events[t].projections[i] - here.events[t].projections[i])));
                scale = std::max(scale, double(std::abs(here.events[t].projections[i])));
            }
        }
        QVERIFY(scale > 0.1);
        QVERIFY2(largest <= 1e-4 * scale, qPrintable(QString("largest difference %1 of %2").arg(largest).arg(scale)));
        GenerationRow plain = r;
        plain.steering.clear();
        QVERIFY(served(plain).result.tokens != there.result.tokens);
    }

    void stopStringsAndTheEndOfSequence() {
        GenerationRow stops = row("Count from one to twenty in words, separated by commas.", 60);
        stops.sampling.stop_strings = {" seated a"};  // held back across tokens until it is whole
        const Streamed with_stop = served(stops);
        expectSame(local(stops), with_stop);
        QCOMPARE(int(with_stop.result.stop_reason), int(persona::StopReason::StopString));
        GenerationRow short_answer = row("Answer with one word: what colour is the sky?", 60);
        const Streamed ended = served(short_answer);
        expectSame(local(short_answer), ended);
        QCOMPARE(int(ended.result.stop_reason), int(persona::StopReason::EndOfSequence));
    }

    void aCancelEndsTheRequestAtOnce() {
        GenerationRow r = row("Write a long story about a lighthouse keeper.", 400);
        r.sampling.stop_at_eos = false;
        int seen = 0;
        QElapsedTimer clock;
        clock.start();
        QVERIFY_THROWS_EXCEPTION(persona::Cancelled,
            persona::generate_served(address_, r, nullptr, [&](const persona::TokenEvent&) { ++seen; }, [&] { return seen >= 3; }));
        QVERIFY2(seen < 400, qPrintable(QString::number(seen)));
        // The server freed the row: a new request is answered.
        QCOMPARE(served(row("Hi", 2)).result.tokens.size(), std::size_t(2));
    }

    void refusalsAreClear() {
        persona::ServerAddress wrong_key = address_;
        wrong_key.api_key = "nope";
        const QString refused = persona_test::errorOf([&] { persona::fetch_served_facts(wrong_key); });
        QVERIFY2(refused.contains("HTTP 401") && refused.contains("API key"), qPrintable(refused));
        const QString unsteerable = persona_test::errorOf([&] {
            GenerationRow r = row("Hi", 2);
            persona::Steering bad;
            bad.layer = 99;
            bad.vector.assign(std::size_t(local_->hidden_size()), 1.0f);
            r.steering = {bad};
            served(r);
        });
        QVERIFY2(unsteerable.contains("HTTP 400") && unsteerable.contains("steering layer"), qPrintable(unsteerable));
        persona::ServerAddress nobody;
        nobody.url = "http://127.0.0.1:9";  // the discard port: nothing listens there
        QVERIFY(persona_test::errorOf([&] { persona::fetch_served_facts(nobody); }).contains("cannot reach"));
        nobody.url = "ftp://example";
        QVERIFY(persona_test::errorOf([&] { persona::fetch_served_facts(nobody); }).contains("not an endpoint URL"));
    }
};

QTEST_GUILESS_MAIN(TestServedModel)
#include "test_served_model.moc"
