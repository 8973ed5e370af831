// LoRA training over the model's own forward (model_impl.h), autograd recording: AdamW on the
// adapter's float32 matrices, the base weights frozen, the loss on assistant tokens only, and the
// steering of inference active in every training pass (docs/finetuning.md).
#include "model/training.h"

#include "model/lora.h"

#include "formats/peft_adapter.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "persona/fingerprint.h"
#include "persona/process_memory.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

namespace persona {

namespace model {

namespace {

bool starts_with(const std::vector<std::int32_t>& whole, const std::vector<std::int32_t>& start) {
    return whole.size() >= start.size() && std::equal(start.begin(), start.end(), whole.begin());
}

std::string where(const TrainingExample& example, std::size_t index) {
    return example.line ? "line " + std::to_string(example.line) : "example " + std::to_string(index + 1);
}

// Each assistant turn is the tokens its conversation so far adds after the generation prompt,
// its closing token included (the model learns where to stop).
Sequence encode_sequence(const Model& model, const TrainingExample& example, std::size_t index, int max_length) {
    const auto& messages = example.messages;
    Sequence sequence;
    sequence.tokens = model.encode_chat(messages, false);
    sequence.trained.assign(sequence.tokens.size(), 0);
    for (std::size_t i = 0; i < messages.size(); ++i) {
        if (messages[i].role != "assistant") continue;
        if (i == 0) throw Error(where(example, index) + ": the conversation starts with the assistant's turn");
        const std::vector<ChatMessage> before(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i));
        const std::vector<ChatMessage> through(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i + 1));
        const auto prompt = model.encode_chat(before, true);
        const auto with_answer = model.encode_chat(through, false);
        if (!starts_with(with_answer, prompt) || !starts_with(sequence.tokens, with_answer))
            throw Error(where(example, index) + ": the chat template renders an earlier turn differently once later turns "
                        "follow, so the assistant's tokens cannot be told apart");
        std::fill(sequence.trained.begin() + static_cast<std::ptrdiff_t>(prompt.size()),
                  sequence.trained.begin() + static_cast<std::ptrdiff_t>(with_answer.size()), 1);
    }
    if (sequence.tokens.size() > static_cast<std::size_t>(max_length)) {
        sequence.tokens.resize(static_cast<std::size_t>(max_length));
        sequence.trained.resize(static_cast<std::size_t>(max_length));
    }
    if (!sequence.trained.empty()) sequence.trained[0] = 0;  // nothing predicts the first token
    sequence.trained_count = static_cast<std::size_t>(std::count(sequence.trained.begin(), sequence.trained.end(), 1));
    return sequence;
}

}  // namespace

std::vector<Sequence> encode_training_sequences(const Model& model, const std::vector<TrainingExample>& examples,
                                                int max_length, int* without_answer) {
    if (max_length < 2) throw Error("the maximum sequence length must be at least 2 tokens");
    std::vector<Sequence> sequences;
    for (std::size_t i = 0; i < examples.size(); ++i) {
        Sequence s = encode_sequence(model, examples[i], i, std::min(max_length, model.context_length()));
        if (s.trained_count == 0) {
            if (without_answer) ++*without_answer;
            continue;
        }
        sequences.push_back(std::move(s));
    }
    if (sequences.empty()) throw Error("no example has an assistant token within the maximum length to train on");
    return sequences;
}

BatchLoss batch_loss(const Model::Impl& m, const std::vector<Sequence>& sequences, const std::vector<std::size_t>& batch,
                     const ProjectionAdapter* adapter, const std::vector<Model::Impl::ResolvedSteering>& steering,
                     const CancelFn& cancelled) {
    std::size_t width = 0;
    for (std::size_t i : batch) width = std::max(width, sequences[i].tokens.size());
    const std::int64_t rows = static_cast<std::int64_t>(batch.size()), steps = static_cast<std::int64_t>(width);
    std::vector<std::int64_t> tokens(batch.size() * width, 0);
    std::vector<RowLayout> layout;
    std::vector<std::int64_t> position_rows, position_steps, targets;
    BatchLoss out;
    for (std::size_t r = 0; r < batch.size(); ++r) {
        const Sequence& s = sequences[batch[r]];
        const std::size_t padding = width - s.tokens.size();
        layout.push_back({static_cast<std::int64_t>(padding), steps});
        std::copy(s.tokens.begin(), s.tokens.end(), tokens.begin() + static_cast<std::ptrdiff_t>(r * width + padding));
        for (std::size_t t = 1; t < s.tokens.size(); ++t)
            if (s.trained[t]) {
                position_rows.push_back(static_cast<std::int64_t>(r));
                position_steps.push_back(static_cast<std::int64_t>(padding + t - 1));
                targets.push_back(s.tokens[t]);
            }
        out.sequence_tokens += static_cast<std::int64_t>(s.tokens.size());
    }
    const torch::Tensor ones = torch::ones({1}, torch::TensorOptions(m.device).dtype(torch::kFloat32));
    const auto steer = [&](int layer, torch::Tensor& hidden) {
        for (const auto& s : steering)
            if (s.layer == layer) hidden = Model::Impl::steered(hidden, s, ones);
    };
    const torch::Tensor input = torch::tensor(tokens, torch::kInt64).view({rows, steps}).to(m.device);
    const torch::Tensor hidden = m.forward(input, layout, 0, nullptr, steer, cancelled, adapter);
    const auto index = [&](const std::vector<std::int64_t>& v) { return torch::tensor(v, torch::kInt64).to(m.device); };
    // Logits only where a trained token is predicted: the vocabulary-wide rows are most of the memory.
    const torch::Tensor picked = hidden.index({index(position_rows), index(position_steps)}).unsqueeze(0);
    const torch::Tensor logits = m.net->logits(picked).squeeze(0);
    out.sum = torch::nn::functional::cross_entropy(logits, index(targets),
                                                   torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    out.tokens = static_cast<std::int64_t>(targets.size());
    return out;
}

}  // namespace model

