// persona-cli serve: the engine behind an OpenAI-compatible HTTP API (chat completions and
// completions, streamed or not; models; health), where every request may carry its own
// steering in the extension field `steering` (docs/serve.md). Requests run one after another on
// the engine thread; a client that goes away cancels its own job.
#include "cli_commands.h"

#include "persona/errors.h"
#include "persona/generation.h"
#include "persona/model.h"
#include "persona/paths.h"
#include "persona/persona_vector.h"
#include "persona/project.h"
#include "persona/tokenizer.h"
#include "persona/vector_files.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace persona_cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

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
    int request_timeout_seconds = 600;  // from arrival, waiting included; then the generation stops
};

// A request error: the HTTP status, the message and the request field it concerns.
struct RequestError {
    int status;
    std::string message;
    std::string param;
};

json error_body(const RequestError& e) {
    const char* type = e.status == 401   ? "authentication_error"
                       : e.status == 408 ? "timeout_error"
                       : e.status == 429 ? "rate_limit_error"
                                         : "invalid_request_error";
    return {{"error", {{"message", e.message}, {"type", type},
                       {"param", e.param.empty() ? json(nullptr) : json(e.param)}}}};
}

bool is_loopback(const std::string& host) { return host == "127.0.0.1" || host == "localhost" || host == "::1"; }

// Compares without an early exit, so response times do not tell how much of a key was right.
bool same_key(const std::string& given, const std::string& expected) {
    unsigned char difference = given.size() == expected.size() ? 0 : 1;
    for (std::size_t i = 0; i < given.size(); ++i)
        difference |= static_cast<unsigned char>(given[i] ^ expected[i % std::max<std::size_t>(expected.size(), 1)]);
    return difference == 0;
}

class VectorCatalog {
public:
    VectorCatalog(const ServeOptions& options) {
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

    // Project vectors by name; files by a path relative to a served folder, which must stay inside it.
    persona::PersonaVector find(const std::string& name) const {
        if (const auto it = vectors_.find(name); it != vectors_.end()) return it->second;
        const fs::path relative(name);
        if (relative.is_absolute() || name.find("..") != std::string::npos)
            throw RequestError{400, "vector '" + name + "': only names of served vectors are accepted, not paths "
                                    "leaving a served folder", "steering.vector"};
        for (const auto& root : roots_) {
            std::error_code error;
            const fs::path resolved = fs::canonical(root / relative, error);
            if (error) continue;
            const auto [end, _] = std::mismatch(root.begin(), root.end(), resolved.begin(), resolved.end());
            if (end != root.end() || !fs::is_regular_file(resolved)) continue;  // a symlink out of the folder
            return persona::read_vector_file(resolved.string());
        }
        throw RequestError{400, "vector '" + name + "' is not served (GET /v1/vectors lists them)", "steering.vector"};
    }

    json list() const {
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

private:
    std::map<std::string, persona::PersonaVector> vectors_;
    std::vector<fs::path> roots_;
};

template <typename T>
T field(const json& body, const char* name, T fallback) {
    const auto it = body.find(name);
    if (it == body.end() || it->is_null()) return fallback;
    try {
        return it->get<T>();
    } catch (const json::exception&) {
        throw RequestError{400, std::string("field '") + name + "' has the wrong type", name};
    }
}

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
            const persona::PersonaVector found = catalog.find(vector.get<std::string>());
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
        if (!std::isfinite(steering.alpha)) throw RequestError{400, "steering coefficient is not finite", "steering.coefficient"};
        out.push_back(std::move(steering));
    }
    return out;
}

// The generation a request asks for, checked before it reaches the engine.
persona::GenerationRow parse_request(const json& body, bool chat, const VectorCatalog& catalog,
                                     const persona::ModelFacts& facts, const ServeOptions& options) {
    persona::GenerationRow row;
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
    if (!(s.temperature >= 0 && s.temperature <= 2)) throw RequestError{400, "temperature must be 0..2", "temperature"};
    if (!(s.top_p > 0 && s.top_p <= 1)) throw RequestError{400, "top_p must be in (0, 1]", "top_p"};
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
    return row;
}

