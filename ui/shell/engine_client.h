#pragma once
#include "persona/engine.h"
#include "persona/extraction.h"
#include "persona/generation.h"
#include "persona/trait.h"
#include "persona/model.h"
#include "persona/flagging.h"
#include "persona/monitoring_study.h"
#include "persona/served_model.h"
#include "persona/shift.h"
#include "persona/sweep.h"

#include <QObject>
#include <QPointer>
#include <QString>
#include <QStringList>

#include <functional>
#include <memory>
#include <optional>
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

// What an extraction run reports, on the UI thread, as GenerationCallbacks does.
struct ExtractionCallbacks {
    QPointer<QObject> receiver;
    std::function<void(const QString& stage, qint64 done, qint64 total)> progress;
    // Each sample as it is generated, and again when it is judged.
    std::function<void(const persona::Sample&)> sample;
    std::function<void(const persona::ExtractionResult&)> finished;
    std::function<void()> cancelled;
    std::function<void(const QString& error)> failed;
};

// Per-token projections of one conversation on a vector, at every layer.
struct ConversationProjections {
    std::vector<std::int32_t> tokens;
    QStringList tokenTexts;                   // what each token stands for in the text
    std::vector<std::vector<float>> columns;  // [token][layer 0..L]
};

struct ConversationCallbacks {
    QPointer<QObject> receiver;
    std::function<void(const ConversationProjections&)> finished;
    std::function<void()> cancelled;
    std::function<void(const QString& error)> failed;
};

// What flagging a dataset reports, on the UI thread, as GenerationCallbacks does.
struct FlagCallbacks {
    QPointer<QObject> receiver;
    std::function<void(qint64 done, qint64 total)> progress;
    // The scanned input (its lines' offsets) with the ranked results.
    std::function<void(const persona::FlagInput&, const persona::FlagSummary&)> finished;
    std::function<void()> cancelled;
    std::function<void(const QString& error)> failed;
};

// What a sweep reports, on the UI thread, as GenerationCallbacks does.
struct SweepCallbacks {
    QPointer<QObject> receiver;
    std::function<void(const QString& stage, qint64 done, qint64 total)> progress;
    std::function<void(const persona::SweepCell&)> cell;  // each cell once generated and judged
    std::function<void(const persona::SweepResult&)> finished;
    std::function<void()> cancelled;
    std::function<void(const QString& error)> failed;
};

// What a monitoring study reports, on the UI thread, as GenerationCallbacks does.
struct MonitoringCallbacks {
    QPointer<QObject> receiver;
    std::function<void(const QString& stage, qint64 done, qint64 total)> progress;
    std::function<void(const persona::MonitoringPoint&)> point;  // each answer once judged
    std::function<void(int point, double projection)> token;     // each token of an answer being written
    std::function<void(const persona::MonitoringStudy&)> finished;
    std::function<void()> cancelled;
    std::function<void(const QString& error)> failed;
};

// What LoRA training reports, on the UI thread, as GenerationCallbacks does.
struct FinetuneCallbacks {
    QPointer<QObject> receiver;
    std::function<void(const persona::FinetuneProgress&)> step;  // after every optimiser step
    std::function<void(const persona::FinetuneResult&)> finished;
    std::function<void()> cancelled;
    std::function<void(const QString& error)> failed;
};

// What a before/after measurement reports, on the UI thread, as GenerationCallbacks does.
struct ShiftCallbacks {
    QPointer<QObject> receiver;
    std::function<void(const QString& stage, qint64 done, qint64 total)> progress;
    std::function<void(const persona::ShiftMeasure& base, const persona::ShiftMeasure& tuned)> finished;
    std::function<void()> cancelled;
    std::function<void(const QString& error)> failed;
};

// The UI's only door to the engine. Every operation is a core job with its own handle: the
// caller keeps the handle to cancel that job alone (never another panel's), and gets exactly one
// of finished / cancelled / failed. Engine callbacks arrive on the engine thread; this class
// re-emits them on the UI thread, so widgets never wait on the model.
class EngineClient : public QObject {
    Q_OBJECT
public:
    explicit EngineClient(persona::EngineOptions options = {}, QObject* parent = nullptr);
    ~EngineClient() override;

    // The loaded model's device (before any load, what the EngineOptions chose).
    QString device() const;
    // What a load without explicit options asks for: the EngineOptions' device and dtype.
    persona::ModelLoadOptions defaultLoadOptions() const;
    // The path the model now loaded came from; empty before the first successful load and
    // while a served model is used.
    QString modelPath() const { return modelPath_; }
    // The address of the served model in use (connectServer); empty while the model is local.
    QString serverUrl() const { return server_ ? QString::fromStdString(server_->url) : QString(); }
    // A load queued or running.
    bool loading() const { return !loads_.empty(); }
    bool busy() const { return busy_; }
    const persona::ModelFacts* facts() const { return has_model_ ? &facts_ : nullptr; }

