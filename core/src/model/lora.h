#pragma once
// LoRA on a block's projections: W x + s B (A x), A [r, in], B [out, r], s = alpha / r (alpha /
// sqrt(r) with rsLoRA), as PEFT computes it. Each PEFT module (q_proj, ...) owns a band of rows
// of one of the architecture's fused projection sites, so the same table serves training (the
// adapter adds its bands to the site's output) and loading (the bands are merged into the site's
// weight). Float32 beside frozen base weights of any dtype.
#include "formats/peft_adapter.h"
#include "model/transformer.h"
#include "persona/finetune.h"

#include <cstdint>
#include <string>
#include <vector>

namespace persona::model {

// One PEFT module of a block: its rows [row_offset, row_offset + rows) of the site's matrix,
// whose inputs are `cols` wide.
struct LoraModule {
    std::string name;  // q_proj
    ProjectionSite site;
    std::int64_t row_offset = 0, rows = 0, cols = 0;
};

// The modules of every block of `config`'s architecture, sites in order, bands in row order.
std::vector<LoraModule> lora_modules(const TransformerConfig& config);
// "base_model.model.model.layers.3.self_attn.q_proj": PEFT's name stem of a module's tensors.
std::string peft_module_path(int layer, const LoraModule& module);

class LoraAdapter : public ProjectionAdapter {
public:
    // Targets settings.target_modules (every module when empty) on `layers` (every block when
    // empty); Error naming a module the architecture does not have.
    LoraAdapter(const TransformerConfig& config, const LoraSettings& settings, torch::Device device,
                const std::vector<int>& layers = {});

    // PEFT's initialisation: A uniform in +-1/sqrt(in) (Kaiming with a = sqrt(5)), B zero, so a
    // new adapter changes nothing.
    void initialise(std::uint64_t seed);
    // The tensors of a PEFT file; FileError naming `source` for a missing tensor or a shape that
    // does not fit this model.
    void assign(const std::vector<PeftAdapter::Tensor>& tensors, const std::string& source);

    // Trainable tensors: requires_grad, float32, in a fixed order (A then B, module by module).
    std::vector<torch::Tensor> parameters() const;
    // Named as PEFT names them, for write_peft_adapter; the values must outlive the call.
    std::vector<std::pair<std::string, torch::Tensor>> named_tensors() const;

    void set_training(bool training) { training_ = training; }
    const LoraSettings& settings() const { return settings_; }

    torch::Tensor adjust(int layer, ProjectionSite site, const torch::Tensor& input, torch::Tensor output) const override;
    // Adds s B A into each adapted site's weight (rounded to the weight's dtype).
    void merge_into(Transformer& net) const;

private:
    struct Pair {
        torch::Tensor a, b;  // undefined when the module is not targeted on this layer
    };
    LoraSettings settings_;
    double scaling_;
    bool training_ = false;
    std::vector<LoraModule> modules_;
    std::vector<std::vector<Pair>> layers_;  // [layer][module]
};

// Reads a PEFT adapter folder and merges it into `net` (Model::load's --adapter).
void merge_peft_adapter(Transformer& net, const std::string& directory);

}  // namespace persona::model