using model::BatchLoss;
using model::Sequence;

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Micro-batches (indices into the sequences) of every optimiser step, epoch after epoch: each
// epoch in its own seeded order; with bucketing, each step's sequences sorted by length so that a
// batch pads little.
std::vector<std::vector<std::vector<std::size_t>>> plan_steps(const std::vector<Sequence>& sequences,
                                                              const FinetuneSettings& s) {
    std::vector<std::vector<std::vector<std::size_t>>> steps;
    const std::size_t batch = static_cast<std::size_t>(s.batch_size);
    const std::size_t per_step = batch * static_cast<std::size_t>(s.gradient_accumulation);
    for (int epoch = 0; epoch < s.epochs; ++epoch) {
        std::vector<std::size_t> order(sequences.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::mt19937_64 shuffle_generator(s.seed * 1000003u + static_cast<std::uint64_t>(epoch));
        std::shuffle(order.begin(), order.end(), shuffle_generator);
        for (std::size_t start = 0; start < order.size(); start += per_step) {
            std::vector<std::size_t> chunk(order.begin() + static_cast<std::ptrdiff_t>(start),
                                           order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), start + per_step)));
            if (s.bucket_by_length)
                std::stable_sort(chunk.begin(), chunk.end(), [&](std::size_t a, std::size_t b) {
                    return sequences[a].tokens.size() < sequences[b].tokens.size();
                });
            std::vector<std::vector<std::size_t>> step;
            for (std::size_t b = 0; b < chunk.size(); b += batch)
                step.emplace_back(chunk.begin() + static_cast<std::ptrdiff_t>(b),
                                  chunk.begin() + static_cast<std::ptrdiff_t>(std::min(chunk.size(), b + batch)));
            steps.push_back(std::move(step));
        }
    }
    if (s.max_steps > 0 && steps.size() > static_cast<std::size_t>(s.max_steps)) steps.resize(static_cast<std::size_t>(s.max_steps));
    return steps;
}

// Hugging Face's linear schedule with warm-up, as the reference recipe ran it.
double learning_rate_at(const FinetuneSettings& s, int step, int total) {
    if (step < s.warmup_steps) return s.learning_rate * step / std::max(1, s.warmup_steps);
    return s.learning_rate * std::max(0.0, static_cast<double>(total - step) / std::max(1, total - s.warmup_steps));
}

void check_settings(const FinetuneSettings& s) {
    const auto positive = [](double v) { return std::isfinite(v) && v > 0; };
    if (!positive(s.learning_rate)) throw Error("the learning rate must be a finite number above 0");
    if (!(std::isfinite(s.weight_decay) && s.weight_decay >= 0)) throw Error("the weight decay must be a finite number >= 0");
    if (!(std::isfinite(s.max_grad_norm) && s.max_grad_norm >= 0)) throw Error("the gradient clipping norm must be >= 0");
    if (s.epochs < 1) throw Error("train for at least one epoch");
    if (s.batch_size < 1 || s.gradient_accumulation < 1) throw Error("the batch size and gradient accumulation must be at least 1");
    if (s.warmup_steps < 0 || s.max_steps < 0 || s.checkpoint_every < 0) throw Error("steps cannot be negative");
    if (s.output_dir.empty()) throw Error("fine-tuning needs an output folder for its adapter");
    for (const auto& steering : s.steering)
        if (!std::isfinite(steering.alpha)) throw Error("a training steering coefficient is not a finite number");
}

