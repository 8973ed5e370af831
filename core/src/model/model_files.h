#pragma once
// The checkpoint formats Model::load reads, each opened into the same parts: weights (read by the
// architecture files), facts, tokenizer and chat template. The parsing lives here, apart from
// the model math.
#include "model/transformer.h"
#include "tokenizer/chat_template.h"
#include "persona/model_facts.h"
#include "persona/tokenizer.h"
#include "io/shape_text.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace persona::model {

struct ModelFiles {
    std::unique_ptr<WeightSource> weights;  // owns the mapped file(s) it reads from
    ModelFacts facts;
    std::unique_ptr<Tokenizer> tokenizer;
    std::optional<ChatTemplate> chat;  // absent when the model's chat format is unknown
    std::string chat_error;            // why it is absent
};

// A .gguf file.
ModelFiles open_gguf_model(const std::string& path);
// A Hugging Face checkpoint directory: config.json, model.safetensors or a sharded index,
// tokenizer.json and/or tokenizer.model, tokenizer_config.json.
ModelFiles open_hf_checkpoint(const std::string& directory);

}  // namespace persona::model
