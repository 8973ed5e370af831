#include "shell/engine_client.h"

#include "persona/errors.h"
#include "persona/model.h"
#include "persona/monitoring.h"
#include "persona/tokenizer.h"

#include <QMetaObject>

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>

EngineClient::EngineClient(persona::EngineOptions options, QObject* parent)
    : QObject(parent), options_(options), engine_(std::make_unique<persona::Engine>(std::move(options))) {}

EngineClient::~EngineClient() { engine_.reset(); }

QString EngineClient::device() const { return QString::fromStdString(engine_->device()); }

persona::ModelLoadOptions EngineClient::defaultLoadOptions() const {
    return {options_.device, options_.dtype, options_.thinking, options_.adapter};
}

void EngineClient::jobQueued() {
    if (jobsInFlight_++ == 0) {
        busy_ = true;
        emit busyChanged(true);
    }
}

void EngineClient::jobEnded() {
    if (--jobsInFlight_ == 0) {
        busy_ = false;
        emit busyChanged(false);
    }
}

void EngineClient::onUiThread(std::function<void()> call) {
    // Qt drops queued functors whose context object is gone, so a late callback from the
    // engine thread cannot touch a deleted client.
    QMetaObject::invokeMethod(this, std::move(call), Qt::QueuedConnection);
}

template <class Callbacks>
persona::JobEndings EngineClient::endingsFor(std::shared_ptr<Callbacks> shared, std::function<void()> finished) {
    jobQueued();
    persona::JobEndings endings;
    endings.finished = [this, shared, finished = std::move(finished)] {
        onUiThread([this, shared, finished] {
            jobEnded();
            if (shared->receiver) finished();
        });
    };
    endings.cancelled = [this, shared] {
        onUiThread([this, shared] {
            jobEnded();
            if (shared->receiver && shared->cancelled) shared->cancelled();
        });
    };
    endings.failed = [this, shared](const std::string& error) {
        onUiThread([this, shared, error] {
            jobEnded();
            if (shared->receiver && shared->failed) shared->failed(QString::fromStdString(error));
        });
    };
    return endings;
}

template <class Callbacks>
persona::JobHandle EngineClient::submit(std::shared_ptr<Callbacks> shared, persona::Engine::Work work,
                                        std::function<void()> finished, const QString& replaces) {
    persona::JobEndings endings = endingsFor(shared, std::move(finished));
    if (server_) {
        // The local model, if one is still loaded, is not what the workbench shows.
        const std::string why = "this needs a local model: the workbench is using the model served at " + server_->url +
                                ", which only generates (the Steering tab); open a model file on the Model tab for it";
        return engine_->run([why](const persona::JobContext&) { throw persona::Error(why); }, std::move(endings),
                            {replaces.toStdString()});
    }
    return engine_->submit(std::move(work), std::move(endings), {replaces.toStdString()});
}

persona::Engine::LoadCallbacks EngineClient::loadCallbacks(std::shared_ptr<std::uint64_t> id,
                                                           std::function<void(const persona::ModelFacts&)> loaded) {
    // Ends a load on the UI thread: counted, forgotten, then the signal.
    const auto ended = [this](std::uint64_t job) {
        loads_.erase(std::remove_if(loads_.begin(), loads_.end(), [job](const persona::JobHandle& h) { return h.id() == job; }),
                     loads_.end());
        jobEnded();
    };
    persona::Engine::LoadCallbacks callbacks;
    callbacks.progress = [this](const persona::Progress& p) {
        onUiThread([this, p] {
            emit progress(QString::fromStdString(p.stage), static_cast<qint64>(p.done), static_cast<qint64>(p.total));
        });
    };
    callbacks.loaded = [this, ended, id, loaded = std::move(loaded)](const persona::ModelFacts& facts) {
        onUiThread([this, facts, ended, id, loaded] {
            loaded(facts);
            facts_ = facts;
            has_model_ = true;
            ended(*id);
            emit modelLoaded();
        });
    };
    callbacks.failed = [this, ended, id](const std::string& error) {
        onUiThread([this, error, ended, id] {
            ended(*id);
            emit loadFailed(QString::fromStdString(error));
        });
    };
    callbacks.cancelled = [this, ended, id] {
        onUiThread([this, ended, id] {
            ended(*id);
            emit loadCancelled();
        });
    };
    return callbacks;
}

void EngineClient::loadModel(const QString& path) { loadModel(path, defaultLoadOptions()); }

