// Jobs on the engine thread, with the real default model loaded: each job has its own handle,
// cancel token and exactly one ending; cancelling one never touches another; a replacing job
// drops only the queued jobs of its own key.
#include "persona/engine.h"
#include "persona/errors.h"
#include "persona/model.h"
#include "persona/sweep.h"
#include "persona/tokenizer.h"
#include "hf_fixture.h"
#include "test_support.h"

#include <QScopeGuard>
#include <QTemporaryDir>
#include <QtTest>

#include <fstream>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using persona::JobState;

// What the engine told a job's submitter, counted per ending.
struct Endings {
    std::atomic<int> finished{0}, cancelled{0}, failed{0}, progress{0};
    std::string error;
    std::mutex mutex;

    persona::JobEndings callbacks() {
        persona::JobEndings e;
        e.progress = [this](const persona::Progress&) { ++progress; };
        e.finished = [this] { ++finished; };
        e.cancelled = [this] { ++cancelled; };
        e.failed = [this](const std::string& message) {
            std::lock_guard<std::mutex> lock(mutex);
            error = message;
            ++failed;
        };
        return e;
    }
    int total() const { return finished + cancelled + failed; }
};

// A job that holds the engine thread until released (or cancelled), so others queue behind it.
struct Gate {
    std::atomic<bool> open{false};
    std::atomic<bool> entered{false};
    persona::Engine::Work work() {
        return [this](persona::Model&, const persona::JobContext& job) {
            entered = true;
            while (!open) {
                persona::check_cancelled(job.cancelled);
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
            }
        };
    }
    void waitEntered() const {
        for (int i = 0; i < 5000 && !entered; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        QVERIFY(entered);
    }
};

// JobHandle::wait with a deadline: a job that never ends fails the suite with its state, rather
// than hanging it.
JobState ending(const persona::JobHandle& handle, int timeoutMs = 120000) {
    for (int waited = 0; waited < timeoutMs; ++waited) {
        if (handle.ended()) return handle.wait();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    qFatal("job %llu is still %s after %d ms", static_cast<unsigned long long>(handle.id()),
           persona::job_state_name(handle.state()), timeoutMs);
}

persona::Engine::Work recorder(std::atomic<int>& runs) {
    return [&runs](persona::Model&, const persona::JobContext&) { ++runs; };
}

persona::GenerationRow greedyRow(const std::string& prompt, int tokens) {
    persona::GenerationRow row;
    row.messages = {{"user", prompt}};
    row.sampling.max_new_tokens = tokens;
    row.sampling.stop_at_eos = false;
    return row;
}

}  // namespace

class TestEngineJobs : public QObject {
    Q_OBJECT

    std::unique_ptr<persona::Engine> engine_;

private slots:
    void initTestCase() {
        engine_ = std::make_unique<persona::Engine>();
        Endings load;
        persona::Engine::LoadCallbacks callbacks;
        callbacks.loaded = [&](const persona::ModelFacts&) { ++load.finished; };
        callbacks.failed = [&](const std::string& error) { qWarning("%s", error.c_str()); };
        const persona::JobHandle handle = engine_->load_model(persona_test::defaultModelPath().toStdString(), callbacks);
        QCOMPARE(ending(handle), JobState::finished);
        QCOMPARE(load.finished.load(), 1);
    }

    void cancellingARunningJobLeavesTheQueuedOnes() {
        Gate gate;
        Endings first, second;
        std::atomic<int> secondRuns{0};
        const persona::JobHandle running = engine_->submit(gate.work(), first.callbacks());
        const persona::JobHandle queued = engine_->submit(recorder(secondRuns), second.callbacks());
        gate.waitEntered();
        QCOMPARE(running.state(), JobState::running);
        QCOMPARE(queued.state(), JobState::queued);
        running.cancel();
        QCOMPARE(ending(running), JobState::cancelled);
        QCOMPARE(ending(queued), JobState::finished);
        QVERIFY(!queued.cancel_requested());
        QCOMPARE(secondRuns.load(), 1);
        engine_->wait_idle();
        QCOMPARE(first.cancelled.load(), 1);
        QCOMPARE(first.total(), 1);
        QCOMPARE(second.finished.load(), 1);
        QCOMPARE(second.total(), 1);
        QVERIFY(running.id() < queued.id());
    }

