#include "persona/persona_vector.h"

#include "persona/errors.h"
#include "persona/model.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace persona {

namespace {

void check_dimensions(int layer_count, int hidden_size) {
    if (layer_count < 1 || hidden_size < 1)
        throw Error("a persona vector needs at least one layer and one hidden unit (got " +
                    std::to_string(layer_count) + " layers of " + std::to_string(hidden_size) + ")");
}

void check_samples(const SampleRefs& samples, const char* side, int layer_count, int hidden_size) {
    if (samples.empty()) throw Error(std::string("no ") + side + " samples");
    const std::size_t expected = std::size_t(layer_count) * std::size_t(hidden_size);
    for (std::size_t i = 0; i < samples.size(); ++i) {
        if (!samples[i]) throw Error(std::string(side) + " sample " + std::to_string(i) + " is missing");
        if (samples[i]->size() != expected)
            throw Error(std::string(side) + " sample " + std::to_string(i) + " has " +
                        std::to_string(samples[i]->size()) + " values; " + std::to_string(layer_count) +
                        " layers of " + std::to_string(hidden_size) + " need " + std::to_string(expected));
    }
}

std::vector<double> mean_of(const SampleRefs& samples, std::size_t size) {
    std::vector<double> sum(size, 0.0);
    for (const auto* sample : samples)
        for (std::size_t i = 0; i < size; ++i) sum[i] += (*sample)[i];
    for (auto& x : sum) x /= double(samples.size());
    return sum;
}

PersonaVector empty_vector(int layer_count, int hidden_size, std::size_t positives, std::size_t negatives,
                           const char* method) {
    PersonaVector vector;
    vector.layer_count = layer_count;
    vector.hidden_size = hidden_size;
    vector.values.assign(std::size_t(layer_count) * std::size_t(hidden_size), 0.0f);
    vector.provenance["method"] = method;
    vector.provenance["positive_samples"] = std::to_string(positives);
    vector.provenance["negative_samples"] = std::to_string(negatives);
    vector.provenance["sign_convention"] = "positive minus negative: +alpha brings the trait out";
    return vector;
}

// Mann-Whitney: the fraction of (positive, negative) pairs where the positive one is higher,
// ties counted half, from the ranks of the pooled values (average ranks for ties).
double auroc_of(const std::vector<double>& positive, const std::vector<double>& negative) {
    struct Scored {
        double value;
        bool positive;
    };
    std::vector<Scored> pooled;
    pooled.reserve(positive.size() + negative.size());
    for (double v : positive) pooled.push_back({v, true});
    for (double v : negative) pooled.push_back({v, false});
    std::sort(pooled.begin(), pooled.end(), [](const Scored& a, const Scored& b) { return a.value < b.value; });
    double positive_rank_sum = 0;
    for (std::size_t first = 0; first < pooled.size();) {
        std::size_t last = first;
        while (last + 1 < pooled.size() && pooled[last + 1].value == pooled[first].value) ++last;
        const double average_rank = (double(first) + double(last)) / 2.0 + 1.0;
        for (std::size_t i = first; i <= last; ++i)
            if (pooled[i].positive) positive_rank_sum += average_rank;
        first = last + 1;
    }
    const double np = double(positive.size()), nn = double(negative.size());
    return (positive_rank_sum - np * (np + 1) / 2.0) / (np * nn);
}

double mean(const std::vector<double>& values) {
    return std::accumulate(values.begin(), values.end(), 0.0) / double(values.size());
}

double sum_of_squared_deviations(const std::vector<double>& values, double centre) {
    double sum = 0;
    for (double v : values) sum += (v - centre) * (v - centre);
    return sum;
}

double cohens_d(const std::vector<double>& positive, const std::vector<double>& negative, double positive_mean,
                double negative_mean) {
    const double degrees_of_freedom = double(positive.size() + negative.size()) - 2.0;
    if (degrees_of_freedom < 1) return std::numeric_limits<double>::quiet_NaN();
    const double pooled_variance = (sum_of_squared_deviations(positive, positive_mean) +
                                    sum_of_squared_deviations(negative, negative_mean)) /
                                   degrees_of_freedom;
    const double difference = positive_mean - negative_mean;
    if (difference == 0) return 0.0;
    if (pooled_variance == 0) return difference > 0 ? std::numeric_limits<double>::infinity()
                                                    : -std::numeric_limits<double>::infinity();
    return difference / std::sqrt(pooled_variance);
}

}  // namespace

std::string PersonaVector::description() const { return trait.empty() ? "the vector" : "the '" + trait + "' vector"; }

std::optional<int> PersonaVector::suggested_layer() const {
    const auto found = provenance.find("suggested_layer");
    if (found == provenance.end()) return std::nullopt;
    try {
        std::size_t used = 0;
        const int layer = std::stoi(found->second, &used);
        if (used == found->second.size() && layer >= 1 && layer < layer_count) return layer;
    } catch (const std::exception&) {
    }
    return std::nullopt;
}