void EngineClient::loadModel(const QString& path, const persona::ModelLoadOptions& options) {
    jobQueued();
    auto id = std::make_shared<std::uint64_t>(0);  // known once load_model returns, before any ending is delivered
    const auto local = [this, path](const persona::ModelFacts&) {
        modelPath_ = path;
        server_.reset();
    };
    persona::JobHandle handle = engine_->load_model(path.toStdString(), options, loadCallbacks(id, local));
    *id = handle.id();
    loads_.push_back(std::move(handle));
    emit loadStarted(path);
}

void EngineClient::connectServer(const QString& url, const QString& apiKey) {
    jobQueued();
    persona::ServerAddress server{url.trimmed().toStdString(), apiKey.toStdString()};
    auto id = std::make_shared<std::uint64_t>(0);
    persona::Engine::LoadCallbacks callbacks = loadCallbacks(id, [this, server](const persona::ModelFacts&) {
        modelPath_.clear();
        server_ = server;
    });
    persona::JobEndings endings;
    endings.failed = callbacks.failed;
    endings.cancelled = callbacks.cancelled;
    persona::JobHandle handle = engine_->run(
        [server, loaded = callbacks.loaded](const persona::JobContext&) { loaded(persona::fetch_served_facts(server)); },
        std::move(endings));
    *id = handle.id();
    loads_.push_back(std::move(handle));
    emit loadStarted(url);
}

void EngineClient::cancelLoad() {
    for (const persona::JobHandle& load : loads_) load.cancel();
}

void EngineClient::cancelAll() { engine_->cancel_all(); }

persona::JobHandle EngineClient::generate(std::vector<persona::GenerationRow> rows, persona::ProjectionProbe probe,
                                          GenerationCallbacks callbacks, const QString& replaces) {
    auto shared = std::make_shared<GenerationCallbacks>(std::move(callbacks));
    auto results = std::make_shared<std::vector<persona::GenerationResult>>();
    const auto finished = [shared, results] {
        if (shared->finished) shared->finished(*results);
    };
    if (server_) {
        auto served = [this, server = *server_, shared, results, rows = std::move(rows), probe = std::move(probe)](
                          const persona::JobContext& job) { generateServed(server, rows, probe, shared, *results, job); };
        return engine_->run(std::move(served), endingsFor(shared, finished), {replaces.toStdString()});
    }
    auto work = [this, shared, results, rows = std::move(rows), probe = std::move(probe)](
                    persona::Model& model, const persona::JobContext& job) {
        *results = model.generate(
            rows,
            [this, shared](const persona::TokenEvent& event) {
                onUiThread([shared, event] {
                    if (shared->receiver && shared->token) shared->token(event);
                });
            },
            probe.layers.empty() ? nullptr : &probe, job.cancelled);
    };
    return submit(shared, std::move(work), finished, replaces);
}

void EngineClient::generateServed(const persona::ServerAddress& server, const std::vector<persona::GenerationRow>& rows,
                                  const persona::ProjectionProbe& probe, const std::shared_ptr<GenerationCallbacks>& shared,
                                  std::vector<persona::GenerationResult>& results, const persona::JobContext& job) {
    std::vector<persona::GenerationResult> out(rows.size());
    std::vector<std::exception_ptr> failures(rows.size());
    std::atomic<bool> abandoned{false};  // one row failed: the others stop too
    const persona::CancelFn stop = [&] { return abandoned || (job.cancelled && job.cancelled()); };
    std::vector<std::thread> requests;
    for (std::size_t r = 0; r < rows.size(); ++r)
        requests.emplace_back([&, r] {
            try {
                out[r] = persona::generate_served(server, rows[r], probe.layers.empty() ? nullptr : &probe,
                    [this, shared, r](const persona::TokenEvent& served) {
                        persona::TokenEvent event = served;
                        event.row = static_cast<int>(r);
                        onUiThread([shared, event] {
                            if (shared->receiver && shared->token) shared->token(event);
                        });
                    },
                    stop);
            } catch (...) {
                failures[r] = std::current_exception();
                abandoned = true;
            }
        });
    for (std::thread& request : requests) request.join();
    persona::check_cancelled(job.cancelled);
    for (const std::exception_ptr& failure : failures) {  // the first real error, not the stops it caused
        if (!failure) continue;
        try {
            std::rethrow_exception(failure);
        } catch (const persona::Cancelled&) {
        }
    }
    results = std::move(out);
}

