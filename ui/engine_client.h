#pragma once
#include "persona/engine.h"
#include "persona/generation.h"
#include "persona/model.h"

#include <QObject>
#include <QPointer>
#include <QString>

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

// What a batched generation reports. Every callback runs on the UI thread, and none runs once
// `receiver` is destroyed (a panel closed while its job was still queued).
struct GenerationCallbacks {
    QPointer<QObject> receiver;
    std::function<void(const persona::TokenEvent&)> token;
    std::function<void(const std::vector<persona::GenerationResult>&)> finished;
    std::function<void()> cancelled;
    std::function<void(const QString& error)> failed;
};

// The UI's only door to the engine. Engine callbacks arrive on the engine thread; this class
// re-emits them as signals on the UI thread, so widgets never wait on the model.
class EngineClient : public QObject {
    Q_OBJECT
public:
    explicit EngineClient(persona::EngineOptions options = {}, QObject* parent = nullptr);
    ~EngineClient() override;

    // The loaded model's device (before any load, what the EngineOptions chose).
    QString device() const;
    // What a load without explicit options asks for: the EngineOptions' device and dtype.
    persona::ModelLoadOptions defaultLoadOptions() const;
    // The path the model now loaded came from; empty before the first successful load.
    QString modelPath() const { return modelPath_; }
    // A load queued or running.
    bool loading() const { return loadsInFlight_ > 0; }
    bool busy() const { return busy_; }
    const persona::ModelFacts* facts() const { return has_model_ ? &facts_ : nullptr; }

    // Queues one batched generation (rows may differ in steering; the probe projects every
    // step's residual stream) and returns at once. Exactly one of finished / cancelled / failed
    // follows the tokens.
    void generate(std::vector<persona::GenerationRow> rows, persona::ProjectionProbe probe,
                  GenerationCallbacks callbacks);

public slots:
    void loadModel(const QString& path);
    // A failed load (a bad file, cuda without a GPU) leaves the model loaded before in place.
    void loadModel(const QString& path, const persona::ModelLoadOptions& options);
    // Stops the running job and every generation queued so far, so a burst of regenerations
    // (a slider being dragged) runs only the last one.
    void cancel();

signals:
    void busyChanged(bool busy);
    void progress(const QString& stage, qint64 done, qint64 total);
    void modelLoaded();
    void loadFailed(const QString& error);
    void loadCancelled();
    // Emitted when a load is queued, before any progress of it.
    void loadStarted(const QString& path);

private:
    void jobQueued();
    void jobEnded();
    // Runs `call` on the UI thread, unless this client is gone by then.
    void onUiThread(std::function<void()> call);

    persona::EngineOptions options_;
    persona::ModelFacts facts_;
    QString modelPath_;
    bool has_model_ = false;
    int loadsInFlight_ = 0;
    bool busy_ = false;
    int jobsInFlight_ = 0;
    std::uint64_t lastGenerationTicket_ = 0;
    // Read by queued jobs on the engine thread: tickets up to this one were cancelled.
    std::atomic<std::uint64_t> cancelledThroughTicket_{0};
    // Last member: destroyed first, so its thread has stopped before the rest goes away.
    std::unique_ptr<persona::Engine> engine_;
};
