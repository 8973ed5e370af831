#include "model/lora.h"

#include "io/shape_text.h"
#include "persona/errors.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace persona {

double LoraSettings::scaling() const {
    return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

namespace model {

std::vector<LoraModule> lora_modules(const TransformerConfig& c) {
    const std::int64_t hidden = c.hidden, q_rows = std::int64_t{c.heads} * c.head_dim,
                       kv_rows = std::int64_t{c.kv_heads} * c.head_dim, ffn = c.feed_forward;
    // Phi-3 keeps Hugging Face's fused matrices; every other architecture has one module per band.
    if (c.architecture == "phi3")
        return {{"qkv_proj", ProjectionSite::Qkv, 0, q_rows + 2 * kv_rows, hidden},
                {"o_proj", ProjectionSite::Out, 0, hidden, q_rows},
                {"gate_up_proj", ProjectionSite::GateUp, 0, 2 * ffn, hidden},
                {"down_proj", ProjectionSite::Down, 0, hidden, ffn}};
    return {{"q_proj", ProjectionSite::Qkv, 0, q_rows, hidden},
            {"k_proj", ProjectionSite::Qkv, q_rows, kv_rows, hidden},
            {"v_proj", ProjectionSite::Qkv, q_rows + kv_rows, kv_rows, hidden},
            {"o_proj", ProjectionSite::Out, 0, hidden, q_rows},
            {"gate_proj", ProjectionSite::GateUp, 0, ffn, hidden},
            {"up_proj", ProjectionSite::GateUp, ffn, ffn, hidden},
            {"down_proj", ProjectionSite::Down, 0, hidden, ffn}};
}

std::string peft_module_path(int layer, const LoraModule& module) {
    const bool attention = module.site == ProjectionSite::Qkv || module.site == ProjectionSite::Out;
    return "base_model.model.model.layers." + std::to_string(layer) + (attention ? ".self_attn." : ".mlp.") + module.name;
}

LoraAdapter::LoraAdapter(const TransformerConfig& config, const LoraSettings& settings, torch::Device device,
                         const std::vector<int>& layers)
    : settings_(settings), modules_(lora_modules(config)) {
    if (settings_.rank < 1) throw Error("the LoRA rank must be at least 1, not " + std::to_string(settings_.rank));
    if (!(std::isfinite(settings_.alpha) && settings_.alpha > 0))
        throw Error("the LoRA alpha must be a finite number above 0");
    if (!(settings_.dropout >= 0 && settings_.dropout < 1)) throw Error("the LoRA dropout must be in [0, 1)");
    scaling_ = settings_.scaling();
    std::string known;
    for (const auto& m : modules_) known += (known.empty() ? "" : ", ") + m.name;
    if (settings_.target_modules.empty())
        for (const auto& m : modules_) settings_.target_modules.push_back(m.name);
    for (const auto& name : settings_.target_modules)
        if (std::none_of(modules_.begin(), modules_.end(), [&](const LoraModule& m) { return m.name == name; }))
            throw Error("'" + name + "' is not a projection of a " + config.architecture + " block (" + known + ")");
    for (int layer : layers)
        if (layer < 0 || layer >= config.layers)
            throw Error("LoRA layer " + std::to_string(layer) + " is outside 0.." + std::to_string(config.layers - 1));

    const auto options = torch::TensorOptions(device).dtype(torch::kFloat32);
    layers_.resize(static_cast<std::size_t>(config.layers));
    for (int l = 0; l < config.layers; ++l) {
        const bool adapted = layers.empty() || std::find(layers.begin(), layers.end(), l) != layers.end();
        for (const auto& m : modules_) {
            Pair pair;
            const auto& targets = settings_.target_modules;
            if (adapted && std::find(targets.begin(), targets.end(), m.name) != targets.end()) {
                pair.a = torch::zeros({settings_.rank, m.cols}, options).set_requires_grad(true);
                pair.b = torch::zeros({m.rows, settings_.rank}, options).set_requires_grad(true);
            }
            layers_[static_cast<std::size_t>(l)].push_back(pair);
        }
    }
}

void LoraAdapter::initialise(std::uint64_t seed) {
    torch::NoGradGuard no_gradients;
    // A generator of our own: the same seed gives the same adapter whatever else drew numbers.
    auto generator = at::detail::createCPUGenerator(seed);
    for (auto& layer : layers_)
        for (std::size_t i = 0; i < layer.size(); ++i) {
            if (!layer[i].a.defined()) continue;
            const double bound = 1.0 / std::sqrt(static_cast<double>(modules_[i].cols));
            const torch::Tensor values = at::empty(layer[i].a.sizes(), torch::kFloat32).uniform_(-bound, bound, generator);
            layer[i].a.copy_(values);
            layer[i].b.zero_();
        }
}

std::vector<torch::Tensor> LoraAdapter::parameters() const {
    std::vector<torch::Tensor> out;
    for (const auto& layer : layers_)
        for (const auto& pair : layer)
            if (pair.a.defined()) {
                out.push_back(pair.a);
                out.push_back(pair.b);
            }
    return out;
}

std::vector<std::pair<std::string, torch::Tensor>> LoraAdapter::named_tensors() const {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (std::size_t l = 0; l < layers_.size(); ++l)
        for (std::size_t i = 0; i < modules_.size(); ++i) {
            const Pair& pair = layers_[l][i];
            if (!pair.a.defined()) continue;
            const std::string stem = peft_module_path(static_cast<int>(l), modules_[i]);
            out.emplace_back(stem + ".lora_A.weight", pair.a.detach().to(torch::kCPU).contiguous());
            out.emplace_back(stem + ".lora_B.weight", pair.b.detach().to(torch::kCPU).contiguous());
        }
    return out;
}

void LoraAdapter::assign(const std::vector<PeftAdapter::Tensor>& tensors, const std::string& source) {
    torch::NoGradGuard no_gradients;
    std::map<std::string, const PeftAdapter::Tensor*> unused;
    for (const auto& t : tensors) unused[t.name] = &t;
    for (std::size_t l = 0; l < layers_.size(); ++l)
        for (std::size_t i = 0; i < modules_.size(); ++i) {
            Pair& pair = layers_[l][i];
            if (!pair.a.defined()) continue;
            const std::string stem = peft_module_path(static_cast<int>(l), modules_[i]);
            // Tensor handles share storage: copying into these writes the adapter's own.
            for (auto [suffix, target] : {std::pair{".lora_A.weight", pair.a}, std::pair{".lora_B.weight", pair.b}}) {
                const std::string name = stem + suffix;
                const auto found = unused.find(name);
                if (found == unused.end()) throw FileError(source, "has no tensor " + name);
                const PeftAdapter::Tensor& t = *found->second;
                if (t.shape != target.sizes().vec())
                    throw FileError(source, name + " has the shape " + shape_text(t.shape) + "; this model needs " +
                                                shape_text(target.sizes().vec()));
                target.copy_(torch::tensor(t.values, torch::kFloat32).view(target.sizes()));
                unused.erase(found);
            }
        }
    if (!unused.empty())
        throw FileError(source, "holds " + unused.begin()->first +
                                    ", which is no LoRA matrix that its adapter_config.json targets on this model");
}

torch::Tensor LoraAdapter::adjust(int layer, ProjectionSite site, const torch::Tensor& input, torch::Tensor output) const {
    const auto& pairs = layers_[static_cast<std::size_t>(layer)];
    torch::Tensor x;
    std::vector<torch::Tensor> bands;
    bool any = false;
    for (std::size_t i = 0; i < modules_.size(); ++i) {
        const LoraModule& m = modules_[i];
        if (m.site != site) continue;
        if (!pairs[i].a.defined()) {
            std::vector<std::int64_t> shape = output.sizes().vec();
            shape.back() = m.rows;
            bands.push_back(torch::zeros(shape, output.options()));
            continue;
        }
        if (!x.defined()) {
            x = input.to(torch::kFloat32);
            if (training_ && settings_.dropout > 0) x = torch::dropout(x, settings_.dropout, true);
        }
        bands.push_back(torch::matmul(torch::matmul(x, pairs[i].a.t()), pairs[i].b.t()) * scaling_);
        any = true;
    }
    if (!any) return output;
    return output + (bands.size() == 1 ? bands[0] : torch::cat(bands, -1));
}

void LoraAdapter::merge_into(Transformer& net) const {
    torch::NoGradGuard no_gradients;
    for (std::size_t l = 0; l < layers_.size(); ++l)
        for (std::size_t i = 0; i < modules_.size(); ++i) {
            const Pair& pair = layers_[l][i];
            if (!pair.a.defined()) continue;
            const LoraModule& m = modules_[i];
            torch::Tensor& weight = net.site_weight(static_cast<int>(l), m.site).make_dense();
            torch::Tensor band = weight.narrow(0, m.row_offset, m.rows);
            const torch::Tensor delta = torch::matmul(pair.b, pair.a) * scaling_;
            band.copy_((band.to(torch::kFloat32) + delta.to(band.device())).to(band.scalar_type()));
        }
}

void merge_peft_adapter(Transformer& net, const std::string& directory) {
    const PeftAdapter file = read_peft_adapter(directory);
    const auto& weights = net.site_weight(0, ProjectionSite::Qkv);
    LoraAdapter adapter(net.config(), file.lora, weights.device(), file.layers);
    adapter.assign(file.tensors, directory + "/" + kAdapterWeightsFileName);
    adapter.merge_into(net);
}

}  // namespace model
}  // namespace persona
