#pragma once
// PEFT's LoRA adapter folder: adapter_config.json (rank, alpha, rsLoRA, target modules) and
// adapter_model.safetensors (lora_A [r, in] and lora_B [out, r] per adapted module, named
// base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight). Only the file format here;
// what the tensors mean to a model is model/lora.h.
#include "formats/safetensors.h"
#include "persona/finetune.h"

#include <cstdint>
#include <string>
#include <vector>

namespace persona {

struct PeftAdapter {
    LoraSettings lora;
    std::string base_model;
    std::vector<int> layers;  // layers_to_transform; empty: every layer
    struct Tensor {
        std::string name;
        std::vector<std::int64_t> shape;
        std::vector<float> values;
    };
    std::vector<Tensor> tensors;
};

// Throws FileError naming the file for a missing or unreadable file, an adapter that is not a
// plain LoRA (DoRA, biases, per-module ranks, modules saved whole, a regex of targets) or a
// tensor that is not F32, F16 or BF16.
PeftAdapter read_peft_adapter(const std::string& directory);

// Writes both files atomically, the tensors as float32; creates the directory.
void write_peft_adapter(const std::string& directory, const LoraSettings& lora, const std::string& base_model,
                        const std::vector<SafetensorsFloatTensor>& tensors);

}  // namespace persona