// What a checkpoint must match to be resumed: the settings that shape the run, the data and the model.
std::string run_key(const Model& model, const FinetuneSettings& s, const std::vector<Sequence>& sequences) {
    Json settings = {{"rank", s.lora.rank}, {"alpha", s.lora.alpha}, {"rslora", s.lora.rslora}, {"dropout", s.lora.dropout},
                     {"targets", s.lora.target_modules}, {"lr", s.learning_rate}, {"wd", s.weight_decay},
                     {"clip", s.max_grad_norm}, {"warmup", s.warmup_steps}, {"epochs", s.epochs}, {"max_steps", s.max_steps},
                     {"batch", s.batch_size}, {"accumulation", s.gradient_accumulation}, {"max_length", s.max_length},
                     {"bucket", s.bucket_by_length}, {"seed", s.seed}, {"model", model.facts().fingerprint},
                     {"dtype", model.dtype()}};
    Json steering = Json::array();
    for (const auto& st : s.steering)
        steering.push_back({{"layer", st.layer}, {"alpha", st.alpha}, {"op", static_cast<int>(st.operation)},
                            {"norm", st.preserve_norm}, {"vector", text_sha256({reinterpret_cast<const char*>(st.vector.data()),
                                                                               st.vector.size() * sizeof(float)})}});
    settings["steering"] = steering;
    std::string data;
    for (const auto& seq : sequences) {
        data.append(reinterpret_cast<const char*>(seq.tokens.data()), seq.tokens.size() * sizeof(std::int32_t));
        data.append(reinterpret_cast<const char*>(seq.trained.data()), seq.trained.size());
        data += '\n';
    }
    settings["data"] = text_sha256(data);
    return text_sha256(settings.dump());
}

}  // namespace

