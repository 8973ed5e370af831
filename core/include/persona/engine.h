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
};


// One thread owns the model and the device; every call here only queues a job for it and
// returns at once. Callbacks run on the engine thread: a UI must hop back to its own thread
// (queued signals) before touching widgets.
class Engine {
public:
    struct LoadCallbacks {
        std::function<void(const Progress&)> progress;
        std::function<void(const ModelFacts&)> loaded;
        std::function<void(const std::string& error)> failed;
        std::function<void()> cancelled;
    };

    explicit Engine(EngineOptions options = {});
    ~Engine();  // cancels the running job and joins the thread
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Loads with the device and dtype of the EngineOptions.
    void load_model(const std::string& path, LoadCallbacks callbacks);
    // Loads with another device or dtype than the engine started with (a reload in bf16 after
    // f32, say). A choice the machine cannot honour (cuda without a GPU, f16 on the CPU) reaches
    // `failed` with the reason; the model loaded before stays loaded and usable.
    void load_model(const std::string& path, const ModelLoadOptions& options, LoadCallbacks callbacks);

    // Runs `job` on the engine thread with the loaded model. `cancelled` turns true when cancel()
    // is called; a job that throws persona::Cancelled ends quietly, any other exception reaches
    // `failed` (also when no model is loaded).
    using Job = std::function<void(Model& model, const CancelFn& cancelled)>;
    void submit(Job job, std::function<void(const std::string& error)> failed = {});

    // Asks the running job to stop at its next step; queued jobs still run.
    void cancel();
    bool busy() const;

    // Blocks the calling thread until every queued job has finished. For the CLI and tests,
    // never for a UI thread.
    void wait_idle();

    // The device of the loaded model; before any load, the one the EngineOptions chose.
    std::string device() const;
    int threads() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace persona
