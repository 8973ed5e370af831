#pragma once
// The names a control-vector GGUF uses, shared by its writer and its reader.
namespace persona {

inline constexpr const char* kControlVectorArchitecture = "controlvector";
inline constexpr const char* kDirectionPrefix = "direction.";
// Our own keys, which llama.cpp ignores: trait, aggregate, coefficient, block_count, ...
inline constexpr const char* kControlVectorKeyPrefix = "persona_workbench.";
inline constexpr const char* kControlVectorProvenancePrefix = "persona_workbench.provenance.";
inline constexpr const char* kControlVectorLayerConvention =
    "direction.N is added to the output of block N (0-based), i.e. hidden_states[N+1]";

}  // namespace persona
