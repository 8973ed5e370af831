// The extraction pipeline: the judge's number scoring on synthetic distributions, a reduced
// extraction with the local judge on the real default model, and checkpoint/resume.
#include "persona/errors.h"
#include "persona/extraction.h"
#include "persona/model.h"
#include "persona/tokenizer.h"
#include "persona/trait.h"
#include "test_support.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

using persona::ExtractionResult;
using persona::ExtractionSettings;
using persona::JudgeKind;
using persona::NumberSpelling;
using persona::Sample;

namespace {

// A run small enough for a test: one sample per question, pair and side.
ExtractionSettings reducedSettings(int questions, int pairs, int maxTokens, std::uint64_t seed, JudgeKind judge) {
    ExtractionSettings settings;
    settings.question_limit = questions;
    settings.pair_limit = pairs;
    settings.samples_per_question = 1;
    settings.max_new_tokens = maxTokens;
    settings.seed = seed;
    settings.judge = judge;
    return settings;
}

// A vocabulary where ids 0..9 are the digits and every other id is a word, as in SmolLM2.
std::vector<NumberSpelling> digitSpellings() {
    std::vector<NumberSpelling> spellings;
    for (int n = 0; n <= 100; ++n) {
        NumberSpelling s{n, {}};
        for (char c : std::to_string(n)) s.tokens.push_back(c - '0');
        spellings.push_back(s);
    }
    return spellings;
}
const std::vector<std::int32_t> kDigits{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
constexpr std::size_t kVocabulary = 16;
constexpr std::int32_t kWord = 12;

// Next-token distributions given as a table from prefix to {token: probability}; an unlisted
// prefix ends the number (all mass on a word).
struct SyntheticJudge {
    std::map<std::vector<std::int32_t>, std::map<std::int32_t, float>> table;
    int calls = 0;

    persona::NextTokenDistributions provider() {
        return [this](const std::vector<std::int32_t>& path) {
            ++calls;
            std::vector<std::vector<float>> rows;
            for (std::size_t k = 0; k <= path.size(); ++k) {
                std::vector<float> p(kVocabulary, 0.0f);
                const auto found = table.find(std::vector<std::int32_t>(path.begin(), path.begin() + std::ptrdiff_t(k)));
                if (found == table.end()) {
                    p[kWord] = 1.0f;
                } else {
                    for (const auto& [token, probability] : found->second) p[std::size_t(token)] = probability;
                }
                rows.push_back(p);
            }
            return rows;
        };
    }

    // The same distributions, several paths per call; batches counts the calls.
    int batches = 0;
    persona::NextTokenDistributionsBatch batchProvider() {
        return [this](const std::vector<std::vector<std::int32_t>>& paths) {
            ++batches;
            std::vector<std::vector<std::vector<float>>> results;
            for (const auto& path : paths) results.push_back(provider()(path));
            return results;
        };
    }
};

// A judge that picks by what the prompt shows: `biasA` is its preference for whichever answer
// comes first, `prefersMarked` its preference for the answer holding "MARK", in both orders.
class PickingJudge : public persona::Judge {
public:
    double biasA = 0, prefersMarked = 0.5;
    int picks = 0;
    persona::JudgeScore score(const std::string&, const std::string&, const std::string&, const persona::CancelFn&) override {
        throw persona::Error("this judge only picks");
    }
    persona::JudgePick pick(const std::string& prompt, const persona::CancelFn&) override {
        ++picks;
        const bool markedFirst = prompt.find("MARK") < prompt.find("Answer B:");
        persona::JudgePick result;
        result.letter_mass = 1;
        result.a_wins = std::clamp((markedFirst ? prefersMarked : 1 - prefersMarked) + biasA, 0.0, 1.0);
        return result;
    }
};

bool inScoreRange(const std::optional<double>& score) { return score && *score >= 0 && *score <= 100; }

double maxAbsDifference(const std::vector<float>& a, const std::vector<float>& b) {
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
    return worst;
}

}  // namespace

class TestExtraction : public QObject {
    Q_OBJECT

