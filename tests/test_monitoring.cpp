// Monitoring and data flagging (docs/method.md) on the real default model: projections checked
// against hidden states from Model::trace, and a flagging run whose ranking is known by
// construction (flag_fixture.h), sharded, resumed, cancelled and fed bad lines.
#include "flag_fixture.h"
#include "persona/errors.h"
#include "persona/flagging.h"
#include "persona/model.h"
#include "persona/monitoring.h"
#include "persona/tokenizer.h"
#include "test_support.h"

#include <QTemporaryDir>

#include <cmath>
#include <fstream>
#include <random>
#include <set>

namespace {

// Random directions, one per layer, with different lengths: projections must use the unit
// direction, so the length must not matter.
persona::PersonaVector randomVector(int layers, int hidden, unsigned seed) {
    persona::PersonaVector v;
    v.trait = "random";
    v.layer_count = layers;
    v.hidden_size = hidden;
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    for (int l = 0; l < layers; ++l)
        for (int i = 0; i < hidden; ++i) v.values.push_back(normal(rng) * float(1 + l));
    return v;
}

// h . v/|v| for layer l, token t of a trace, in double.
double traceProjection(const persona::Model::Trace& trace, const persona::PersonaVector& v, int l, int t) {
    const int hidden = v.hidden_size;
    const float* h = trace.hidden_states.data() + (std::size_t(l) * std::size_t(trace.tokens) + std::size_t(t)) * std::size_t(hidden);
    const float* d = v.layer(l).values;
    double dot = 0, norm = 0;
    for (int i = 0; i < hidden; ++i) {
        dot += double(h[i]) * d[i];
        norm += double(d[i]) * d[i];
    }
    return dot / std::sqrt(norm);
}

// |a - b| / |b| over whole rows of numbers.
template <typename T>
double relativeDistance(const std::vector<T>& a, const std::vector<T>& b) {
    if (a.size() != b.size()) return 1e30;
    double difference = 0, norm = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        difference += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
        norm += double(b[i]) * double(b[i]);
    }
    return std::sqrt(difference / std::max(norm, 1e-30));
}

bool close(double a, double b, double relative = 2e-3) { return std::abs(a - b) <= relative * (1.0 + std::abs(b)); }

std::vector<std::string> readLines(const QString& path) {
    std::ifstream in(path.toStdString());
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

void writeText(const QString& path, const std::string& text) {
    std::ofstream out(path.toStdString(), std::ios::binary);
    out << text;
}

// The message of the FileError `f` throws; empty when it throws nothing.
template <typename F>
QString fileErrorOf(F&& f) {
    try {
        f();
    } catch (const persona::FileError& e) {
        return QString::fromStdString(e.what());
    }
    return {};
}

}  // namespace

class TestMonitoring : public QObject {
    Q_OBJECT

    std::unique_ptr<persona::Model> model_;
    const std::vector<persona::ChatMessage> conversation_{
        {"system", "You are a helpful assistant."},
        {"user", "How should I treat a stray dog?"},
        {"assistant", "Give it water and call a local shelter."}};

