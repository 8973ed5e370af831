// The engine's forward pass against an independent NumPy reference (tests/reference/
// numpy_forward.py, float64) on both real models: hidden states at every layer, logits, and
// greedy generation. Tolerances come from the golden files, measured there as how far a float32
// (or bf16) pass of the same reference drifts from float64.
#include "persona/model.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

using nlohmann::json;

namespace {

json readGolden(const char* name) {
    std::ifstream in(std::string(PERSONA_TEST_DATA_DIR) + "/" + name);
    if (!in) qFatal("cannot read golden %s", name);
    return json::parse(in);
}

std::vector<std::int32_t> ids(const json& array) { return array.get<std::vector<std::int32_t>>(); }

}  // namespace

class TestReference : public QObject {
    Q_OBJECT

    void compareF32(const char* goldenName, const QString& modelPath) {
        const json golden = readGolden(goldenName);
        const auto& tolerance = golden["precision"]["suggested_tolerance"]["float32"];
        const double hiddenRel = tolerance["hidden_rel"];
        const double logitsAbs = tolerance["logits_abs"];
        auto model = persona::Model::load(modelPath.toStdString(), persona::ModelLoadOptions{"cpu", "f32"});
        const int hidden = model->hidden_size(), layers = model->layer_count();
        const int vocabulary = model->facts().vocabulary_size;
        QCOMPARE(layers, golden["n_layers"].get<int>());

        const auto tokens = ids(golden["token_ids"]);
        const auto trace = model->trace(tokens);
        const int length = trace.tokens;
        auto state = [&](int layer, int position) {
            return trace.hidden_states.data() + (std::size_t(layer) * length + position) * hidden;
        };

        // Hidden states: every layer, every position, by norm; and the first values of two positions.
        double worst = 0;
        for (int layer = 0; layer <= layers; ++layer) {
            for (int p = 0; p < length; ++p) {
                const double expected = golden["hidden_states"]["norm"][layer][p];
                worst = std::max(worst, std::abs(persona_test::l2(state(layer, p), hidden) - expected) / expected);
            }
            for (const auto& [key, position] : {std::pair{"last_pos_first16", length - 1}, std::pair{"pos0_first16", 0}}) {
                const auto& expected = golden["hidden_states"][key][layer];
                const double scale = persona_test::l2(state(layer, position), hidden);
                for (int i = 0; i < 16; ++i)
                    worst = std::max(worst, std::abs(state(layer, position)[i] - expected[i].get<double>()) / scale);
            }
        }
        qInfo("%s: hidden states differ by at most %.2e (relative), tolerance %.0e", goldenName, worst, hiddenRel);
        QVERIFY2(worst < hiddenRel, qPrintable(QString::number(worst)));

        // Logits at the last position, and the top-1 at every position.
        const float* last = trace.logits.data() + std::size_t(length - 1) * vocabulary;
        double logitWorst = 0;
        for (const auto& pair : golden["logits"]["last_pos_top20"])
            logitWorst = std::max(logitWorst, std::abs(last[pair[0].get<int>()] - pair[1].get<double>()));
        const auto& fixed = golden["logits"]["fixed_ids"];
        for (std::size_t i = 0; i < fixed.size(); ++i)
            logitWorst = std::max(logitWorst, std::abs(last[fixed[i].get<int>()] - golden["logits"]["last_pos_fixed_logits"][i].get<double>()));
        double maxLogit = -1e30, sum = 0;
        for (int i = 0; i < vocabulary; ++i) maxLogit = std::max(maxLogit, double(last[i]));
        for (int i = 0; i < vocabulary; ++i) sum += std::exp(last[i] - maxLogit);
        logitWorst = std::max(logitWorst, std::abs(maxLogit + std::log(sum) - golden["logits"]["last_pos_logsumexp"].get<double>()));
        qInfo("%s: logits differ by at most %.2e, tolerance %.0e", goldenName, logitWorst, logitsAbs);
        QVERIFY2(logitWorst < logitsAbs, qPrintable(QString::number(logitWorst)));
        for (int p = 0; p < length; ++p) {
            const float* row = trace.logits.data() + std::size_t(p) * vocabulary;
            QCOMPARE(int(std::max_element(row, row + vocabulary) - row), golden["logits"]["top1_per_position"][p].get<int>());
        }

        // Greedy generation through the KV cache gives the reference's tokens.
        persona::GenerationRow row;
        row.prompt_tokens = tokens;
        row.sampling.max_new_tokens = golden["greedy"]["n_new"];
        row.sampling.stop_at_eos = false;
        QCOMPARE(model->generate({row}).front().tokens, ids(golden["greedy"]["ids"]));

        if (golden.contains("long_context")) {  // 640 tokens: the sliding window matters
            const auto& longContext = golden["long_context"];
            const auto longTrace = model->trace(ids(longContext["token_ids"]));
            const int n = longTrace.tokens;
            const float* lastLogits = longTrace.logits.data() + std::size_t(n - 1) * vocabulary;
            double longWorst = 0;
            for (const auto& pair : longContext["last_pos_top20"])
                longWorst = std::max(longWorst, std::abs(lastLogits[pair[0].get<int>()] - pair[1].get<double>()));
            qInfo("%s: %d-token sequence, logits differ by at most %.2e", goldenName, n, longWorst);
            QVERIFY2(longWorst < logitsAbs, qPrintable(QString::number(longWorst)));
            for (int layer = 0; layer <= layers; ++layer) {
                const double expected = longContext["last_pos_hidden_norm"][layer];
                const float* h = longTrace.hidden_states.data() + (std::size_t(layer) * n + n - 1) * hidden;
                QVERIFY(std::abs(persona_test::l2(h, hidden) - expected) / expected < hiddenRel);
            }
        }
    }

