#include "serve_request.h"

#include "persona/errors.h"
#include "persona/project.h"
#include "persona/vector_files.h"

#include <algorithm>
#include <cmath>

namespace persona_cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::vector<persona::Steering> parse_steering(const json& body, const VectorCatalog& catalog, const persona::ModelFacts& facts) {
    std::vector<persona::Steering> out;
    const auto it = body.find("steering");
    if (it == body.end() || it->is_null()) return out;
    if (!it->is_array()) throw RequestError{400, "'steering' must be a list", "steering"};
    for (const json& entry : *it) {
        if (!entry.is_object()) throw RequestError{400, "each 'steering' entry must be an object", "steering"};
        persona::Steering steering;
        steering.layer = field<int>(entry, "layer", -1);
        if (steering.layer < 0 || steering.layer > facts.layers)
            throw RequestError{400, "steering layer must be 0.." + std::to_string(facts.layers), "steering.layer"};
        const json& vector = entry.value("vector", json());
        if (vector.is_string()) {
            const persona::PersonaVector found = catalog.find(vector.get<std::string>(), "steering.vector");
            if (found.hidden_size != facts.hidden_size || found.layer_count != facts.layers + 1)
                throw RequestError{400, "vector '" + vector.get<std::string>() + "' has " + std::to_string(found.layer_count) +
                                            " x " + std::to_string(found.hidden_size) + " values; the model needs " +
                                            std::to_string(facts.layers + 1) + " x " + std::to_string(facts.hidden_size),
                                   "steering.vector"};
            const persona::LayerView layer = found.layer(steering.layer);
            steering.vector.assign(layer.begin(), layer.end());
        } else if (vector.is_array() && vector.size() == static_cast<std::size_t>(facts.hidden_size)) {
            for (const json& value : vector) {
                if (!value.is_number()) throw RequestError{400, "an inline vector holds only numbers", "steering.vector"};
                steering.vector.push_back(value.get<float>());
            }
        } else {
            throw RequestError{400, "steering 'vector' must name a served vector or list " +
                                        std::to_string(facts.hidden_size) + " numbers", "steering.vector"};
        }
        const std::string op = field<std::string>(entry, "op", "add");
        const auto operation = persona::steer_operation_from_name(op);
        if (!operation) throw RequestError{400, "steering op must be add, ablate or cap", "steering.op"};
        steering.operation = *operation;
        double norm = 0;
        for (const float v : steering.vector) norm += double(v) * v;
        norm = std::sqrt(norm);
        if (entry.contains("strength")) {
            const double strength = field<double>(entry, "strength", 0);
            if (facts.typical_residual_norms.size() <= static_cast<std::size_t>(steering.layer) || norm == 0)
                throw RequestError{400, "'strength' needs a non-zero vector and the model's measured norms; give 'coefficient'",
                                   "steering.strength"};
            const double typical = facts.typical_residual_norms[static_cast<std::size_t>(steering.layer)];
            // A cap's strength is the most projection in typical activation lengths, as in the Steering tab.
            steering.alpha = static_cast<float>(steering.operation == persona::SteerOperation::Cap
                                                    ? strength * typical
                                                    : persona::coefficient_for_strength(strength, norm, typical));
        } else {
            steering.alpha = field<float>(entry, "coefficient", 0.0f);
        }
        const std::string positions = field<std::string>(entry, "positions", "response");
        const auto parsed = persona::steer_positions_from_name(positions);
        if (!parsed) throw RequestError{400, "steering positions '" + positions + "' unknown", "steering.positions"};
        steering.positions = *parsed;
        steering.preserve_norm = field<bool>(entry, "preserve_norm", false);
        if (!std::isfinite(steering.alpha)) throw RequestError{400, "steering coefficient is not finite", "steering.coefficient"};
        out.push_back(std::move(steering));
    }
    return out;
}