const char* finish_reason(persona::StopReason reason) {
    return reason == persona::StopReason::MaxTokens ? "length" : "stop";
}

// OpenAI's logprobs entry of one generated token: its text (with its bytes, since a token may
// end inside a character), log-probability and the step's most likely tokens.
json logprobs_entry(const persona::Tokenizer& tokenizer, const persona::StepLogprobs& step) {
    const auto token = [&](const persona::TokenLogprob& t) {
        const std::string text = tokenizer.decode({t.token});
        json bytes = json::array();
        for (const unsigned char byte : text) bytes.push_back(int(byte));
        return json{{"token", text}, {"logprob", t.logprob}, {"bytes", bytes}};
    };
    json entry = token(step.chosen);
    entry["top_logprobs"] = json::array();
    for (const auto& alternative : step.top) entry["top_logprobs"].push_back(token(alternative));
    return entry;
}

// The completions API's older shape of the same entries.
json completion_logprobs(const json& entries) {
    json out = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()}};
    for (const json& entry : entries) {
        out["tokens"].push_back(entry["token"]);
        out["token_logprobs"].push_back(entry["logprob"]);
        json top = json::object();
        for (const json& alternative : entry["top_logprobs"]) top[alternative["token"].get<std::string>()] = alternative["logprob"];
        out["top_logprobs"].push_back(top);
    }
    return out;
}

// Text complete enough to send, and the logprobs entries of the tokens that made it.
struct StreamPiece {
    std::string text;
    json logprobs = json::array();
};

// Tokens from the engine thread to the HTTP thread of one request.
struct TokenQueue {
    std::mutex mutex;
    std::condition_variable changed;
    std::deque<StreamPiece> pieces;  // all of them, for an answer that is not streamed
    bool finished = false;
    bool timed_out = false;
    std::string error;
    persona::GenerationResult result;
};

class Server {
public:
    Server(persona::Engine& engine, const persona::ModelFacts& facts, const ServeOptions& options)
        : engine_(engine), facts_(facts), options_(options), catalog_(options) {}

    int run() {
        http_.set_payload_max_length(options_.max_body_bytes);
        http_.set_pre_routing_handler([this](const httplib::Request& request, httplib::Response& response) {
            if (options_.api_key.empty() || request.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
            const std::string header = request.get_header_value("Authorization");
            if (header.rfind("Bearer ", 0) == 0 && same_key(header.substr(7), options_.api_key))
                return httplib::Server::HandlerResponse::Unhandled;
            reply(response, 401, error_body({401, "a valid API key is needed (Authorization: Bearer KEY)", ""}));
            return httplib::Server::HandlerResponse::Handled;
        });
        http_.set_error_handler([](const httplib::Request&, httplib::Response& response) {
            if (response.body.empty())
                reply(response, response.status,
                      error_body({response.status, response.status == 413 ? "the request body is too large"
                                                   : response.status == 404 ? "no such endpoint"
                                                                            : "HTTP " + std::to_string(response.status), ""}));
        });
        http_.Get("/health", [](const httplib::Request&, httplib::Response& response) { reply(response, 200, {{"status", "ok"}}); });
        http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& response) {
            reply(response, 200, {{"object", "list"},
                                  {"data", {{{"id", facts_.name}, {"object", "model"}, {"owned_by", "persona-workbench"},
                                             {"layers", facts_.layers}, {"hidden_size", facts_.hidden_size}}}}});
        });
        http_.Get("/v1/vectors", [this](const httplib::Request&, httplib::Response& response) {
            reply(response, 200, {{"object", "list"}, {"data", catalog_.list()}});
        });
        http_.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& r) { complete(q, r, true); });
        http_.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) { complete(q, r, false); });
        int port = options_.port;
        if (port == 0) port = http_.bind_to_any_port(options_.host);
        else if (!http_.bind_to_port(options_.host, port)) port = -1;
        if (port < 0) {
            std::fprintf(stderr, "persona-cli: cannot listen on %s:%d\n", options_.host.c_str(), options_.port);
            return kExitFailed;
        }
        // The line scripts wait for (tests start the server on port 0 and read the port here).
        std::printf("listening on http://%s:%d\n", options_.host.c_str(), port);
        std::fflush(stdout);
        stop_watcher_ = std::thread([this] {
            while (!g_interrupted && !http_stopped_) std::this_thread::sleep_for(std::chrono::milliseconds(100));
            http_.stop();
        });
        http_.listen_after_bind();
        http_stopped_ = true;
        stop_watcher_.join();
        return g_interrupted ? kExitOk : kExitFailed;
    }

