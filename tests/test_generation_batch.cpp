// Continuous batching on the real default model, in the dtype the server runs (auto): rows that
// join a running batch at different steps, with different prompts, steering and sampling, give
// exactly the tokens and text each gives alone; a removed row leaves the others untouched; a bad
// row is refused without disturbing the batch.
#include "persona/errors.h"
#include "persona/generation_batch.h"
#include "persona/model.h"
#include "test_support.h"

#include <algorithm>
#include <cmath>
#include <map>

using persona::GenerationBatch;
using persona::GenerationRow;
using persona::Model;

class TestGenerationBatch : public QObject {
    Q_OBJECT

    std::unique_ptr<Model> model_;

    static GenerationRow row(const std::string& prompt, int tokens) {
        GenerationRow r;
        r.messages = {{"user", prompt}};
        r.sampling.max_new_tokens = tokens;
        return r;
    }

    persona::Steering steering(persona::SteerOperation operation, float alpha, unsigned seed) const {
        persona::Steering s;
        s.layer = 15;
        s.vector = persona_test::random_direction(model_->hidden_size(), seed);
        s.alpha = alpha;
        s.operation = operation;
        return s;
    }

    // What a batch hands out for each row id: its streamed tokens (in step order) and its result.
    struct Collected {
        std::map<int, std::vector<std::int32_t>> streamed;
        std::map<int, std::string> streamed_text;
        std::map<int, persona::GenerationResult> ended;
    };
    GenerationBatch::TokenFn collect(Collected& into) {
        return [&into](const persona::TokenEvent& event) {
            auto& tokens = into.streamed[event.row];
            QCOMPARE(event.step, int(tokens.size()));  // steps arrive in order, none skipped
            tokens.push_back(event.token);
            into.streamed_text[event.row] += event.text;
        };
    }
    static void take(Collected& into, std::vector<GenerationBatch::Ended> ended) {
        for (auto& e : ended) {
            QVERIFY2(!into.ended.count(e.id), "a row ended twice");
            into.ended[e.id] = std::move(e.result);
        }
    }
    static void drain(GenerationBatch& batch, Collected& into) {
        for (int guard = 0; guard < 1000 && (batch.size() > 0 || batch.ended_waiting() > 0); ++guard) take(into, batch.step());
        QCOMPARE(batch.size(), std::size_t(0));
    }
    void expectSolo(const GenerationRow& request, const persona::GenerationResult& got, const std::string& streamed_text) {
        const auto alone = model_->generate({request}).front();
        QCOMPARE(persona_test::ids_text(got.tokens), persona_test::ids_text(alone.tokens));
        QCOMPARE(got.text, alone.text);
        QCOMPARE(streamed_text, alone.text);
        QCOMPARE(int(got.stop_reason), int(alone.stop_reason));
        QCOMPARE(got.prompt_tokens, alone.prompt_tokens);
    }

private slots:
    void initTestCase() { model_ = Model::load(persona_test::defaultModelPath().toStdString()); }

    // A joins first; B (sampled, steered) after three steps; C, whose prompt is longer than A
    // has become, after two more, so the running rows move right to make room; a cap and a stop
    // string on C.
    void rowsJoiningMidwayGiveTheirSoloTokens() {
        GenerationRow a = row("What is the capital of France?", 24);
        a.sampling.stop_at_eos = false;
        GenerationRow b = row("Tell me a short story about a robot.", 20);
        b.sampling.temperature = 1.0f;
        b.sampling.top_p = 0.9f;
        b.sampling.seed = 42;
        b.steering = {steering(persona::SteerOperation::Add, 8.0f, 7)};
        GenerationRow c = row("Write three long sentences about the history of the printing press in Europe, from "
                              "Gutenberg's workshop in Mainz to the spread of presses across Venice, Paris and London, "
                              "and say what it changed for readers, scholars and the church.", 16);
        c.steering = {steering(persona::SteerOperation::Cap, 0.5f, 9)};
        c.sampling.stop_strings = {"printing"};
        c.sampling.top_logprobs = 2;

        GenerationBatch batch(*model_);
        Collected got;
        const int ida = batch.add(a, collect(got));
        QCOMPARE(batch.size(), std::size_t(1));
        for (int i = 0; i < 3; ++i) take(got, batch.step());
        const int idb = batch.add(b, collect(got));
        QCOMPARE(batch.size(), std::size_t(2));
        for (int i = 0; i < 2; ++i) take(got, batch.step());
        const std::size_t a_filled = model_->encode_chat(a.messages, true).size() + 5;
        QVERIFY2(model_->encode_chat(c.messages, true).size() > a_filled, "C's prompt must outgrow the running rows");
        const int idc = batch.add(c, collect(got));
        QCOMPARE(got.streamed[idc].size(), std::size_t(1));  // its first token came with the prefill
        drain(batch, got);
        QCOMPARE(got.ended.size(), std::size_t(3));
        expectSolo(a, got.ended[ida], got.streamed_text[ida]);
        expectSolo(b, got.ended[idb], got.streamed_text[idb]);
        expectSolo(c, got.ended[idc], got.streamed_text[idc]);
        QCOMPARE(got.streamed[ida].size(), std::size_t(24));
        GenerationRow b_plain = b;
        b_plain.steering.clear();
        QVERIFY2(model_->generate({b_plain}).front().tokens != got.ended[idb].tokens, "B's steering changed nothing");
    }

