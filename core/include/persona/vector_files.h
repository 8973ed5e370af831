#pragma once
// Persona vectors on disk: our own safetensors file, llama.cpp / repeng control-vector GGUFs, and
// the persona_vectors repository's PyTorch .pt files.
#include "persona/persona_vector.h"

#include <string>

namespace persona {

// --- Vector files (safetensors) ----------------------------------------------------------------
// One F32 tensor "vector" of shape [L+1, hidden] in hidden_states indexing (what
// persona-cli generate --steer FILE:LAYER:ALPHA reads), plus string metadata:
//   schema            "persona-workbench/vector"
//   schema_version    "1"
//   trait             the trait's name
//   aggregate         "response_avg" | "prompt_avg" | "prompt_last"
//   layer_convention  kVectorLayerConvention
//   writer            "persona-workbench VERSION"
//   provenance.KEY    one entry per PersonaVector::provenance key
constexpr const char* kVectorSchema = "persona-workbench/vector";
constexpr int kVectorSchemaVersion = 1;
constexpr const char* kVectorLayerConvention = "hidden_states: index 0 = embeddings, l = output of block l-1";

// Atomic (temporary file, fsync, rename). A path ending in .pt or .pth gets the PyTorch format
// instead: what torch.save writes for a float32 [L+1, hidden] tensor, so that
// torch.load(path, weights_only=True) gives the same values bit for bit and the persona_vectors
// scripts can steer and project with it; a .pt file holds the tensor only (no trait, aggregate
// or provenance). Throws persona::Error for a malformed vector and FileError naming `path` for
// I/O failures.
void write_vector_file(const std::string& path, const PersonaVector& vector);

// Reads our files, and also a bare [L+1, hidden] tensor without our metadata (e.g.
// persona_vectors' torch.save output converted to safetensors): then the aggregate is taken
// from a name like "evil_prompt_last_diff" (response_avg when the name says nothing), the trait
// from the file name, and provenance["source"] says so. F16 and BF16 tensors are widened.
// A file named *.pt or *.pth is read as the persona_vectors repository writes its vectors:
// torch.save of one [L+1, hidden] tensor (float32, bfloat16, float16 or float64), read
// without executing its pickle: anything but a saved tensor is refused (docs/formats.md).
// Throws FileError naming the file for a wrong shape or dtype, several unnamed tensors, a
// newer schema version, an unknown aggregate, or another layer convention.
PersonaVector read_vector_file(const std::string& path);

// True for a path read and written as a PyTorch file: *.pt or *.pth, in any case.
bool is_torch_vector_path(const std::string& path);

// --- Control vectors (llama.cpp / repeng GGUF) ---------------------------------------------------
// llama.cpp adds tensor direction.N to the output of 0-based block N, which is hidden_states[N+1].
// It refuses a file holding direction.0 and never steers block 0's output (its buffer starts at
// block 1). So exporting writes
//   direction.N = coefficient * values[N+1]   for N = 1 .. L-1
// i.e. hidden_states[2..L]; hidden_states[0] (embeddings) and [1] (block 0's output) cannot be
// expressed and are left out. Metadata: general.architecture = "controlvector",
// controlvector.model_hint, controlvector.layer_count = the number of direction tensors (L-1),
// as llama.cpp's cvector-generator and repeng write it (llama.cpp's loader ignores it), plus
// persona_workbench.* keys that llama.cpp ignores and import_control_vector uses: trait,
// aggregate, coefficient, block_count = L, layer_convention, writer, provenance.KEY.
// Throws persona::Error for a vector with fewer than 3 layers (no block beyond 0 to steer).
void export_control_vector(const std::string& path, const PersonaVector& vector, double coefficient,
                           const std::string& model_hint);

// The inverse mapping: direction.N -> values[N+1], every other layer 0 (values[0] always).
// direction.0, which llama.cpp would refuse, maps to values[1] as the convention says.
// The values are coefficient * v as stored; provenance comes back from persona_workbench.*
// keys, with the coefficient and model hint added when the file has them. The block count L comes from expected_block_count when positive (the model to steer),
// else persona_workbench.block_count, else the highest direction index + 1.
// Throws FileError naming the file when it is not a control vector (general.architecture),
// a tensor is not direction.<number>, not F32, not 1-D, not expected_hidden long, or lies
// beyond the block count.
PersonaVector import_control_vector(const std::string& path, int expected_hidden, int expected_block_count = 0);

// Reads the direction for one layer from a vector file: safetensors holding one float tensor
// of shape [L+1, hidden] (the persona_vectors layout, hidden_states indexing) or [hidden] (a
// single direction, as repeng writes). Throws FileError naming the file when the shape does not
// fit the model.
std::vector<float> read_layer_vector(const std::string& path, int layer, int layer_count, int hidden_size);

}  // namespace persona