private:
    // A token's text may be a piece of a UTF-8 character: such bytes are sent as U+FFFD (its
    // logprobs entry has the bytes themselves).
    static std::string text_of(const json& body) { return body.dump(-1, ' ', false, json::error_handler_t::replace); }

    static void reply(httplib::Response& response, int status, const json& body) {
        response.status = status;
        response.set_content(text_of(body), "application/json");
    }

    void complete(const httplib::Request& request, httplib::Response& response, bool chat) {
        try {
            const json body = json::parse(request.body, nullptr, /*allow_exceptions=*/true);
            if (!body.is_object()) throw RequestError{400, "the body must be a JSON object", ""};
            persona::GenerationRow row = parse_request(body, chat, catalog_, facts_, options_);
            std::string prompt;
            if (!chat) {
                prompt = field<std::string>(body, "prompt", "");
                if (prompt.empty()) throw RequestError{400, "'prompt' must be a non-empty string", "prompt"};
            }
            const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(++request_count_);
            auto admission = admit();
            if (field<bool>(body, "stream", false)) stream(std::move(row), prompt, id, chat, std::move(admission), response);
            else respond(std::move(row), prompt, id, chat, response);
        } catch (const RequestError& e) {
            reply(response, e.status, error_body(e));
        } catch (const json::exception& e) {
            reply(response, 400, error_body({400, std::string("the body is not valid JSON: ") + e.what(), ""}));
        } catch (const persona::Error& e) {
            reply(response, 400, error_body({400, e.what(), "steering.vector"}));
        }
    }

    // Holds one of --max-queue places from a request's admission until its answer is written.
    struct Admission {
        explicit Admission(std::atomic<int>& count) : in_flight(count) {}
        Admission(const Admission&) = delete;
        Admission& operator=(const Admission&) = delete;
        ~Admission() { --in_flight; }
        std::atomic<int>& in_flight;
    };
    std::shared_ptr<Admission> admit() {
        if (++in_flight_ > options_.max_queue) {
            --in_flight_;
            throw RequestError{429, std::to_string(options_.max_queue) + " requests are queued or generating (--max-queue); retry later", ""};
        }
        return std::make_shared<Admission>(in_flight_);
    }

    // Runs the row on the engine thread; on_text sees each token's text as it comes.
    persona::JobHandle submit(persona::GenerationRow row, const std::string& prompt, std::shared_ptr<TokenQueue> queue) {
        persona::JobEndings endings;
        endings.failed = [queue](const std::string& error) { finish(*queue, error); };
        endings.cancelled = [queue] { finish(*queue, "cancelled"); };
        const int timeout = options_.request_timeout_seconds;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
        return engine_.submit(
            [row = std::move(row), prompt, queue, timeout, deadline](persona::Model& model, const persona::JobContext& job) mutable {
                const persona::CancelFn stop = [&] {
                    if (std::chrono::steady_clock::now() < deadline) return job.cancelled && job.cancelled();
                    std::lock_guard lock(queue->mutex);
                    queue->timed_out = true;
                    return true;
                };
                row.prompt_tokens = prompt.empty() ? model.encode_chat(row.messages, true)
                                                   : model.tokenizer().encode(prompt, true, false);
                if (row.prompt_tokens.size() + static_cast<std::size_t>(row.sampling.max_new_tokens) >
                    static_cast<std::size_t>(model.context_length()))
                    throw persona::Error("the prompt (" + std::to_string(row.prompt_tokens.size()) +
                                         " tokens) and max_tokens exceed the context of " +
                                         std::to_string(model.context_length()) + " tokens");
                std::vector<persona::GenerationResult> results;
                try {
                    results = model.generate({row},
                        [&](const persona::TokenEvent& event) {
                            StreamPiece piece{event.text};
                            if (event.logprobs) piece.logprobs.push_back(logprobs_entry(model.tokenizer(), *event.logprobs));
                            std::lock_guard lock(queue->mutex);
                            queue->pieces.push_back(std::move(piece));
                            queue->changed.notify_all();
                        },
                        nullptr, stop);
                } catch (const persona::Cancelled&) {
                    std::lock_guard lock(queue->mutex);
                    if (!queue->timed_out) throw;
                }
                if (results.empty())
                    throw persona::Error("the request ran longer than --request-timeout (" + std::to_string(timeout) +
                                         " s) and was stopped");
                std::lock_guard lock(queue->mutex);
                queue->result = std::move(results.front());
                queue->finished = true;
                queue->changed.notify_all();
            },
            std::move(endings));
    }

    static void finish(TokenQueue& queue, const std::string& error) {
        std::lock_guard lock(queue.mutex);
        queue.error = error;
        queue.finished = true;
        queue.changed.notify_all();
    }

    json usage(const persona::GenerationResult& result) const {
        return {{"prompt_tokens", result.prompt_tokens.size()}, {"completion_tokens", result.tokens.size()},
                {"total_tokens", result.prompt_tokens.size() + result.tokens.size()}};
    }

    void respond(persona::GenerationRow row, const std::string& prompt, const std::string& id, bool chat,
                 httplib::Response& response) {
        const bool with_logprobs = row.sampling.top_logprobs >= 0;
        auto queue = std::make_shared<TokenQueue>();
        submit(std::move(row), prompt, queue).wait();
        std::lock_guard lock(queue->mutex);
        if (!queue->error.empty()) throw RequestError{queue->timed_out ? 408 : 400, queue->error, ""};
        const auto& result = queue->result;
        json choice = {{"index", 0}, {"finish_reason", finish_reason(result.stop_reason)}};
        if (chat) choice["message"] = {{"role", "assistant"}, {"content", result.text}};
        else choice["text"] = result.text;
        json logprobs = json::array();
        for (const StreamPiece& piece : queue->pieces) logprobs.insert(logprobs.end(), piece.logprobs.begin(), piece.logprobs.end());
        choice["logprobs"] = !with_logprobs ? json() : chat ? json{{"content", logprobs}} : completion_logprobs(logprobs);
        reply(response, 200, {{"id", id}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", std::time(nullptr)},
                              {"model", facts_.name}, {"choices", {choice}}, {"usage", usage(result)}, {"tokens", result.tokens}});
    }

    // The admission is released when the stream ends, however it ends.
    void stream(persona::GenerationRow row, const std::string& prompt, const std::string& id, bool chat,
                std::shared_ptr<Admission> admission, httplib::Response& response) {
        const bool with_logprobs = row.sampling.top_logprobs >= 0;
        auto queue = std::make_shared<TokenQueue>();
        auto job = std::make_shared<persona::JobHandle>(submit(std::move(row), prompt, queue));
        const json base = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
                           {"created", std::time(nullptr)}, {"model", facts_.name}};
        response.set_chunked_content_provider("text/event-stream", [queue, job, base, chat, with_logprobs, admission, id](std::size_t, httplib::DataSink& sink) {
            json unsent_logprobs = json::array();  // of tokens that completed no text yet
            std::size_t tokens = 0;
            const auto send = [&](json choice) {
                if (with_logprobs) {
                    choice["logprobs"] = chat ? json{{"content", unsent_logprobs}} : completion_logprobs(unsent_logprobs);
                    unsent_logprobs = json::array();
                }
                json chunk = base;
                chunk["choices"] = {choice};
                const std::string line = "data: " + text_of(chunk) + "\n\n";
                return sink.write(line.data(), line.size());
            };
            std::unique_lock lock(queue->mutex);
            while (true) {
                queue->changed.wait(lock, [&] { return !queue->pieces.empty() || queue->finished; });
                while (!queue->pieces.empty()) {
                    StreamPiece piece = std::move(queue->pieces.front());
                    queue->pieces.pop_front();
                    ++tokens;
                    for (json& entry : piece.logprobs) unsent_logprobs.push_back(std::move(entry));
                    if (piece.text.empty()) continue;
                    const std::string& text = piece.text;
                    lock.unlock();
                    const bool sent = send(chat ? json{{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", nullptr}}
                                                : json{{"index", 0}, {"text", text}, {"finish_reason", nullptr}});
                    lock.lock();
                    if (!sent) {  // the client went away: its job stops at the next step
                        job->cancel();
                        std::fprintf(stderr, "persona-cli serve: %s: the client went away after %zu tokens; generation cancelled\n",
                                     id.c_str(), tokens);
                        return false;
                    }
                }
                if (queue->finished && queue->pieces.empty()) break;
            }
            json last = {{"index", 0}, {"finish_reason", queue->error.empty() ? finish_reason(queue->result.stop_reason) : "error"}};
            if (chat) last["delta"] = json::object();
            else last["text"] = "";
            if (!queue->error.empty()) last["error"] = queue->error;
            lock.unlock();
            send(last);
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
        },
        // A connection that closed before the provider ran (or between its calls) ends the job too.
        [job](bool success) {
            if (!success) job->cancel();
        });
    }

    persona::Engine& engine_;
    persona::ModelFacts facts_;
    const ServeOptions& options_;
    VectorCatalog catalog_;
    httplib::Server http_;
    std::thread stop_watcher_;
    std::atomic<bool> http_stopped_{false};
    std::atomic<std::uint64_t> request_count_{0};
    std::atomic<int> in_flight_{0};
};