// "probe": {"vector": NAME, "layers": [...]} (a served vector's rows; all layers when omitted)
// or {"layers": [...], "directions": [[...], ...]} (one inline direction per layer).
persona::ProjectionProbe parse_probe(const json& body, const VectorCatalog& catalog, const persona::ModelFacts& facts) {
    persona::ProjectionProbe probe;
    const auto it = body.find("probe");
    if (it == body.end() || it->is_null()) return probe;
    if (!it->is_object()) throw RequestError{400, "'probe' must be an object", "probe"};
    const json& spec = *it;
    if (spec.contains("layers")) probe.layers = field<std::vector<int>>(spec, "layers", {});
    for (const int layer : probe.layers)
        if (layer < 0 || layer > facts.layers)
            throw RequestError{400, "probe layers must be 0.." + std::to_string(facts.layers), "probe.layers"};
    const json& vector = spec.value("vector", json());
    if (vector.is_string()) {
        const persona::PersonaVector found = catalog.find(vector.get<std::string>(), "probe.vector");
        if (found.hidden_size != facts.hidden_size || found.layer_count != facts.layers + 1)
            throw RequestError{400, "vector '" + vector.get<std::string>() + "' does not fit the served model", "probe.vector"};
        if (!spec.contains("layers"))
            for (int layer = 0; layer <= facts.layers; ++layer) probe.layers.push_back(layer);
        for (const int layer : probe.layers) {
            const persona::LayerView row = found.layer(layer);
            probe.directions.emplace_back(row.begin(), row.end());
        }
        return probe;
    }
    const auto directions = spec.find("directions");
    if (directions == spec.end() || !directions->is_array() || directions->size() != probe.layers.size())
        throw RequestError{400, "'probe' needs a served 'vector' or one entry of 'directions' per layer", "probe.directions"};
    for (const json& direction : *directions) {
        if (!direction.is_array() || direction.size() != static_cast<std::size_t>(facts.hidden_size))
            throw RequestError{400, "each probe direction lists " + std::to_string(facts.hidden_size) + " numbers",
                               "probe.directions"};
        std::vector<float> values;
        for (const json& value : direction) {
            if (!value.is_number()) throw RequestError{400, "a probe direction holds only numbers", "probe.directions"};
            values.push_back(value.get<float>());
        }
        probe.directions.push_back(std::move(values));
    }
    return probe;
}

}  // namespace

json error_body(const RequestError& e) {
    const char* type = e.status == 401   ? "authentication_error"
                       : e.status == 408 ? "timeout_error"
                       : e.status == 429 ? "rate_limit_error"
                                         : "invalid_request_error";
    return {{"error", {{"message", e.message}, {"type", type},
                       {"param", e.param.empty() ? json(nullptr) : json(e.param)}}}};
}

bool is_loopback(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

bool same_key(const std::string& given, const std::string& expected) {
    unsigned char difference = given.size() == expected.size() ? 0 : 1;
    for (std::size_t i = 0; i < given.size(); ++i)
        difference |= static_cast<unsigned char>(given[i] ^ expected[i % std::max<std::size_t>(expected.size(), 1)]);
    return difference == 0;
}

VectorCatalog::VectorCatalog(const ServeOptions& options) {
    for (const auto& path : options.projects) {
        const persona::Project project = persona::read_project(path);
        for (const auto& [key, vector] : project.vectors) vectors_[project.name + "/" + key] = vector;
    }
    for (const auto& dir : options.vector_dirs) {
        std::error_code error;
        const fs::path root = fs::canonical(dir, error);
        if (error || !fs::is_directory(root)) throw persona::FileError(dir, "is not a folder");
        roots_.push_back(root);
    }
}

persona::PersonaVector VectorCatalog::find(const std::string& name, const std::string& field) const {
    if (const auto it = vectors_.find(name); it != vectors_.end()) return it->second;
    const fs::path relative(name);
    if (relative.is_absolute() || name.find("..") != std::string::npos)
        throw RequestError{400, "vector '" + name + "': only names of served vectors are accepted, not paths "
                                "leaving a served folder", field};
    for (const auto& root : roots_) {
        std::error_code error;
        const fs::path resolved = fs::canonical(root / relative, error);
        if (error) continue;
        const auto [end, _] = std::mismatch(root.begin(), root.end(), resolved.begin(), resolved.end());
        if (end != root.end() || !fs::is_regular_file(resolved)) continue;  // a symlink out of the folder
        try {
            return persona::read_vector_file(resolved.string());
        } catch (const persona::Error& e) {  // a damaged file: the request's problem to hear about
            throw RequestError{400, e.what(), field};
        }
    }
    throw RequestError{400, "vector '" + name + "' is not served (GET /v1/vectors lists them)", field};
}

json VectorCatalog::list() const {
    json out = json::array();
    for (const auto& [name, vector] : vectors_)
        out.push_back({{"id", name}, {"trait", vector.trait}, {"layers", vector.layer_count},
                       {"hidden_size", vector.hidden_size}, {"model", vector.provenance.count("model") ? vector.provenance.at("model") : ""},
                       {"suggested_layer", vector.provenance.count("suggested_layer") ? vector.provenance.at("suggested_layer") : ""}});
    for (const auto& root : roots_)
        for (const auto& entry : fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied)) {
            const std::string extension = entry.path().extension().string();
            if (!entry.is_symlink() && entry.is_regular_file() &&
                (extension == ".safetensors" || persona::is_torch_vector_path(entry.path().string())))
                out.push_back({{"id", fs::relative(entry.path(), root).string()}, {"file", true}});
        }
    return out;
}

