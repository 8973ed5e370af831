#include "persona/engine.h"

#include "persona/errors.h"
#include "persona/model.h"
#include "persona/process_memory.h"
#include "persona/sweep.h"
#include "model/cpu_share.h"

#include <torch/torch.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

namespace persona {

const char* job_state_name(JobState state) {
    switch (state) {
        case JobState::queued: return "queued";
        case JobState::running: return "running";
        case JobState::finished: return "finished";
        case JobState::cancelled: return "cancelled";
        case JobState::failed: return "failed";
    }
    return "unknown";
}

struct JobHandle::State {
    std::uint64_t id = 0;
    std::uint64_t cancel_epoch = 0;  // Engine::cancel_all() calls made before this job was submitted
    std::atomic<bool> cancel_requested{false};
    mutable std::mutex mutex;
    std::condition_variable ended_signal;
    JobState state = JobState::queued;
    std::string error;
    Progress progress;

    void end(JobState how, std::string message = {}) {
        {
            std::lock_guard<std::mutex> lock(mutex);
            state = how;
            error = std::move(message);
        }
        ended_signal.notify_all();
    }
};

std::uint64_t JobHandle::id() const { return state_ ? state_->id : 0; }
void JobHandle::cancel() const {
    if (state_) state_->cancel_requested = true;
}
bool JobHandle::cancel_requested() const { return state_ && state_->cancel_requested.load(); }
JobState JobHandle::state() const {
    if (!state_) return JobState::cancelled;
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->state;
}
bool JobHandle::ended() const {
    const JobState s = state();
    return s != JobState::queued && s != JobState::running;
}
std::string JobHandle::error() const {
    if (!state_) return {};
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->error;
}
Progress JobHandle::progress() const {
    if (!state_) return {};
    std::lock_guard<std::mutex> lock(state_->mutex);
    return state_->progress;
}
JobState JobHandle::wait() const {
    if (!state_) return JobState::cancelled;
    std::unique_lock<std::mutex> lock(state_->mutex);
    state_->ended_signal.wait(lock, [this] { return state_->state != JobState::queued && state_->state != JobState::running; });
    return state_->state;
}

namespace {

// A queued job: its shared state, what it runs, and how it reports its ending.
struct QueuedJob {
    std::shared_ptr<JobHandle::State> state;
    std::string replaces;
    // Runs the work; returns normally when it finished, throws Cancelled or anything else.
    std::function<void(const JobContext&)> run;
    JobEndings endings;
};

}  // namespace

struct Engine::Impl {
    EngineOptions options;
    std::string device_name = "cpu";  // guarded by mutex: the engine thread writes it on load
    int thread_count = 1;

    mutable std::mutex mutex;
    std::condition_variable wake;
    std::condition_variable idle;
    std::deque<QueuedJob> jobs;
    bool running_job = false;
    bool stopping = false;
    std::uint64_t last_id = 0;
    // Lock-free, so cancel_all() may run in a signal handler.
    std::atomic<std::uint64_t> cancel_epoch{0};
    std::atomic<bool> shutting_down{false};
    std::thread thread;

    // Owned by the engine thread only.
    std::unique_ptr<Model> model;

    explicit Impl(EngineOptions opts) : options(std::move(opts)) {
        static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "cancel_all() must be signal-safe");
        std::promise<void> started;
        auto ready = started.get_future();
        thread = std::thread([this, &started] {
            configure_torch();
            started.set_value();
            run();
        });
        ready.wait();
    }

    void configure_torch() {
        // libtorch uses one thread unless told (docs/platform-notes.md).
        const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
        thread_count = options.threads > 0 ? options.threads : static_cast<int>(cores);
        // A count the user chose stays; the default follows the cores other programs leave free.
        if (options.threads > 0) at::set_num_threads(thread_count);
        else model::cpu_share::enable(thread_count);
        const bool cuda = torch::cuda::is_available();
        const auto device = device_from_name(options.device);
        std::lock_guard<std::mutex> lock(mutex);
        if (device == DeviceChoice::Cuda && !cuda) device_name = "cpu (CUDA requested but not available)";
        else if (device == DeviceChoice::Cuda || (device == DeviceChoice::Auto && cuda)) device_name = "cuda";
        else device_name = "cpu";
    }

    bool is_cancelled(const JobHandle::State& state) const {
        return state.cancel_requested.load() || cancel_epoch.load() > state.cancel_epoch || shutting_down.load();
    }

    void run() {
        for (;;) {
            QueuedJob job;
            {
                std::unique_lock<std::mutex> lock(mutex);
                wake.wait(lock, [this] { return stopping || !jobs.empty(); });
                if (stopping) return;
                job = std::move(jobs.front());
                jobs.pop_front();
                running_job = true;
            }
            run_one(job);
            {
                std::lock_guard<std::mutex> lock(mutex);
                running_job = false;
            }
            idle.notify_all();
        }
    }

