// Steering sweeps: the recommendation rule and the calibration arithmetic on synthetic data, then
// small sweeps on the real default model (2 questions, 8 tokens, 2 layers x 3 coefficients).
#include "persona/errors.h"
#include "persona/extraction.h"
#include "persona/model.h"
#include "persona/project.h"
#include "persona/sweep.h"
#include "persona/trait.h"
#include "test_support.h"

#include <QFileInfo>
#include <QTemporaryDir>

#include <cmath>
#include <map>
#include <random>

using persona::RecommendationBasis;
using persona::SweepCell;
using persona::SweepSettings;

namespace {

QString errorOf(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return {};
}

// A cell of `answers` answers of which `scored` got judge numbers for both rubrics.
SweepCell cell(int layer, double coefficient, std::optional<double> trait, std::optional<double> coherence,
               int answers = 4, int scored = 4, std::optional<double> rise = std::nullopt) {
    SweepCell c;
    c.layer = layer;
    c.coefficient = coefficient;
    c.calibrated_strength = coefficient / 10;
    c.baseline = coefficient == 0;
    c.answers.resize(std::size_t(answers));
    c.mean_trait = trait;
    c.mean_coherence = coherence;
    c.trait_scored = c.coherence_scored = trait ? scored : 0;
    c.trait_refusals = c.coherence_refusals = answers - c.trait_scored;
    c.readback_rise_calibrated = rise;
    return c;
}

// hidden_states[layer] of the trace's token t.
const float* hiddenAt(const persona::Model::Trace& trace, int layer, int t, int hidden) {
    return trace.hidden_states.data() + (std::size_t(layer) * std::size_t(trace.tokens) + std::size_t(t)) * std::size_t(hidden);
}

double norm(const float* h, int n) {
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += double(h[i]) * h[i];
    return std::sqrt(sum);
}

bool close(double a, double b, double relative) { return std::abs(a - b) <= relative * std::max({std::abs(a), std::abs(b), 1e-9}); }

}  // namespace

class TestSweep : public QObject {
    Q_OBJECT

    std::unique_ptr<persona::Model> model_;
    persona::Trait trait_;

    SweepSettings tinySettings(std::vector<int> layers, std::vector<double> coefficients) const {
        SweepSettings settings;
        settings.layers = std::move(layers);
        settings.coefficients = std::move(coefficients);
        settings.question_limit = 2;
        settings.max_new_tokens = 8;
        settings.seed = 11;
        settings.judge = persona::JudgeKind::None;
        return settings;
    }