ParsedRequest parse_request(const json& body, bool chat, const VectorCatalog& catalog, const persona::ModelFacts& facts,
                            const ServeOptions& options) {
    ParsedRequest parsed;
    persona::GenerationRow& row = parsed.row;
    if (chat) {
        const auto messages = body.find("messages");
        if (messages == body.end() || !messages->is_array() || messages->empty())
            throw RequestError{400, "'messages' must be a non-empty list", "messages"};
        for (const json& m : *messages) {
            if (!m.is_object() || !m.value("role", json()).is_string() || !m.value("content", json()).is_string())
                throw RequestError{400, "each message needs a string 'role' and 'content'", "messages"};
            row.messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
        }
    }
    auto& s = row.sampling;
    s.max_new_tokens = field<int>(body, "max_tokens", field<int>(body, "max_completion_tokens", 256));
    if (s.max_new_tokens < 0 || s.max_new_tokens > options.max_tokens)
        throw RequestError{400, "max_tokens must be 0.." + std::to_string(options.max_tokens), "max_tokens"};
    s.temperature = field<float>(body, "temperature", 1.0f);
    s.top_p = field<float>(body, "top_p", 1.0f);
    s.seed = field<std::uint64_t>(body, "seed", 0);
    s.stop_at_eos = !field<bool>(body, "ignore_eos", false);  // vLLM's extension: exactly max_tokens tokens
    if (!(s.temperature >= 0 && s.temperature <= 2)) throw RequestError{400, "temperature must be 0..2", "temperature"};
    if (!(s.top_p > 0 && s.top_p <= 1)) throw RequestError{400, "top_p must be in (0, 1]", "top_p"};
    s.top_k = field<int>(body, "top_k", 0);  // vLLM's extension; 0: no cut
    if (s.top_k < 0) throw RequestError{400, "top_k must be 0 or more", "top_k"};
    if (const auto stop = body.find("stop"); stop != body.end() && !stop->is_null()) {
        if (stop->is_string()) s.stop_strings.push_back(stop->get<std::string>());
        else s.stop_strings = field<std::vector<std::string>>(body, "stop", {});
    }
    if (field<int>(body, "n", 1) != 1) throw RequestError{400, "only n = 1 is served", "n"};
    if (chat) {  // logprobs: true with top_logprobs 0..20
        const bool wanted = field<bool>(body, "logprobs", false);
        const int top = field<int>(body, "top_logprobs", 0);
        if (top < 0 || top > 20) throw RequestError{400, "top_logprobs must be 0..20", "top_logprobs"};
        if (top > 0 && !wanted) throw RequestError{400, "top_logprobs needs \"logprobs\": true", "top_logprobs"};
        s.top_logprobs = wanted ? top : -1;
    } else {  // the completions API's logprobs: the number of alternatives, 0..5
        s.top_logprobs = field<int>(body, "logprobs", -1);
        if (s.top_logprobs < -1 || s.top_logprobs > 5) throw RequestError{400, "logprobs must be 0..5", "logprobs"};
    }
    row.steering = parse_steering(body, catalog, facts);
    parsed.probe = parse_probe(body, catalog, facts);
    return parsed;
}

}  // namespace persona_cli