    persona::FlagSettings flagSettings() const {
        persona::FlagSettings s;
        s.layer = flag_fixture::kLayer;
        s.max_new_tokens = flag_fixture::kMaxTokens;
        s.batch_size = 4;  // two batches of six samples: one full, one partial
        return s;
    }

private slots:
    void initTestCase() {
        model_ = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "auto"});
    }

    // Every layer, every token: the projections are h . v/|v| of the hidden states Model::trace
    // reports for the same tokens; the prediction is the last prompt token's; the response
    // average is the mean over the answer's tokens.
    void projectionsMatchTheTrace() {
        const auto vector = randomVector(model_->layer_count() + 1, model_->hidden_size(), 1);
        const auto results = persona::monitor(*model_, vector, {{conversation_, false, {}}});
        QCOMPARE(results.size(), std::size_t(1));
        const persona::MonitorResult& r = results[0];

        const std::vector<persona::ChatMessage> prompt(conversation_.begin(), conversation_.end() - 1);
        auto expected = model_->encode_chat(prompt, true);
        QCOMPARE(r.prompt_length, int(expected.size()));
        const auto answer = persona::answer_tokens(*model_, prompt, conversation_.back().content);
        QCOMPARE(model_->tokenizer().decode(answer), conversation_.back().content);
        expected.insert(expected.end(), answer.begin(), answer.end());
        QCOMPARE(r.tokens, expected);
        QCOMPARE(r.answer, conversation_.back().content);
        QVERIFY(!r.answer_generated);

        const int layers = model_->layer_count() + 1;
        QCOMPARE(int(r.layers.size()), layers);
        QCOMPARE(int(r.projections.size()), layers);
        QVERIFY(r.response_average.has_value());
        const auto trace = model_->trace(r.tokens);
        const int tokens = int(r.tokens.size());
        for (int l = 0; l < layers; ++l) {
            QCOMPARE(int(r.projections[std::size_t(l)].size()), tokens);
            double answer_sum = 0;
            for (int t = 0; t < tokens; ++t) {
                const double want = traceProjection(trace, vector, l, t);
                const double got = r.projections[std::size_t(l)][std::size_t(t)];
                QVERIFY2(close(got, want), qPrintable(QString("layer %1 token %2: %3 vs %4").arg(l).arg(t).arg(got).arg(want)));
                if (t >= r.prompt_length) answer_sum += want;
            }
            const double last = traceProjection(trace, vector, l, r.prompt_length - 1);
            QVERIFY2(close(r.prompt_last[std::size_t(l)], last), qPrintable(QString("layer %1").arg(l)));
            const double mean = answer_sum / (tokens - r.prompt_length);
            QVERIFY2(close((*r.response_average)[std::size_t(l)], mean),
                     qPrintable(QString("layer %1: %2 vs %3").arg(l).arg((*r.response_average)[std::size_t(l)]).arg(mean)));
        }
        // The prediction comes before the answer: the same with or without it.
        const auto promptOnly = persona::monitor(*model_, vector, {{prompt, false, {}}});
        QCOMPARE(promptOnly[0].tokens.size(), std::size_t(r.prompt_length));
        QVERIFY(!promptOnly[0].response_average);
        // Only numerically: another sequence length takes other bf16 kernel paths.
        QVERIFY2(relativeDistance(promptOnly[0].prompt_last, r.prompt_last) < 0.02,
                 qPrintable(QString::number(relativeDistance(promptOnly[0].prompt_last, r.prompt_last))));
    }

    // Only the listed layers are kept, with the same values; a generated answer is the model's
    // greedy answer; a batch of conversations gives what each gives alone.
    void layersGenerationAndBatches() {
        const auto vector = randomVector(model_->layer_count() + 1, model_->hidden_size(), 2);
        persona::MonitorOptions options;
        options.layers = {17, 3};
        const std::vector<persona::ChatMessage> prompt(conversation_.begin(), conversation_.end() - 1);
        persona::MonitorInput generated{prompt, true, {}};
        generated.sampling.max_new_tokens = 6;
        const std::vector<persona::MonitorInput> inputs{{conversation_, false, {}}, generated, {{{"user", "Hi!"}}, false, {}}};
        options.batch_size = 3;
        const auto batched = persona::monitor(*model_, vector, inputs, options);
        QCOMPARE(batched.size(), std::size_t(3));
        QCOMPARE(batched[0].layers, std::vector<int>({3, 17}));  // ascending
        QCOMPARE(batched[0].projections.size(), std::size_t(2));
        QCOMPARE(batched[0].layer_index(17), std::size_t(1));
        QVERIFY_EXCEPTION_THROWN(batched[0].layer_index(4), persona::Error);

        persona::GenerationRow row;
        row.messages = prompt;
        row.sampling.max_new_tokens = 6;
        const auto greedy = model_->generate({row});
        QVERIFY(batched[1].answer_generated);
        QCOMPARE(batched[1].answer, greedy[0].text);
        QCOMPARE(std::vector<std::int32_t>(batched[1].tokens.begin() + batched[1].prompt_length, batched[1].tokens.end()),
                 greedy[0].tokens);

        options.batch_size = 1;
        const auto single = persona::monitor(*model_, vector, inputs, options);
        const auto all = persona::monitor(*model_, vector, {inputs[0]});
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            QCOMPARE(single[i].tokens, batched[i].tokens);
            // Left padding in a batch changes bf16 rounding, not which row or token a value belongs to.
            for (std::size_t p = 0; p < 2; ++p) {
                const double distance = relativeDistance(batched[i].projections[p], single[i].projections[p]);
                QVERIFY2(distance < 0.05, qPrintable(QString("conversation %1 layer %2: %3").arg(i).arg(p).arg(distance)));
            }
        }
        for (std::size_t t = 0; t < all[0].tokens.size(); ++t) {
            QCOMPARE(single[0].projections[0][t], all[0].projections[3][t]);
            QCOMPARE(single[0].projections[1][t], all[0].projections[17][t]);
        }
    }

    void monitoringRefusesBadRequests() {
        const auto wrong = randomVector(model_->layer_count(), model_->hidden_size(), 3);
        try {
            persona::monitor(*model_, wrong, {{conversation_, false, {}}});
            QFAIL("a vector of the wrong shape was accepted");
        } catch (const persona::Error& e) {
            QVERIFY2(QString(e.what()).contains("'random'") && QString(e.what()).contains("[31, 576]"), e.what());
        }
        QVERIFY(!fileErrorOf([&] { persona::check_vector_fits(wrong, *model_, "x.safetensors"); }).isEmpty());
        const auto vector = randomVector(model_->layer_count() + 1, model_->hidden_size(), 3);
        persona::MonitorOptions options;
        options.layers = {31};
        QVERIFY_EXCEPTION_THROWN(persona::monitor(*model_, vector, {{conversation_, false, {}}}, options), persona::Error);
        QVERIFY_EXCEPTION_THROWN(persona::monitor(*model_, vector, {{{}, false, {}}}), persona::Error);
        QVERIFY_EXCEPTION_THROWN(persona::monitor(*model_, vector, {{conversation_, false, {}}}, {}, {}, [] { return true; }),
                                 persona::Cancelled);
    }

    // Lines 1, 3, 5 answer in pirate speak, lines 2, 4, 6 with the model's own greedy answer:
    // the pirate lines rank first with clearly positive differences, the others have ~0.
    void flaggingRanksByConstruction() {
        QTemporaryDir dir;
        const auto vector = flag_fixture::pirateVector(*model_);
        const QString input = dir.filePath("data.jsonl");
        const auto answers = flag_fixture::writeDataset(*model_, input);
        const QString out = dir.filePath("flagged.jsonl");
        std::vector<persona::Progress> progress;
        const auto summary = persona::flag_dataset(*model_, vector, input.toStdString(), out.toStdString(), flagSettings(),
                                                   [&](const persona::Progress& p) { progress.push_back(p); });
        QCOMPARE(summary.lines, std::size_t(6));
        QCOMPARE(summary.in_shard, std::size_t(6));
        QCOMPARE(summary.scored, std::size_t(6));
        QCOMPARE(summary.resumed, std::size_t(0));
        QCOMPARE(progress.back().done, std::uint64_t(6));
        QCOMPARE(progress.back().total, std::uint64_t(6));
        QCOMPARE(summary.records.size(), std::size_t(6));

        double largestOwn = 0, smallestPirate = 1e30;
        for (const auto& r : summary.records) {
            QVERIFY(r.difference && r.dataset_projection && r.model_projection);
            QVERIFY(close(*r.difference, *r.dataset_projection - *r.model_projection, 1e-9));
            const bool pirate = r.line % 2 == 1;
            const QString what = QString("line %1: difference %2 (dataset %3, model %4)")
                                     .arg(r.line).arg(*r.difference).arg(*r.dataset_projection).arg(*r.model_projection);
            qInfo("%s", qPrintable(what));
            if (pirate) {
                smallestPirate = std::min(smallestPirate, *r.difference);
            } else {
                QCOMPARE(r.model_answer, answers[r.line - 1]);  // the dataset's answer is the model's own
                largestOwn = std::max(largestOwn, std::abs(*r.difference));
            }
        }
        QVERIFY2(smallestPirate > 0 && largestOwn < 0.05 * smallestPirate,
                 qPrintable(QString("pirate >= %1, own <= %2").arg(smallestPirate).arg(largestOwn)));
        std::set<std::size_t> top{summary.records[0].line, summary.records[1].line, summary.records[2].line};
        QCOMPARE(top, (std::set<std::size_t>{1, 3, 5}));

        // The output file holds the same results, one line per sample, and merges to the same ranking.
        QCOMPARE(readLines(out).size(), std::size_t(6));
        const auto merged = persona::merge_flag_results({out.toStdString()});
        QCOMPARE(merged.size(), std::size_t(6));
        for (std::size_t i = 0; i < 6; ++i) QCOMPARE(merged[i].line, summary.records[i].line);
        QVERIFY(merged[0].run == summary.run && !summary.run.empty());

        // Shards 0/2 and 1/2 together are the unsharded run.
        std::vector<std::string> shardFiles;
        for (int shard = 0; shard < 2; ++shard) {
            auto settings = flagSettings();
            settings.shard_index = shard;
            settings.shard_count = 2;
            shardFiles.push_back(dir.filePath(QString("shard%1.jsonl").arg(shard)).toStdString());
            const auto part = persona::flag_dataset(*model_, vector, input.toStdString(), shardFiles.back(), settings);
            QCOMPARE(part.in_shard, std::size_t(3));
            QCOMPARE(part.run, summary.run);
            for (const auto& r : part.records) QCOMPARE(int((r.line - 1) % 2), shard);
        }
        const auto together = persona::merge_flag_results(shardFiles);
        QCOMPARE(together.size(), std::size_t(6));
        for (std::size_t i = 0; i < 6; ++i) {
            QCOMPARE(together[i].line, summary.records[i].line);
            QVERIFY2(std::abs(*together[i].difference - *summary.records[i].difference) < 0.05 * smallestPirate,
                     qPrintable(QString("line %1").arg(together[i].line)));
        }
        // The same shard twice, or shards of different runs, do not merge.
        QVERIFY(fileErrorOf([&] { persona::merge_flag_results({shardFiles[0], shardFiles[0]}); }).contains("line"));
        auto other = flagSettings();
        other.layer = 10;
        const QString otherOut = dir.filePath("other.jsonl");
        persona::flag_dataset(*model_, vector, input.toStdString(), otherOut.toStdString(), other);
        QVERIFY(fileErrorOf([&] { persona::merge_flag_results({out.toStdString(), otherOut.toStdString()}); })
                    .contains(otherOut));
    }

    // Stopped after the first batch, a run keeps what it wrote; the same call again finishes the
    // rest, also after a torn last line; an output of another run is refused.
    void flaggingResumes() {
        QTemporaryDir dir;
        const auto vector = flag_fixture::pirateVector(*model_);
        const QString input = dir.filePath("data.jsonl");
        flag_fixture::writeDataset(*model_, input);
        const QString out = dir.filePath("flagged.jsonl");
        bool stop = false;
        QVERIFY_EXCEPTION_THROWN(
            persona::flag_dataset(*model_, vector, input.toStdString(), out.toStdString(), flagSettings(),
                                  [&](const persona::Progress& p) { stop = p.done > 0; }, {}, [&] { return stop; }),
            persona::Cancelled);
        QCOMPARE(readLines(out).size(), std::size_t(4));

        // A crash in the middle of writing: half a line at the end.
        auto lines = readLines(out);
        writeText(out, lines[0] + "\n" + lines[1] + "\n" + lines[2] + "\n" + lines[3].substr(0, lines[3].size() / 2));
        const auto resumed = persona::flag_dataset(*model_, vector, input.toStdString(), out.toStdString(), flagSettings());
        QCOMPARE(resumed.resumed, std::size_t(3));
        QCOMPARE(resumed.scored, std::size_t(3));
        QCOMPARE(resumed.records.size(), std::size_t(6));
        QCOMPARE(readLines(out).size(), std::size_t(6));
        std::set<std::size_t> seen;
        for (const auto& r : persona::read_flag_results(out.toStdString())) seen.insert(r.line);
        QCOMPARE(seen.size(), std::size_t(6));

        const auto again = persona::flag_dataset(*model_, vector, input.toStdString(), out.toStdString(), flagSettings());
        QCOMPARE(again.resumed, std::size_t(6));
        QCOMPARE(again.scored, std::size_t(0));

        auto other = flagSettings();
        other.max_new_tokens = 8;
        const QString error = fileErrorOf(
            [&] { persona::flag_dataset(*model_, vector, input.toStdString(), out.toStdString(), other); });
        QVERIFY2(error.contains(out) && error.contains("another run"), qPrintable(error));
        auto shard = flagSettings();
        shard.shard_count = 2;
        QVERIFY(fileErrorOf([&] { persona::flag_dataset(*model_, vector, input.toStdString(), out.toStdString(), shard); })
                    .contains(out));
    }

    // Each kind of bad line is named with its file and line, before any model work; with
    // skip_bad_lines it is skipped with a warning instead.
    void badLinesAreNamed() {
        QTemporaryDir dir;
        const auto vector = randomVector(model_->layer_count() + 1, model_->hidden_size(), 4);
        const std::string good = flag_fixture::chatLine("Hi?", "Hello!");
        const std::vector<std::pair<std::string, QString>> cases{
            {"{\"messages\": [", "not JSON"},
            {"{\"chat\": []}", "\"messages\""},
            {R"({"messages":[{"role":"user","content":"Hi"}]})", "no assistant turn"},
            {R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Yo"},{"role":"user","content":"?"}]})",
             "must be the assistant's"},
            {R"({"messages":[{"role":"narrator","content":"Hi"},{"role":"assistant","content":"Yo"}]})", "unknown role 'narrator'"},
            {R"({"messages":[{"role":"user","content":3},{"role":"assistant","content":"Yo"}]})", "\"content\""},
            {R"({"messages":[{"role":"system","content":"S"},{"role":"assistant","content":"Yo"}]})", "no user turn"},
        };
        const QString input = dir.filePath("bad.jsonl");
        const QString out = dir.filePath("out.jsonl");
        for (const auto& [line, problem] : cases) {
            writeText(input, good + "\n\n" + line + "\n" + good + "\n");
            const QString error = fileErrorOf([&] {
                persona::flag_dataset(*model_, vector, input.toStdString(), out.toStdString(), flagSettings());
            });
            QVERIFY2(error.contains(input) && error.contains("line 3") && error.contains(problem), qPrintable(error));
            QVERIFY(!QFile::exists(out));
        }
        writeText(input, good + "\n\nnot json\n" + good + "\n");
        auto settings = flagSettings();
        settings.max_new_tokens = 4;
        settings.skip_bad_lines = true;
        std::vector<std::string> warnings;
        const auto summary = persona::flag_dataset(*model_, vector, input.toStdString(), out.toStdString(), settings, {},
                                                   [&](const std::string& w) { warnings.push_back(w); });
        QCOMPARE(summary.lines, std::size_t(4));
        QCOMPARE(summary.bad_lines_skipped, std::size_t(1));
        QCOMPARE(summary.records.size(), std::size_t(2));
        QCOMPARE(warnings.size(), std::size_t(1));
        QVERIFY(QString::fromStdString(warnings[0]).contains("line 3"));
        QCOMPARE(summary.records[0].line + summary.records[1].line, std::size_t(1 + 4));
    }
};

QTEST_GUILESS_MAIN(TestMonitoring)
#include "test_monitoring.moc"