    // A fixed random direction, unit length, over every layer.
    persona::PersonaVector randomDirection() const {
        persona::PersonaVector v;
        v.trait = "random";
        v.layer_count = model_->layer_count() + 1;
        v.hidden_size = model_->hidden_size();
        std::mt19937 generator(1234);
        std::normal_distribution<float> normal;
        v.values.resize(std::size_t(v.layer_count) * std::size_t(v.hidden_size));
        for (float& x : v.values) x = normal(generator);
        for (int l = 0; l < v.layer_count; ++l) {
            const double n = v.layer_norm(l);
            for (int i = 0; i < v.hidden_size; ++i) v.values[std::size_t(l) * std::size_t(v.hidden_size) + std::size_t(i)] /= float(n);
        }
        return v;
    }

private slots:
    void initTestCase() {
        model_ = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "auto"});
        trait_ = persona::load_builtin_trait("optimistic");
    }

    // --- the rule, on synthetic cells --------------------------------------------------------

    void recommendsTheStrongestCoherentCell() {
        const std::vector<SweepCell> cells{
            cell(10, 0, 30, 90), cell(10, 4, 60, 80), cell(10, 8, 95, 20),  // strongest, but incoherent
            cell(14, 0, 30, 90), cell(14, 4, 70, 55), cell(14, 8, 70, 60),  // tie at 70: the gentler wins
        };
        const auto r = persona::recommend_steering(cells, 50);
        QCOMPARE(r.basis, RecommendationBasis::Scores);
        QCOMPARE(r.layer, 14);
        QCOMPARE(r.coefficient, 4.0);
        QCOMPARE(r.calibrated_strength, 0.4);
        QVERIFY2(QString::fromStdString(r.reason).contains("70"), r.reason.c_str());

        // A stricter threshold drops layer 14 (55, 60) and leaves layer 10's coefficient 4.
        const auto strict = persona::recommend_steering(cells, 75);
        QCOMPARE(strict.layer, 10);
        QCOMPARE(strict.coefficient, 4.0);
        // A lower one admits the incoherent 95.
        QCOMPARE(persona::recommend_steering(cells, 10).coefficient, 8.0);
    }

    void ignoresTheBaselineAndThinlyScoredCells() {
        // The baseline has the highest score but is no steering; the 90 was scored on 1 of 4 answers.
        const std::vector<SweepCell> cells{cell(10, 0, 80, 90), cell(10, 2, 90, 90, 4, 1), cell(10, 4, 50, 70)};
        const auto r = persona::recommend_steering(cells, 50);
        QCOMPARE(r.basis, RecommendationBasis::Scores);
        QCOMPARE(r.coefficient, 4.0);
        QVERIFY2(QString::fromStdString(r.reason).contains("does not beat the unsteered baseline"), r.reason.c_str());
        // Requiring only a quarter of the answers scored admits the 90.
        QCOMPARE(persona::recommend_steering(cells, 50, 0.25).coefficient, 2.0);
    }

    void withoutScoresFallsBackToTheProjection() {
        const std::vector<SweepCell> cells{cell(10, 0, {}, {}, 4, 0, 0.0), cell(10, 4, {}, {}, 4, 0, 0.02),
                                           cell(14, 0, {}, {}, 4, 0, 0.0), cell(14, 4, {}, {}, 4, 0, 0.05),
                                           cell(14, -4, {}, {}, 4, 0, -0.03)};
        const auto r = persona::recommend_steering(cells, 50);
        QCOMPARE(r.basis, RecommendationBasis::Projection);
        QCOMPARE(r.layer, 14);
        QCOMPARE(r.coefficient, 4.0);
        QVERIFY2(QString::fromStdString(r.reason).contains("no recommendation can be made from judge scores"), r.reason.c_str());
        QCOMPARE(QString(persona::recommendation_basis_name(r.basis)), QString("projection"));

        // Nothing moved along the vector: nothing to recommend.
        const auto none = persona::recommend_steering({cell(10, 0, {}, {}, 4, 0, 0.0), cell(10, 4, {}, {}, 4, 0, -0.01)}, 50);
        QCOMPARE(none.basis, RecommendationBasis::None);
    }

    void scoresWithoutACoherentCellRecommendNothing() {
        // Scores exist, so the projection must not overrule the judge's verdict of incoherence.
        const auto r = persona::recommend_steering({cell(10, 0, 20, 90), cell(10, 8, 90, 10, 4, 4, 0.3)}, 50);
        QCOMPARE(r.basis, RecommendationBasis::None);
        QVERIFY2(QString::fromStdString(r.reason).contains("coherence"), r.reason.c_str());
    }

    void calibrationConvertsBothWays() {
        persona::SweepCalibration calibration;
        calibration.layer_count = 3;
        calibration.vector_norms = {0, 2, 0};
        calibration.mean_residual_norms = {5, 40, 50};
        QCOMPARE(calibration.calibrated(1, 4), 0.2);
        QCOMPARE(calibration.coefficient(1, 0.2), 4.0);
        for (double c : {-8.0, -0.5, 0.0, 3.0, 100.0}) QVERIFY(close(calibration.coefficient(1, calibration.calibrated(1, c)), c, 1e-12));
        QVERIFY(errorOf([&] { calibration.calibrated(2, 1); }).contains("norm is zero"));
        QVERIFY(errorOf([&] { calibration.calibrated(3, 1); }).contains("outside 0..2"));
        QVERIFY(errorOf([&] { calibration.coefficient(-1, 1); }).contains("outside"));
    }

    void defaultLayersFollowTheSuggestedLayer() {
        persona::PersonaVector v;
        v.layer_count = 31;
        v.hidden_size = 1;
        v.values.assign(31, 1.0f);
        bool fromProvenance = true;
        QCOMPARE(persona::default_sweep_layers(v, 4, &fromProvenance), (std::vector<int>{10, 15, 20}));
        QVERIFY(!fromProvenance);
        v.provenance["suggested_layer"] = "12";
        QCOMPARE(persona::default_sweep_layers(v, 4, &fromProvenance), (std::vector<int>{8, 12, 16}));
        QVERIFY(fromProvenance);
        v.provenance["suggested_layer"] = "28";
        QCOMPARE(persona::default_sweep_layers(v), (std::vector<int>{24, 28, 30}));
        v.provenance["suggested_layer"] = "2";
        QCOMPARE(persona::default_sweep_layers(v), (std::vector<int>{1, 2, 6}));
    }

    // --- the real model --------------------------------------------------------------------------

    // A vector from a quick extraction (no judge), swept with the local judge: coefficient 0 is
    // an unsteered generation, the cells are measured as documented, progress reaches its totals.
    void sweepsAnExtractedVector() {
        persona::ExtractionSettings extraction;
        extraction.question_limit = 2;
        extraction.pair_limit = 1;
        extraction.max_new_tokens = 8;
        extraction.seed = 5;
        extraction.judge = persona::JudgeKind::None;
        const auto extracted = persona::run_extraction(*model_, trait_, extraction);
        const persona::PersonaVector& vector = extracted.aggregate(persona::Aggregate::ResponseMean).vector;
        const int hidden = model_->hidden_size();

        SweepSettings settings = tinySettings({10, 16}, {0, 4, 8});
        settings.judge = persona::JudgeKind::Local;
        std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> lastProgress;
        std::vector<SweepCell> streamed;
        const auto result = persona::run_sweep(*model_, trait_, vector, settings,
            [&](const persona::Progress& p) { lastProgress[p.stage] = {p.done, p.total}; },
            [&](const SweepCell& c) { streamed.push_back(c); });
        qInfo("extracted-vector sweep: %.1f s, %zu rows", result.seconds, result.rows_generated);

        QCOMPARE(result.cells.size(), std::size_t(6));
        QCOMPARE(streamed.size(), std::size_t(6));
        QVERIFY(streamed[0].baseline && streamed[1].baseline);  // the baseline's cells come first
        // One baseline shared by both layers: 2 questions + the prompting baseline's 2 + 2 layers x
        // 2 steered coefficients x 2.
        QCOMPARE(result.rows_generated, std::size_t(12));
        QCOMPARE(lastProgress["generate"], std::make_pair(std::uint64_t(12), std::uint64_t(12)));
        QCOMPARE(lastProgress["judge"], std::make_pair(std::uint64_t(12), std::uint64_t(12)));
        QCOMPARE(lastProgress["cells"], std::make_pair(std::uint64_t(6), std::uint64_t(6)));

        // Coefficient 0 at both layers is the same unsteered generation, with the sweep's seeds.
        std::vector<persona::GenerationRow> rows;
        for (int q = 0; q < 2; ++q) {
            persona::GenerationRow row;
            row.messages = {{"user", trait_.evaluation_questions[std::size_t(q)]}};
            row.sampling.temperature = 1.0f;
            row.sampling.max_new_tokens = 8;
            row.sampling.seed = persona::sweep_sample_seed(11, q, 0);
            rows.push_back(row);
        }
        const auto unsteered = model_->generate(rows);
        std::map<int, const SweepCell*> baseline;
        for (const SweepCell& c : result.cells)
            if (c.coefficient == 0) baseline[c.layer] = &c;
        QCOMPARE(baseline.size(), std::size_t(2));
        // Rows never share randomness; but in f32 through OpenBLAS (dtype auto on a CPU without
        // AVX512-BF16) the GEMM blocking follows the batch size, and a sampled token can flip on
        // the last bit. So the whole answer is compared with a batch of its own only where the
        // kernels are batch-independent (AVX512-BF16), the first token everywhere.
        const bool batchIndependent = persona_test::autoCpuDtype() == "bf16";
        const SweepCell* first = baseline.begin()->second;
        for (const auto& [layer, c] : baseline) {
            QVERIFY(c->baseline);
            QCOMPARE(c->answers.size(), std::size_t(2));
            for (int q = 0; q < 2; ++q) {
                QCOMPARE(c->answers[std::size_t(q)].tokens, first->answers[std::size_t(q)].tokens);  // one generation
                QCOMPARE(c->answers[std::size_t(q)].tokens.front(), unsteered[std::size_t(q)].tokens.front());
                if (batchIndependent) {
                    QCOMPARE(c->answers[std::size_t(q)].tokens, unsteered[std::size_t(q)].tokens);
                    QCOMPARE(c->answers[std::size_t(q)].text, unsteered[std::size_t(q)].text);
                }
            }
        }
        // The prompting baseline: the same questions and seeds, unsteered, under the trait's
        // first positive system prompt, judged like every cell.
        QVERIFY(result.prompting_baseline);
        QCOMPARE(result.prompting_system_prompt, persona::positive_system_prompt(trait_, 0));
        const SweepCell& prompted = *result.prompting_baseline;
        QCOMPARE(prompted.answers.size(), std::size_t(2));
        QCOMPARE(prompted.trait_scored + prompted.trait_refusals, 2);
        for (auto& row : rows) row.messages.insert(row.messages.begin(), {"system", result.prompting_system_prompt});
        const auto asked = model_->generate(rows);
        for (int q = 0; q < 2; ++q) {
            QCOMPARE(prompted.answers[std::size_t(q)].tokens.front(), asked[std::size_t(q)].tokens.front());
            if (batchIndependent) QCOMPARE(prompted.answers[std::size_t(q)].text, asked[std::size_t(q)].text);
        }

        // Steering changed something.
        bool differs = false;
        for (const SweepCell& c : result.cells)
            if (c.coefficient == 8)
                for (int q = 0; q < 2; ++q) differs |= c.answers[std::size_t(q)].tokens != unsteered[std::size_t(q)].tokens;
        QVERIFY(differs);

        for (const SweepCell& c : result.cells) {
            const int layer = c.layer;
            std::vector<float> unit(vector.layer(layer).begin(), vector.layer(layer).end());
            // The calibrated strength, from an independent trace of each prompt's last token.
            double meanNorm = 0;
            for (int q = 0; q < 2; ++q) {
                const auto prompt = model_->encode_chat({{"user", trait_.evaluation_questions[std::size_t(q)]}}, true);
                const auto trace = model_->trace(prompt);
                meanNorm += norm(hiddenAt(trace, layer, trace.tokens - 1, hidden), hidden) / 2;
            }
            const double expected = c.coefficient * vector.layer_norm(layer) / meanNorm;
            QVERIFY2(close(c.calibrated_strength, expected, 2e-3),
                     qPrintable(QString("layer %1 coefficient %2: calibrated %3, expected %4")
                                    .arg(layer).arg(c.coefficient).arg(c.calibrated_strength).arg(expected)));
            QVERIFY(close(result.calibration.coefficient(layer, c.calibrated_strength), c.coefficient, 1e-9));

            // Judge bookkeeping: every answer scored or refused, means over the scored ones.
            QCOMPARE(c.trait_scored + c.trait_refusals, int(c.answers.size()));
            QCOMPARE(c.coherence_scored + c.coherence_refusals, int(c.answers.size()));
            QCOMPARE(c.mean_trait.has_value(), c.trait_scored > 0);

            // The read-back projection is response_avg at the layer on the unit vector, as a
            // trace of prompt + answer computes it.
            const auto& answer = c.answers.front();
            if (answer.tokens.empty()) continue;
            auto tokens = model_->encode_chat({{"user", trait_.evaluation_questions[0]}}, true);
            const int promptLength = int(tokens.size());
            tokens.insert(tokens.end(), answer.tokens.begin(), answer.tokens.end());
            const auto trace = model_->trace(tokens);
            std::vector<double> meanActivation(std::size_t(hidden), 0.0);
            for (int t = promptLength; t < trace.tokens; ++t)
                for (int i = 0; i < hidden; ++i)
                    meanActivation[std::size_t(i)] += hiddenAt(trace, layer, t, hidden)[i] / double(trace.tokens - promptLength);
            std::vector<float> meanFloat(meanActivation.begin(), meanActivation.end());
            const double readback = persona::project(meanFloat.data(), unit.data(), hidden);
            QVERIFY(answer.readback_projection.has_value());
            QVERIFY2(std::abs(*answer.readback_projection - readback) < 2e-2 * (1 + std::abs(readback)),
                     qPrintable(QString("layer %1: read-back %2, traced %3").arg(layer).arg(*answer.readback_projection).arg(readback)));
        }
        // The projection measure rises with the coefficient at each layer (steering adds along v).
        for (int layer : {10, 16}) {
            std::vector<double> steered;
            for (const SweepCell& c : result.cells)
                if (c.layer == layer) steered.push_back(c.steered_projection);
            QCOMPARE(steered.size(), std::size_t(3));
            QVERIFY2(steered[0] < steered[1] && steered[1] < steered[2],
                     qPrintable(QString("layer %1: %2 %3 %4").arg(layer).arg(steered[0]).arg(steered[1]).arg(steered[2])));
        }
        // SmolLM2 judging itself mostly refuses; whatever it did, the recommendation follows the rule.
        const auto again = persona::recommend_steering(result.cells, settings.coherence_threshold);
        QCOMPARE(result.recommendation.basis, again.basis);
        QCOMPARE(result.recommendation.layer, again.layer);
        QVERIFY(!result.recommendation.reason.empty());
        qInfo("recommendation (%s): %s", persona::recommendation_basis_name(result.recommendation.basis),
              result.recommendation.reason.c_str());
    }

    // A random unit direction, coefficients given in calibrated units: converted per layer, and
    // the steered projection rises by about coefficient * |v| (= coefficient) per step.
    void calibratedCoefficientsOnARandomDirection() {
        const persona::PersonaVector vector = randomDirection();
        SweepSettings settings = tinySettings({8, 20}, {0.25, 0.5});
        settings.calibrated_coefficients = true;
        const auto result = persona::run_sweep(*model_, trait_, vector, settings);
        QCOMPARE(result.cells.size(), std::size_t(6));
        QCOMPARE(result.coefficients, (std::vector<double>{0, 0.25, 0.5}));
        for (int layer : {8, 20}) {
            std::vector<const SweepCell*> cells;
            for (const SweepCell& c : result.cells)
                if (c.layer == layer) cells.push_back(&c);
            QCOMPARE(cells.size(), std::size_t(3));
            const double residual = result.calibration.mean_residual_norms[std::size_t(layer)];
            for (std::size_t k = 0; k < 3; ++k) {
                QVERIFY(close(cells[k]->calibrated_strength, result.coefficients[k], 1e-12));
                // |v| = 1, so the raw coefficient is the calibrated strength times the residual norm.
                QVERIFY(close(cells[k]->coefficient, result.coefficients[k] * residual, 1e-5));
            }
            for (std::size_t k = 1; k < 3; ++k) {
                const double rise = cells[k]->steered_projection - cells[0]->steered_projection;
                QVERIFY2(rise > 0.5 * cells[k]->coefficient && rise < 1.5 * cells[k]->coefficient,
                         qPrintable(QString("layer %1: rise %2 for coefficient %3").arg(layer).arg(rise).arg(cells[k]->coefficient)));
            }
            qInfo("layer %d: mean residual norm %.1f, steered projections %.2f %.2f %.2f", layer, residual,
                  cells[0]->steered_projection, cells[1]->steered_projection, cells[2]->steered_projection);
        }
        // Without a judge there are no scores; the recommendation says so.
        QVERIFY(result.recommendation.basis != RecommendationBasis::Scores);
        QVERIFY2(QString::fromStdString(result.recommendation.reason).contains("no recommendation can be made from judge scores"),
                 result.recommendation.reason.c_str());
    }

    void cancelsMidSweep() {
        const persona::PersonaVector vector = randomDirection();
        SweepSettings settings = tinySettings({8, 20}, {0, 2, 4});
        settings.batch_size = 2;
        std::size_t cells = 0;
        bool cancel = false;
        const QString message = errorOf([&] {
            persona::run_sweep(*model_, trait_, vector, settings, {}, [&](const SweepCell&) {
                ++cells;
                cancel = true;
            }, [&] { return cancel; });
        });
        QCOMPARE(message, QString("cancelled"));
        QVERIFY(cells >= 1 && cells < 6);
        QVERIFY_THROWS_EXCEPTION(persona::Cancelled,
            persona::run_sweep(*model_, trait_, vector, settings, {}, [&](const SweepCell&) {}, [] { return true; }));
    }

    // Killed after its first cell, a checkpointed sweep resumes from its last finished batch and
    // ends with the cells an uninterrupted sweep gives; the checkpoint goes once it is done, and
    // another sweep's checkpoint is refused.
    void killedSweepResumesWithTheSameCells() {
        const persona::PersonaVector vector = randomDirection();
        SweepSettings settings = tinySettings({8, 20}, {0, 3});
        settings.batch_size = 3;  // batches cross groups: a resumed row can be waiting for its judge
        settings.judge = persona::JudgeKind::Local;
        const auto whole = persona::run_sweep(*model_, trait_, vector, settings);

        QTemporaryDir dir;
        settings.checkpoint_path = dir.filePath("sweep.checkpoint.json").toStdString();
        bool cancel = false;
        QCOMPARE(errorOf([&] {
            persona::run_sweep(*model_, trait_, vector, settings, {}, [&](const SweepCell&) { cancel = true; },
                               [&] { return cancel; });
        }), QString("cancelled"));
        QVERIFY(QFileInfo::exists(QString::fromStdString(settings.checkpoint_path)));

        SweepSettings other = settings;
        other.seed = 12;
        const QString refused = errorOf([&] { persona::run_sweep(*model_, trait_, vector, other); });
        QVERIFY2(refused.contains("sweep.checkpoint.json") && refused.contains("another sweep"), qPrintable(refused));

        persona::SweepResult resumed;
        const QString failed = errorOf([&] { resumed = persona::run_sweep(*model_, trait_, vector, settings); });
        QVERIFY2(failed.isEmpty(), qPrintable(failed));
        QCOMPARE(resumed.rows_resumed, std::size_t(3));
        QCOMPARE(resumed.rows_generated, whole.rows_generated);
        QVERIFY(!QFileInfo::exists(QString::fromStdString(settings.checkpoint_path)));
        QCOMPARE(resumed.cells.size(), whole.cells.size());
        std::vector<const SweepCell*> a, b;
        for (std::size_t i = 0; i < whole.cells.size(); ++i) a.push_back(&whole.cells[i]), b.push_back(&resumed.cells[i]);
        a.push_back(&*whole.prompting_baseline);
        b.push_back(&*resumed.prompting_baseline);
        for (std::size_t i = 0; i < a.size(); ++i) {
            QCOMPARE(b[i]->layer, a[i]->layer);
            QCOMPARE(b[i]->coefficient, a[i]->coefficient);
            QCOMPARE(b[i]->mean_trait, a[i]->mean_trait);
            QCOMPARE(b[i]->mean_coherence, a[i]->mean_coherence);
            QCOMPARE(b[i]->steered_projection, a[i]->steered_projection);
            QCOMPARE(b[i]->readback_projection, a[i]->readback_projection);
            for (std::size_t k = 0; k < a[i]->answers.size(); ++k) {
                QCOMPARE(b[i]->answers[k].tokens, a[i]->answers[k].tokens);
                QCOMPARE(b[i]->answers[k].text, a[i]->answers[k].text);
                QCOMPARE(b[i]->answers[k].trait_score, a[i]->answers[k].trait_score);
            }
        }
    }

    // A sweep read back from its JSON writes the same JSON (answers included); a project keeps it
    // under sweeps/; a damaged field is named with the file.
    void resultSurvivesJsonAndProjects() {
        SweepSettings settings = tinySettings({8}, {0.5});
        settings.calibrated_coefficients = true;
        const auto result = persona::run_sweep(*model_, trait_, randomDirection(), settings);
        const nlohmann::json json = persona::sweep_result_json(result, &trait_);
        QCOMPARE(persona::sweep_result_json(persona::sweep_result_from_json(json, "x.json"), &trait_), json);
        QCOMPARE(json["cells"][1]["examples"].size(), std::size_t(2));
        QVERIFY(json["prompting_baseline"]["system_prompt"].get<std::string>().rfind("You are an", 0) == 0);

        persona::Project project;
        project.traits.push_back(trait_);
        const std::string key = project.add_sweep(result);
        QVERIFY(QString::fromStdString(key).startsWith("sweeps/"));
        QTemporaryDir dir;
        const std::string folder = dir.filePath("p.persona").toStdString();
        persona::write_project(folder, project);
        const persona::Project back = persona::read_project(folder);
        QCOMPARE(back.sweeps.size(), std::size_t(1));
        QCOMPARE(persona::sweep_result_json(back.sweeps[0].second, &trait_), json);

        nlohmann::json damaged = json;
        damaged["cells"][1]["examples"][0]["stop_reason"] = "bored";
        const QString error = errorOf([&] { persona::sweep_result_from_json(damaged, "s.json"); });
        QVERIFY2(error.contains("s.json") && error.contains("cells[1].examples[0].stop_reason"), qPrintable(error));
    }

    void refusesBadInput() {
        const persona::PersonaVector vector = randomDirection();
        QVERIFY(errorOf([&] { persona::run_sweep(*model_, trait_, vector, tinySettings({0, 8}, {1})); }).contains("outside 1..30"));
        QVERIFY(errorOf([&] { persona::run_sweep(*model_, trait_, vector, tinySettings({31}, {1})); }).contains("outside 1..30"));
        QVERIFY(errorOf([&] { persona::run_sweep(*model_, trait_, vector, tinySettings({}, {1})); }).contains("at least one layer"));
        persona::PersonaVector wrong = vector;
        wrong.layer_count = 25;
        wrong.values.resize(std::size_t(25) * std::size_t(wrong.hidden_size));
        QVERIFY(errorOf([&] { persona::run_sweep(*model_, trait_, wrong, tinySettings({8}, {1})); }).contains("but the model needs [31, 576]"));
        persona::PersonaVector zero = vector;
        std::fill(zero.values.begin() + 8 * zero.hidden_size, zero.values.begin() + 9 * zero.hidden_size, 0.0f);
        QVERIFY(errorOf([&] { persona::run_sweep(*model_, trait_, zero, tinySettings({8}, {1})); }).contains("zero at layer 8"));
        persona::Trait empty = trait_;
        empty.evaluation_questions.clear();
        QVERIFY(errorOf([&] { persona::run_sweep(*model_, empty, vector, tinySettings({8}, {1})); }).contains("no evaluation questions"));
    }
};

QTEST_GUILESS_MAIN(TestSweep)
#include "test_sweep.moc"
