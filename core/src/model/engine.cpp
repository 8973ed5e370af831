#include "persona/engine.h"

#include "persona/errors.h"
#include "persona/model.h"
#include "persona/process_memory.h"

#include <torch/torch.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

namespace persona {

struct Engine::Impl {
    EngineOptions options;
    std::string device_name = "cpu";  // guarded by mutex: the engine thread writes it on load
    int thread_count = 1;

    std::mutex mutex;
    std::condition_variable wake;
    std::condition_variable idle;
    std::deque<std::function<void()>> jobs;
    bool running_job = false;
    bool stopping = false;
    std::atomic<bool> cancel_requested{false};
    std::thread thread;

    // Owned by the engine thread only.
    std::unique_ptr<Model> model;

    explicit Impl(EngineOptions opts) : options(std::move(opts)) {
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
        at::set_num_threads(thread_count);
        const bool cuda = torch::cuda::is_available();
        std::lock_guard<std::mutex> lock(mutex);
        if (options.device == "cuda" && !cuda) device_name = "cpu (CUDA requested but not available)";
        else if (options.device == "cuda" || (options.device == "auto" && cuda)) device_name = "cuda";
        else device_name = "cpu";
    }

    void run() {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock<std::mutex> lock(mutex);
                wake.wait(lock, [this] { return stopping || !jobs.empty(); });
                if (stopping) return;
                job = std::move(jobs.front());
                jobs.pop_front();
                running_job = true;
                cancel_requested = false;
            }
            job();
            {
                std::lock_guard<std::mutex> lock(mutex);
                running_job = false;
            }
            idle.notify_all();
        }
    }

    void post(std::function<void()> job) {
        {
            std::lock_guard<std::mutex> lock(mutex);
            jobs.push_back(std::move(job));
        }
        wake.notify_one();
    }

    void load(const std::string& path, const ModelLoadOptions& load_options, const LoadCallbacks& callbacks) {
        try {
            auto loaded = Model::load(path, load_options, callbacks.progress, [this] { return cancel_requested.load(); });
            model.reset();  // the old model goes only once the new one is ready
            model = std::move(loaded);
            {
                std::lock_guard<std::mutex> lock(mutex);
                device_name = model->device();
            }
            ModelFacts facts = model->facts();
            facts.process_rss_bytes = read_process_memory().resident_bytes;
            if (callbacks.loaded) callbacks.loaded(facts);
        } catch (const Cancelled&) {
            if (callbacks.cancelled) callbacks.cancelled();
        } catch (const std::exception& e) {
            if (callbacks.failed) callbacks.failed(e.what());
        }
    }

    void run_job(const Job& job, const std::function<void(const std::string&)>& failed) {
        try {
            if (!model) throw Error("no model is loaded");
            job(*model, [this] { return cancel_requested.load(); });
        } catch (const Cancelled&) {
        } catch (const std::exception& e) {
            if (failed) failed(e.what());
        }
    }
};

Engine::Engine(EngineOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Engine::~Engine() {
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        impl_->stopping = true;
        impl_->jobs.clear();
    }
    impl_->cancel_requested = true;
    impl_->wake.notify_all();
    impl_->thread.join();
}

void Engine::load_model(const std::string& path, LoadCallbacks callbacks) {
    load_model(path, ModelLoadOptions{impl_->options.device, impl_->options.dtype}, std::move(callbacks));
}

void Engine::load_model(const std::string& path, const ModelLoadOptions& options, LoadCallbacks callbacks) {
    impl_->post([this, path, options, callbacks = std::move(callbacks)] { impl_->load(path, options, callbacks); });
}

void Engine::submit(Job job, std::function<void(const std::string&)> failed) {
    impl_->post([this, job = std::move(job), failed = std::move(failed)] { impl_->run_job(job, failed); });
}

void Engine::cancel() { impl_->cancel_requested = true; }

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
