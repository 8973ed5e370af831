#pragma once
// LoRA fine-tuning with a persona vector in the loop (docs/finetuning.md): preventative
// steering adds alpha x v_l (or removes the direction) in every training forward pass, so the
// model need not move toward the trait to fit data that would push it there. Adapters are read
// and written in PEFT's layout. Plain data in and out, no torch types.
#include "persona/generation.h"
#include "persona/progress.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace persona {

// The two files of an adapter folder, named as PEFT names them.
inline constexpr const char* kAdapterConfigFileName = "adapter_config.json";
inline constexpr const char* kAdapterWeightsFileName = "adapter_model.safetensors";

struct LoraSettings {
    int rank = 32;
    double alpha = 64;
    bool rslora = true;   // scale alpha / sqrt(rank) instead of alpha / rank
    double dropout = 0.0; // on each adapted projection's input, while training
    // PEFT module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; Phi-3:
    // qkv_proj, gate_up_proj); empty: every projection of the architecture.
    std::vector<std::string> target_modules;
    double scaling() const;
};

// The reference recipe (the persona-vector paper's LoRA runs) unless a field says otherwise.
struct FinetuneSettings {
    LoraSettings lora;
    double learning_rate = 1e-5;
    double weight_decay = 0.01;   // AdamW's, decoupled
    double max_grad_norm = 1.0;   // gradients clipped to this global norm; 0: not clipped
    int warmup_steps = 5;         // linear warm-up, then linear decay to 0 at the last step
    int epochs = 1;
    int max_steps = 0;            // > 0: stop after this many optimiser steps
    int batch_size = 2;           // sequences per forward pass
    int gradient_accumulation = 8;// forward passes per optimiser step
    int max_length = 2048;        // tokens per sequence; longer ones are cut at the end
    bool bucket_by_length = true; // batch sequences of similar length together (less padding)
    std::uint64_t seed = 0;       // adapter initialisation, data order and dropout
    int checkpoint_every = 0;     // optimiser steps between checkpoints; 0: none but the last
    // Active in every training forward pass at every position: Add (alpha x v) or Ablate. Never
    // part of the saved adapter.
    std::vector<Steering> steering;
    std::string output_dir;          // the adapter, its report and checkpoint/ go here
    std::string base_model;          // adapter_config.json's base_model_name_or_path
};

// One conversation to train on; the loss covers its assistant turns only.
struct TrainingExample {
    std::vector<ChatMessage> messages;
    std::size_t line = 0;  // 1-based line of the JSONL file it came from; 0 when made in memory
};

// Chat JSONL ({"messages": [...]} per line). Throws FileError naming the file and line for a
// bad line, a conversation without an assistant turn, or a file with no example at all.
std::vector<TrainingExample> read_training_jsonl(const std::string& path);
void write_training_jsonl(const std::string& path, const std::vector<TrainingExample>& examples);  // atomic
// 24 everyday questions with plain factual answers (resources/datasets/neutral_heldout.jsonl,
// compiled in): the default held-out set of the perplexity proxy for general ability.
std::vector<TrainingExample> neutral_heldout_examples();

struct FinetuneProgress {
    int step = 0;          // optimiser steps done
    int total_steps = 0;
    double loss = 0;       // mean token loss of the last step
    double learning_rate = 0;
    double tokens_per_second = 0;  // every token through the model, padding not counted
    double eta_seconds = 0;
};

struct FinetuneResult {
    int steps = 0;
    int resumed_from_step = 0;    // 0: started afresh
    std::vector<double> losses;   // per optimiser step, resumed ones included
    std::uint64_t trained_tokens = 0;  // assistant tokens the loss covered, this run
    std::uint64_t sequence_tokens = 0; // all tokens through the model, this run
    double seconds = 0;
    int examples = 0;
    int examples_without_answer_tokens = 0;  // cut to nothing by max_length: skipped
    std::string adapter_dir;
};

}  // namespace persona