LayerView PersonaVector::layer(int l) const {
    if (l < 0 || l >= layer_count)
        throw Error("layer " + std::to_string(l) + " is outside 0.." + std::to_string(layer_count - 1) + " of " +
                    description());
    check_shape();
    return {values.data() + std::size_t(l) * std::size_t(hidden_size), hidden_size};
}

double PersonaVector::layer_norm(int l) const {
    const LayerView view = layer(l);
    double sum = 0;
    for (float x : view) sum += double(x) * x;
    return std::sqrt(sum);
}

void PersonaVector::check_shape() const {
    check_dimensions(layer_count, hidden_size);
    const std::size_t expected = std::size_t(layer_count) * std::size_t(hidden_size);
    if (values.size() != expected)
        throw Error(description() + " holds " + std::to_string(values.size()) + " values; " +
                    std::to_string(layer_count) + " layers of " + std::to_string(hidden_size) + " need " +
                    std::to_string(expected));
}

SampleRefs samples_of(const CaptureResult& capture, Aggregate aggregate) {
    const auto& rows = aggregate == Aggregate::ResponseMean ? capture.response_mean
                       : aggregate == Aggregate::PromptMean ? capture.prompt_mean
                                                            : capture.prompt_last;
    SampleRefs samples;
    samples.reserve(rows.size());
    for (const auto& row : rows) samples.push_back(&row);
    return samples;
}

PersonaVector mean_difference(const SampleRefs& positive, const SampleRefs& negative, int layer_count,
                              int hidden_size) {
    check_dimensions(layer_count, hidden_size);
    check_samples(positive, "positive", layer_count, hidden_size);
    check_samples(negative, "negative", layer_count, hidden_size);
    PersonaVector vector = empty_vector(layer_count, hidden_size, positive.size(), negative.size(), "mean_difference");
    const auto positive_mean = mean_of(positive, vector.values.size());
    const auto negative_mean = mean_of(negative, vector.values.size());
    for (std::size_t i = 0; i < vector.values.size(); ++i)
        vector.values[i] = static_cast<float>(positive_mean[i] - negative_mean[i]);
    return vector;
}

PersonaVector pca_of_differences(const SampleRefs& positive, const SampleRefs& negative, int layer_count,
                                 int hidden_size) {
    check_dimensions(layer_count, hidden_size);
    check_samples(positive, "positive", layer_count, hidden_size);
    check_samples(negative, "negative", layer_count, hidden_size);
    if (positive.size() != negative.size())
        throw Error("PCA of differences pairs samples one to one, but there are " + std::to_string(positive.size()) +
                    " positive and " + std::to_string(negative.size()) + " negative samples");
    PersonaVector vector =
        empty_vector(layer_count, hidden_size, positive.size(), negative.size(), "pca_of_differences");
    vector.provenance["pca"] =
        "top right singular vector of the uncentred paired differences, pointing along and scaled to "
        "the mean difference's component on it";

    const auto pairs = std::int64_t(positive.size());
    const auto hidden = std::int64_t(hidden_size);
    at::Tensor differences = at::empty({pairs, hidden}, at::kDouble);
    auto rows = differences.accessor<double, 2>();
    for (int l = 0; l < layer_count; ++l) {
        const std::size_t offset = std::size_t(l) * std::size_t(hidden_size);
        std::vector<double> mean_difference_at_layer(std::size_t(hidden_size), 0.0);
        for (std::int64_t p = 0; p < pairs; ++p) {
            const float* a = positive[std::size_t(p)]->data() + offset;
            const float* b = negative[std::size_t(p)]->data() + offset;
            for (std::int64_t i = 0; i < hidden; ++i) {
                const double d = double(a[i]) - double(b[i]);
                rows[p][i] = d;
                mean_difference_at_layer[std::size_t(i)] += d / double(pairs);
            }
        }
        const auto singular = at::linalg_svd(differences, /*full_matrices=*/false);
        const at::Tensor& singular_values = std::get<1>(singular);
        if (singular_values[0].item<double>() == 0.0) continue;  // every difference is zero
        const at::Tensor direction = std::get<2>(singular)[0].contiguous();
        const double* u = direction.data_ptr<double>();
        double along = 0;  // m . u
        for (std::int64_t i = 0; i < hidden; ++i) along += mean_difference_at_layer[std::size_t(i)] * u[i];
        // (m.u) u does not depend on u's sign, so aligning it with m comes for free; a
        // direction orthogonal to m gets length 0, the honest answer for "how far along it".
        for (std::int64_t i = 0; i < hidden; ++i) vector.values[offset + std::size_t(i)] = static_cast<float>(along * u[i]);
    }
    return vector;
}

double project(const float* h, const float* v, int n) {
    double dot = 0, norm = 0;
    for (int i = 0; i < n; ++i) {
        dot += double(h[i]) * v[i];
        norm += double(v[i]) * v[i];
    }
    return norm > 0 ? dot / std::sqrt(norm) : 0.0;
}