    // Queues one batched generation (rows may differ in steering; the probe projects every
    // step's residual stream). A non-empty `replaces` key cancels this owner's generations that
    // are still queued (persona::JobOptions). With a served model, each row is a request of its
    // own, sent together so that the server batches them.
    persona::JobHandle generate(std::vector<persona::GenerationRow> rows, persona::ProjectionProbe probe,
                                GenerationCallbacks callbacks, const QString& replaces = {});

    // Queues persona::run_extraction. With settings.checkpoint_path set, the finished samples
    // survive a cancel and the same call later resumes from them.
    persona::JobHandle extract(persona::Trait trait, persona::ExtractionSettings settings, ExtractionCallbacks callbacks);

    // Queues persona::monitor on one conversation (chat template applied; a generation prompt
    // is added when the last message is not the assistant's, whose answer is read as given):
    // every token's projection on vector.layer(l) at every layer l, the same numbers as
    // `persona-cli monitor`.
    persona::JobHandle projectConversation(std::vector<persona::ChatMessage> messages, persona::PersonaVector vector,
                                           ConversationCallbacks callbacks);

    // Queues persona::scan_flag_input and persona::flag_dataset, appending to `outputPath` (a
    // stopped run continues from what is there).
    persona::JobHandle flag(persona::PersonaVector vector, QString inputPath, QString outputPath,
                            persona::FlagSettings settings, FlagCallbacks callbacks);
    // Queues persona::run_sweep (with settings.checkpoint_path, a Stop keeps the finished batches).
    persona::JobHandle sweep(persona::Trait trait, persona::PersonaVector vector, persona::SweepSettings settings,
                             SweepCallbacks callbacks);
    // Queues persona::run_monitoring_study (the judge the settings name is loaded in the job).
    persona::JobHandle monitorStudy(persona::Trait trait, persona::PersonaVector vector,
                                    persona::MonitoringStudySettings settings, MonitoringCallbacks callbacks);

    // Queues Model::finetune: a stopped run keeps its last checkpoint, and the same call resumes it.
    persona::JobHandle finetune(std::vector<persona::TrainingExample> examples, persona::FinetuneSettings settings,
                                FinetuneCallbacks callbacks);
    // Queues persona::measure_shift on the loaded model and on the same model with `adapter`
    // merged, loaded beside it for the job (the loaded model stays what every panel uses).
    persona::JobHandle compareShift(persona::Trait trait, persona::PersonaVector vector,
                                    std::vector<persona::TrainingExample> heldout, persona::ShiftSettings settings,
                                    QString adapter, ShiftCallbacks callbacks);

public slots:
    void loadModel(const QString& path);
    // A failed load (a bad file, cuda without a GPU) leaves the model loaded before in place.
    void loadModel(const QString& path, const persona::ModelLoadOptions& options);
    // Uses the model `persona-cli serve` serves at `url` (http://host:port) instead of a local
    // one: generation (the Steering tab's pair and sweep, with their heat maps) runs there, and
    // every other job fails saying it needs a local model. Reported as a load is (loadStarted,
    // then modelLoaded or loadFailed); a later local load ends it. The key is kept in memory only.
    void connectServer(const QString& url, const QString& apiKey);
    // Cancels the model loads queued or running, nothing else.
    void cancelLoad();
    // Cancels every job, every panel's: the status bar's "Stop all".
    void cancelAll();

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
    // Submits `work` and reports its ending to the receiver of `shared` (a struct with
    // receiver, cancelled and failed) on the UI thread; `finished` runs there when the work
    // returned normally.
    template <class Callbacks>
    persona::JobHandle submit(std::shared_ptr<Callbacks> shared, persona::Engine::Work work,
                              std::function<void()> finished, const QString& replaces = {});
    // The endings of such a job, delivered on the UI thread; counts the job as queued.
    template <class Callbacks>
    persona::JobEndings endingsFor(std::shared_ptr<Callbacks> shared, std::function<void()> finished);
    // The rows as requests to the served model, all at once; events and results as generate's.
    void generateServed(const persona::ServerAddress& server, const std::vector<persona::GenerationRow>& rows,
                        const persona::ProjectionProbe& probe,
                        const std::shared_ptr<GenerationCallbacks>& shared,
                        std::vector<persona::GenerationResult>& results, const persona::JobContext& job);
    // Reports a load's ending on the UI thread: counted, forgotten, then the signal; `loaded`
    // makes the new model current.
    persona::Engine::LoadCallbacks loadCallbacks(std::shared_ptr<std::uint64_t> id,
                                                 std::function<void(const persona::ModelFacts&)> loaded);

    persona::EngineOptions options_;
    persona::ModelFacts facts_;
    QString modelPath_;
    bool has_model_ = false;
    std::optional<persona::ServerAddress> server_;  // the served model in use, if any
    std::vector<persona::JobHandle> loads_;  // queued or running
    bool busy_ = false;
    int jobsInFlight_ = 0;
    // Last member: destroyed first, so its thread has stopped before the rest goes away.
    std::unique_ptr<persona::Engine> engine_;
};
