// LoRA fine-tuning (core/src/model/finetune.cpp, lora.cpp): gradients against finite
// differences, the loss confined to assistant tokens, steering active in training and absent
// from the adapter, resume equal to an uninterrupted run, adapters merged at load from GGUF and
// folders alike, dataset errors; and a few steps on the real default model lowering its loss.
// PEFT's own reading of our files is tests/reference/check_peft_adapter.py.
#include "formats/peft_adapter.h"
#include "model/lora.h"
#include "model/training.h"
#include "persona/errors.h"
#include "persona/finetune.h"
#include "persona/model.h"
#include "test_support.h"

#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <fstream>

using persona::FinetuneSettings;
using persona::Model;
using persona::TrainingExample;

namespace {

const std::string kTiny = PERSONA_TEST_DATA_DIR "/tiny_models/llama3";
const std::string kSample = PERSONA_TEST_DATA_DIR "/finetune_sample.jsonl";

// Fast settings for the tiny model: every step moves the adapter.
FinetuneSettings tinySettings(const QString& out) {
    FinetuneSettings s;
    s.lora.rank = 4;
    s.lora.alpha = 8;
    s.learning_rate = 1e-2;
    s.warmup_steps = 0;
    s.batch_size = 2;
    s.gradient_accumulation = 2;
    s.seed = 5;
    s.output_dir = out.toStdString();
    return s;
}

QByteArray fileBytes(const QString& path) {
    QFile file(path);
    return file.open(QIODevice::ReadOnly) ? file.readAll() : QByteArray();
}

// The gradients of the adapter's parameters for the mean trained-token loss of `examples`.
std::vector<torch::Tensor> gradients(Model& model, const persona::model::LoraAdapter& adapter,
                                     const std::vector<TrainingExample>& examples) {
    const auto sequences = persona::model::encode_training_sequences(model, examples, 2048, nullptr);
    std::vector<std::size_t> all(sequences.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    for (auto& p : adapter.parameters()) p.mutable_grad() = torch::Tensor();
    const auto loss = persona::model::batch_loss(model.internals(), sequences, all, &adapter, {}, {});
    (loss.sum / static_cast<double>(loss.tokens)).backward();
    std::vector<torch::Tensor> out;
    for (const auto& p : adapter.parameters()) out.push_back(p.grad().clone());
    return out;
}

double lossOf(Model& model, const persona::model::LoraAdapter& adapter, const std::vector<TrainingExample>& examples) {
    torch::NoGradGuard no_gradients;
    const auto sequences = persona::model::encode_training_sequences(model, examples, 2048, nullptr);
    std::vector<std::size_t> all(sequences.size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    const auto loss = persona::model::batch_loss(model.internals(), sequences, all, &adapter, {}, {});
    return loss.sum.item<double>() / static_cast<double>(loss.tokens);
}

// An adapter whose B is not zero, so that every gradient is.
std::unique_ptr<persona::model::LoraAdapter> randomAdapter(Model& model) {
    persona::LoraSettings lora;
    lora.rank = 4;
    lora.alpha = 8;
    auto adapter = std::make_unique<persona::model::LoraAdapter>(model.internals().config(), lora, torch::kCPU);
    adapter->initialise(11);
    torch::NoGradGuard no_gradients;
    torch::manual_seed(3);
    for (auto& p : adapter->parameters())
        if (p.size(0) != lora.rank) p.normal_(0, 0.2);  // the B matrices
    return adapter;
}

}  // namespace

class TestFinetune : public QObject {
    Q_OBJECT
    std::unique_ptr<Model> tiny_;
    std::vector<TrainingExample> sample_;

private slots:
    void initTestCase() {
        tiny_ = Model::load(kTiny, persona::ModelLoadOptions{"cpu", "f32"});
        sample_ = persona::read_training_jsonl(kSample);
        QCOMPARE(sample_.size(), std::size_t{12});
    }

    void gradientsMatchFiniteDifferences() {
        const auto adapter = randomAdapter(*tiny_);
        const std::vector<TrainingExample> two(sample_.begin(), sample_.begin() + 2);
        const auto grads = gradients(*tiny_, *adapter, two);
        const auto parameters = adapter->parameters();
        // A of the first module of the first block and B of the last module of the last block.
        for (std::size_t which : {std::size_t{0}, parameters.size() - 1}) {
            torch::Tensor p = parameters[which];
            const torch::Tensor g = grads[which].flatten();
            const auto largest = std::get<1>(g.abs().topk(3));
            for (int k = 0; k < 3; ++k) {
                const std::int64_t i = largest[k].item<std::int64_t>();
                const double eps = 1e-2;
                const float original = p.detach().flatten()[i].item<float>();
                const auto set = [&](double value) {
                    torch::NoGradGuard no_gradients;
                    p.view({-1})[i].fill_(value);
                };
                set(original + eps);
                const double up = lossOf(*tiny_, *adapter, two);
                set(original - eps);
                const double down = lossOf(*tiny_, *adapter, two);
                set(original);
                const double numeric = (up - down) / (2 * eps);
                const double analytic = g[i].item<double>();
                QVERIFY2(std::abs(numeric - analytic) <= 0.02 * std::abs(analytic) + 1e-4,
                         qPrintable(QString("parameter %1 entry %2: autograd %3, finite difference %4")
                                        .arg(which).arg(i).arg(analytic).arg(numeric)));
            }
        }
    }

    void lossCoversAssistantTokensOnly() {
        // A user turn after the answer can only change the gradient if the loss counted its
        // tokens (causal attention keeps it from the answer's predictions).
        const auto adapter = randomAdapter(*tiny_);
        const TrainingExample base{{{"user", "What is two plus two?"}, {"assistant", "Two plus two is four."},
                                    {"user", "Thanks, and what about three?"}}, 0};
        TrainingExample other_user = base, other_answer = base;
        other_user.messages[2].content = "Tell me a long story about dragons instead, please.";
        other_answer.messages[1].content = "It is four, as everyone knows.";
        const auto reference = gradients(*tiny_, *adapter, {base});
        const auto same = gradients(*tiny_, *adapter, {other_user});
        const auto changed = gradients(*tiny_, *adapter, {other_answer});
        double same_difference = 0, changed_difference = 0, scale = 0;
        for (std::size_t i = 0; i < reference.size(); ++i) {
            same_difference = std::max(same_difference, (reference[i] - same[i]).abs().max().item<double>());
            changed_difference = std::max(changed_difference, (reference[i] - changed[i]).abs().max().item<double>());
            scale = std::max(scale, reference[i].abs().max().item<double>());
        }
        QVERIFY2(same_difference <= 1e-5 * scale, qPrintable(QString("a later user turn changed the gradient by %1 (scale %2)")
                                                                 .arg(same_difference).arg(scale)));
        QVERIFY(changed_difference > 1e-2 * scale);

        // The trained tokens are exactly what the answer adds after the generation prompt.
        const auto sequences = persona::model::encode_training_sequences(*tiny_, {base}, 2048, nullptr);
        const auto prompt = tiny_->encode_chat({base.messages[0]}, true);
        const auto answered = tiny_->encode_chat({base.messages[0], base.messages[1]}, false);
        QCOMPARE(sequences[0].trained_count, answered.size() - prompt.size());
        for (std::size_t t = 0; t < sequences[0].tokens.size(); ++t)
            QCOMPARE(bool(sequences[0].trained[t]), t >= prompt.size() && t < answered.size());
    }

    void steeringActiveInTrainingAbsentFromAdapter() {
        QTemporaryDir plain_dir, steered_dir;
        FinetuneSettings plain = tinySettings(plain_dir.path());
        plain.max_steps = 2;
        FinetuneSettings steered = plain;
        steered.output_dir = steered_dir.path().toStdString();
        persona::Steering steering;
        steering.layer = 2;
        steering.vector.assign(static_cast<std::size_t>(tiny_->hidden_size()), 0.5f);
        steering.alpha = 4;
        steering.positions = persona::SteerPositions::All;
        steered.steering = {steering};
        const auto plain_run = tiny_->finetune(sample_, plain);
        const auto steered_run = tiny_->finetune(sample_, steered);
        // The first step's loss is measured before any update: only the steering can change it.
        QVERIFY2(std::abs(plain_run.losses[0] - steered_run.losses[0]) > 1e-3,
                 qPrintable(QString("losses %1 and %2").arg(plain_run.losses[0]).arg(steered_run.losses[0])));

        // The saved adapter holds LoRA matrices only: merged at load, with no steering, it
        // computes what the unmerged adapter computes.
        const auto file = persona::read_peft_adapter(steered.output_dir);
        for (const auto& t : file.tensors) QVERIFY(t.name.find(".lora_A.weight") != std::string::npos ||
                                                   t.name.find(".lora_B.weight") != std::string::npos);
        persona::model::LoraAdapter unmerged(tiny_->internals().config(), file.lora, torch::kCPU);
        unmerged.assign(file.tensors, "adapter");
        const double side_branch = lossOf(*tiny_, unmerged, sample_);
        persona::ModelLoadOptions options{"cpu", "f32"};
        options.adapter = steered.output_dir;
        auto merged = Model::load(kTiny, options);
        const double merged_loss = merged->assistant_token_loss(sample_);
        QVERIFY2(std::abs(side_branch - merged_loss) < 1e-4,
                 qPrintable(QString("unmerged %1, merged %2").arg(side_branch).arg(merged_loss)));
        QVERIFY(std::abs(merged_loss - tiny_->assistant_token_loss(sample_)) > 1e-3);  // the adapter did change something
        QVERIFY(merged->facts().fingerprint != tiny_->facts().fingerprint);
    }

    void resumeEqualsUninterruptedRun() {
        QTemporaryDir whole_dir, stopped_dir;
        FinetuneSettings whole = tinySettings(whole_dir.path());
        whole.epochs = 2;  // 12 examples, 4 a step: 6 steps
        whole.checkpoint_every = 2;
        whole.lora.dropout = 0.1;  // resumed runs must draw the same dropout masks
        FinetuneSettings stopped = whole;
        stopped.output_dir = stopped_dir.path().toStdString();
        const auto uninterrupted = tiny_->finetune(sample_, whole);
        QCOMPARE(uninterrupted.steps, 6);

        bool stop = false;
        QVERIFY_THROWS_EXCEPTION(persona::Cancelled,
                                 tiny_->finetune(sample_, stopped, [&](const persona::FinetuneProgress& p) { stop = p.step == 3; },
                                                 [&] { return stop; }));
        QVERIFY(QFile::exists(stopped_dir.filePath("checkpoint/trainer_state.json")));
        QVERIFY(!QFile::exists(stopped_dir.filePath(persona::kAdapterWeightsFileName)));
        const auto resumed = tiny_->finetune(sample_, stopped);
        QCOMPARE(resumed.resumed_from_step, 2);
        QCOMPARE(resumed.losses, uninterrupted.losses);
        const QByteArray expected = fileBytes(whole_dir.filePath(persona::kAdapterWeightsFileName));
        QVERIFY(!expected.isEmpty());
        QCOMPARE(fileBytes(stopped_dir.filePath(persona::kAdapterWeightsFileName)), expected);
        QVERIFY(!QFile::exists(stopped_dir.filePath("checkpoint")));  // a finished run leaves none

        // A checkpoint of other settings is refused, not mixed in.
        QTemporaryDir other_dir;
        FinetuneSettings first = tinySettings(other_dir.path());
        first.checkpoint_every = 1;
        first.max_steps = 3;
        stop = false;
        QVERIFY_THROWS_EXCEPTION(persona::Cancelled,
                                 tiny_->finetune(sample_, first, [&](const persona::FinetuneProgress& p) { stop = p.step == 2; },
                                                 [&] { return stop; }));
        FinetuneSettings changed = first;
        changed.learning_rate = 5e-3;
        const QString error = persona_test::errorOf([&] { tiny_->finetune(sample_, changed); });
        QVERIFY2(error.contains("other settings") && error.contains("checkpoint"), qPrintable(error));
    }

    void adapterMergesIntoGgufAndFolderAlike() {
        QTemporaryDir dir;
        FinetuneSettings s = tinySettings(dir.path());
        s.max_steps = 2;
        tiny_->finetune(sample_, s);
        persona::ModelLoadOptions options{"cpu", "f32"};
        options.adapter = s.output_dir;
        auto folder = Model::load(kTiny, options);
        auto gguf = Model::load(kTiny + ".gguf", options);  // Q/K rows stored permuted in the file
        const auto tokens = folder->encode_chat({{"user", "How do plants grow?"}}, true);
        const auto a = folder->trace(tokens), b = gguf->trace(tokens);
        double worst = 0;
        for (std::size_t i = 0; i < a.logits.size(); ++i) worst = std::max(worst, double(std::abs(a.logits[i] - b.logits[i])));
        QVERIFY2(worst < 1e-4, qPrintable(QString("logits differ by %1").arg(worst)));

        // An adapter for another architecture names the file and the tensor it cannot use.
        QTemporaryDir phi_dir;
        auto phi = Model::load(PERSONA_TEST_DATA_DIR "/tiny_models/phi3", persona::ModelLoadOptions{"cpu", "f32"});
        phi->finetune(sample_, [&] { FinetuneSettings p = tinySettings(phi_dir.path()); p.max_steps = 1; return p; }());
        options.adapter = phi_dir.path().toStdString();
        const QString error = persona_test::errorOf([&] { Model::load(kTiny, options); });
        QVERIFY2(error.contains("is not a projection of a llama block") || error.contains(persona::kAdapterWeightsFileName),
                 qPrintable(error));
    }

    void datasetErrorsNameFileAndLine() {
        QTemporaryDir dir;
        const auto write = [&](const char* text) {
            const QString path = dir.filePath("data.jsonl");
            std::ofstream(path.toStdString()) << text;
            return path.toStdString();
        };
        QString error = persona_test::errorOf([&] {
            persona::read_training_jsonl(write("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n{oops\n"));
        });
        QVERIFY2(error.contains("data.jsonl") && error.contains("line 2"), qPrintable(error));
        error = persona_test::errorOf([&] { persona::read_training_jsonl(write("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}\n")); });
        QVERIFY2(error.contains("line 1") && error.contains("no assistant turn"), qPrintable(error));
        error = persona_test::errorOf([&] { persona::read_training_jsonl(write("\n\n")); });
        QVERIFY2(error.contains("no conversation"), qPrintable(error));
        error = persona_test::errorOf([&] { persona::read_training_jsonl(dir.path().toStdString()); });
        QVERIFY2(!error.isEmpty(), "a folder read as a dataset");
    }

    void badSettingsAreRefusedBeforeTraining() {
        QTemporaryDir dir;
        const auto refused = [&](const std::function<void(FinetuneSettings&)>& change) {
            FinetuneSettings s = tinySettings(dir.path());
            change(s);
            return persona_test::errorOf([&] { tiny_->finetune(sample_, s); });
        };
        persona::Steering nan_steering;
        nan_steering.layer = 1;
        nan_steering.vector.assign(static_cast<std::size_t>(tiny_->hidden_size()), std::nanf(""));
        QVERIFY(refused([&](FinetuneSettings& s) { s.steering = {nan_steering}; }).contains("NaN"));
        nan_steering.vector.assign(static_cast<std::size_t>(tiny_->hidden_size()), 1.0f);
        nan_steering.layer = 99;
        QVERIFY(refused([&](FinetuneSettings& s) { s.steering = {nan_steering}; }).contains("layer 99"));
        QVERIFY(refused([](FinetuneSettings& s) { s.learning_rate = std::nan(""); }).contains("learning rate"));
        QVERIFY(refused([](FinetuneSettings& s) { s.lora.target_modules = {"qkv_proj"}; }).contains("not a projection"));
        QVERIFY(refused([](FinetuneSettings& s) { s.output_dir.clear(); }).contains("output folder"));
        QVERIFY(!QFile::exists(dir.filePath(persona::kAdapterWeightsFileName)));  // nothing was written
    }

    void fewStepsOnTheDefaultModelLowerTheLoss() {
        auto model = Model::load(persona_test::defaultModelPath().toStdString());
        QTemporaryDir dir;
        FinetuneSettings s;
        s.lora.rank = 8;
        s.learning_rate = 1e-3;
        s.warmup_steps = 0;
        s.gradient_accumulation = 2;
        s.epochs = 2;
        s.output_dir = dir.path().toStdString();
        const double before = model->assistant_token_loss(sample_);
        const auto run = model->finetune(sample_, s);
        QCOMPARE(run.steps, 6);
        QVERIFY2(run.losses.back() < run.losses.front(),
                 qPrintable(QString("loss %1 -> %2").arg(run.losses.front()).arg(run.losses.back())));
        persona::ModelLoadOptions options;
        options.adapter = s.output_dir;
        auto tuned = Model::load(persona_test::defaultModelPath().toStdString(), options);
        const double after = tuned->assistant_token_loss(sample_);
        QVERIFY2(after < before - 0.1, qPrintable(QString("training-set loss %1 -> %2").arg(before).arg(after)));
        QCOMPARE(model->assistant_token_loss(sample_), before);  // the studied model's own weights are untouched
    }
};

QTEST_GUILESS_MAIN(TestFinetune)
#include "test_finetune.moc"
