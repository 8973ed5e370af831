#pragma once
// What persona-cli serve reads from a request: the server's options, the vectors it serves and
// the checked generation a chat or completions body asks for (docs/serve.md). Any problem is a
// RequestError naming the field, which the server answers as OpenAI does.
#include "persona/generation.h"
#include "persona/model_facts.h"
#include "persona/paths.h"
#include "persona/persona_vector.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace persona_cli {

struct ServeOptions {
    std::string model = persona::default_model_path();
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string api_key;                   // else $PERSONA_API_KEY
    std::vector<std::string> projects;     // their vectors are served as "PROJECT/KEY"
    std::vector<std::string> vector_dirs;  // vector files under these folders, by relative path
    std::size_t max_body_bytes = 1 << 20;
    int max_tokens = 2048;
    int max_queue = 16;  // requests queued on the engine or generating; more get 429
    int max_rows = 8;    // requests generating together in one batch; the others wait their turn
    int request_timeout_seconds = 600;  // from arrival, waiting included; then the generation stops
};

// A request error: the HTTP status, the message and the request field it concerns.
struct RequestError {
    int status;
    std::string message;
    std::string param;
};

nlohmann::json error_body(const RequestError& e);

bool is_loopback(const std::string& host);

// Compares without an early exit, so response times do not tell how much of a key was right.
bool same_key(const std::string& given, const std::string& expected);

class VectorCatalog {
public:
    explicit VectorCatalog(const ServeOptions& options);
    // Project vectors by name; files by a path relative to a served folder, which must stay inside it.
    // `field` names the request field in errors.
    persona::PersonaVector find(const std::string& name, const std::string& field) const;
    nlohmann::json list() const;

private:
    std::map<std::string, persona::PersonaVector> vectors_;
    std::vector<std::filesystem::path> roots_;
};

template <typename T>
T field(const nlohmann::json& body, const char* name, T fallback) {
    const auto it = body.find(name);
    if (it == body.end() || it->is_null()) return fallback;
    try {
        return it->get<T>();
    } catch (const nlohmann::json::exception&) {
        throw RequestError{400, std::string("field '") + name + "' has the wrong type", name};
    }
}

// The generation a request asks for, checked before it reaches the engine, and the directions
// its tokens are projected on (the extension field `probe`; empty: none).
struct ParsedRequest {
    persona::GenerationRow row;
    persona::ProjectionProbe probe;
};
ParsedRequest parse_request(const nlohmann::json& body, bool chat, const VectorCatalog& catalog,
                            const persona::ModelFacts& facts, const ServeOptions& options);

}  // namespace persona_cli