    void aJobCancelledWhileQueuedEndsWithoutRunning() {
        Gate gate;
        Endings blocker, victim, bystander;
        std::atomic<int> victimRuns{0}, bystanderRuns{0};
        const persona::JobHandle first = engine_->submit(gate.work(), blocker.callbacks());
        const persona::JobHandle cancelled = engine_->submit(recorder(victimRuns), victim.callbacks());
        const persona::JobHandle last = engine_->submit(recorder(bystanderRuns), bystander.callbacks());
        gate.waitEntered();
        cancelled.cancel();
        gate.open = true;
        QCOMPARE(ending(first), JobState::finished);
        QCOMPARE(ending(cancelled), JobState::cancelled);
        QCOMPARE(ending(last), JobState::finished);
        engine_->wait_idle();
        QCOMPARE(victimRuns.load(), 0);
        QCOMPARE(victim.cancelled.load(), 1);
        QCOMPARE(victim.total(), 1);
        QCOMPARE(bystanderRuns.load(), 1);
        QCOMPARE(blocker.finished.load(), 1);
    }

    // A slider drag: many requests of one key while the engine is busy; only the last runs, and
    // another owner's queued job is untouched.
    void aReplacingJobDropsOnlyQueuedJobsOfItsKey() {
        Gate gate;
        const persona::JobHandle busy = engine_->submit(gate.work());
        gate.waitEntered();
        std::vector<std::unique_ptr<std::atomic<int>>> runs;
        std::vector<persona::JobHandle> drags;
        for (int i = 0; i < 5; ++i) {
            runs.push_back(std::make_unique<std::atomic<int>>(0));
            drags.push_back(engine_->submit(recorder(*runs.back()), {}, {"steering/generate"}));
        }
        std::atomic<int> otherRuns{0};
        const persona::JobHandle other = engine_->submit(recorder(otherRuns), {}, {"heatmap/compute"});
        gate.open = true;
        QCOMPARE(ending(busy), JobState::finished);
        for (int i = 0; i < 4; ++i) {
            QCOMPARE(ending(drags[static_cast<std::size_t>(i)]), JobState::cancelled);
            QCOMPARE(runs[static_cast<std::size_t>(i)]->load(), 0);
        }
        QCOMPARE(ending(drags.back()), JobState::finished);
        QCOMPARE(runs.back()->load(), 1);
        QCOMPARE(ending(other), JobState::finished);
        QCOMPARE(otherRuns.load(), 1);
    }

    // The running job of the same key is not replaced: its owner cancels it with its handle.
    void aReplacingJobLeavesTheRunningOneOfItsKey() {
        Gate gate;
        const persona::JobHandle running = engine_->submit(gate.work(), {}, {"steering/generate"});
        gate.waitEntered();
        std::atomic<int> runs{0};
        const persona::JobHandle next = engine_->submit(recorder(runs), {}, {"steering/generate"});
        QVERIFY(!running.cancel_requested());
        gate.open = true;
        QCOMPARE(ending(running), JobState::finished);
        QCOMPARE(ending(next), JobState::finished);
        QCOMPARE(runs.load(), 1);
    }

    void aFailureIsAnEndingWithItsMessage() {
        Endings endings;
        const persona::JobHandle handle = engine_->submit(
            [](persona::Model&, const persona::JobContext&) { throw persona::Error("the prompt is longer than the context"); },
            endings.callbacks());
        QCOMPARE(ending(handle), JobState::failed);
        QCOMPARE(handle.error(), std::string("the prompt is longer than the context"));
        engine_->wait_idle();
        QCOMPARE(endings.failed.load(), 1);
        QCOMPARE(endings.total(), 1);
        QCOMPARE(endings.error, std::string("the prompt is longer than the context"));
    }