    std::unique_ptr<persona::Model> model_;

private slots:
    void initTestCase() {
        model_ = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "auto"});
    }

    void judgeNames() {
        QCOMPARE(persona::judge_kind_from_name("local"), std::optional<JudgeKind>(JudgeKind::Local));
        QCOMPARE(persona::judge_kind_from_name("none"), std::optional<JudgeKind>(JudgeKind::None));
        QVERIFY(!persona::judge_kind_from_name("gpt"));
        QCOMPARE(QString(persona::judge_kind_name(JudgeKind::None)), QString("none"));
    }

    // What judging_label writes into summaries and vectors reads back as the same judge and mode
    // (persona-cli project add-run reads it); anything else is refused and changes nothing.
    void judgingLabelsReadBack() {
        std::vector<ExtractionSettings> judges(5);
        judges[1].judge = JudgeKind::None;
        judges[2].judge.model_path = "judge.gguf";
        judges[3].judge = JudgeKind::Http;
        judges[3].judge.endpoint.base_url = "http://127.0.0.1:8080/v1";
        judges[3].judge.endpoint.model = "qwen:7b#2";
        judges[3].judge_mode = persona::JudgeMode::Pairwise;
        judges[4].judge.model_path = "judge.gguf";
        judges[4].judge_mode = persona::JudgeMode::Pairwise;
        for (const ExtractionSettings& written : judges) {
            ExtractionSettings read;
            read.judge = JudgeKind::None;
            QVERIFY2(persona::apply_judging_label(persona::judging_label(written), read), persona::judging_label(written).c_str());
            QCOMPARE(persona::judging_label(read), persona::judging_label(written));
            QCOMPARE(read.judge.model_path, written.judge.model_path);
            QCOMPARE(read.judge.endpoint.base_url, written.judge.endpoint.base_url);
            QCOMPARE(read.judge.endpoint.model, written.judge.endpoint.model);
            QCOMPARE(read.judge_mode, written.judge_mode);
        }
        for (const std::string bad : {"gpt", "local:", "none pairwise", "none:x", "http:no-model", ""}) {
            ExtractionSettings read;
            QVERIFY2(!persona::apply_judging_label(bad, read), bad.c_str());
            QCOMPARE(read.judge.kind, JudgeKind::Local);
            QCOMPARE(read.judge_mode, persona::JudgeMode::Absolute);
        }
    }

    // A number that fills one token is scored from the first distribution alone.
    void scoresASingleDigitAnswer() {
        SyntheticJudge judge;
        judge.table[{}] = {{7, 1.0f}};
        const auto score = persona::score_judge_distribution(digitSpellings(), kDigits, judge.provider());
        QVERIFY(!score.refusal);
        QCOMPARE(*score.score, 7.0);
        QCOMPARE(score.numeric_mass, 1.0);
    }

    // "42" is "4" then "2": its probability is the product, not the first token's.
    void scoresMultiTokenNumbersByTheirWholeSpelling() {
        SyntheticJudge judge;
        judge.table[{}] = {{4, 1.0f}};
        judge.table[{4}] = {{2, 1.0f}};
        const auto score = persona::score_judge_distribution(digitSpellings(), kDigits, judge.provider());
        QVERIFY(std::abs(*score.score - 42.0) < 1e-9);

        // Half "1", half "9"; after "1" always "0"; after "10" half "0" (100), half the end (10);
        // after "9" the end: 0.25 * 10 + 0.25 * 100 + 0.5 * 9 = 32. Reading first tokens alone
        // would give 0.5 * 1 + 0.5 * 9 = 5.
        SyntheticJudge mixed;
        mixed.table[{}] = {{1, 0.5f}, {9, 0.5f}, {kWord, 0.0f}};
        mixed.table[{1}] = {{0, 1.0f}};
        mixed.table[{1, 0}] = {{0, 0.5f}, {kWord, 0.5f}};
        const auto m = persona::score_judge_distribution(digitSpellings(), kDigits, mixed.provider());
        QVERIFY2(std::abs(*m.score - 32.0) < 1e-6, qPrintable(QString::number(*m.score)));
        // The root's pass ran on through "1" and "10"; only "9" needed a pass of its own.
        QCOMPARE(m.forward_passes, 2);
        QCOMPARE(mixed.calls, 2);
    }

    // With a batch, the first digits worth expanding run in one pass together; the score is
    // the same as one pass each.
    void expandsTheFirstDigitsInOneBatch() {
        SyntheticJudge judge;
        judge.table[{}] = {{1, 0.3f}, {4, 0.3f}, {9, 0.395f}, {6, 0.005f}};
        judge.table[{1}] = {{0, 1.0f}};
        judge.table[{1, 0}] = {{0, 0.5f}, {kWord, 0.5f}};
        judge.table[{4}] = {{2, 1.0f}};
        judge.table[{9}] = {{kWord, 1.0f}};
        const auto alone = persona::score_judge_distribution(digitSpellings(), kDigits, judge.provider());
        QCOMPARE(alone.forward_passes, 3);  // root through "1", "10"; "4"; "9"
        judge.calls = 0;
        const auto batched =
            persona::score_judge_distribution(digitSpellings(), kDigits, judge.provider(), 0.01, judge.batchProvider());
        QCOMPARE(*batched.score, *alone.score);
        QCOMPARE(batched.numeric_mass, alone.numeric_mass);
        QCOMPARE(judge.batches, 1);
        QCOMPARE(batched.forward_passes, 2);  // the root through "1", "10", then "4" and "9" at once; never "6"
        QCOMPARE(judge.calls, 1 + 2);         // the batch asked for "4" and "9" alone: "1" was known
    }

    // docs/method.md: under 0.25 of the mass on numbers is a refusal; just above is scored.
    void refusalRule() {
        SyntheticJudge refusing;
        refusing.table[{}] = {{5, 0.2f}, {kWord, 0.8f}};
        const auto r = persona::score_judge_distribution(digitSpellings(), kDigits, refusing.provider());
        QVERIFY(r.refusal);
        QVERIFY(!r.score);
        QVERIFY(std::abs(r.numeric_mass - 0.2) < 1e-6);
        QCOMPARE(r.forward_passes, 1);  // the first distribution decides a refusal

        SyntheticJudge scoring;
        scoring.table[{}] = {{5, 0.3f}, {kWord, 0.7f}};
        const auto s = persona::score_judge_distribution(digitSpellings(), kDigits, scoring.provider());
        QVERIFY(!s.refusal);
        QCOMPARE(*s.score, 5.0);  // the mean is over the numeric mass only
    }

    // Prefixes too improbable to matter are not expanded: their mass counts as numeric for the
    // refusal rule, but not in the mean.
    void prunesImprobablePrefixes() {
        SyntheticJudge judge;
        judge.table[{}] = {{8, 0.995f}, {3, 0.005f}};
        judge.table[{8}] = {{0, 1.0f}};
        judge.table[{3}] = {{0, 1.0f}};
        const auto score = persona::score_judge_distribution(digitSpellings(), kDigits, judge.provider(), 0.01);
        QVERIFY(std::abs(*score.score - 80.0) < 1e-9);
        QVERIFY(std::abs(score.numeric_mass - 1.0) < 1e-6);
        QCOMPARE(score.forward_passes, 2);  // root (through "1", "10") and "8"; never "3"
    }

    // How SmolLM2 spells 0..100, which the judge depends on: every spelling decodes back to the
    // number, and digit-led tokens include every first token of a spelling.
    void realVocabularySpellings() {
        const auto& tokenizer = model_->tokenizer();
        const auto spellings = persona::spell_judge_numbers(tokenizer);
        const auto leading = persona::digit_leading_tokens(tokenizer);
        QCOMPARE(int(spellings.size()), 101);
        int single = 0;
        for (const auto& s : spellings) {
            QCOMPARE(QString::fromStdString(tokenizer.decode(s.tokens, false)), QString::number(s.value));
            QVERIFY(std::find(leading.begin(), leading.end(), s.tokens.front()) != leading.end());
            single += s.tokens.size() == 1;
        }
        qInfo("SmolLM2: %d of the integers 0..100 are single tokens; %zu tokens start with a digit", single,
              leading.size());
    }

    // Asking in both orders cancels a judge's taste for a position and keeps its taste for the trait.
    void pairwiseJudgingCancelsPositionBias() {
        PickingJudge judge;
        judge.biasA = 0.3;  // picks A 30 points more often, whatever it shows
        auto pick = persona::judge_pair(judge, "evil", "", "q?", "MARK", "kind");
        QCOMPARE(judge.picks, 2);
        QVERIFY(std::abs(*pick.a_wins - 0.5) < 1e-12);
        judge.biasA = 0.1;
        judge.prefersMarked = 0.8;
        pick = persona::judge_pair(judge, "evil", "", "q?", "MARK", "kind");
        QVERIFY(std::abs(*pick.a_wins - 0.8) < 1e-12);
        pick = persona::judge_pair(judge, "evil", "", "q?", "kind", "MARK");
        QVERIFY(std::abs(*pick.a_wins - 0.2) < 1e-12);

        const std::string prompt = persona::pairwise_judge_prompt("overly_formal", "Stiff.", "Q?", "first", "second");
        QVERIFY(prompt.find("overly formal") != std::string::npos);
        QVERIFY(prompt.find("Stiff.") != std::string::npos);
        QVERIFY(prompt.find("first") < prompt.find("second"));
    }

    // The pick read from a distribution: the mass on A's and B's tokens, a refusal under 0.25.
    void picksFromADistributionAndFromLogprobs() {
        const persona::PickTokens tokens{{3, 4}, {5}};
        std::vector<float> p(kVocabulary, 0.0f);
        p[3] = 0.3f, p[4] = 0.3f, p[5] = 0.2f, p[kWord] = 0.2f;
        auto pick = persona::pick_from_distribution(p, tokens);
        QVERIFY(!pick.refusal);
        QVERIFY(std::abs(*pick.a_wins - 0.75) < 1e-6);
        QVERIFY(std::abs(pick.letter_mass - 0.8) < 1e-6);
        std::fill(p.begin(), p.end(), 0.0f);
        p[5] = 0.2f, p[kWord] = 0.8f;
        pick = persona::pick_from_distribution(p, tokens);
        QVERIFY(pick.refusal && !pick.a_wins);

        pick = persona::pick_from_top_logprobs({{" B", std::log(0.6)}, {"A", std::log(0.2)}, {"Answer", std::log(0.2)}});
        QVERIFY(std::abs(*pick.a_wins - 0.25) < 1e-9);
        QVERIFY(persona::pick_from_top_logprobs({{"The", std::log(0.9)}, {"A", std::log(0.1)}}).refusal);

        const auto real = persona::pick_tokens(model_->tokenizer());
        QVERIFY(!real.a.empty() && !real.b.empty());
        QCOMPARE(QString::fromStdString(model_->tokenizer().decode({real.a.front()}, false)).trimmed(), QString("A"));
        QCOMPARE(persona::judge_mode_from_name("pairwise"), std::optional<persona::JudgeMode>(persona::JudgeMode::Pairwise));
    }

    // Pairwise mode on the default model judging itself: the two answers of a pair share the
    // probability (scores add to 100), the filter applies the threshold to the positive's share,
    // and the mode is part of the judge's label, so the absolute mode judges the same answers again.
    void pairwiseExtractionOnTheDefaultModel() {
        QTemporaryDir dir;
        const persona::Trait trait = persona::load_builtin_trait("evil");
        ExtractionSettings settings = reducedSettings(2, 2, 24, 5, JudgeKind::Local);
        settings.judge_mode = persona::JudgeMode::Pairwise;
        settings.pairwise_threshold = 60;
        settings.trait_threshold = 99;  // the absolute mode's, not used by this one
        settings.coherence_threshold = 0;
        settings.checkpoint_path = dir.filePath("evil.json").toStdString();
        const ExtractionResult result = persona::run_extraction(*model_, trait, settings);
        QCOMPARE(result.samples_judged, std::size_t(8));
        std::size_t kept = 0;
        for (std::size_t i = 0; i < result.samples.size(); i += 2) {
            const Sample& p = result.samples[i];
            const Sample& n = result.samples[i + 1];
            QCOMPARE(p.trait_refusal, n.trait_refusal);
            QCOMPARE(p.trait_numeric_mass, n.trait_numeric_mass);
            if (!p.trait_refusal) QVERIFY(std::abs(*p.trait_score + *n.trait_score - 100) < 1e-9);
            // Coherence is scored only where it decides: for both answers of a pair whose positive wins.
            const bool shows = p.trait_score && *p.trait_score >= 60;
            for (const Sample* s : {&p, &n}) {
                QCOMPARE(s->coherence_skipped, !shows);
                QVERIFY(s->coherence_skipped ? !s->coherence && !s->coherence_refusal
                                             : s->coherence_refusal || inScoreRange(s->coherence));
            }
            const bool keep = !p.answer_tokens.empty() && !n.answer_tokens.empty() && shows && p.coherence && n.coherence;
            QCOMPARE(p.kept, keep);
            kept += keep;
            qInfo("pair %zu: positive shows evil more with p = %s", i / 2,
                  p.trait_score ? qPrintable(QString::number(*p.trait_score / 100, 'f', 3)) : "refused");
        }
        QCOMPARE(result.pairs.kept, kept);
        QCOMPARE(result.pairs.failing_negative_trait, std::size_t(0));
        QCOMPARE(persona::judging_label(settings), std::string("local pairwise"));

        settings.judge_mode = persona::JudgeMode::Absolute;
        const ExtractionResult absolute = persona::run_extraction(*model_, trait, settings);
        QCOMPARE(absolute.samples_generated, std::size_t(0));
        QCOMPARE(absolute.samples_judged, std::size_t(8));
        for (std::size_t i = 0; i < result.samples.size(); ++i)
            QCOMPARE(absolute.samples[i].answer, result.samples[i].answer);
    }

    // Reduced extraction, local judge, on two built-in traits.
    void extractsTwoTraitsWithTheLocalJudge() {
        for (const char* name : {"evil", "optimistic"}) {
            const persona::Trait trait = persona::load_builtin_trait(name);
            const ExtractionSettings settings = reducedSettings(3, 2, 32, 7, JudgeKind::Local);
            std::vector<std::string> stages;
            std::map<std::string, std::pair<std::size_t, std::size_t>> lastProgress;
            int generatedEvents = 0, judgedEvents = 0;
            const auto start = std::chrono::steady_clock::now();
            const ExtractionResult result = persona::run_extraction(*model_, trait, settings,
                [&](const std::string& stage, std::size_t done, std::size_t total) {
                    if (stages.empty() || stages.back() != stage) stages.push_back(stage);
                    QVERIFY(done <= total);
                    lastProgress[stage] = {done, total};
                },
                [&](const Sample& sample) { sample.judged ? ++judgedEvents : ++generatedEvents; });
            const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

            QCOMPARE(result.samples.size(), std::size_t(12));
            QCOMPARE(result.pairs.total, std::size_t(6));
            QCOMPARE(generatedEvents, 12);
            QCOMPARE(judgedEvents, 12);
            QCOMPARE(stages.at(0), std::string("generate"));
            QCOMPARE(stages.at(1), std::string("judge"));
            QCOMPARE(stages.at(2), std::string("filter"));
            QCOMPARE(lastProgress["filter"], std::make_pair(std::size_t(6), std::size_t(6)));
            QCOMPARE(lastProgress["generate"], std::make_pair(std::size_t(12), std::size_t(12)));
            QCOMPARE(lastProgress["judge"], std::make_pair(std::size_t(12), std::size_t(12)));
            int refusals = 0;
            double largestNumericMass = 0;
            for (const Sample& s : result.samples) {
                QVERIFY(s.judged);
                QCOMPARE(s.trait_refusal, !s.trait_score.has_value());
                QCOMPARE(s.coherence_refusal, !s.coherence.has_value() && !s.coherence_skipped);
                QVERIFY(s.trait_refusal || inScoreRange(s.trait_score));
                QVERIFY(s.coherence_refusal || s.coherence_skipped || inScoreRange(s.coherence));
                refusals += s.trait_refusal + s.coherence_refusal;
                QVERIFY(s.trait_numeric_mass >= 0 && s.trait_numeric_mass <= 1 + 1e-6);
                QCOMPARE(s.trait_refusal, s.trait_numeric_mass < persona::kRefusalNumericMass);
                if (!s.coherence_skipped) QCOMPARE(s.coherence_refusal, s.coherence_numeric_mass < persona::kRefusalNumericMass);
                largestNumericMass = std::max({largestNumericMass, s.trait_numeric_mass, s.coherence_numeric_mass});
            }
            // The filter, recomputed from the scores.
            std::size_t kept = 0;
            for (std::size_t i = 0; i < result.samples.size(); i += 2) {
                const Sample& p = result.samples[i];
                const Sample& n = result.samples[i + 1];
                QCOMPARE(p.side, persona::Side::Positive);
                QCOMPARE(n.side, persona::Side::Negative);
                // The positive's coherence when it shows the trait, the negative's when the pair
                // passes both trait tests; no other is scored.
                const bool shows = p.trait_score && *p.trait_score >= 50;
                const bool passesTrait = shows && n.trait_score && *n.trait_score < 50;
                QCOMPARE(p.coherence_skipped, !shows);
                QCOMPARE(n.coherence_skipped, !passesTrait);
                const bool keep = !p.answer_tokens.empty() && !n.answer_tokens.empty() && passesTrait && p.coherence &&
                                  *p.coherence >= 50 && n.coherence && *n.coherence >= 50;
                QCOMPARE(p.kept, keep);
                QCOMPARE(n.kept, keep);
                kept += keep;
            }
            QCOMPARE(result.pairs.kept, kept);
            if (kept > 0) {
                QCOMPARE(stages, (std::vector<std::string>{"generate", "judge", "filter", "capture", "vectors"}));
                checkVectors(result);
            } else {
                QCOMPARE(stages.size(), std::size_t(3));
                QVERIFY(result.aggregates.empty());
                QVERIFY_THROWS_EXCEPTION(persona::Error, result.aggregate(persona::Aggregate::ResponseMean));
            }
            QString scores;
            for (const Sample& s : result.samples)
                scores += QString(" %1/%2").arg(s.trait_score ? QString::number(*s.trait_score, 'f', 0) : "R",
                                               s.coherence ? QString::number(*s.coherence, 'f', 0) : s.coherence_skipped ? "-" : "R");
            qInfo("%s: %.1f s, %zu of %zu pairs kept, %d refusals (largest numeric mass %.3f), suggested layer %d; "
                  "trait/coherence:%s", name, seconds, kept, result.pairs.total, refusals, largestNumericMass,
                  result.aggregates.empty() ? -1 : result.aggregates.front().suggested_layer, qPrintable(scores));
        }
    }

    // Cancelled mid-generation, then resumed: the finished samples are not generated again and
    // the result is the uninterrupted run's.
    void resumesFromACheckpoint() {
        QTemporaryDir dir;
        const std::string checkpoint = dir.filePath("evil.checkpoint.json").toStdString();
        const persona::Trait trait = persona::load_builtin_trait("evil");
        ExtractionSettings settings = reducedSettings(2, 2, 16, 11, JudgeKind::None);
        settings.batch_size = 2;

        ExtractionSettings withCheckpoint = settings;
        withCheckpoint.checkpoint_path = checkpoint;
        int generated = 0;
        std::vector<std::string> beforeCancel;
        bool cancelled = false;
        try {
            persona::run_extraction(*model_, trait, withCheckpoint, {},
                                    [&](const Sample& s) {
                                        ++generated;
                                        beforeCancel.push_back(s.answer);
                                    },
                                    [&] { return generated >= 3; });
        } catch (const persona::Cancelled&) {
            cancelled = true;
        }
        QVERIFY(cancelled);
        QCOMPARE(generated, 4);  // two whole batches; the cancel stopped the third
        QFile file(QString::fromStdString(checkpoint));
        QVERIFY(file.open(QIODevice::ReadOnly));
        const QJsonObject saved = QJsonDocument::fromJson(file.readAll()).object();
        QCOMPARE(saved["trait"].toString(), QString("evil"));
        QCOMPARE(saved["samples"].toArray().size(), 4);

        // on_sample sees the 4 saved samples first (a resumed run shows them at once), then the
        // 4 generated now.
        std::vector<std::string> reported;
        const ExtractionResult resumed = persona::run_extraction(*model_, trait, withCheckpoint, {},
                                                                 [&](const Sample& s) { reported.push_back(s.answer); });
        QCOMPARE(resumed.samples_resumed, std::size_t(4));
        QCOMPARE(resumed.samples_generated, std::size_t(4));
        QCOMPARE(reported.size(), std::size_t(8));
        QCOMPARE(std::vector<std::string>(reported.begin(), reported.begin() + 4), beforeCancel);

        const ExtractionResult straight = persona::run_extraction(*model_, trait, settings);
        QCOMPARE(straight.samples.size(), resumed.samples.size());
        for (std::size_t i = 0; i < straight.samples.size(); ++i) {
            QCOMPARE(resumed.samples[i].answer, straight.samples[i].answer);
            QCOMPARE(resumed.samples[i].answer_tokens, straight.samples[i].answer_tokens);
        }
        QCOMPARE(resumed.pairs.kept, straight.pairs.kept);
        QCOMPARE(straight.pairs.kept, std::size_t(4));  // no judge: every pair with answers
        checkVectors(straight);
        for (std::size_t a = 0; a < straight.aggregates.size(); ++a) {
            QCOMPARE(resumed.aggregates[a].suggested_layer, straight.aggregates[a].suggested_layer);
            QVERIFY(maxAbsDifference(resumed.aggregates[a].vector.values, straight.aggregates[a].vector.values) < 1e-4);
        }

        // A smaller run on the same checkpoint takes what it needs and keeps the rest on disk.
        ExtractionSettings smaller = withCheckpoint;
        smaller.question_limit = 1;
        int smallerReported = 0;
        const ExtractionResult part =
            persona::run_extraction(*model_, trait, smaller, {}, [&](const Sample&) { ++smallerReported; });
        QCOMPARE(part.samples_generated, std::size_t(0));
        QCOMPARE(smallerReported, 4);  // the four it resumed, none generated
        QCOMPARE(part.samples_resumed, std::size_t(4));
        QFile after(QString::fromStdString(checkpoint));
        QVERIFY(after.open(QIODevice::ReadOnly));
        QCOMPARE(QJsonDocument::fromJson(after.readAll()).object()["samples"].toArray().size(), 8);

        // The same checkpoint for another trait is refused, naming the file and the trait.
        try {
            persona::run_extraction(*model_, persona::load_builtin_trait("optimistic"), withCheckpoint);
            QFAIL("a checkpoint from another trait was accepted");
        } catch (const persona::FileError& e) {
            const QString message = e.what();
            QVERIFY2(message.contains(QString::fromStdString(checkpoint)) && message.contains("'evil'"), e.what());
        }
        // Other generation settings are refused as well.
        ExtractionSettings otherSeed = withCheckpoint;
        otherSeed.seed = 12;
        QVERIFY_THROWS_EXCEPTION(persona::FileError, persona::run_extraction(*model_, trait, otherSeed));
    }

    // Answers sampled in bf16 are not the f32 answers (a fresh f32 run differs in most samples):
    // a checkpoint written in one dtype is refused by the model in the other, naming both, and
    // the vector records the dtype, device and model fingerprint it was made with.
    void aCheckpointIsNotResumedInAnotherDtype() {
        QTemporaryDir dir;
        const persona::Trait trait = persona::load_builtin_trait("evil");
        ExtractionSettings settings = reducedSettings(1, 1, 8, 5, JudgeKind::None);
        settings.checkpoint_path = dir.filePath("evil.checkpoint.json").toStdString();
        int generated = 0;
        try {
            persona::run_extraction(*model_, trait, settings, {}, [&](const Sample&) { ++generated; },
                                    [&] { return generated >= 1; });
        } catch (const persona::Cancelled&) {
        }
        QVERIFY(QFile::exists(QString::fromStdString(settings.checkpoint_path)));

        const std::string dtype = model_->dtype(), otherDtype = dtype == "bf16" ? "f32" : "bf16";
        const auto other =
            persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", otherDtype});
        QCOMPARE(other->facts().fingerprint, model_->facts().fingerprint);  // the same file
        try {
            persona::run_extraction(*other, trait, settings);
            QFAIL("a checkpoint was resumed in another dtype");
        } catch (const persona::FileError& e) {
            const QString message = e.what();
            QVERIFY2(message.contains("bf16") && message.contains("f32"), e.what());
        }
        // Where each checkpoint would go by default differs, so the panel never meets this one.
        QVERIFY(persona::extraction_checkpoint_file(dir.path().toStdString(), trait, settings, other->facts()) !=
                persona::extraction_checkpoint_file(dir.path().toStdString(), trait, settings, model_->facts()));

        const ExtractionResult finished = persona::run_extraction(*model_, trait, settings);
        const auto& provenance = finished.aggregate(persona::Aggregate::ResponseMean).vector.provenance;
        QCOMPARE(provenance.at("dtype"), dtype);
        QCOMPARE(provenance.at("device"), std::string("cpu"));
        QCOMPARE(provenance.at("model_fingerprint"), model_->facts().fingerprint);
    }

