#pragma once
#include "persona/model_facts.h"
#include "persona/progress.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace persona {

class Model;
struct ModelLoadOptions;

struct EngineOptions {
    int threads = 0;             // torch intra-op threads; 0 = one per core
    std::string device = "auto"; // "auto", "cpu" or "cuda"
    std::string dtype = "auto";  // "auto", "f32", "bf16", "f16"
    bool thinking = false;       // ModelLoadOptions::thinking for models loaded with these options
    std::string adapter{};       // ModelLoadOptions::adapter, likewise
};

enum class JobState { queued, running, finished, cancelled, failed };
const char* job_state_name(JobState state);

// One submitted job, shared by whoever submitted it and the engine thread. Copies refer to the
// same job. Cancelling it stops this job only, whether it is queued or running; it ends exactly
// once, as finished, cancelled or failed (docs/architecture.md, "Jobs").
class JobHandle {
public:
    JobHandle() = default;  // refers to no job
    explicit operator bool() const { return state_ != nullptr; }
    bool operator==(const JobHandle& other) const { return state_ == other.state_; }
    bool operator!=(const JobHandle& other) const { return state_ != other.state_; }

    std::uint64_t id() const;  // 1, 2, ... in submission order; 0 for no job
    void cancel() const;       // asks the job to stop at its next step; no effect once ended
    bool cancel_requested() const;
    JobState state() const;
    bool ended() const;
    std::string error() const;  // the failure message, once failed
    Progress progress() const;  // the last progress the job reported
    // Blocks until the job has ended, its ending's callback included, and returns how. For the
    // CLI and tests, never a UI thread.
    JobState wait() const;

    struct State;  // defined by the engine

private:
    friend class Engine;
    explicit JobHandle(std::shared_ptr<State> state) : state_(std::move(state)) {}
    std::shared_ptr<State> state_;
};

// What a job's work receives: its own cancel token (to pass to every long call) and a progress
// report that the handle keeps and that reaches JobEndings::progress.
struct JobContext {
    CancelFn cancelled;
    ProgressFn progress;
};

// Called on the engine thread, after the work returned or threw: exactly one of finished,
// cancelled and failed, per job, before the handle reports the ending. A job cancelled before it
// started ends without running.
struct JobEndings {
    ProgressFn progress;
    std::function<void()> finished;
    std::function<void()> cancelled;
    std::function<void(const std::string& error)> failed;
};

struct JobOptions {
    // A job submitted with a non-empty key cancels the queued (not yet started) jobs that were
    // submitted with the same key, so a burst of requests from one owner (a slider being
    // dragged) runs only the last. Keys name an owner and a kind, e.g. "steering/generate".
    std::string replaces;
};

// One thread owns the model and the device; every call here only queues a job for it and
// returns at once with the job's handle.
class Engine {
public:
    struct LoadCallbacks {
        ProgressFn progress;
        std::function<void(const ModelFacts&)> loaded;
        std::function<void(const std::string& error)> failed;
        std::function<void()> cancelled;
    };

    explicit Engine(EngineOptions options = {});
    // Cancels the running job and joins the thread; jobs still queued end as cancelled without
    // their callbacks (whoever they would call may be gone too).
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Loads with the device and dtype of the EngineOptions.
    JobHandle load_model(const std::string& path, LoadCallbacks callbacks);
    // Loads with another device or dtype than the engine started with (a reload in bf16 after
    // f32, say). A choice the machine cannot honour (cuda without a GPU, f16 on the CPU) reaches
    // `failed` with the reason; the model loaded before stays loaded and usable.
    JobHandle load_model(const std::string& path, const ModelLoadOptions& options, LoadCallbacks callbacks);

    // Runs `work` on the engine thread with the loaded model. A work that throws
    // persona::Cancelled ends as cancelled; any other exception (also "no model is loaded")
    // ends it as failed with the exception's message.
    using Work = std::function<void(Model& model, const JobContext& job)>;
    JobHandle submit(Work work, JobEndings endings = {}, JobOptions options = {});

    // Runs `task` on the engine thread whether or not a model is loaded: work that needs none (a
    // client of a served model), queued, cancelled and ended like any other job.
    using Task = std::function<void(const JobContext& job)>;
    JobHandle run(Task task, JobEndings endings = {}, JobOptions options = {});

    // Cancels every job submitted so far, running or queued. Only an atomic increment, so a
    // signal handler may call it (the CLI's Ctrl+C).
    void cancel_all();
    bool busy() const;

    // Blocks the calling thread until every queued job has ended. For the CLI and tests, never
    // for a UI thread.
    void wait_idle();

    // The device of the loaded model; before any load, the one the EngineOptions chose.
    std::string device() const;
    int threads() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace persona
