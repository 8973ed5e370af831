#include "shell/engine_client.h"

#include "persona/errors.h"
#include "persona/model.h"
#include "persona/monitoring.h"
#include "persona/tokenizer.h"

#include <QMetaObject>

EngineClient::EngineClient(persona::EngineOptions options, QObject* parent)
    : QObject(parent), options_(options), engine_(std::make_unique<persona::Engine>(std::move(options))) {}

EngineClient::~EngineClient() { engine_.reset(); }

QString EngineClient::device() const { return QString::fromStdString(engine_->device()); }

persona::ModelLoadOptions EngineClient::defaultLoadOptions() const { return {options_.device, options_.dtype}; }

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

void EngineClient::loadModel(const QString& path) { loadModel(path, defaultLoadOptions()); }

void EngineClient::loadModel(const QString& path, const persona::ModelLoadOptions& options) {
    jobQueued();
    ++loadsInFlight_;
    emit loadStarted(path);
    persona::Engine::LoadCallbacks callbacks;
    callbacks.progress = [this](const persona::Progress& p) {
        onUiThread([this, p] {
            emit progress(QString::fromStdString(p.stage), static_cast<qint64>(p.done), static_cast<qint64>(p.total));
        });
    };
    callbacks.loaded = [this, path](const persona::ModelFacts& facts) {
        onUiThread([this, facts, path] {
            facts_ = facts;
            modelPath_ = path;
            has_model_ = true;
            --loadsInFlight_;
            jobEnded();
            emit modelLoaded();
        });
    };
    callbacks.failed = [this](const std::string& error) {
        onUiThread([this, error] {
            --loadsInFlight_;
            jobEnded();
            emit loadFailed(QString::fromStdString(error));
        });
    };
    callbacks.cancelled = [this] {
        onUiThread([this] {
            --loadsInFlight_;
            jobEnded();
            emit loadCancelled();
        });
    };
    engine_->load_model(path.toStdString(), options, std::move(callbacks));
}

void EngineClient::generate(std::vector<persona::GenerationRow> rows, persona::ProjectionProbe probe,
                            GenerationCallbacks callbacks) {
    jobQueued();
    const std::uint64_t ticket = ++lastJobTicket_;
    auto shared = std::make_shared<GenerationCallbacks>(std::move(callbacks));
    auto job = [this, ticket, shared, rows = std::move(rows), probe = std::move(probe)](
                   persona::Model& model, const persona::CancelFn& engineCancelled) {
        const persona::CancelFn cancelled = cancelFlag(engineCancelled, ticket);
        try {
            if (cancelled()) throw persona::Cancelled();
            auto results = model.generate(
                rows,
                [this, shared](const persona::TokenEvent& event) {
                    onUiThread([shared, event] {
                        if (shared->receiver && shared->token) shared->token(event);
                    });
                },
                probe.layers.empty() ? nullptr : &probe, cancelled);
            onUiThread([this, shared, results = std::move(results)] {
                jobEnded();
                if (shared->receiver && shared->finished) shared->finished(results);
            });
        } catch (const persona::Cancelled&) {
            endCancelled(shared);
        }
    };
    // Everything but cancellation (no model, a prompt too long for the context, ...) lands here.
    engine_->submit(std::move(job), failedHandler(shared));
}

persona::CancelFn EngineClient::cancelFlag(const persona::CancelFn& engineCancelled, std::uint64_t ticket) {
    return [this, ticket, engineCancelled] { return engineCancelled() || ticket <= cancelledThroughTicket_.load(); };
}

void EngineClient::extract(persona::Trait trait, persona::ExtractionSettings settings, ExtractionCallbacks callbacks) {
    jobQueued();
    const std::uint64_t ticket = ++lastJobTicket_;
    auto shared = std::make_shared<ExtractionCallbacks>(std::move(callbacks));
    auto job = [this, ticket, shared, trait = std::move(trait), settings = std::move(settings)](
                   persona::Model& model, const persona::CancelFn& engineCancelled) {
        const persona::CancelFn cancelled = cancelFlag(engineCancelled, ticket);
        try {
            if (cancelled()) throw persona::Cancelled();
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
            auto result = std::make_shared<persona::ExtractionResult>(
                persona::run_extraction(model, trait, settings, progress, onSample, cancelled));
            onUiThread([this, shared, result] {
                jobEnded();
                if (shared->receiver && shared->finished) shared->finished(*result);
            });
        } catch (const persona::Cancelled&) {
            endCancelled(shared);
        }
    };
    engine_->submit(std::move(job), failedHandler(shared));
}

void EngineClient::projectConversation(std::vector<persona::ChatMessage> messages, persona::PersonaVector vector,
                                       ConversationCallbacks callbacks) {
    jobQueued();
    const std::uint64_t ticket = ++lastJobTicket_;
    auto shared = std::make_shared<ConversationCallbacks>(std::move(callbacks));
    auto job = [this, ticket, shared, messages = std::move(messages), vector = std::move(vector)](
                   persona::Model& model, const persona::CancelFn& engineCancelled) {
        const persona::CancelFn cancelled = cancelFlag(engineCancelled, ticket);
        try {
            if (cancelled()) throw persona::Cancelled();
            persona::check_vector_fits(vector, model);
            if (messages.empty()) throw persona::Error("the conversation is empty");
            const bool answered = messages.back().role == "assistant";
            persona::CaptureRow row;
            row.tokens = model.encode_chat(messages, !answered);
            row.prompt_length = static_cast<int>(row.tokens.size());
            persona::CaptureOptions options;
            for (int l = 0; l < vector.layer_count; ++l) {
                options.probe.layers.push_back(l);
                const persona::LayerView direction = vector.layer(l);
                options.probe.directions.emplace_back(direction.begin(), direction.end());
            }
            const persona::CaptureResult capture = model.capture({row}, options, cancelled);

            auto out = std::make_shared<ConversationProjections>();
            out->tokens = row.tokens;
            const std::size_t tokens = row.tokens.size();
            out->columns.assign(tokens, std::vector<float>(static_cast<std::size_t>(vector.layer_count)));
            const std::vector<float>& projections = capture.projections.at(0);  // [layer][token]
            for (std::size_t l = 0; l < static_cast<std::size_t>(vector.layer_count); ++l)
                for (std::size_t t = 0; t < tokens; ++t) out->columns[t][l] = projections[l * tokens + t];
            for (const std::int32_t id : row.tokens)
                out->tokenTexts << QString::fromStdString(persona::sanitize_utf8(model.tokenizer().token_bytes(id)));
            onUiThread([this, shared, out] {
                jobEnded();
                if (shared->receiver && shared->finished) shared->finished(*out);
            });
        } catch (const persona::Cancelled&) {
            endCancelled(shared);
        }
    };
    engine_->submit(std::move(job), failedHandler(shared));
}

void EngineClient::cancel() {
    cancelledThroughTicket_ = lastJobTicket_;
    engine_->cancel();
}