private:
    void checkVectors(const ExtractionResult& result) {
        QCOMPARE(int(result.aggregates.size()), 3);
        const int layers = model_->layer_count() + 1;
        for (const auto& entry : result.aggregates) {
            QCOMPARE(entry.vector.layer_count, layers);
            QCOMPARE(entry.vector.hidden_size, model_->hidden_size());
            QCOMPARE(int(entry.vector.values.size()), layers * model_->hidden_size());
            QCOMPARE(QString::fromStdString(entry.vector.trait), QString::fromStdString(result.trait));
            double norm = 0;
            for (int l = 1; l < layers; ++l) norm += entry.vector.layer_norm(l);
            QVERIFY(norm > 0);
            QCOMPARE(int(entry.diagnostics.size()), layers);
            QVERIFY(entry.suggested_layer >= 1 && entry.suggested_layer < layers);
            // Every kept sample, positives first, each with one projection per layer whose side
            // means are the diagnostics' means.
            QCOMPARE(entry.kept_samples.size(), 2 * result.pairs.kept);
            QCOMPARE(entry.sample_projections.size(), entry.kept_samples.size());
            const std::size_t half = result.pairs.kept;
            for (std::size_t k = 0; k < entry.kept_samples.size(); ++k) {
                const auto& sample = result.samples.at(entry.kept_samples[k]);
                QVERIFY(sample.kept);
                QCOMPARE(sample.side, k < half ? persona::Side::Positive : persona::Side::Negative);
                QCOMPARE(int(entry.sample_projections[k].size()), layers);
            }
            for (int l = 0; l < layers; ++l) {
                double positive = 0, negative = 0;
                for (std::size_t k = 0; k < half; ++k) positive += entry.sample_projections[k][std::size_t(l)];
                for (std::size_t k = half; k < 2 * half; ++k) negative += entry.sample_projections[k][std::size_t(l)];
                const auto& d = entry.diagnostics[std::size_t(l)];
                const double tolerance = 1e-4 * (1 + std::abs(d.positive_mean_projection) + std::abs(d.negative_mean_projection));
                QVERIFY(std::abs(positive / double(half) - d.positive_mean_projection) < tolerance);
                QVERIFY(std::abs(negative / double(half) - d.negative_mean_projection) < tolerance);
            }
        }
    }
};

QTEST_GUILESS_MAIN(TestExtraction)
#include "test_extraction.moc"
