#include "persona/extraction.h"

#include "persona/errors.h"
#include "persona/extraction_checkpoint.h"
#include "persona/model.h"
#include "persona/tokenizer.h"
#include "persona/trait.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>

namespace persona {

namespace {

using Json = nlohmann::json;

const char* const kStageGenerate = "generate";
const char* const kStageJudge = "judge";
const char* const kStageFilter = "filter";
const char* const kStageCapture = "capture";
const char* const kStageVectors = "vectors";

// A sample's own generator seed: its answer must not depend on which batch it lands in, or a
// resumed run would differ from an uninterrupted one.
std::uint64_t sample_seed(std::uint64_t seed, const Sample& sample) {
    std::uint64_t x = seed;
    for (std::uint64_t part : {std::uint64_t(sample.question_index), std::uint64_t(sample.pair),
                               std::uint64_t(sample.side == Side::Positive ? 0 : 1), std::uint64_t(sample.sample_index)}) {
        x += 0x9E3779B97F4A7C15ULL + part;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
        x ^= x >> 31;
    }
    return x;
}

std::vector<ChatMessage> generation_messages(const Trait& trait, const Sample& sample) {
    const auto pair = static_cast<std::size_t>(sample.pair);
    return {{"system", sample.side == Side::Positive ? positive_system_prompt(trait, pair) : negative_system_prompt(trait, pair)},
            {"user", sample.question}};
}

void record_trait(Sample& sample, const JudgeScore& score) {
    sample.trait_score = score.score;
    sample.trait_refusal = score.refusal;
    sample.trait_numeric_mass = score.numeric_mass;
}

void judge_trait(Judge& judge, JudgeMode mode, const Trait& trait, Sample& positive, Sample& negative,
                 const CancelFn& cancelled) {
    if (mode == JudgeMode::Absolute) {
        for (Sample* sample : {&positive, &negative})
            record_trait(*sample, judge.score(trait.judge_rubric, sample->question, sample->answer, cancelled));
    } else {
        const JudgePick pick =
            judge_pair(judge, trait.name, trait.definition, positive.question, positive.answer, negative.answer, cancelled);
        JudgeScore score;
        score.refusal = pick.refusal;
        score.numeric_mass = pick.letter_mass;
        if (pick.a_wins) score.score = 100 * *pick.a_wins;
        record_trait(positive, score);
        if (pick.a_wins) score.score = 100 - *score.score;
        record_trait(negative, score);
    }
}

bool coherence_scored(const Sample& sample) { return sample.coherence || sample.coherence_refusal; }

// Judges the pair (positive, negative) as settings.judge_mode says, then the coherence of each
// answer whose coherence can still decide something; without a judge the samples only count as
// judged. A pair judged before (a checkpoint) gets only the coherence scores it now needs.
void judge_pair_of_samples(Judge* judge, const ExtractionSettings& settings, const Trait& trait, Sample& positive,
                           Sample& negative, const CancelFn& cancelled) {
    const bool trait_scored = positive.judged && negative.judged;
    positive.judged = negative.judged = true;
    if (!judge) return;
    if (!trait_scored) judge_trait(*judge, settings.judge_mode, trait, positive, negative, cancelled);
    for (Sample* sample : {&positive, &negative}) {
        if (coherence_scored(*sample)) continue;
        sample->coherence_skipped = !needs_coherence(*sample, positive, negative, settings);
        if (sample->coherence_skipped) continue;
        const JudgeScore coherence = judge->score(trait.coherence_rubric, sample->question, sample->answer, cancelled);
        sample->coherence = coherence.score;
        sample->coherence_refusal = coherence.refusal;
        sample->coherence_numeric_mass = coherence.numeric_mass;
    }
}

// Whether the pair still needs the judge: never judged, or a coherence score the current
// thresholds need is missing (a checkpoint written under other thresholds).
bool pair_needs_judging(const Sample& positive, const Sample& negative, const ExtractionSettings& settings) {
    if (!positive.judged || !negative.judged) return true;
    if (settings.judge.kind == JudgeKind::None) return false;
    for (const Sample* sample : {&positive, &negative})
        if (!coherence_scored(*sample) && needs_coherence(*sample, positive, negative, settings)) return true;
    return false;
}

std::string settings_summary(const ExtractionSettings& s) {
    return detail::generation_settings_json(s).dump();
}

}  // namespace

std::string judging_label(const ExtractionSettings& settings) {
    const std::string label = judge_label(settings.judge);
    return settings.judge_mode == JudgeMode::Pairwise && settings.judge.kind != JudgeKind::None ? label + " pairwise"
                                                                                                : label;
}

bool apply_judging_label(const std::string& label, ExtractionSettings& settings) {
    const std::string pairwise_suffix = " pairwise";
    const bool pairwise = label.size() > pairwise_suffix.size() &&
                          label.compare(label.size() - pairwise_suffix.size(), pairwise_suffix.size(), pairwise_suffix) == 0;
    const std::string judge = pairwise ? label.substr(0, label.size() - pairwise_suffix.size()) : label;
    const auto colon = judge.find(':');
    const auto kind = judge_kind_from_name(judge.substr(0, colon));
    if (!kind) return false;
    JudgeSettings read(*kind);
    const std::string detail = colon == std::string::npos ? "" : judge.substr(colon + 1);
    if (*kind == JudgeKind::Local) {
        if (colon != std::string::npos && detail.empty()) return false;
        read.model_path = detail;
    } else if (*kind == JudgeKind::Http) {
        const auto hash = detail.find('#');
        if (hash == std::string::npos) return false;
        read.endpoint.base_url = detail.substr(0, hash);
        read.endpoint.model = detail.substr(hash + 1);
    } else if (colon != std::string::npos || pairwise) {
        return false;
    }
    settings.judge = read;
    settings.judge_mode = pairwise ? JudgeMode::Pairwise : JudgeMode::Absolute;
    return true;
}

const char* side_name(Side side) { return side == Side::Positive ? "positive" : "negative"; }

const AggregateResult& ExtractionResult::aggregate(Aggregate which) const {
    const auto index = static_cast<std::size_t>(which);
    if (index >= aggregates.size())
        throw Error("the '" + trait + "' extraction kept no pair, so it has no " + aggregate_name(which) + " vector");
    return aggregates[index];
}

ExtractionResult run_extraction(Model& model, const Trait& trait, const ExtractionSettings& settings,
                                const ExtractionProgressFn& progress, const std::function<void(const Sample&)>& on_sample,
                                const CancelFn& cancelled) {
    const auto report = [&](const char* stage, std::size_t done, std::size_t total) {
        if (progress) progress(stage, done, total);
    };
    const auto limit = [](int wanted, std::size_t available) {
        return wanted > 0 ? std::min<std::size_t>(std::size_t(wanted), available) : available;
    };
    const std::size_t questions = limit(settings.question_limit, trait.extraction_questions.size());
    const std::size_t pairs = limit(settings.pair_limit, trait.instructions.size());
    if (questions == 0) throw Error("trait '" + trait.name + "' has no extraction questions");
    if (pairs == 0) throw Error("trait '" + trait.name + "' has no instruction pairs");
    if (settings.samples_per_question < 1) throw Error("samples per question must be at least 1");
    if (settings.batch_size < 1) throw Error("batch size must be at least 1");

    ExtractionResult result;
    result.trait = trait.name;
    std::vector<Sample>& samples = result.samples;
    // Both sides of a pair sit next to each other, so an interrupted run leaves whole pairs.
    for (std::size_t q = 0; q < questions; ++q)
        for (std::size_t p = 0; p < pairs; ++p)
            for (int s = 0; s < settings.samples_per_question; ++s)
                for (Side side : {Side::Positive, Side::Negative}) {
                    Sample sample;
                    sample.question_index = int(q);
                    sample.question = trait.extraction_questions[q];
                    sample.pair = int(p);
                    sample.side = side;
                    sample.sample_index = s;
                    samples.push_back(std::move(sample));
                }
    std::vector<bool> generated(samples.size(), false);
    std::vector<Json> outside_this_run;

    const ModelFacts& facts = model.facts();
    const bool checkpointing = !settings.checkpoint_path.empty();
    detail::RunIdentity identity;
    if (checkpointing) {
        identity = detail::run_identity(trait, facts);
        if (std::ifstream(settings.checkpoint_path).good())
            result.samples_resumed = detail::read_checkpoint(settings.checkpoint_path, identity, settings, samples, generated,
                                                     outside_this_run);
    }
    // A resumed run shows what it already has at once, not only when it ends.
    if (on_sample)
        for (std::size_t i = 0; i < samples.size(); ++i)
            if (generated[i]) on_sample(samples[i]);
    auto stage_start = std::chrono::steady_clock::now();
    const auto end_stage = [&](const std::string& stage) {
        const auto now = std::chrono::steady_clock::now();
        result.stage_seconds[stage] += std::chrono::duration<double>(now - stage_start).count();
        stage_start = now;
    };
    const auto save = [&] {
        if (checkpointing) detail::write_checkpoint(settings.checkpoint_path, identity, settings, samples, generated, outside_this_run);
    };

    // Generation, batch by batch, each batch saved before the next starts.
    std::vector<std::size_t> pending;
    for (std::size_t i = 0; i < samples.size(); ++i)
        if (!generated[i]) pending.push_back(i);
    std::size_t done = samples.size() - pending.size();
    report(kStageGenerate, done, samples.size());
    for (std::size_t start = 0; start < pending.size(); start += std::size_t(settings.batch_size)) {
        check_cancelled(cancelled);
        const std::size_t end = std::min(pending.size(), start + std::size_t(settings.batch_size));
        std::vector<GenerationRow> rows;
        for (std::size_t k = start; k < end; ++k) {
            const Sample& sample = samples[pending[k]];
            GenerationRow row;
            row.messages = generation_messages(trait, sample);
            row.sampling.temperature = settings.temperature;
            row.sampling.top_p = settings.top_p;
            row.sampling.max_new_tokens = settings.max_new_tokens;
            row.sampling.seed = sample_seed(settings.seed, sample);
            rows.push_back(std::move(row));
        }
        const auto outputs = model.generate(rows, {}, nullptr, cancelled);
        for (std::size_t k = start; k < end; ++k) {
            Sample& sample = samples[pending[k]];
            sample.answer = outputs[k - start].text;
            sample.answer_tokens = outputs[k - start].tokens;
            generated[pending[k]] = true;
            ++result.samples_generated;
            if (on_sample) on_sample(sample);
        }
        done += end - start;
        save();
        report(kStageGenerate, done, samples.size());
    }

    end_stage(kStageGenerate);

    // Judging: a forward pass or a few per rubric and answer, a pair at a time (the pairwise
    // mode needs both answers), checkpointed per batch.
    std::unique_ptr<Judge> local;
    {
        std::vector<std::size_t> unjudged_pairs;  // index of the positive sample
        for (std::size_t i = 0; i + 1 < samples.size(); i += 2)
            if (pair_needs_judging(samples[i], samples[i + 1], settings)) unjudged_pairs.push_back(i);
        std::size_t judged = samples.size() - 2 * unjudged_pairs.size();
        // A second judge model is loaded only when there is something left to judge.
        const bool judging = settings.judge.kind != JudgeKind::None;
        if (judging && !unjudged_pairs.empty()) {
            local = make_judge(model, settings.judge, {}, cancelled);
            if (!settings.judge.model_path.empty()) end_stage("judge_load");
        }
        if (judging) report(kStageJudge, judged, samples.size());
        for (std::size_t k = 0; k < unjudged_pairs.size(); ++k) {
            check_cancelled(cancelled);
            Sample& positive = samples[unjudged_pairs[k]];
            Sample& negative = samples[unjudged_pairs[k] + 1];
            judge_pair_of_samples(local.get(), settings, trait, positive, negative, cancelled);
            if (local) {
                result.samples_judged += 2;
                if (on_sample) {
                    on_sample(positive);
                    on_sample(negative);
                }
            }
            judged += 2;
            if ((k + 1) % std::max<std::size_t>(1, std::size_t(settings.batch_size) / 2) == 0 || k + 1 == unjudged_pairs.size()) {
                save();
                if (judging) report(kStageJudge, judged, samples.size());
            }
        }
    }

    if (settings.judge.kind != JudgeKind::None) end_stage(kStageJudge);

    // Filter (docs/method.md step 4): a pair of answers to the same question, instruction pair and
    // sample index stays only if the positive shows the trait, the negative does not and both
    // are coherent (pairwise: the positive shows it more, with probability >= the threshold).
    // Without a judge every pair stays. An empty answer has no response tokens to average, so
    // its pair goes either way.
    const double negative_threshold = effective_negative_threshold(settings);
    std::vector<std::size_t> positives, negatives;
    report(kStageFilter, 0, samples.size() / 2);
    for (std::size_t i = 0; i + 1 < samples.size(); i += 2) {
        Sample& positive = samples[i];
        Sample& negative = samples[i + 1];
        ++result.pairs.total;
        bool keep = true;
        if (positive.answer_tokens.empty() || negative.answer_tokens.empty()) {
            ++result.pairs.with_empty_answer;
            keep = false;
        }
        if (settings.judge.kind != JudgeKind::None) {
            if (!shows_trait(positive, settings)) {
                ++result.pairs.failing_positive_trait;
                keep = false;
            }
            if (!lacks_trait(negative, settings)) {
                ++result.pairs.failing_negative_trait;
                keep = false;
            }
            // A skipped coherence belongs to a pair that failed above.
            const auto incoherent = [&](const Sample& s) {
                return !s.coherence_skipped && (!s.coherence || *s.coherence < settings.coherence_threshold);
            };
            if (incoherent(positive) || incoherent(negative)) {
                ++result.pairs.failing_coherence;
                keep = false;
            }
        }
        positive.kept = negative.kept = keep;
        if (!keep) continue;
        ++result.pairs.kept;
        positives.push_back(i);
        negatives.push_back(i + 1);
    }
    report(kStageFilter, samples.size() / 2, samples.size() / 2);
    end_stage(kStageFilter);
    if (result.pairs.kept == 0) return result;
    const bool too_few_pairs = result.pairs.kept < kMinKeptPairsToSuggestLayer;
    if (too_few_pairs)
        result.warnings.push_back("only " + std::to_string(result.pairs.kept) + " of " +
                                  std::to_string(result.pairs.total) + " pairs kept (fewer than " +
                                  std::to_string(kMinKeptPairsToSuggestLayer) +
                                  "): too few to tell layers apart, so no layer is suggested; choose one, "
                                  "or extract with more samples or questions");

    // Activations of the kept answers, teacher-forced after the same prompt they were generated from.
    std::vector<std::size_t> kept = positives;
    kept.insert(kept.end(), negatives.begin(), negatives.end());
    CaptureResult all;
    report(kStageCapture, 0, kept.size());
    for (std::size_t start = 0; start < kept.size(); start += std::size_t(settings.batch_size)) {
        check_cancelled(cancelled);
        const std::size_t end = std::min(kept.size(), start + std::size_t(settings.batch_size));
        std::vector<CaptureRow> rows;
        for (std::size_t k = start; k < end; ++k) {
            const Sample& sample = samples[kept[k]];
            CaptureRow row;
            row.tokens = model.encode_chat(generation_messages(trait, sample), true);
            row.prompt_length = int(row.tokens.size());
            row.tokens.insert(row.tokens.end(), sample.answer_tokens.begin(), sample.answer_tokens.end());
            rows.push_back(std::move(row));
        }
        CaptureResult part = model.capture(rows, {}, cancelled);
        all.layers = part.layers;
        all.hidden_size = part.hidden_size;
        for (auto& row : part.response_mean) all.response_mean.push_back(std::move(row));
        for (auto& row : part.prompt_mean) all.prompt_mean.push_back(std::move(row));
        for (auto& row : part.prompt_last) all.prompt_last.push_back(std::move(row));
        report(kStageCapture, end, kept.size());
    }
    end_stage(kStageCapture);

    report(kStageVectors, 0, 3);
    const std::size_t half = positives.size();
    for (Aggregate aggregate : {Aggregate::ResponseMean, Aggregate::PromptMean, Aggregate::PromptLast}) {
        check_cancelled(cancelled);
        const SampleRefs rows = samples_of(all, aggregate);
        const SampleRefs positive(rows.begin(), rows.begin() + std::ptrdiff_t(half));
        const SampleRefs negative(rows.begin() + std::ptrdiff_t(half), rows.end());
        AggregateResult entry;
        entry.vector = mean_difference(positive, negative, all.layers, all.hidden_size);
        entry.vector.trait = trait.name;
        entry.vector.aggregate = aggregate;
        auto& provenance = entry.vector.provenance;
        provenance["model"] = facts.name;
        provenance["model_file_bytes"] = std::to_string(facts.file_bytes);
        provenance["model_fingerprint"] = facts.fingerprint;
        provenance["dtype"] = facts.dtype;
        provenance["device"] = facts.device;
        if (!facts.chat_format.empty()) provenance["chat_format"] = facts.chat_format;
        provenance["method"] = "mean difference of kept positive and negative samples";
        provenance["pairs_kept"] = std::to_string(result.pairs.kept);
        provenance["pairs_total"] = std::to_string(result.pairs.total);
        provenance["judge"] = judging_label(settings);
        provenance["trait_threshold"] = std::to_string(settings.trait_threshold);
        if (settings.judge_mode == JudgeMode::Pairwise)
            provenance["pairwise_threshold"] = std::to_string(settings.pairwise_threshold);
        else
            provenance["negative_threshold"] = std::to_string(negative_threshold);
        provenance["coherence_threshold"] = std::to_string(settings.coherence_threshold);
        provenance["generation"] = settings_summary(settings);
        provenance["questions"] = std::to_string(questions);
        provenance["instruction_pairs"] = std::to_string(pairs);
        provenance["sign"] = "positive = shows the trait";
        entry.diagnostics = diagnose(entry.vector, positive, negative);
        entry.kept_samples = kept;
        for (const std::vector<float>* activation : rows) {
            std::vector<float> projections(std::size_t(all.layers));
            for (int l = 0; l < all.layers; ++l) {
                const std::size_t offset = std::size_t(l) * std::size_t(all.hidden_size);
                projections[std::size_t(l)] = float(project(activation->data() + offset,
                                                            entry.vector.values.data() + offset, all.hidden_size));
            }
            entry.sample_projections.push_back(std::move(projections));
        }
        // The Steering panel preselects this layer when the vector file is opened; without one
        // the commands that need a layer ask for it.
        if (!too_few_pairs) {
            entry.suggested_layer = suggest_layer(entry.diagnostics);
            entry.vector.provenance["suggested_layer"] = std::to_string(entry.suggested_layer);
        }
        result.aggregates.push_back(std::move(entry));
        report(kStageVectors, result.aggregates.size(), 3);
    }
    end_stage(kStageVectors);
    return result;
}

bool PairCounts::operator==(const PairCounts& other) const {
    return total == other.total && kept == other.kept && failing_positive_trait == other.failing_positive_trait &&
           failing_negative_trait == other.failing_negative_trait && failing_coherence == other.failing_coherence &&
           with_empty_answer == other.with_empty_answer;
}

double effective_negative_threshold(const ExtractionSettings& settings) {
    return settings.negative_threshold.value_or(100 - settings.trait_threshold);
}

bool shows_trait(const Sample& positive, const ExtractionSettings& settings) {
    const double threshold = settings.judge_mode == JudgeMode::Pairwise ? settings.pairwise_threshold : settings.trait_threshold;
    return positive.trait_score && *positive.trait_score >= threshold;
}

bool lacks_trait(const Sample& negative, const ExtractionSettings& settings) {
    // Pairwise, the negative's share is the rest of the positive's: one test decides.
    if (settings.judge_mode == JudgeMode::Pairwise) return true;
    return negative.trait_score && *negative.trait_score < effective_negative_threshold(settings);
}

bool needs_coherence(const Sample& sample, const Sample& positive, const Sample& negative,
                     const ExtractionSettings& settings) {
    if (!shows_trait(positive, settings)) return false;
    return sample.side == Side::Positive || lacks_trait(negative, settings);
}

}  // namespace persona