    // The heat maps' numbers: a probed row's projections in a batch are those generate gives.
    void probedRowsGiveGeneratesProjections() {
        persona::ProjectionProbe probe;
        for (int layer : {0, 8, 15, 30}) {
            probe.layers.push_back(layer);
            probe.directions.push_back(persona_test::random_direction(model_->hidden_size(), 100 + unsigned(layer)));
        }
        GenerationRow a = row("Describe the sea in one sentence.", 10);
        a.sampling.stop_at_eos = false;
        a.steering = {steering(persona::SteerOperation::Add, 6.0f, 5)};
        std::vector<std::vector<float>> alone;
        model_->generate({a}, [&](const persona::TokenEvent& event) { alone.push_back(event.projections); }, &probe);

        GenerationBatch batch(*model_);
        Collected got;
        std::vector<std::vector<float>> batched;
        batch.add(row("Name three colours.", 12), collect(got));
        take(got, batch.step());
        batch.add(a, [&](const persona::TokenEvent& event) { batched.push_back(event.projections); }, {}, &probe);
        drain(batch, got);
        QCOMPARE(batched.size(), alone.size());
        double largest = 0, scale = 0;
        for (std::size_t t = 0; t < alone.size(); ++t) {
            QCOMPARE(batched[t].size(), probe.layers.size());
            for (std::size_t i = 0; i < alone[t].size(); ++i) {
                largest = std::max(largest, double(std::abs(batched[t][i] - alone[t][i])));
                scale = std::max(scale, double(std::abs(alone[t][i])));
            }
        }
        QVERIFY2(scale > 0.1, "the probe saw nothing");
        QVERIFY2(largest <= 1e-4 * scale, qPrintable(QString("largest difference %1 of %2").arg(largest).arg(scale)));
    }

    void aRemovedRowLeavesTheOthersAsTheyWere() {
        GenerationRow a = row("Name three colours.", 30);
        a.sampling.stop_at_eos = false;
        GenerationRow b = row("How should I treat a stray dog?", 18);
        GenerationBatch batch(*model_);
        Collected got;
        const int ida = batch.add(a, collect(got));
        const int idb = batch.add(b, collect(got));
        for (int i = 0; i < 4; ++i) take(got, batch.step());
        QVERIFY(batch.remove(ida));
        QVERIFY(!batch.remove(ida));
        QCOMPARE(batch.size(), std::size_t(1));
        const std::size_t a_tokens = got.streamed[ida].size();
        drain(batch, got);
        QCOMPARE(got.streamed[ida].size(), a_tokens);  // nothing more for the removed row
        QVERIFY(!got.ended.count(ida));
        expectSolo(b, got.ended[idb], got.streamed_text[idb]);
    }

    void badRowsAreRefusedAndTheBatchGoesOn() {
        GenerationRow a = row("What is two plus two?", 12);
        a.sampling.stop_at_eos = false;
        GenerationBatch batch(*model_);
        Collected got;
        const int ida = batch.add(a, collect(got));
        take(got, batch.step());

        GenerationRow too_long;
        too_long.prompt_tokens.assign(std::size_t(model_->context_length()), 1);
        too_long.sampling.max_new_tokens = 4;
        QVERIFY(persona_test::errorOf([&] { batch.add(too_long, collect(got)); }).contains("exceeds the model's context"));
        GenerationRow wrong_vector = row("Hello", 4);
        wrong_vector.steering = {steering(persona::SteerOperation::Add, 1.0f, 3)};
        wrong_vector.steering.front().vector.resize(3);
        QVERIFY(persona_test::errorOf([&] { batch.add(wrong_vector, collect(got)); }).contains("steering vector has 3 values"));
        QCOMPARE(batch.size(), std::size_t(1));

        // Rows that end at once: no tokens asked for, or one.
        const int none = batch.add(row("Hello", 0), collect(got));
        const int one = batch.add(row("Hello", 1), collect(got));
        QCOMPARE(batch.size(), std::size_t(1));
        QCOMPARE(batch.ended_waiting(), std::size_t(2));
        take(got, batch.step());
        QVERIFY(got.ended.count(none) && got.ended[none].tokens.empty());
        QVERIFY(got.ended.count(one) && got.ended[one].tokens.size() == 1);

        QVERIFY_THROWS_EXCEPTION(persona::Cancelled, batch.step([] { return true; }));
        QCOMPARE(batch.size(), std::size_t(1));  // a cancelled step keeps the rows
        drain(batch, got);
        expectSolo(a, got.ended[ida], got.streamed_text[ida]);
    }
};

QTEST_GUILESS_MAIN(TestGenerationBatch)
#include "test_generation_batch.moc"