int run_serve(const GlobalOptions& global, ServeOptions options) {
    if (options.api_key.empty())
        if (const char* key = std::getenv("PERSONA_API_KEY")) options.api_key = key;
    if (!is_loopback(options.host) && options.api_key.empty()) {
        std::fprintf(stderr, "persona-cli: serving on %s (not loopback) needs --api-key or PERSONA_API_KEY\n", options.host.c_str());
        return kExitUsage;
    }
    persona::Engine engine(engine_options(global));
    g_engine = &engine;
    persona::ModelFacts facts;
    if (!load(engine, options.model, true, &facts)) return g_interrupted ? kExitCancelled : kExitFailed;
    try {
        Server server(engine, facts, options);
        return server.run();
    } catch (const persona::Error& e) {
        std::fprintf(stderr, "persona-cli: %s\n", e.what());
        return kExitFailed;
    }
}

}  // namespace

void add_serve_command(CLI::App& app, const GlobalOptions& global, Command& selected) {
    auto options = std::make_shared<ServeOptions>();
    auto* serve = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible HTTP API with per-request steering");
    serve->add_option("--model,-m", options->model, "GGUF model file or Hugging Face checkpoint directory")->capture_default_str();
    serve->add_option("--host", options->host, "Address to listen on (a non-loopback one needs an API key)")->capture_default_str();
    serve->add_option("--port", options->port, "Port (0: any free one, printed)")->check(CLI::Range(0, 65535))->capture_default_str();
    serve->add_option("--api-key", options->api_key, "Key clients must send as 'Authorization: Bearer KEY' (else $PERSONA_API_KEY)");
    serve->add_option("--project", options->projects, "Serve this project's vectors as PROJECT/KEY; repeatable");
    serve->add_option("--vectors", options->vector_dirs, "Serve the vector files under this folder by relative path; repeatable");
    serve->add_option("--max-body", options->max_body_bytes, "Largest request body in bytes")->capture_default_str();
    serve->add_option("--max-queue", options->max_queue, "Requests queued or generating at once; more are answered 429")
        ->check(CLI::Range(1, 1 << 16))->capture_default_str();
    serve->add_option("--request-timeout", options->request_timeout_seconds,
                      "Seconds a request may take from its arrival, waiting included; then it stops (408)")
        ->check(CLI::Range(1, 1 << 24))->capture_default_str();
    serve->add_option("--max-tokens", options->max_tokens, "Largest max_tokens a request may ask for")->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    serve->callback([&global, &selected, options] { selected = [&global, options] { return run_serve(global, *options); }; });
}

}  // namespace persona_cli