    void compareBf16(const char* goldenName, const QString& modelPath) {
        const json golden = readGolden(goldenName);
        const auto& tolerance = golden["precision"]["suggested_tolerance"]["bf16"];
        auto model = persona::Model::load(modelPath.toStdString(), persona::ModelLoadOptions{"cpu", "bf16"});
        const int vocabulary = model->facts().vocabulary_size;
        const auto tokens = ids(golden["token_ids"]);
        const auto trace = model->trace(tokens);
        const double margin = tolerance["top1_margin_threshold"];
        int compared = 0;
        for (int p = 0; p < trace.tokens; ++p) {
            if (golden["logits"]["top1_minus_top2_per_position"][p].get<double>() < margin) continue;
            const float* row = trace.logits.data() + std::size_t(p) * vocabulary;
            QCOMPARE(int(std::max_element(row, row + vocabulary) - row), golden["logits"]["top1_per_position"][p].get<int>());
            ++compared;
        }
        qInfo("%s: bf16 top-1 compared at %d of %d positions (margin > %.1f)", goldenName, compared, trace.tokens, margin);
        QVERIFY(compared >= 3);
        const float* last = trace.logits.data() + std::size_t(trace.tokens - 1) * vocabulary;
        for (const auto& pair : golden["logits"]["last_pos_top20"])
            QVERIFY(std::abs(last[pair[0].get<int>()] - pair[1].get<double>()) < tolerance["logits_abs"].get<double>());

        persona::GenerationRow row;
        row.prompt_tokens = tokens;
        row.sampling.max_new_tokens = tolerance["greedy_steps_safe"];
        row.sampling.stop_at_eos = false;
        const auto generated = model->generate({row}).front().tokens;
        const auto expected = ids(golden["greedy"]["ids"]);
        QCOMPARE(generated, std::vector<std::int32_t>(expected.begin(), expected.begin() + std::ptrdiff_t(generated.size())));
    }

private slots:
    void smollm2Float32() { compareF32("forward_goldens_smollm2.json", persona_test::defaultModelPath()); }
    void smollm2Bf16() { compareBf16("forward_goldens_smollm2.json", persona_test::defaultModelPath()); }
    void gemma3Float32() { compareF32("forward_goldens_gemma3.json", persona_test::secondModelPath()); }
    void gemma3Bf16() { compareBf16("forward_goldens_gemma3.json", persona_test::secondModelPath()); }
};

QTEST_GUILESS_MAIN(TestReference)
#include "test_reference.moc"