persona::JobHandle EngineClient::extract(persona::Trait trait, persona::ExtractionSettings settings,
                                         ExtractionCallbacks callbacks) {
    auto shared = std::make_shared<ExtractionCallbacks>(std::move(callbacks));
    auto result = std::make_shared<persona::ExtractionResult>();
    auto work = [this, shared, result, trait = std::move(trait), settings = std::move(settings)](
                    persona::Model& model, const persona::JobContext& job) {
        const auto progress = [this, shared](const std::string& stage, std::size_t done, std::size_t total) {
            onUiThread([shared, stage = QString::fromStdString(stage), done, total] {
                if (shared->receiver && shared->progress)
                    shared->progress(stage, static_cast<qint64>(done), static_cast<qint64>(total));
            });
        };
        const auto onSample = [this, shared](const persona::Sample& sample) {
            onUiThread([shared, sample] {
                if (shared->receiver && shared->sample) shared->sample(sample);
            });
        };
        *result = persona::run_extraction(model, trait, settings, progress, onSample, job.cancelled);
    };
    return submit(shared, std::move(work), [shared, result] {
        if (shared->finished) shared->finished(*result);
    });
}

persona::JobHandle EngineClient::flag(persona::PersonaVector vector, QString inputPath, QString outputPath,
                                      persona::FlagSettings settings, FlagCallbacks callbacks) {
    auto shared = std::make_shared<FlagCallbacks>(std::move(callbacks));
    auto input = std::make_shared<persona::FlagInput>();
    auto summary = std::make_shared<persona::FlagSummary>();
    auto work = [this, shared, input, summary, vector = std::move(vector), inputPath, outputPath, settings](
                    persona::Model& model, const persona::JobContext& job) {
        *input = persona::scan_flag_input(inputPath.toStdString(), settings);
        *summary = persona::flag_dataset(model, vector, *input, outputPath.toStdString(), settings,
            [this, shared](const persona::Progress& p) {
                onUiThread([shared, done = p.done, total = p.total] {
                    if (shared->receiver && shared->progress) shared->progress(qint64(done), qint64(total));
                });
            },
            job.cancelled);
    };
    return submit(shared, std::move(work), [shared, input, summary] {
        if (shared->finished) shared->finished(*input, *summary);
    });
}

persona::JobHandle EngineClient::sweep(persona::Trait trait, persona::PersonaVector vector, persona::SweepSettings settings,
                                       SweepCallbacks callbacks) {
    auto shared = std::make_shared<SweepCallbacks>(std::move(callbacks));
    auto result = std::make_shared<persona::SweepResult>();
    auto work = [this, shared, result, trait = std::move(trait), vector = std::move(vector), settings = std::move(settings)](
                    persona::Model& model, const persona::JobContext& job) {
        const auto progress = [this, shared](const persona::Progress& p) {
            onUiThread([shared, stage = QString::fromStdString(p.stage), done = p.done, total = p.total] {
                if (shared->receiver && shared->progress)
                    shared->progress(stage, static_cast<qint64>(done), static_cast<qint64>(total));
            });
        };
        const auto onCell = [this, shared](const persona::SweepCell& cell) {
            onUiThread([shared, cell] {
                if (shared->receiver && shared->cell) shared->cell(cell);
            });
        };
        *result = persona::run_sweep(model, trait, vector, settings, progress, onCell, job.cancelled);
    };
    return submit(shared, std::move(work), [shared, result] {
        if (shared->finished) shared->finished(*result);
    });
}

persona::JobHandle EngineClient::monitorStudy(persona::Trait trait, persona::PersonaVector vector,
                                              persona::MonitoringStudySettings settings, MonitoringCallbacks callbacks) {
    auto shared = std::make_shared<MonitoringCallbacks>(std::move(callbacks));
    auto study = std::make_shared<persona::MonitoringStudy>();
    settings.on_token = [this, shared](int point, double projection) {
        onUiThread([shared, point, projection] {
            if (shared->receiver && shared->token) shared->token(point, projection);
        });
    };
    auto work = [this, shared, study, trait = std::move(trait), vector = std::move(vector), settings = std::move(settings)](
                    persona::Model& model, const persona::JobContext& job) {
        const auto progress = [this, shared](const persona::Progress& p) {
            onUiThread([shared, stage = QString::fromStdString(p.stage), done = p.done, total = p.total] {
                if (shared->receiver && shared->progress)
                    shared->progress(stage, static_cast<qint64>(done), static_cast<qint64>(total));
            });
        };
        const auto onPoint = [this, shared](const persona::MonitoringPoint& point) {
            onUiThread([shared, point] {
                if (shared->receiver && shared->point) shared->point(point);
            });
        };
        *study = persona::run_monitoring_study(model, trait, vector, settings, progress, onPoint, job.cancelled);
    };
    return submit(shared, std::move(work), [shared, study] {
        if (shared->finished) shared->finished(*study);
    });
}