    void progressReachesTheHandleAndTheSubmitter() {
        Endings endings;
        const persona::JobHandle handle = engine_->submit(
            [](persona::Model&, const persona::JobContext& job) {
                for (std::uint64_t i = 1; i <= 3; ++i) job.progress(persona::Progress{"counting", i, 3});
            },
            endings.callbacks());
        QCOMPARE(ending(handle), JobState::finished);
        QCOMPARE(handle.progress().stage, std::string("counting"));
        QCOMPARE(handle.progress().done, std::uint64_t(3));
        QCOMPARE(endings.progress.load(), 3);
    }

    void cancelAllCancelsWhatWasSubmittedBeforeIt() {
        Gate gate;
        std::atomic<int> queuedRuns{0}, laterRuns{0};
        const persona::JobHandle running = engine_->submit(gate.work());
        const persona::JobHandle queued = engine_->submit(recorder(queuedRuns));
        gate.waitEntered();
        engine_->cancel_all();
        const persona::JobHandle later = engine_->submit(recorder(laterRuns));
        QCOMPARE(ending(running), JobState::cancelled);
        QCOMPARE(ending(queued), JobState::cancelled);
        QCOMPARE(ending(later), JobState::finished);
        QCOMPARE(queuedRuns.load(), 0);
        QCOMPARE(laterRuns.load(), 1);
    }

    // Real model work: a generation cancelled half-way through by its handle stops early, and the
    // generation queued behind it gives exactly the tokens of an undisturbed run.
    void cancellingAGenerationDoesNotDisturbTheNextOne() {
        const persona::GenerationRow row = greedyRow("Name three colours.", 24);
        std::vector<persona::GenerationResult> undisturbed, afterCancel;
        QCOMPARE(engine_->submit([&](persona::Model& model, const persona::JobContext& job) {
                     undisturbed = model.generate({row}, {}, nullptr, job.cancelled);
                 }).wait(),
                 JobState::finished);

        std::atomic<int> tokensSeen{0};
        persona::JobHandle long_run;
        long_run = engine_->submit([&](persona::Model& model, const persona::JobContext& job) {
            model.generate({greedyRow("Write a long story about the sea.", 400)},
                           [&](const persona::TokenEvent&) {
                               if (++tokensSeen == 4) long_run.cancel();
                           },
                           nullptr, job.cancelled);
        });
        const persona::JobHandle next = engine_->submit([&](persona::Model& model, const persona::JobContext& job) {
            afterCancel = model.generate({row}, {}, nullptr, job.cancelled);
        });
        QCOMPARE(ending(long_run), JobState::cancelled);
        QVERIFY2(tokensSeen < 100, qPrintable(QString::number(tokensSeen.load())));
        QCOMPARE(ending(next), JobState::finished);
        QCOMPARE(afterCancel.at(0).tokens, undisturbed.at(0).tokens);
        QCOMPARE(int(undisturbed.at(0).tokens.size()), 24);
    }

    // A model whose tokenizer has no chat template loads all the same: the typical residual
    // norms (measured on chat prompts) are left out, so the Steering slider offers the raw
    // coefficient, and raw token prompts generate.
    void aModelWithoutAChatTemplateStillLoads() {
        QTemporaryDir dir;
        const std::string folder = dir.filePath("no-template").toStdString();
        QVERIFY(QDir().mkpath(QString::fromStdString(folder)));
        {
            const auto file = persona::GgufFile::open(persona_test::defaultModelPath().toStdString());
            hf_fixture::write_smollm_checkpoint(*file, folder, 1, false, 2);
        }
        nlohmann::json config = nlohmann::json::parse(std::ifstream(folder + "/tokenizer_config.json"));
        QVERIFY(config.erase("chat_template") == 1);
        std::ofstream(folder + "/tokenizer_config.json") << config.dump();

        persona::Engine engine;
        std::optional<persona::ModelFacts> facts;
        std::string error;
        persona::Engine::LoadCallbacks callbacks;
        callbacks.loaded = [&](const persona::ModelFacts& loaded) { facts = loaded; };
        callbacks.failed = [&](const std::string& message) { error = message; };
        QCOMPARE(ending(engine.load_model(folder, callbacks)), JobState::finished);
        QVERIFY2(facts, error.c_str());
        QVERIFY(!facts->has_chat_template);
        QVERIFY(facts->typical_residual_norms.empty());
        std::size_t generated = 0;
        QCOMPARE(ending(engine.submit([&](persona::Model& model, const persona::JobContext& job) {
                     persona::GenerationRow row;
                     row.prompt_tokens = model.tokenizer().encode("Once upon a time", true, false);
                     row.sampling.max_new_tokens = 4;
                     row.sampling.stop_at_eos = false;
                     generated = model.generate({row}, {}, nullptr, job.cancelled).front().tokens.size();
                 })),
                 JobState::finished);
        QCOMPARE(generated, std::size_t(4));
    }