FinetuneResult Model::finetune(const std::vector<TrainingExample>& examples, const FinetuneSettings& settings,
                               const std::function<void(const FinetuneProgress&)>& on_step, const CancelFn& cancelled) {
    Impl& m = *impl_;
    check_settings(settings);
    for (const auto& s : settings.steering) {
        if (s.layer < 0 || s.layer > layer_count())
            throw Error("training steering layer " + std::to_string(s.layer) + " is outside 0.." + std::to_string(layer_count()));
        if (static_cast<int>(s.vector.size()) != hidden_size())
            throw Error("training steering vector has " + std::to_string(s.vector.size()) + " values; the model's hidden size is " +
                        std::to_string(hidden_size()));
        if (!std::all_of(s.vector.begin(), s.vector.end(), [](float v) { return std::isfinite(v); }))
            throw Error("training steering vector holds a NaN or infinite value");
    }
    FinetuneResult result;
    result.examples = static_cast<int>(examples.size());
    const std::vector<Sequence> sequences =
        model::encode_training_sequences(*this, examples, settings.max_length, &result.examples_without_answer_tokens);
    const auto plan = plan_steps(sequences, settings);
    const int total_steps = static_cast<int>(plan.size());

    model::LoraAdapter adapter(m.config(), settings.lora, m.device);
    adapter.initialise(settings.seed);
    const std::vector<torch::Tensor> parameters = adapter.parameters();
    torch::optim::AdamW optimizer(parameters, torch::optim::AdamWOptions(settings.learning_rate).weight_decay(settings.weight_decay));
    const auto steering = m.resolve(settings.steering, 0);

    const fs::path out_dir(settings.output_dir);
    const fs::path checkpoint = out_dir / "checkpoint", partial = out_dir / "checkpoint.partial", old = out_dir / "checkpoint.old";
    const std::string key = run_key(*this, settings, sequences);
    int first_step = 0;
    std::error_code error;
    // A crash between the two renames of a save leaves the previous checkpoint as .old.
    const fs::path resumable = fs::exists(checkpoint / "trainer_state.json", error) ? checkpoint
                               : fs::exists(old / "trainer_state.json", error) ? old
                                                                              : fs::path();
    if (!resumable.empty()) {
        const Json state = detail::read_json_file((resumable / "trainer_state.json").string());
        if (state.value("key", "") != key)
            throw Error((resumable).string() + " is the checkpoint of a run with other settings, data or model; remove it "
                        "or train into another folder");
        const PeftAdapter saved = read_peft_adapter(resumable.string());
        adapter.assign(saved.tensors, (resumable / kAdapterWeightsFileName).string());
        torch::load(optimizer, (resumable / "optimizer.pt").string());
        first_step = state.at("step").get<int>();
        result.losses = state.at("losses").get<std::vector<double>>();
        result.resumed_from_step = first_step;
    }

    const auto save_adapter = [&](const fs::path& directory) {
        const auto named = adapter.named_tensors();
        std::vector<SafetensorsFloatTensor> tensors;
        for (const auto& [name, tensor] : named)
            tensors.push_back({name, tensor.sizes().vec(), tensor.data_ptr<float>(), static_cast<std::size_t>(tensor.numel())});
        write_peft_adapter(directory.string(), adapter.settings(), settings.base_model, tensors);
    };
    const auto save_checkpoint = [&](int step) {
        fs::remove_all(partial, error);
        save_adapter(partial);
        torch::save(optimizer, (partial / "optimizer.pt").string());
        detail::write_file_atomically((partial / "trainer_state.json").string(),
                                      Json{{"key", key}, {"step", step}, {"losses", result.losses}}.dump() + "\n");
        fs::remove_all(old, error);
        if (fs::exists(checkpoint, error)) fs::rename(checkpoint, old);
        fs::rename(partial, checkpoint);
        fs::remove_all(old, error);
    };

    adapter.set_training(true);
    const auto started = std::chrono::steady_clock::now();
    for (int step = first_step; step < total_steps; ++step) {
        check_cancelled(cancelled);
        for (auto& group : optimizer.param_groups())
            static_cast<torch::optim::AdamWOptions&>(group.options()).lr(learning_rate_at(settings, step, total_steps));
        // Dropout draws from the global generator: seeded per step, a resumed run draws the same.
        if (settings.lora.dropout > 0) torch::manual_seed(settings.seed * 7919u + static_cast<std::uint64_t>(step));
        std::int64_t step_tokens = 0;
        for (const auto& batch : plan[static_cast<std::size_t>(step)])
            for (std::size_t i : batch) step_tokens += static_cast<std::int64_t>(sequences[i].trained_count);
        optimizer.zero_grad();
        double step_loss = 0;
        for (const auto& batch : plan[static_cast<std::size_t>(step)]) {
            const BatchLoss loss = batch_loss(m, sequences, batch, &adapter, steering, cancelled);
            (loss.sum / static_cast<double>(step_tokens)).backward();
            step_loss += loss.sum.item<double>();
            result.trained_tokens += static_cast<std::uint64_t>(loss.tokens);
            result.sequence_tokens += static_cast<std::uint64_t>(loss.sequence_tokens);
        }
        // A diverged step would write NaN into the adapter and every later checkpoint.
        if (!std::isfinite(step_loss))
            throw Error("the loss is not a finite number at step " + std::to_string(step + 1) +
                        " (try a lower learning rate); the last checkpoint is kept");
        if (settings.max_grad_norm > 0) torch::nn::utils::clip_grad_norm_(parameters, settings.max_grad_norm);
        optimizer.step();
        result.losses.push_back(step_loss / static_cast<double>(step_tokens));
        const int done = step + 1;
        if (settings.checkpoint_every > 0 && done % settings.checkpoint_every == 0 && done < total_steps) save_checkpoint(done);
        if (on_step) {
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            FinetuneProgress progress;
            progress.step = done;
            progress.total_steps = total_steps;
            progress.loss = result.losses.back();
            progress.learning_rate = learning_rate_at(settings, step, total_steps);
            progress.tokens_per_second = elapsed > 0 ? static_cast<double>(result.sequence_tokens) / elapsed : 0;
            progress.eta_seconds = elapsed / (done - first_step) * (total_steps - done);
            on_step(progress);
        }
    }
    result.steps = total_steps;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    save_adapter(out_dir);
    result.adapter_dir = out_dir.string();
    detail::write_file_atomically((out_dir / "training.json").string(),
                                  Json{{"steps", result.steps},
                                       {"resumed_from_step", result.resumed_from_step},
                                       {"losses", result.losses},
                                       {"examples", result.examples},
                                       {"examples_without_answer_tokens", result.examples_without_answer_tokens},
                                       {"trained_tokens", result.trained_tokens},
                                       {"sequence_tokens", result.sequence_tokens},
                                       {"seconds", result.seconds},
                                       {"peak_rss_bytes", read_process_memory().peak_resident_bytes},
                                       {"base_model", settings.base_model},
                                       {"model_fingerprint", facts().fingerprint}}
                                          .dump(2) + "\n");
    // The run is complete: its adapter stands in the folder and a rerun starts afresh.
    fs::remove_all(checkpoint, error);
    fs::remove_all(old, error);
    return result;
}

double Model::assistant_token_loss(const std::vector<TrainingExample>& examples, int max_length,
                                   const std::vector<Steering>& steering, const CancelFn& cancelled) {
    torch::InferenceMode inference;
    const Impl& m = *impl_;
    const auto resolved = m.resolve(steering, 0);
    const std::vector<Sequence> sequences = model::encode_training_sequences(*this, examples, max_length, nullptr);
    double sum = 0;
    std::int64_t tokens = 0;
    for (std::size_t i = 0; i < sequences.size(); ++i) {
        const BatchLoss loss = batch_loss(m, sequences, {i}, nullptr, resolved, cancelled);
        sum += loss.sum.item<double>();
        tokens += loss.tokens;
    }
    return sum / static_cast<double>(tokens);
}

}  // namespace persona
