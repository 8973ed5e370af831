#pragma once
// Persona vectors and the arithmetic on them (docs/method.md steps 5-6, monitoring, steering
// strength). Layers use the hidden_states indexing throughout: index 0 is the embedding
// output, index l the output of block l-1, so a model with L blocks has L + 1 layers.
// File formats live in vector_files.h.
#include "persona/generation.h"

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace persona {

// Which per-sample activation a vector was made of (CaptureResult's three aggregates).
enum class Aggregate {
    ResponseMean,  // mean over the answer's tokens: the paper's choice
    PromptMean,    // mean over the prompt's tokens
    PromptLast,    // the prompt's last token
};
// The paper's names: "response_avg", "prompt_avg", "prompt_last".
const char* aggregate_name(Aggregate aggregate);
std::optional<Aggregate> aggregate_from_name(const std::string& name);
std::vector<std::string> aggregate_names();

class Model;

// Read-only view of one layer's hidden_size values (std::span is C++20).
struct LayerView {
    const float* values = nullptr;
    int size = 0;
    const float* begin() const { return values; }
    const float* end() const { return values + size; }
    float operator[](int i) const { return values[i]; }
};

struct PersonaVector {
    std::string trait;
    Aggregate aggregate = Aggregate::ResponseMean;
    int layer_count = 0;  // L + 1
    int hidden_size = 0;
    std::vector<float> values;  // [layer_count][hidden_size], row-major
    // Free-form facts about where the vector came from (model name and sha256, sample counts,
    // thresholds, app version, date, sign convention, ...): saved with the vector.
    std::map<std::string, std::string> provenance;

    // Throws persona::Error when l is outside 0..layer_count-1.
    LayerView layer(int l) const;
    double layer_norm(int l) const;
    // Throws persona::Error naming the problem when values does not hold
    // layer_count * hidden_size numbers or either is not positive.
    void check_shape() const;
    // "the 'evil' vector", for error messages.
    std::string description() const;
    // The layer extraction suggested (provenance "suggested_layer") when it is one of the
    // vector's layers 1..L; absent otherwise.
    std::optional<int> suggested_layer() const;
};

// One sample: layer_count * hidden_size values in the layout above, e.g. a row of
// CaptureResult::response_mean. Pointers, because captures are large and are not copied.
using SampleRefs = std::vector<const std::vector<float>*>;

// The rows of one aggregate of a capture, ready for mean_difference or diagnose.
SampleRefs samples_of(const CaptureResult& capture, Aggregate aggregate);

// Per layer, mean(positive) - mean(negative) (docs/method.md step 6), accumulated in double.
// trait is left empty and aggregate at its default: the caller knows them.
// Throws persona::Error when a side is empty or a sample has the wrong size.
PersonaVector mean_difference(const SampleRefs& positive, const SampleRefs& negative, int layer_count,
                              int hidden_size);

// Per layer, the first principal direction of the paired differences positive[i] - negative[i]
// (positive and negative must pair up one to one: same question, same instruction pair).
// - The principal direction is that of the uncentred second moment of the differences (their
//   top right singular vector), as llama.cpp's cvector-generator computes it. Centring first
//   (repeng's choice) would remove the shift that all pairs share, which is the trait itself
//   when every pair moves the same way.
// - Its sign is chosen so that it points along the mean difference m.
// - It is scaled to m's component along it: v = (m . u) u. So |v| <= |m|, and at the same
//   alpha, steering with v moves activations along u exactly as far as steering with m does.
// A layer where every difference is zero gets a zero vector.
// Throws persona::Error when the sides differ in size, are empty, or a sample has the wrong size.
PersonaVector pca_of_differences(const SampleRefs& positive, const SampleRefs& negative, int layer_count,
                                 int hidden_size);

// Projection of h on the unit vector along v: h . v / |v| (docs/method.md: monitoring), in double.
// 0 when v is zero: there is no direction to project on.
double project(const float* h, const float* v, int n);

// How well one layer of a vector tells the two sides apart: each sample's activation at that
// layer is projected on the layer's unit vector.
struct LayerDiagnostics {
    int layer = 0;
    double vector_norm = 0;
    // Cohen's d of positive vs negative projections, with the pooled standard deviation.
    // Positive when positive samples project higher. +-infinity when both sides have no spread
    // but different means, 0 when the means are equal, NaN with fewer than 3 samples in all.
    double effect_size = 0;
    // P(a positive sample projects higher than a negative one), ties counted half:
    // 1 = perfect separation, 0.5 = none, below 0.5 = the vector points the wrong way.
    double auroc = 0.5;
    double positive_mean_projection = 0;
    double negative_mean_projection = 0;
};

// One entry per layer 0..L. Throws persona::Error for an empty side or a sample of the wrong size.
std::vector<LayerDiagnostics> diagnose(const PersonaVector& vector, const SampleRefs& positive,
                                       const SampleRefs& negative);

// The layer to start steering with, among the middle half of the blocks (layers
// ceil(L/4) .. floor(3L/4); all of 1..L when that range is empty): the highest AUROC; among
// equal AUROCs (in-sample they often saturate at 1.0 on every layer) the largest effect size;
// then the lowest layer. A NaN effect size ranks below every number.
// Why the middle: the paper's best steering layers were there (20 of 28 blocks, 16 of 32), and
// early layers still mostly encode the tokens themselves, so they separate answers that merely
// use different words: on SmolLM2 with two fixed answers, layer 1 had the largest effect size.
// Layer 0 (the embeddings) is never suggested. A steering sweep is the final judge (docs/method.md).
// Throws persona::Error when the diagnostics hold no layer other than 0.
int suggest_layer(const std::vector<LayerDiagnostics>& diagnostics);

// Steering strength on a scale comparable across layers and models: the added vector's length
// relative to a typical residual-stream activation at that layer,
//   strength = coefficient * |v_l| / mean |h_l|.
// Throws persona::Error when a norm is not positive.
double calibrated_strength(double coefficient, double vector_norm, double mean_residual_norm);
// The inverse: the coefficient (alpha) that gives `strength`.
double coefficient_for_strength(double strength, double vector_norm, double mean_residual_norm);

// Per layer 0..L, the mean over rows of |prompt_last| at that layer.
// Why prompt_last: it is a real single-token activation, at the very position "response"
// steering starts at. The norm of a mean over tokens is smaller than a typical token's norm,
// because averaging cancels what varies between tokens; and prompt_mean is dominated by the
// first token, whose norm is outsized (SmolLM2-135M, layers 15-25: about 25,000 against
// 130-470 for the other tokens of a chat prompt).
// Throws persona::Error when the capture holds no rows.
std::vector<double> mean_residual_norms(const CaptureResult& capture);

// Does this vector fit a model of `layers` blocks and `hidden_size` ([layers + 1, hidden_size],
// docs/method.md's indexing)? "" when it does, else why not, as "has shape [a, b] but the model
// needs [c, d] (...)". The one check the GUI, the CLI and core make.
std::string vector_misfit(const PersonaVector& vector, int layers, int hidden_size);
// Throws Error starting with the vector's description, or FileError naming `source` (the file
// the vector came from) when it is given.
void check_vector_fits(const PersonaVector& vector, int layers, int hidden_size, const std::string& source = {});
void check_vector_fits(const PersonaVector& vector, const Model& model, const std::string& source = {});

}  // namespace persona
