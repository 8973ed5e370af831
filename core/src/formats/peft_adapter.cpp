#include "formats/peft_adapter.h"

#include "io/atomic_file.h"
#include "io/json_file.h"
#include "io/json_reader.h"
#include "persona/errors.h"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace persona {

namespace {

namespace fs = std::filesystem;

std::string joined(const std::string& directory, const char* name) { return (fs::path(directory) / name).string(); }

}  // namespace

PeftAdapter read_peft_adapter(const std::string& directory) {
    std::error_code error;
    if (!fs::is_directory(directory, error))
        throw FileError(directory, "is not an adapter folder (expected a folder with " + std::string(kAdapterConfigFileName) +
                                       " and " + kAdapterWeightsFileName + ")");
    const std::string config_path = joined(directory, kAdapterConfigFileName);
    const nlohmann::json config = detail::read_json_file(config_path, 1'000'000);
    // PEFT writes null for unset fields and many keys this reader has no use for.
    detail::JsonObjectReader reader(config, "", config_path, detail::JsonNull::IsAbsent);
    PeftAdapter adapter;
    const auto peft_type = reader.optional_string("peft_type");
    if (peft_type && *peft_type != "LORA") reader.fail("peft_type is '" + *peft_type + "'; only LORA adapters can be read");
    adapter.lora.rank = static_cast<int>(reader.integer("r", 1, 65536));
    adapter.lora.alpha = reader.number("lora_alpha", 1e-9, 1e9);
    adapter.lora.rslora = reader.optional_boolean("use_rslora").value_or(false);
    adapter.lora.dropout = reader.optional_number("lora_dropout").value_or(0.0);
    adapter.base_model = reader.optional_string("base_model_name_or_path").value_or("");
    if (const nlohmann::json* targets = reader.find("target_modules")) {
        if (targets->is_string())
            reader.fail("target_modules is the pattern '" + targets->get<std::string>() +
                        "'; only a list of module names can be read");
        adapter.lora.target_modules = reader.strings("target_modules");
    }
    if (reader.find("layers_to_transform")) {
        const nlohmann::json& layers = *reader.find("layers_to_transform");
        if (layers.is_number_integer()) adapter.layers = {layers.get<int>()};
        else
            for (long long layer : reader.integers("layers_to_transform", 0, 100000)) adapter.layers.push_back(static_cast<int>(layer));
    }
    if (reader.optional_boolean("use_dora").value_or(false)) reader.fail("use_dora is true; DoRA adapters cannot be read");
    if (reader.optional_boolean("fan_in_fan_out").value_or(false)) reader.fail("fan_in_fan_out is true; only Linear layers (false) can be read");
    if (const auto bias = reader.optional_string("bias"); bias && *bias != "none")
        reader.fail("bias is '" + *bias + "'; only adapters without trained biases (\"none\") can be read");
    for (const char* key : {"rank_pattern", "alpha_pattern"})
        if (const nlohmann::json* pattern = reader.find(key); pattern && !pattern->empty())
            reader.fail(std::string(key) + " gives some modules their own rank or alpha; this reader takes one for all");
    if (const nlohmann::json* saved = reader.find("modules_to_save"); saved && !saved->empty())
        reader.fail("modules_to_save lists whole modules to replace; only LoRA matrices can be read");

    const auto weights = SafetensorsFile::open(joined(directory, kAdapterWeightsFileName));
    for (const auto& info : weights->tensors())
        adapter.tensors.push_back({info.name, info.shape, weights->read_floats(info)});
    return adapter;
}

void write_peft_adapter(const std::string& directory, const LoraSettings& lora, const std::string& base_model,
                        const std::vector<SafetensorsFloatTensor>& tensors) {
    std::error_code error;
    fs::create_directories(directory, error);
    if (error) throw FileError(directory, "cannot create the adapter folder: " + error.message());
    // The fields PEFT's LoraConfig reads back; the rest keep PEFT's defaults.
    const nlohmann::json config = {
        {"peft_type", "LORA"},
        {"task_type", "CAUSAL_LM"},
        {"base_model_name_or_path", base_model},
        {"r", lora.rank},
        {"lora_alpha", lora.alpha},
        {"use_rslora", lora.rslora},
        {"lora_dropout", lora.dropout},
        {"target_modules", lora.target_modules},
        {"bias", "none"},
        {"fan_in_fan_out", false},
        {"inference_mode", true},
        {"init_lora_weights", true},
        {"use_dora", false},
        {"modules_to_save", nullptr},
        {"layers_to_transform", nullptr},
    };
    write_safetensors(joined(directory, kAdapterWeightsFileName), tensors, {{"format", "pt"}});
    detail::write_file_atomically(joined(directory, kAdapterConfigFileName), config.dump(2) + "\n");
}

}  // namespace persona