persona::JobHandle EngineClient::projectConversation(std::vector<persona::ChatMessage> messages,
                                                     persona::PersonaVector vector, ConversationCallbacks callbacks) {
    auto shared = std::make_shared<ConversationCallbacks>(std::move(callbacks));
    auto out = std::make_shared<ConversationProjections>();
    auto work = [shared, out, messages = std::move(messages), vector = std::move(vector)](
                    persona::Model& model, const persona::JobContext& job) {
        persona::MonitorInput input;
        input.messages = messages;
        const persona::MonitorResult result =
            persona::monitor(model, vector, {input}, {}, job.progress, job.cancelled).at(0);
        out->tokens = result.tokens;
        const std::size_t tokens = result.tokens.size();
        out->columns.assign(tokens, std::vector<float>(result.layers.size()));
        for (std::size_t l = 0; l < result.layers.size(); ++l)
            for (std::size_t t = 0; t < tokens; ++t) out->columns[t][l] = result.projections[l][t];
        for (const std::int32_t id : result.tokens)
            out->tokenTexts << QString::fromStdString(persona::sanitize_utf8(model.tokenizer().token_bytes(id)));
    };
    return submit(shared, std::move(work), [shared, out] {
        if (shared->finished) shared->finished(*out);
    });
}

persona::JobHandle EngineClient::finetune(std::vector<persona::TrainingExample> examples, persona::FinetuneSettings settings,
                                          FinetuneCallbacks callbacks) {
    auto shared = std::make_shared<FinetuneCallbacks>(std::move(callbacks));
    auto result = std::make_shared<persona::FinetuneResult>();
    auto work = [this, shared, result, examples = std::move(examples), settings = std::move(settings)](
                    persona::Model& model, const persona::JobContext& job) {
        *result = model.finetune(examples, settings,
            [this, shared, &job](const persona::FinetuneProgress& p) {
                job.progress({"train", static_cast<std::uint64_t>(p.step), static_cast<std::uint64_t>(p.total_steps)});
                onUiThread([shared, p] {
                    if (shared->receiver && shared->step) shared->step(p);
                });
            },
            job.cancelled);
    };
    return submit(shared, std::move(work), [shared, result] {
        if (shared->finished) shared->finished(*result);
    });
}

persona::JobHandle EngineClient::compareShift(persona::Trait trait, persona::PersonaVector vector,
                                              std::vector<persona::TrainingExample> heldout, persona::ShiftSettings settings,
                                              QString adapter, ShiftCallbacks callbacks) {
    auto shared = std::make_shared<ShiftCallbacks>(std::move(callbacks));
    auto measures = std::make_shared<std::pair<persona::ShiftMeasure, persona::ShiftMeasure>>();
    auto work = [this, shared, measures, trait = std::move(trait), vector = std::move(vector), heldout = std::move(heldout),
                 settings = std::move(settings), adapter](persona::Model& model, const persona::JobContext& job) {
        const auto stage = [this, shared](const QString& name) {
            return [this, shared, name](const persona::Progress& p) {
                onUiThread([shared, name, done = p.done, total = p.total] {
                    if (shared->receiver && shared->progress) shared->progress(name, qint64(done), qint64(total));
                });
            };
        };
        measures->first = persona::measure_shift(model, trait, vector, heldout, settings, stage(tr("base model")), job.cancelled).at(0);
        persona::ModelLoadOptions options = model.load_options();
        options.adapter = adapter.toStdString();
        const auto tuned = persona::Model::load(model.facts().path, options, {}, job.cancelled);
        measures->second =
            persona::measure_shift(*tuned, trait, vector, heldout, settings, stage(tr("fine-tuned model")), job.cancelled).at(0);
    };
    return submit(shared, std::move(work), [shared, measures] {
        if (shared->finished) shared->finished(measures->first, measures->second);
    });
}
