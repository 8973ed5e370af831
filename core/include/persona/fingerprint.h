#pragma once
// What identifies a model's content: extraction checkpoints, project runs and vector provenance
// all name the model by it, so two fine-tunes of one shape never pass for each other.
#include <string>
#include <string_view>

namespace persona {

// SHA-256 of a file's bytes, lowercase hex. Throws FileError naming the file it cannot read.
std::string file_sha256(const std::string& path);

// SHA-256 of bytes in memory, lowercase hex.
std::string text_sha256(std::string_view bytes);

// A model's fingerprint, lowercase hex SHA-256: for a GGUF file, the file's own SHA-256; for a
// Hugging Face checkpoint folder, the SHA-256 of the list "name NUL sha256 LF" of the files the
// loader reads (config and tokenizer JSON, *.safetensors, tokenizer.model), sorted by name.
// Each file's hash is cached by absolute path, size and modification time in
// fingerprint_cache_path(), so opening a 1 GB model again does not read it again.
std::string model_fingerprint(const std::string& path);

// $XDG_CACHE_HOME/persona-workbench/fingerprints.json, else ~/.cache/...
std::string fingerprint_cache_path();

}  // namespace persona