    void run_one(QueuedJob& job) {
        JobHandle::State& state = *job.state;
        JobContext context;
        context.cancelled = [this, &state] { return is_cancelled(state); };
        context.progress = [&state, &job](const Progress& p) {
            {
                std::lock_guard<std::mutex> lock(state.mutex);
                state.progress = p;
            }
            if (job.endings.progress) job.endings.progress(p);
        };
        // Exactly one ending. The callback runs before the handle says the job ended: whoever
        // waits on the handle may then free what the callback uses.
        const auto end = [&](JobState how, const std::string& error) {
            try {
                if (how == JobState::finished && job.endings.finished) job.endings.finished();
                if (how == JobState::cancelled && job.endings.cancelled) job.endings.cancelled();
                if (how == JobState::failed && job.endings.failed) job.endings.failed(error);
            } catch (...) {
                // A callback's own failure must not take the engine thread down.
            }
            state.end(how, error);
        };
        if (is_cancelled(state)) return end(JobState::cancelled, {});
        {
            std::lock_guard<std::mutex> lock(state.mutex);
            state.state = JobState::running;
        }
        try {
            job.run(context);
        } catch (const Cancelled&) {
            return end(JobState::cancelled, {});
        } catch (const std::exception& e) {
            return end(JobState::failed, e.what());
        } catch (...) {
            return end(JobState::failed, "unknown error");
        }
        end(JobState::finished, {});
    }

    JobHandle post(std::function<void(const JobContext&)> run, JobEndings endings, JobOptions job_options) {
        auto state = std::make_shared<JobHandle::State>();
        state->cancel_epoch = cancel_epoch.load();
        {
            std::lock_guard<std::mutex> lock(mutex);
            state->id = ++last_id;
            if (!job_options.replaces.empty())
                for (QueuedJob& queued : jobs)
                    if (queued.replaces == job_options.replaces) queued.state->cancel_requested = true;
            jobs.push_back(QueuedJob{state, std::move(job_options.replaces), std::move(run), std::move(endings)});
        }
        wake.notify_one();
        return JobHandle(std::move(state));
    }

    void load(const std::string& path, const ModelLoadOptions& load_options, const LoadCallbacks& callbacks,
              const JobContext& job) {
        auto loaded = Model::load(path, load_options, job.progress, job.cancelled);
        // Part of the load, so a cancel here leaves the old model in place too. A model without a
        // chat template loads all the same, without them: its slider then shows raw coefficients.
        std::vector<double> typical_norms;
        if (loaded->can_encode_chat()) typical_norms = remembered_typical_residual_norms(*loaded, job.cancelled);
        model.reset();  // the old model goes only once the new one is ready
        model = std::move(loaded);
        {
            std::lock_guard<std::mutex> lock(mutex);
            device_name = model->device();
        }
        ModelFacts facts = model->facts();
        facts.typical_residual_norms = typical_norms;
        facts.process_rss_bytes = read_process_memory().resident_bytes;
        if (callbacks.loaded) callbacks.loaded(facts);
    }
};

Engine::Engine(EngineOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Engine::~Engine() {
    impl_->shutting_down = true;
    std::deque<QueuedJob> never_started;
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->stopping = true;
        never_started.swap(impl_->jobs);
    }
    impl_->wake.notify_all();
    impl_->thread.join();
    // Their submitters may be waiting on the handles.
    for (QueuedJob& job : never_started) job.state->end(JobState::cancelled);
}

JobHandle Engine::load_model(const std::string& path, LoadCallbacks callbacks) {
    return load_model(path, ModelLoadOptions{impl_->options.device, impl_->options.dtype, impl_->options.thinking,
                                                 impl_->options.adapter},
                      std::move(callbacks));
}

JobHandle Engine::load_model(const std::string& path, const ModelLoadOptions& options, LoadCallbacks callbacks) {
    JobEndings endings;
    endings.progress = callbacks.progress;
    endings.failed = callbacks.failed;
    endings.cancelled = callbacks.cancelled;
    return impl_->post(
        [this, path, options, callbacks = std::move(callbacks)](const JobContext& job) {
            impl_->load(path, options, callbacks, job);
        },
        std::move(endings), {});
}

JobHandle Engine::submit(Work work, JobEndings endings, JobOptions options) {
    return impl_->post(
        [this, work = std::move(work)](const JobContext& job) {
            if (!impl_->model) throw Error("no model is loaded");
            work(*impl_->model, job);
        },
        std::move(endings), std::move(options));
}

JobHandle Engine::run(Task task, JobEndings endings, JobOptions options) {
    return impl_->post(std::move(task), std::move(endings), std::move(options));
}

void Engine::cancel_all() { impl_->cancel_epoch.fetch_add(1); }

bool Engine::busy() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->running_job || !impl_->jobs.empty();
}

void Engine::wait_idle() {
    std::unique_lock<std::mutex> lock(impl_->mutex);
    impl_->idle.wait(lock, [this] { return !impl_->running_job && impl_->jobs.empty(); });
}

std::string Engine::device() const {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    return impl_->device_name;
}
int Engine::threads() const { return impl_->thread_count; }

}  // namespace persona
