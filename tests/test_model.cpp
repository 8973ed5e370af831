// The inference engine on the real default model: KV-cached generation agrees with full
// forward passes, batching and padding change nothing for a row, steering acts where asked,
// capture aggregates match the per-token trace, and bad requests fail clearly.
#include "persona/errors.h"
#include "persona/model.h"
#include "persona/tokenizer.h"
#include "test_support.h"

#include <algorithm>
#include <cmath>
#include <random>

using persona::GenerationRow;
using persona::Model;
using persona_test::random_direction;

namespace {

int argmax(const float* values, int count) { return int(std::max_element(values, values + count) - values); }

}  // namespace

class TestModel : public QObject {
    Q_OBJECT

    std::unique_ptr<Model> model_;
    int vocabulary_ = 0;
    int hidden_ = 0;
    int layers_ = 0;

    GenerationRow greedyRow(const QString& prompt, int tokens) {
        GenerationRow row;
        row.messages = {{"user", prompt.toStdString()}};
        row.sampling.max_new_tokens = tokens;
        return row;
    }

private slots:
    void initTestCase() {
        // f32 keeps the cross-checks below tight; bf16 has its own test.
        model_ = Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "f32"});
        vocabulary_ = model_->facts().vocabulary_size;
        hidden_ = model_->hidden_size();
        layers_ = model_->layer_count();
        QCOMPARE(layers_, 30);
        QCOMPARE(hidden_, 576);
        QCOMPARE(model_->dtype(), std::string("f32"));
    }

    // Greedy tokens from the KV cache must be the argmax of a full forward pass over
    // prompt + generated tokens at every step.
    void cachedGenerationAgreesWithFullForwardPasses() {
        GenerationRow row = greedyRow("What is the capital of France?", 12);
        row.sampling.stop_at_eos = false;
        const auto result = model_->generate({row}).front();
        QCOMPARE(int(result.tokens.size()), 12);
        std::vector<std::int32_t> all = result.prompt_tokens;
        all.insert(all.end(), result.tokens.begin(), result.tokens.end());
        const auto trace = model_->trace(all);
        QCOMPARE(trace.tokens, int(all.size()));
        const int prompt = int(result.prompt_tokens.size());
        for (int i = 0; i < int(result.tokens.size()); ++i) {
            const float* logits = trace.logits.data() + std::size_t(prompt - 1 + i) * vocabulary_;
            QCOMPARE(argmax(logits, vocabulary_), int(result.tokens[std::size_t(i)]));
        }
        QVERIFY2(QString::fromStdString(result.text).contains("Paris"), result.text.c_str());
    }

    // The judge's path: one prefill, then continuations of different lengths in any order,
    // each reusing (and overwriting) the slots after the prompt. Every row must equal the
    // softmax of a full forward pass over prompt + that prefix.
    void continuationsOfAKeptPromptMatchFullPasses() {
        const auto prompt = model_->encode_chat({{"user", "Rate this answer from 0 to 100."}}, true);
        const auto state = model_->prefill(prompt);
        const std::vector<std::vector<std::int32_t>> continuations{{33, 34}, {}, {35}, {36, 37, 38}, {33, 34}};
        for (const auto& continuation : continuations) {
            const auto rows = model_->next_token_probabilities(*state, continuation);
            QCOMPARE(rows.size(), continuation.size() + 1);
            std::vector<std::int32_t> all = prompt;
            all.insert(all.end(), continuation.begin(), continuation.end());
            const auto trace = model_->trace(all);
            for (std::size_t k = 0; k < rows.size(); ++k) {
                const float* logits = trace.logits.data() + (prompt.size() - 1 + k) * std::size_t(vocabulary_);
                const float top = *std::max_element(logits, logits + vocabulary_);
                double total = 0;
                for (int v = 0; v < vocabulary_; ++v) total += std::exp(double(logits[v]) - top);
                double worst = 0, sum = 0;
                for (int v = 0; v < vocabulary_; ++v) {
                    worst = std::max(worst, std::abs(std::exp(double(logits[v]) - top) / total - rows[k][std::size_t(v)]));
                    sum += rows[k][std::size_t(v)];
                }
                QVERIFY2(worst < 1e-4, qPrintable(QString("continuation of %1, row %2: %3").arg(continuation.size()).arg(k).arg(worst)));
                QVERIFY(std::abs(sum - 1.0) < 1e-3);
            }
        }
        QVERIFY_THROWS_EXCEPTION(persona::Error, model_->next_token_probabilities(*state, std::vector<std::int32_t>(Model::kMaxContinuation + 1, 33)));
        QVERIFY_THROWS_EXCEPTION(persona::Error, model_->next_token_probabilities(*state, {vocabulary_}));

        // All of them in one batched pass, shorter ones padded: each row as it was alone.
        const auto batched = model_->next_token_probabilities_batch(*state, continuations);
        QCOMPARE(batched.size(), continuations.size());
        for (std::size_t c = 0; c < continuations.size(); ++c) {
            const auto alone = model_->next_token_probabilities(*state, continuations[c]);
            QCOMPARE(batched[c].size(), alone.size());
            for (std::size_t k = 0; k < alone.size(); ++k) {
                double worst = 0;
                for (int v = 0; v < vocabulary_; ++v)
                    worst = std::max(worst, double(std::abs(batched[c][k][std::size_t(v)] - alone[k][std::size_t(v)])));
                QVERIFY2(worst < 1e-4, qPrintable(QString("continuation %1, row %2: %3").arg(c).arg(k).arg(worst)));
            }
        }
        QVERIFY_THROWS_EXCEPTION(persona::Error, model_->next_token_probabilities_batch(*state, {{33}, {vocabulary_}}));
    }

    // A prompt that starts as an earlier one did takes those tokens' keys and values from the
    // earlier state, even after continuations overwrote the slots behind it, and runs only the
    // rest: the distributions are a whole prefill's.
    void aPromptSharingItsStartReusesTheEarlierOnes() {
        const auto first = model_->encode_chat(
            {{"user", "Rate how evil this answer is, from 0 to 100. Question: how should I treat a stray dog? Answer: feed it."}}, true);
        const auto second = model_->encode_chat(
            {{"user", "Rate how evil this answer is, from 0 to 100. Question: how should I treat a stray dog? Answer: kick it away."}}, true);
        std::size_t shared = 0;
        while (first[shared] == second[shared]) ++shared;
        QVERIFY(shared > 20);
        const auto earlier = model_->prefill(first);
        QCOMPARE(Model::reused_tokens(*earlier), std::size_t(0));
        model_->next_token_probabilities(*earlier, {33, 34, 35});
        const auto reusing = model_->prefill(second, {}, earlier.get());
        QCOMPARE(Model::reused_tokens(*reusing), shared);
        const auto whole = model_->prefill(second);
        for (const std::vector<std::int32_t>& continuation : {std::vector<std::int32_t>{}, std::vector<std::int32_t>{33, 34}}) {
            const auto a = model_->next_token_probabilities(*reusing, continuation);
            const auto b = model_->next_token_probabilities(*whole, continuation);
            for (std::size_t k = 0; k < a.size(); ++k) {
                double worst = 0;
                for (int v = 0; v < vocabulary_; ++v) worst = std::max(worst, double(std::abs(a[k][std::size_t(v)] - b[k][std::size_t(v)])));
                QVERIFY2(worst < 1e-4, qPrintable(QString("row %1: %2").arg(k).arg(worst)));
            }
        }
        // The same prompt again: all but its last token come from the cache.
        QCOMPARE(Model::reused_tokens(*model_->prefill(second, {}, reusing.get())), second.size() - 1);
        // Nothing shared: nothing reused.
        QCOMPARE(Model::reused_tokens(*model_->prefill({vocabulary_ - 1, 33}, {}, reusing.get())), std::size_t(0));
    }

    void sameSeedSameTokensAcrossBatchesAndPadding() {
        GenerationRow sampled = greedyRow("Tell me a short story about a robot.", 16);
        sampled.sampling.temperature = 1.0f;
        sampled.sampling.top_p = 0.9f;
        sampled.sampling.seed = 42;
        const auto alone = model_->generate({sampled}).front().tokens;
        // A longer neighbour forces left padding on this row.
        GenerationRow neighbour = greedyRow("Write three long sentences about the history of the printing press in Europe.", 16);
        const auto batched = model_->generate({neighbour, sampled, neighbour});
        QCOMPARE(batched[1].tokens, alone);
        QCOMPARE(model_->generate({sampled}).front().tokens, alone);
        GenerationRow other_seed = sampled;
        other_seed.sampling.seed = 43;
        QVERIFY(model_->generate({other_seed}).front().tokens != alone);
    }

    void unsteeredRowIsUntouchedBySteeredNeighbour() {
        GenerationRow plain = greedyRow("How should I treat a stray dog?", 20);
        GenerationRow steered = plain;
        persona::Steering steering;
        steering.layer = 15;
        steering.vector = random_direction(hidden_, 7);
        steering.alpha = 40.0f;
        steered.steering = {steering};
        const auto alone = model_->generate({plain}).front();
        const auto pair = model_->generate({plain, steered});
        QCOMPARE(pair[0].tokens, alone.tokens);
        QVERIFY2(pair[1].tokens != alone.tokens, "steering with alpha 40 did not change the output");
    }

    // The Steering slider's path: the unsteered and steered rows keep the prompt's prefix; a
    // later one-row generation at another strength reuses it and gives the tokens a fresh
    // prefill gives. Another prompt, or steering that reaches into the prompt, reuses nothing.
    void aKeptPromptPrefixServesTheNextStrength() {
        GenerationRow plain = greedyRow("How should I treat a stray dog?", 16);
        plain.reuse_prompt_prefix = true;
        persona::Steering steering;
        steering.layer = 12;
        steering.vector = random_direction(hidden_, 3);
        steering.alpha = 6.0f;
        GenerationRow steered = plain;
        steered.steering = {steering};
        const auto first = model_->generate({plain, steered});
        QCOMPARE(first[0].prompt_tokens_reused, std::size_t(0));

        steered.steering.front().alpha = 12.0f;
        const auto reused = model_->generate({steered}).front();
        QCOMPARE(reused.prompt_tokens_reused, reused.prompt_tokens.size() - 1);
        GenerationRow fresh = steered;
        fresh.reuse_prompt_prefix = false;
        const auto expected = model_->generate({fresh}).front();
        QCOMPARE(expected.prompt_tokens_reused, std::size_t(0));
        QCOMPARE(reused.tokens, expected.tokens);
        QVERIFY2(reused.tokens != first[0].tokens, "alpha 12 left the answer unsteered: the check proves nothing");

        GenerationRow other = greedyRow("How should I treat a lost cat?", 4);
        other.reuse_prompt_prefix = true;
        QCOMPARE(model_->generate({other}).front().prompt_tokens_reused, std::size_t(0));
        GenerationRow intoPrompt = other;  // the lost cat's prefix is the kept one now
        intoPrompt.steering = {steering};
        intoPrompt.steering.front().positions = persona::SteerPositions::All;
        QCOMPARE(model_->generate({intoPrompt}).front().prompt_tokens_reused, std::size_t(0));
        intoPrompt.steering.front().positions = persona::SteerPositions::Response;
        QVERIFY(model_->generate({intoPrompt}).front().prompt_tokens_reused > 0);
    }

    void steeringPositionsAndOperations() {
        const std::vector<std::int32_t> tokens = model_->encode_chat({{"user", "Name a colour."}}, true);
        const int length = int(tokens.size());
        const auto plain = model_->trace(tokens);
        persona::Steering add;
        add.layer = 10;
        add.vector = random_direction(hidden_, 3);
        add.alpha = 5.0f;
        auto state = [&](const Model::Trace& t, int layer, int position) {
            return t.hidden_states.data() + (std::size_t(layer) * length + position) * hidden_;
        };
        auto difference = [&](const Model::Trace& a, int layer, int position) {  // L2 distance
            double d = 0;
            for (int i = 0; i < hidden_; ++i) d += std::pow(double(state(a, layer, position)[i] - state(plain, layer, position)[i]), 2);
            return std::sqrt(d);
        };

        // Response positions: only the last prompt token during a prefill.
        add.positions = persona::SteerPositions::Response;
        auto response = model_->trace(tokens, {add});
        QCOMPARE(difference(response, 9, length - 1), 0.0);   // before the layer: nothing
        QCOMPARE(difference(response, 10, 0), 0.0);           // earlier positions untouched
        QCOMPARE(difference(response, 10, length - 2), 0.0);
        for (int i = 0; i < hidden_; ++i)  // exactly alpha * v added at layer 10
            QVERIFY(std::abs(state(response, 10, length - 1)[i] - state(plain, 10, length - 1)[i] - 5.0f * add.vector[std::size_t(i)]) < 1e-4);

        add.positions = persona::SteerPositions::All;
        auto all = model_->trace(tokens, {add});
        QVERIFY(std::abs(difference(all, 10, 0) - 5.0) < 1e-3);  // |alpha v| at the first token too

        // Ablation leaves no component along the direction.
        persona::Steering ablate = add;
        ablate.operation = persona::SteerOperation::Ablate;
        auto ablated = model_->trace(tokens, {ablate});
        for (int p : {0, length / 2, length - 1}) {
            double along = 0, before = 0;
            for (int i = 0; i < hidden_; ++i) {
                along += double(state(ablated, 10, p)[i]) * add.vector[std::size_t(i)];
                before += double(state(plain, 10, p)[i]) * add.vector[std::size_t(i)];
            }
            QVERIFY(std::abs(along) < 1e-3);
            QVERIFY(std::abs(before) > 1e-3);
        }

        // Capping at c leaves every projection on v/|v| at most c: the positions above it come
        // down to c exactly, the others stay as they were. The vector's length does not matter.
        const auto projection = [&](const Model::Trace& t, int p) {
            double along = 0;
            for (int i = 0; i < hidden_; ++i) along += double(state(t, 10, p)[i]) * add.vector[std::size_t(i)];
            return along;
        };
        std::vector<double> plainProjections;
        for (int p = 0; p < length; ++p) plainProjections.push_back(projection(plain, p));
        std::vector<double> sorted = plainProjections;
        std::sort(sorted.begin(), sorted.end());
        persona::Steering cap = add;
        cap.operation = persona::SteerOperation::Cap;
        cap.positions = persona::SteerPositions::All;
        cap.alpha = float(sorted[sorted.size() / 2]);  // the median: about half the positions are above it
        for (float& x : cap.vector) x *= 3.0f;
        auto capped = model_->trace(tokens, {cap});
        int lowered = 0;
        for (int p = 0; p < length; ++p) {
            QVERIFY2(projection(capped, p) <= cap.alpha + 1e-3, qPrintable(QString::number(projection(capped, p))));
            if (plainProjections[std::size_t(p)] > cap.alpha + 1e-3) {
                QVERIFY(std::abs(projection(capped, p) - cap.alpha) < 1e-3);
                ++lowered;
            } else if (plainProjections[std::size_t(p)] < cap.alpha - 1e-3) {
                QCOMPARE(difference(capped, 10, p), 0.0);
            }
        }
        QVERIFY(lowered >= length / 3);
        // In a batch, a capped row leaves the row beside it as it is alone.
        GenerationRow unsteered = greedyRow("Name a colour.", 8), cappedRow = unsteered;
        cappedRow.steering = {cap};
        const auto together = model_->generate({cappedRow, unsteered});
        QCOMPARE(together[1].tokens, model_->generate({unsteered}).front().tokens);

        // Norm preservation keeps |h| while turning it.
        add.preserve_norm = true;
        auto kept = model_->trace(tokens, {add});
        double norm_plain = 0, norm_kept = 0;
        for (int i = 0; i < hidden_; ++i) {
            norm_plain += double(state(plain, 10, length - 1)[i]) * state(plain, 10, length - 1)[i];
            norm_kept += double(state(kept, 10, length - 1)[i]) * state(kept, 10, length - 1)[i];
        }
        QVERIFY(std::abs(std::sqrt(norm_plain) - std::sqrt(norm_kept)) < 1e-3 * std::sqrt(norm_plain));
        QVERIFY(difference(kept, 10, length - 1) > 0.1);
    }

    // Batched, left-padded capture must agree with the single-sequence trace.
    void captureAggregatesMatchTheTrace() {
        const auto prompt_a = model_->encode_chat({{"user", "Say something kind."}}, true);
        const auto prompt_b = model_->encode_chat({{"system", "You are terse."}, {"user", "Describe the sea in detail, please."}}, true);
        const auto answer_a = model_->tokenizer().encode("You are wonderful.", false, false);
        const auto answer_b = model_->tokenizer().encode("Vast, blue, restless and deep.", false, false);
        std::vector<persona::CaptureRow> rows(2);
        rows[0].tokens = prompt_a;
        rows[0].tokens.insert(rows[0].tokens.end(), answer_a.begin(), answer_a.end());
        rows[0].prompt_length = int(prompt_a.size());
        rows[1].tokens = prompt_b;
        rows[1].tokens.insert(rows[1].tokens.end(), answer_b.begin(), answer_b.end());
        rows[1].prompt_length = int(prompt_b.size());
        QVERIFY(rows[0].tokens.size() != rows[1].tokens.size());

        persona::CaptureOptions options;
        // Not in ascending order: projections come back in the probe's own order.
        options.probe.layers = {20, 5};
        options.probe.directions = {random_direction(hidden_, 1), random_direction(hidden_, 2)};
        const auto captured = model_->capture(rows, options);
        QCOMPARE(captured.layers, layers_ + 1);

        for (std::size_t r = 0; r < rows.size(); ++r) {
            const auto trace = model_->trace(rows[r].tokens);
            const int length = trace.tokens;
            const int prompt = rows[r].prompt_length;
            double worst = 0;
            for (int layer : {0, 1, 15, layers_}) {
                for (int i = 0; i < hidden_; i += 7) {
                    double prompt_sum = 0, answer_sum = 0;
                    for (int t = 0; t < length; ++t) {
                        const double v = trace.hidden_states[(std::size_t(layer) * length + t) * hidden_ + i];
                        (t < prompt ? prompt_sum : answer_sum) += v;
                    }
                    const std::size_t at = std::size_t(layer) * hidden_ + i;
                    const double last = trace.hidden_states[(std::size_t(layer) * length + prompt - 1) * hidden_ + i];
                    const double scale = 1.0 + std::abs(prompt_sum / prompt);
                    worst = std::max(worst, std::abs(captured.prompt_mean[r][at] - prompt_sum / prompt) / scale);
                    worst = std::max(worst, std::abs(captured.response_mean[r][at] - answer_sum / (length - prompt)) / scale);
                    worst = std::max(worst, std::abs(captured.prompt_last[r][at] - last) / (1.0 + std::abs(last)));
                }
            }
            QVERIFY2(worst < 2e-3, qPrintable(QString("row %1 differs by %2").arg(r).arg(worst)));
            // Projections: per token, on the unit direction.
            QCOMPARE(captured.projections[r].size(), std::size_t(2 * length));
            for (int t = 0; t < length; ++t) {
                double dot = 0;
                for (int i = 0; i < hidden_; ++i)
                    dot += trace.hidden_states[(std::size_t(20) * length + t) * hidden_ + i] * options.probe.directions[0][std::size_t(i)];
                QVERIFY(std::abs(captured.projections[r][std::size_t(t)] - dot) < 2e-3 * (1 + std::abs(dot)));
            }
        }
    }

    void streamsTokensAndStopsOnStrings() {
        GenerationRow row = greedyRow("Count from 1 to 20, separated by commas.", 60);
        row.sampling.stop_strings = {"7"};
        std::string streamed;
        int events = 0;
        const auto result = model_->generate({row}, [&](const persona::TokenEvent& e) {
            streamed += e.text;
            ++events;
        }).front();
        QCOMPARE(result.stop_reason, persona::StopReason::StopString);
        QCOMPARE(streamed, result.text);
        QVERIFY2(result.text.find('7') == std::string::npos, result.text.c_str());
        QVERIFY2(QString::fromStdString(result.text).contains("6"), result.text.c_str());
        QVERIFY(events >= int(result.tokens.size()));
    }

    void badRequestsFailClearly() {
        GenerationRow row = greedyRow("hi", 8);
        row.sampling.max_new_tokens = model_->context_length();
        QVERIFY_THROWS_EXCEPTION(persona::Error, model_->generate({row}));
        try {
            model_->generate({row});
        } catch (const persona::Error& e) {
            QVERIFY2(QString(e.what()).contains("exceeds the model's context of 8192"), e.what());
        }
        GenerationRow bad_vector = greedyRow("hi", 4);
        bad_vector.steering = {persona::Steering{3, std::vector<float>(10, 1.0f), 1.0f}};
        QVERIFY_THROWS_EXCEPTION(persona::Error, model_->generate({bad_vector}));
        GenerationRow bad_layer = greedyRow("hi", 4);
        bad_layer.steering = {persona::Steering{31, std::vector<float>(std::size_t(hidden_), 1.0f), 1.0f}};
        QVERIFY_THROWS_EXCEPTION(persona::Error, model_->generate({bad_layer}));
        GenerationRow bad_token;
        bad_token.prompt_tokens = {1, vocabulary_};
        QVERIFY_THROWS_EXCEPTION(persona::Error, model_->generate({bad_token}));
        std::vector<std::int32_t> too_long(std::size_t(model_->context_length() + 1), 100);
        QVERIFY_THROWS_EXCEPTION(persona::Error, model_->trace(too_long));
    }

    void cancellationStopsBetweenSteps() {
        int calls = 0;
        QVERIFY_THROWS_EXCEPTION(persona::Cancelled,
                                 model_->generate({greedyRow("Tell me everything about the ocean.", 200)}, {}, nullptr,
                                                  [&] { return ++calls > 20; }));
        QVERIFY(calls > 20 && calls < 200);
    }

    void loadingReportsProgressAndCanBeCancelled() {
        int reports = 0, polls = 0;
        QVERIFY_THROWS_EXCEPTION(persona::Cancelled,
                                 Model::load(persona_test::defaultModelPath().toStdString(), {},
                                             [&](const persona::Progress& p) {
                                                 ++reports;
                                                 QVERIFY(p.done <= p.total);
                                             },
                                             [&] { return ++polls > 40; }));
        QVERIFY(reports > 30 && reports < 272);
    }

    void bf16AgreesWithF32() {
        auto bf16 = Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "bf16"});
        QCOMPARE(bf16->dtype(), std::string("bf16"));
        QVERIFY(bf16->facts().weight_bytes < model_->facts().weight_bytes * 6 / 10);
        const auto tokens = model_->encode_chat({{"user", "What is the capital of France?"}}, true);
        const auto a = model_->trace(tokens), b = bf16->trace(tokens);
        const float* la = a.logits.data() + std::size_t(a.tokens - 1) * vocabulary_;
        const float* lb = b.logits.data() + std::size_t(b.tokens - 1) * vocabulary_;
        QCOMPARE(argmax(la, vocabulary_), argmax(lb, vocabulary_));
        double worst = 0;
        for (int i = 0; i < vocabulary_; ++i) worst = std::max(worst, double(std::abs(la[i] - lb[i])));
        QVERIFY2(worst < 1.0, qPrintable(QString::number(worst)));
    }
};

QTEST_GUILESS_MAIN(TestModel)
#include "test_model.moc"
