#include "engine_client.h"

#include "persona/errors.h"
#include "persona/model.h"

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
    const std::uint64_t ticket = ++lastGenerationTicket_;
    auto shared = std::make_shared<GenerationCallbacks>(std::move(callbacks));
    auto job = [this, ticket, shared, rows = std::move(rows), probe = std::move(probe)](
                   persona::Model& model, const persona::CancelFn& engineCancelled) {
        const persona::CancelFn cancelled = [this, ticket, engineCancelled] {
            return engineCancelled() || ticket <= cancelledThroughTicket_.load();
        };
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
            onUiThread([this, shared] {
                jobEnded();
                if (shared->receiver && shared->cancelled) shared->cancelled();
            });
        }
    };
    // Everything but cancellation (no model, a prompt too long for the context, ...) lands here.
    auto failed = [this, shared](const std::string& error) {
        onUiThread([this, shared, error] {
            jobEnded();
            if (shared->receiver && shared->failed) shared->failed(QString::fromStdString(error));
        });
    };
    engine_->submit(std::move(job), std::move(failed));
}

void EngineClient::cancel() {
    cancelledThroughTicket_ = lastGenerationTicket_;
    engine_->cancel();
}