std::vector<LayerDiagnostics> diagnose(const PersonaVector& vector, const SampleRefs& positive,
                                       const SampleRefs& negative) {
    vector.check_shape();
    check_samples(positive, "positive", vector.layer_count, vector.hidden_size);
    check_samples(negative, "negative", vector.layer_count, vector.hidden_size);
    std::vector<LayerDiagnostics> result;
    result.reserve(std::size_t(vector.layer_count));
    std::vector<double> positive_projections(positive.size()), negative_projections(negative.size());
    for (int l = 0; l < vector.layer_count; ++l) {
        const std::size_t offset = std::size_t(l) * std::size_t(vector.hidden_size);
        const float* direction = vector.values.data() + offset;
        for (std::size_t i = 0; i < positive.size(); ++i)
            positive_projections[i] = project(positive[i]->data() + offset, direction, vector.hidden_size);
        for (std::size_t i = 0; i < negative.size(); ++i)
            negative_projections[i] = project(negative[i]->data() + offset, direction, vector.hidden_size);
        LayerDiagnostics layer;
        layer.layer = l;
        layer.vector_norm = vector.layer_norm(l);
        layer.positive_mean_projection = mean(positive_projections);
        layer.negative_mean_projection = mean(negative_projections);
        layer.effect_size = cohens_d(positive_projections, negative_projections, layer.positive_mean_projection,
                                     layer.negative_mean_projection);
        layer.auroc = auroc_of(positive_projections, negative_projections);
        result.push_back(layer);
    }
    return result;
}

int suggest_layer(const std::vector<LayerDiagnostics>& diagnostics) {
    int blocks = 0;
    for (const auto& d : diagnostics) blocks = std::max(blocks, d.layer);
    const int first_middle = (blocks + 3) / 4, last_middle = 3 * blocks / 4;
    const bool middle_exists = std::any_of(diagnostics.begin(), diagnostics.end(), [&](const LayerDiagnostics& d) {
        return d.layer >= 1 && d.layer >= first_middle && d.layer <= last_middle;
    });
    const auto candidate = [&](const LayerDiagnostics& d) {
        if (d.layer < 1) return false;
        return !middle_exists || (d.layer >= first_middle && d.layer <= last_middle);
    };
    const auto effect = [](const LayerDiagnostics& d) {
        return std::isnan(d.effect_size) ? -std::numeric_limits<double>::infinity() : d.effect_size;
    };
    const LayerDiagnostics* best = nullptr;
    for (const auto& d : diagnostics) {
        if (!candidate(d)) continue;
        const bool better = !best || d.auroc > best->auroc ||
                            (d.auroc == best->auroc &&
                             (effect(d) > effect(*best) || (effect(d) == effect(*best) && d.layer < best->layer)));
        if (better) best = &d;
    }
    if (!best) throw Error("no layer to suggest: the diagnostics hold no layer other than the embeddings (0)");
    return best->layer;
}

double calibrated_strength(double coefficient, double vector_norm, double mean_residual_norm) {
    if (!(vector_norm > 0)) throw Error("cannot calibrate a steering strength: the vector's norm is zero at this layer");
    if (!(mean_residual_norm > 0))
        throw Error("cannot calibrate a steering strength: the mean residual norm at this layer is not positive");
    return coefficient * vector_norm / mean_residual_norm;
}

double coefficient_for_strength(double strength, double vector_norm, double mean_residual_norm) {
    return strength / calibrated_strength(1.0, vector_norm, mean_residual_norm);
}

std::vector<double> mean_residual_norms(const CaptureResult& capture) {
    if (capture.prompt_last.empty()) throw Error("cannot measure residual norms: the capture holds no rows");
    check_dimensions(capture.layers, capture.hidden_size);
    SampleRefs rows = samples_of(capture, Aggregate::PromptLast);
    check_samples(rows, "captured", capture.layers, capture.hidden_size);
    std::vector<double> norms(std::size_t(capture.layers), 0.0);
    for (const auto* row : rows)
        for (int l = 0; l < capture.layers; ++l) {
            const float* h = row->data() + std::size_t(l) * std::size_t(capture.hidden_size);
            double sum = 0;
            for (int i = 0; i < capture.hidden_size; ++i) sum += double(h[i]) * h[i];
            norms[std::size_t(l)] += std::sqrt(sum) / double(rows.size());
        }
    return norms;
}

std::string vector_misfit(const PersonaVector& vector, int layers, int hidden_size) {
    if (vector.layer_count == layers + 1 && vector.hidden_size == hidden_size) return {};
    return "has shape [" + std::to_string(vector.layer_count) + ", " + std::to_string(vector.hidden_size) +
           "] but the model needs [" + std::to_string(layers + 1) + ", " + std::to_string(hidden_size) + "] (" +
           std::to_string(layers) + " blocks plus the embeddings, hidden size " + std::to_string(hidden_size) + ")";
}

void check_vector_fits(const PersonaVector& vector, int layers, int hidden_size, const std::string& source) {
    vector.check_shape();
    const std::string problem = vector_misfit(vector, layers, hidden_size);
    if (problem.empty()) return;
    if (!source.empty()) throw FileError(source, problem);
    throw Error(vector.description() + " " + problem);
}

void check_vector_fits(const PersonaVector& vector, const Model& model, const std::string& source) {
    check_vector_fits(vector, model.layer_count(), model.hidden_size(), source);
}

}  // namespace persona