    // The typical residual norms are measured once per model: a load reads them back from the
    // cache (shown by doctoring the file), and a damaged cache is measured again and rewritten.
    void aModelsTypicalNormsAreRemembered() {
        const std::string modelPath = persona_test::defaultModelPath().toStdString();
        QTemporaryDir cache;
        const QByteArray saved = qgetenv("XDG_CACHE_HOME");
        qputenv("XDG_CACHE_HOME", cache.path().toUtf8());
        const auto restore = qScopeGuard([&] { saved.isNull() ? qunsetenv("XDG_CACHE_HOME") : qputenv("XDG_CACHE_HOME", saved); });
        persona::Engine engine;
        const auto load = [&] {
            std::optional<persona::ModelFacts> facts;
            persona::Engine::LoadCallbacks callbacks;
            callbacks.loaded = [&](const persona::ModelFacts& loaded) { facts = loaded; };
            ending(engine.load_model(modelPath, callbacks));
            return facts.value_or(persona::ModelFacts{});
        };
        const std::string path = persona::typical_residual_norms_cache_path();
        QVERIFY(path.rfind(cache.path().toStdString(), 0) == 0);
        const std::vector<double> measured = load().typical_residual_norms;
        QCOMPARE(measured.size(), std::size_t(31));
        nlohmann::json file = nlohmann::json::parse(std::ifstream(path));
        QCOMPARE(file.size(), std::size_t(1));
        QCOMPARE(file.begin()->get<std::vector<double>>(), measured);

        for (auto& value : *file.begin()) value = 2 * value.get<double>();
        std::ofstream(path) << file.dump();
        const std::vector<double> remembered = load().typical_residual_norms;
        QCOMPARE(remembered.size(), measured.size());
        for (std::size_t l = 0; l < measured.size(); ++l) QCOMPARE(remembered[l], 2 * measured[l]);

        std::ofstream(path) << "{\"damaged";
        QCOMPARE(load().typical_residual_norms, measured);
        QCOMPARE(nlohmann::json::parse(std::ifstream(path)).begin()->get<std::vector<double>>(), measured);
    }

    void withoutAModelAJobFails() {
        persona::Engine engine;
        std::atomic<int> runs{0};
        const persona::JobHandle handle = engine.submit(recorder(runs));
        QCOMPARE(ending(handle), JobState::failed);
        QVERIFY2(handle.error().find("no model is loaded") != std::string::npos, handle.error().c_str());
        QCOMPARE(runs.load(), 0);
    }

    // Closing the window mid-job: the running job is cancelled (its callback runs), the queued
    // ones end as cancelled without running and without callbacks into a closing application.
    void anEngineDestroyedMidJobEndsEveryJob() {
        auto engine = std::make_unique<persona::Engine>();
        QCOMPARE(engine->load_model(persona_test::defaultModelPath().toStdString(), {}).wait(), JobState::finished);
        Gate gate;
        Endings running, queued;
        std::atomic<int> queuedRuns{0};
        const persona::JobHandle first = engine->submit(gate.work(), running.callbacks());
        const persona::JobHandle second = engine->submit(recorder(queuedRuns), queued.callbacks());
        gate.waitEntered();
        engine.reset();
        QCOMPARE(first.state(), JobState::cancelled);
        QCOMPARE(running.cancelled.load(), 1);
        QCOMPARE(ending(second), JobState::cancelled);
        QCOMPARE(queued.total(), 0);
        QCOMPARE(queuedRuns.load(), 0);
    }
};

QTEST_GUILESS_MAIN(TestEngineJobs)
#include "test_engine_jobs.moc"
