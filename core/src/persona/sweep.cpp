#include "persona/sweep.h"

#include "io/atomic_file.h"
#include "io/json_file.h"
#include "persona/errors.h"
#include "persona/fingerprint.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/sweep_checkpoint.h"
#include "persona/trait.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

namespace persona {

namespace {

const char* const kStageGenerate = "generate";
const char* const kStageJudge = "judge";
const char* const kStageCells = "cells";

std::vector<float> layer_values(const PersonaVector& vector, int layer) {
    const LayerView view = vector.layer(layer);
    return {view.begin(), view.end()};
}

using RowRecord = detail::SweepRow;

// The rows generated with one steering: the unsteered baseline (layer_slot -1), the prompting
// baseline (kPromptedSlot) or one cell.
constexpr int kPromptedSlot = -2;
struct Group {
    int layer_slot = -1;  // index into the swept layers; -1 for the baseline
    double raw = 0;
    double calibrated = 0;
    std::vector<RowRecord> rows;
    std::size_t finished = 0;
};

double mean(double sum, std::size_t count) { return count ? sum / double(count) : 0.0; }

SweepCell make_cell(const Group& group, std::size_t slot, int layer, double raw, double calibrated,
                    const SweepCell* baseline, double mean_residual_norm) {
    SweepCell cell;
    cell.layer = layer;
    cell.coefficient = raw;
    cell.calibrated_strength = calibrated;
    cell.baseline = group.layer_slot == -1;
    double trait_sum = 0, coherence_sum = 0, steered_sum = 0, readback_sum = 0;
    std::size_t readback_count = 0;
    for (const RowRecord& row : group.rows) {
        SweepAnswer answer;
        answer.question_index = row.question_index;
        answer.sample_index = row.sample_index;
        answer.text = row.result.text;
        answer.tokens = row.result.tokens;
        answer.stop_reason = row.result.stop_reason;
        answer.trait_score = row.trait.score;
        answer.coherence = row.coherence.score;
        answer.trait_refusal = row.trait.refusal;
        answer.coherence_refusal = row.coherence.refusal;
        answer.steered_projection = row.steered[slot];
        answer.readback_projection = row.readback[slot];
        if (answer.trait_score) {
            trait_sum += *answer.trait_score;
            ++cell.trait_scored;
        }
        if (answer.coherence) {
            coherence_sum += *answer.coherence;
            ++cell.coherence_scored;
        }
        cell.trait_refusals += answer.trait_refusal ? 1 : 0;
        cell.coherence_refusals += answer.coherence_refusal ? 1 : 0;
        cell.empty_answers += answer.tokens.empty() ? 1 : 0;
        steered_sum += answer.steered_projection;
        if (answer.readback_projection) {
            readback_sum += *answer.readback_projection;
            ++readback_count;
        }
        cell.answers.push_back(std::move(answer));
    }
    if (cell.trait_scored) cell.mean_trait = trait_sum / cell.trait_scored;
    if (cell.coherence_scored) cell.mean_coherence = coherence_sum / cell.coherence_scored;
    cell.steered_projection = mean(steered_sum, cell.answers.size());
    if (readback_count) cell.readback_projection = readback_sum / double(readback_count);
    const SweepCell& reference = baseline ? *baseline : cell;
    if (cell.readback_projection && reference.readback_projection) {
        cell.readback_rise = *cell.readback_projection - *reference.readback_projection;
        if (mean_residual_norm > 0) cell.readback_rise_calibrated = *cell.readback_rise / mean_residual_norm;
    }
    return cell;
}

std::string format_number(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3g", value);
    return text;
}


}  // namespace

// --- calibration ------------------------------------------------------------------------------

double SweepCalibration::calibrated(int layer, double coefficient) const {
    if (layer < 0 || layer >= layer_count || std::size_t(layer) >= vector_norms.size() ||
        std::size_t(layer) >= mean_residual_norms.size())
        throw Error("calibration: layer " + std::to_string(layer) + " is outside 0.." + std::to_string(layer_count - 1));
    return calibrated_strength(coefficient, vector_norms[std::size_t(layer)], mean_residual_norms[std::size_t(layer)]);
}

double SweepCalibration::coefficient(int layer, double calibrated_value) const {
    return calibrated_value / calibrated(layer, 1.0);
}

std::vector<double> prompt_end_residual_norms(Model& model, const std::vector<std::vector<ChatMessage>>& prompts,
                                              const CancelFn& cancelled) {
    if (prompts.empty()) throw Error("calibration needs at least one prompt");
    std::vector<CaptureRow> rows;
    for (const auto& messages : prompts) {
        CaptureRow row;
        row.tokens = model.encode_chat(messages, true);
        row.prompt_length = int(row.tokens.size());
        rows.push_back(std::move(row));
    }
    // The last prompt token does not depend on what follows it (causal attention), so the prompts
    // alone give the unsteered activations a steered answer starts from.
    return persona::mean_residual_norms(model.capture(rows, {}, cancelled));
}

namespace {
const char* const kTypicalQuestions[] = {
    "What should I cook for dinner tonight?",
    "How do I keep my houseplants alive?",
    "Can you explain how a bicycle gear works?",
    "What is a good way to start learning a new language?",
    "How should I prepare for a job interview?",
    "Why is the sky blue?",
    "What are some tips for sleeping better?",
    "How do I write a polite email to my landlord?",
};
constexpr std::size_t kRememberedModels = 64;
}  // namespace

std::vector<double> typical_residual_norms(Model& model, const CancelFn& cancelled) {
    std::vector<std::vector<ChatMessage>> prompts;
    for (const char* question : kTypicalQuestions) prompts.push_back({{"user", question}});
    return prompt_end_residual_norms(model, prompts, cancelled);
}

std::string typical_residual_norms_cache_path() { return workbench_cache_dir() + "/typical-residual-norms.json"; }

std::vector<double> remembered_typical_residual_norms(Model& model, const CancelFn& cancelled) {
    const ModelFacts& facts = model.facts();
    std::string questions;
    for (const char* question : kTypicalQuestions) questions += std::string(question) + "\n";
    // Whatever changes the numbers names the entry: the model's content (adapter included),
    // how it runs, and the questions.
    const std::string key = facts.fingerprint + " " + facts.dtype + " " + facts.device + " " +
                            text_sha256(questions).substr(0, 16);
    const std::string path = typical_residual_norms_cache_path();
    nlohmann::json cache = nlohmann::json::object();
    std::error_code error;
    try {
        if (std::filesystem::is_regular_file(path, error)) cache = detail::read_json_file(path);
    } catch (const Error&) {  // a damaged cache is measured again and rewritten
    }
    if (!cache.is_object()) cache = nlohmann::json::object();
    const auto found = cache.find(key);
    if (found != cache.end() && found->is_array() && found->size() == std::size_t(facts.layers) + 1 &&
        std::all_of(found->begin(), found->end(), [](const nlohmann::json& v) {
            return v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() > 0;
        }))
        return found->get<std::vector<double>>();
    std::vector<double> norms = typical_residual_norms(model, cancelled);
    cache[key] = norms;
    while (cache.size() > kRememberedModels) cache.erase(cache.begin());
    try {
        std::filesystem::create_directories(std::filesystem::path(path).parent_path(), error);
        detail::write_file_atomically(path, cache.dump() + "\n");
    } catch (const Error&) {  // a read-only cache costs the next load the measurement, nothing else
    }
    return norms;
}

SweepCalibration measure_calibration(Model& model, const PersonaVector& vector,
                                     const std::vector<std::vector<ChatMessage>>& prompts, const CancelFn& cancelled) {
    check_vector_fits(vector, model);
    SweepCalibration calibration;
    calibration.layer_count = vector.layer_count;
    calibration.mean_residual_norms = prompt_end_residual_norms(model, prompts, cancelled);
    for (int l = 0; l < vector.layer_count; ++l) calibration.vector_norms.push_back(vector.layer_norm(l));
    return calibration;
}

// --- recommendation ---------------------------------------------------------------------------

const char* recommendation_basis_name(RecommendationBasis basis) {
    switch (basis) {
    case RecommendationBasis::Scores: return "scores";
    case RecommendationBasis::Projection: return "projection";
    case RecommendationBasis::None: return "none";
    }
    return "none";
}

SweepRecommendation recommend_steering(const std::vector<SweepCell>& cells, double coherence_threshold,
                                       double min_scored_fraction) {
    SweepRecommendation recommendation;
    const auto adopt = [&](const SweepCell& cell, RecommendationBasis basis, const std::string& reason) {
        recommendation.basis = basis;
        recommendation.layer = cell.layer;
        recommendation.coefficient = cell.coefficient;
        recommendation.calibrated_strength = cell.calibrated_strength;
        recommendation.reason = reason;
    };
    const auto scored_enough = [&](const SweepCell& cell) {
        const double needed = min_scored_fraction * double(cell.answers.size());
        return !cell.answers.empty() && cell.mean_trait && cell.mean_coherence && cell.trait_scored >= needed &&
               cell.coherence_scored >= needed;
    };
    const auto gentler = [](const SweepCell& a, const SweepCell& b) {
        if (std::abs(a.calibrated_strength) != std::abs(b.calibrated_strength))
            return std::abs(a.calibrated_strength) < std::abs(b.calibrated_strength);
        return a.layer < b.layer;
    };

    const SweepCell* best = nullptr;
    std::size_t with_scores = 0;
    for (const SweepCell& cell : cells) {
        if (cell.coefficient == 0 || !scored_enough(cell)) continue;
        ++with_scores;
        if (*cell.mean_coherence < coherence_threshold) continue;
        if (!best || *cell.mean_trait > *best->mean_trait || (*cell.mean_trait == *best->mean_trait && gentler(cell, *best)))
            best = &cell;
    }
    if (best) {
        std::string reason = "highest mean trait score (" + format_number(*best->mean_trait) +
                             ") among steered cells whose mean coherence stays >= " + format_number(coherence_threshold) +
                             " (here " + format_number(*best->mean_coherence) + ")";
        for (const SweepCell& cell : cells)
            if (cell.coefficient == 0 && cell.layer == best->layer && scored_enough(cell) &&
                *cell.mean_trait >= *best->mean_trait)
                reason += "; it does not beat the unsteered baseline at this layer (" + format_number(*cell.mean_trait) + ")";
        adopt(*best, RecommendationBasis::Scores, reason);
        return recommendation;
    }
    if (with_scores > 0) {
        recommendation.reason = "no steered cell keeps mean coherence >= " + format_number(coherence_threshold) +
                                ": at these layers and coefficients steering breaks the answers before it shows the trait";
        return recommendation;
    }

    const SweepCell* highest = nullptr;
    for (const SweepCell& cell : cells) {
        if (cell.coefficient == 0 || !cell.readback_rise_calibrated) continue;
        if (!highest || *cell.readback_rise_calibrated > *highest->readback_rise_calibrated) highest = &cell;
    }
    const std::string no_scores = "no recommendation can be made from judge scores (no cell had at least " +
                                  format_number(100 * min_scored_fraction) + "% of its answers scored)";
    if (!highest || !(*highest->readback_rise_calibrated > 0)) {
        recommendation.reason = no_scores + ", and no steered cell moved its answers along the vector";
        return recommendation;
    }
    adopt(*highest, RecommendationBasis::Projection,
          no_scores + "; by projection only: the largest rise of the answers' read-back projection over the "
                      "unsteered baseline, relative to the layer's residual norm (" +
              format_number(*highest->readback_rise_calibrated) +
              "). Coherence was not checked: read the answers before relying on it");
    return recommendation;
}

// --- the sweep --------------------------------------------------------------------------------

std::uint64_t sweep_sample_seed(std::uint64_t seed, int question_index, int sample_index) {
    std::uint64_t x = seed ^ 0x5357454550ULL;  // "SWEEP": not the seeds extraction gives its samples
    for (std::uint64_t part : {std::uint64_t(question_index), std::uint64_t(sample_index)}) {
        x += 0x9E3779B97F4A7C15ULL + part;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
        x ^= x >> 31;
    }
    return x;
}

std::vector<ChatMessage> sweep_messages(const std::string& question) { return {{"user", question}}; }

std::vector<int> default_sweep_layers(const PersonaVector& vector, int spread, bool* from_provenance) {
    const int top = vector.layer_count - 1;  // L: the last block's output
    if (from_provenance) *from_provenance = false;
    if (top < 1) return {};
    std::vector<int> layers;
    const int suggested = vector.suggested_layer().value_or(-1);
    if (suggested >= 1) {
        if (from_provenance) *from_provenance = true;
        layers = {suggested - spread, suggested, suggested + spread};
    } else {
        layers = {int(std::lround(top / 3.0)), int(std::lround(top / 2.0)), int(std::lround(2 * top / 3.0))};
    }
    for (int& l : layers) l = std::clamp(l, 1, top);
    std::sort(layers.begin(), layers.end());
    layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
    return layers;
}

SweepResult run_sweep(Model& model, const Trait& trait, const PersonaVector& vector, const SweepSettings& settings,
                      const ProgressFn& progress, const std::function<void(const SweepCell&)>& on_cell,
                      const CancelFn& cancelled) {
    const auto start_time = std::chrono::steady_clock::now();
    const auto report = [&](const char* stage, std::size_t done, std::size_t total) {
        if (progress) progress(Progress{stage, done, total});
    };
    check_vector_fits(vector, model);
    const std::size_t available = trait.evaluation_questions.size();
    const std::size_t questions =
        settings.question_limit > 0 ? std::min<std::size_t>(std::size_t(settings.question_limit), available) : available;
    if (questions == 0) throw Error("trait '" + trait.name + "' has no evaluation questions to sweep on");
    if (settings.samples_per_question < 1) throw Error("samples per question must be at least 1");
    if (settings.batch_size < 1) throw Error("batch size must be at least 1");
    if (settings.max_new_tokens < 1) throw Error("max new tokens must be at least 1");
    if (settings.layers.empty()) throw Error("the sweep needs at least one layer");
    if (settings.coefficients.empty()) throw Error("the sweep needs at least one coefficient");

    std::vector<int> layers = settings.layers;
    std::sort(layers.begin(), layers.end());
    layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
    for (int layer : layers) {
        if (layer < 1 || layer > model.layer_count())
            throw Error("sweep layer " + std::to_string(layer) + " is outside 1.." + std::to_string(model.layer_count()) +
                        " (hidden_states indexing: layer l is the output of block l-1)");
        if (!(vector.layer_norm(layer) > 0))
            throw Error(vector.description() + " is zero at layer " + std::to_string(layer) + ": nothing to steer with");
    }
    std::vector<double> coefficients = settings.coefficients;
    for (double c : coefficients)
        if (!std::isfinite(c)) throw Error("sweep coefficients must be finite numbers");
    coefficients.push_back(0.0);
    std::sort(coefficients.begin(), coefficients.end());
    coefficients.erase(std::unique(coefficients.begin(), coefficients.end()), coefficients.end());

    std::vector<std::vector<ChatMessage>> prompts;
    for (std::size_t q = 0; q < questions; ++q) prompts.push_back(sweep_messages(trait.evaluation_questions[q]));

    SweepResult result;
    result.trait = trait.name;
    result.judge = judge_label(settings.judge);
    result.layers = layers;
    result.coefficients = coefficients;
    result.calibrated_coefficients = settings.calibrated_coefficients;
    result.calibration = measure_calibration(model, vector, prompts, cancelled);
    const SweepCalibration& calibration = result.calibration;

    // Groups: the baseline first (its cells are every steered cell's reference), the prompting
    // baseline, then each layer's steered coefficients.
    std::vector<Group> groups(1);
    if (settings.prompting_baseline) {
        if (trait.instructions.empty()) throw Error("trait '" + trait.name + "' has no instructions to prompt with");
        result.prompting_system_prompt = positive_system_prompt(trait, 0);
        Group prompted;
        prompted.layer_slot = kPromptedSlot;
        groups.push_back(std::move(prompted));
    }
    for (std::size_t slot = 0; slot < layers.size(); ++slot)
        for (double c : coefficients) {
            if (c == 0) continue;
            Group group;
            group.layer_slot = int(slot);
            const int layer = layers[slot];
            group.raw = settings.calibrated_coefficients ? calibration.coefficient(layer, c) : c;
            group.calibrated = settings.calibrated_coefficients ? c : calibration.calibrated(layer, c);
            groups.push_back(std::move(group));
        }
    struct Job {
        std::size_t group = 0;
        std::size_t row = 0;
    };
    std::vector<Job> jobs;
    for (std::size_t g = 0; g < groups.size(); ++g)
        for (std::size_t q = 0; q < questions; ++q)
            for (int s = 0; s < settings.samples_per_question; ++s) {
                RowRecord record;
                record.question_index = int(q);
                record.sample_index = s;
                record.steered.assign(layers.size(), 0.0);
                record.readback.assign(layers.size(), std::nullopt);
                jobs.push_back({g, groups[g].rows.size()});
                groups[g].rows.push_back(std::move(record));
            }

    const std::unique_ptr<Judge> judge = make_judge(model, settings.judge, progress, cancelled);
    const std::size_t cells_total = layers.size() * coefficients.size();
    std::size_t cells_done = 0, judged = 0;
    report(kStageGenerate, 0, jobs.size());
    if (judge) report(kStageJudge, 0, jobs.size());
    report(kStageCells, 0, cells_total);

    // The rows in job order: what the checkpoint holds, a prefix of whole batches.
    const auto rows_in_order = [&](std::size_t end) {
        std::vector<const RowRecord*> rows;
        for (std::size_t k = 0; k < end; ++k) rows.push_back(&groups[jobs[k].group].rows[jobs[k].row]);
        return rows;
    };
    const bool checkpointing = !settings.checkpoint_path.empty();
    const std::string fingerprint =
        checkpointing ? detail::sweep_fingerprint(model, trait, vector, settings, layers, coefficients) : std::string();
    std::size_t resume_from = 0;
    if (checkpointing && std::filesystem::exists(settings.checkpoint_path)) {
        std::vector<RowRecord> restored =
            detail::read_sweep_checkpoint(settings.checkpoint_path, fingerprint, rows_in_order(jobs.size()));
        resume_from = restored.size();
        for (std::size_t k = 0; k < resume_from; ++k) {
            groups[jobs[k].group].rows[jobs[k].row] = std::move(restored[k]);
            ++groups[jobs[k].group].finished;
        }
        result.rows_resumed = result.rows_generated = resume_from;
        report(kStageGenerate, resume_from, jobs.size());
    }

    // Every swept layer is probed in every batch: a batch mixes cells, and baseline rows are
    // measured at all of them.
    ProjectionProbe probe;
    probe.layers = layers;
    for (int layer : layers) probe.directions.push_back(layer_values(vector, layer));
    std::vector<std::vector<float>> units;
    for (int layer : layers) {
        units.push_back(layer_values(vector, layer));
        const double norm = vector.layer_norm(layer);
        for (float& x : units.back()) x = float(x / norm);
    }

    std::map<int, SweepCell> baseline_by_layer;
    const auto finish_group = [&](Group& group) {
        for (RowRecord& row : group.rows) {
            if (!judge) break;
            if (!row.judged) {  // a resumed row may have been judged before
                check_cancelled(cancelled);
                const std::string& question = trait.evaluation_questions[std::size_t(row.question_index)];
                row.trait = judge->score(trait.judge_rubric, question, row.result.text, cancelled);
                row.coherence = judge->score(trait.coherence_rubric, question, row.result.text, cancelled);
                row.judged = true;
            }
            report(kStageJudge, ++judged, jobs.size());
        }
        if (group.layer_slot == kPromptedSlot) {
            SweepCell cell = make_cell(group, 0, layers.front(), 0, 0, nullptr, 0);
            cell.layer = 0;
            cell.readback_rise.reset();
            cell.readback_rise_calibrated.reset();
            result.prompting_baseline = std::move(cell);
            return;
        }
        std::vector<std::size_t> slots;
        if (group.layer_slot < 0) {
            for (std::size_t s = 0; s < layers.size(); ++s) slots.push_back(s);
        } else {
            slots.push_back(std::size_t(group.layer_slot));
        }
        for (std::size_t slot : slots) {
            const int layer = layers[slot];
            const auto found = baseline_by_layer.find(layer);
            SweepCell cell = make_cell(group, slot, layer, group.raw, group.calibrated,
                                       found == baseline_by_layer.end() ? nullptr : &found->second,
                                       calibration.mean_residual_norms[std::size_t(layer)]);
            if (cell.baseline) baseline_by_layer[layer] = cell;
            if (on_cell) on_cell(cell);
            result.cells.push_back(std::move(cell));
            report(kStageCells, ++cells_done, cells_total);
        }
    };

    // Groups complete in job order, so the baseline's cells always come first.
    const auto finish_groups_ending_in = [&](std::size_t begin, std::size_t end) {
        for (std::size_t k = begin; k < end; ++k) {
            Group& group = groups[jobs[k].group];
            if (jobs[k].row + 1 == group.rows.size() && group.finished == group.rows.size()) finish_group(group);
        }
    };
    finish_groups_ending_in(0, resume_from);
    for (std::size_t start = resume_from; start < jobs.size(); start += std::size_t(settings.batch_size)) {
        check_cancelled(cancelled);
        const std::size_t end = std::min(jobs.size(), start + std::size_t(settings.batch_size));
        std::vector<GenerationRow> rows;
        for (std::size_t k = start; k < end; ++k) {
            const Group& group = groups[jobs[k].group];
            const RowRecord& record = group.rows[jobs[k].row];
            GenerationRow row;
            row.messages = prompts[std::size_t(record.question_index)];
            if (group.layer_slot == kPromptedSlot)
                row.messages.insert(row.messages.begin(), ChatMessage{"system", result.prompting_system_prompt});
            row.sampling.temperature = settings.temperature;
            row.sampling.top_p = settings.top_p;
            row.sampling.max_new_tokens = settings.max_new_tokens;
            row.sampling.seed = sweep_sample_seed(settings.seed, record.question_index, record.sample_index);
            if (group.layer_slot >= 0) {
                Steering steering;
                steering.layer = layers[std::size_t(group.layer_slot)];
                steering.vector = probe.directions[std::size_t(group.layer_slot)];
                steering.alpha = float(group.raw);
                steering.positions = settings.positions;
                row.steering.push_back(std::move(steering));
            }
            rows.push_back(std::move(row));
        }
        std::vector<std::vector<double>> projection_sums(rows.size(), std::vector<double>(layers.size(), 0.0));
        std::vector<std::size_t> projection_counts(rows.size(), 0);
        const auto outputs = model.generate(rows,
            [&](const TokenEvent& event) {
                const auto r = std::size_t(event.row);
                for (std::size_t p = 0; p < event.projections.size() && p < layers.size(); ++p)
                    projection_sums[r][p] += event.projections[p];
                ++projection_counts[r];
            },
            &probe, cancelled);

        // The answers read back by the unsteered model.
        std::vector<CaptureRow> capture_rows;
        std::vector<std::size_t> captured;
        for (std::size_t k = 0; k < outputs.size(); ++k) {
            if (outputs[k].tokens.empty()) continue;
            CaptureRow row;
            row.tokens = outputs[k].prompt_tokens;
            row.prompt_length = int(row.tokens.size());
            row.tokens.insert(row.tokens.end(), outputs[k].tokens.begin(), outputs[k].tokens.end());
            capture_rows.push_back(std::move(row));
            captured.push_back(k);
        }
        const CaptureResult capture = model.capture(capture_rows, {}, cancelled);
        std::map<std::size_t, std::size_t> capture_of;
        for (std::size_t i = 0; i < captured.size(); ++i) capture_of[captured[i]] = i;

        for (std::size_t k = start; k < end; ++k) {
            Group& group = groups[jobs[k].group];
            RowRecord& record = group.rows[jobs[k].row];
            const std::size_t r = k - start;
            record.result = outputs[r];
            for (std::size_t slot = 0; slot < layers.size(); ++slot) {
                record.steered[slot] = mean(projection_sums[r][slot], projection_counts[r]);
                const auto found = capture_of.find(r);
                if (found == capture_of.end()) continue;
                const std::vector<float>& response = capture.response_mean[found->second];
                const float* h = response.data() + std::size_t(layers[slot]) * std::size_t(capture.hidden_size);
                record.readback[slot] = project(h, units[slot].data(), capture.hidden_size);
            }
            ++group.finished;
        }
        report(kStageGenerate, end, jobs.size());
        result.rows_generated = end;
        finish_groups_ending_in(start, end);
        if (checkpointing) detail::write_sweep_checkpoint(settings.checkpoint_path, fingerprint, rows_in_order(end));
    }
    if (checkpointing) std::filesystem::remove(settings.checkpoint_path);

    std::sort(result.cells.begin(), result.cells.end(), [](const SweepCell& a, const SweepCell& b) {
        return a.layer != b.layer ? a.layer < b.layer : a.coefficient < b.coefficient;
    });
    result.recommendation = recommend_steering(result.cells, settings.coherence_threshold, settings.min_scored_fraction);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
    return result;
}

}  // namespace persona
