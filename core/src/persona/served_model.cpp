#include "persona/served_model.h"

#include "persona/errors.h"

#include "io/http_client.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <thread>

namespace persona {

namespace {

using Json = nlohmann::json;

// The server's root and "/v1" under it, whichever of the two the user typed.
struct Endpoint {
    http::SplitUrl split;
    std::string url;  // for messages: http://host:port/v1
};

Endpoint endpoint_of(const ServerAddress& server) {
    http::SplitUrl split = http::split_base_url(server.url);
    if (split.path_prefix.size() < 3 || split.path_prefix.compare(split.path_prefix.size() - 3, 3, "/v1") != 0)
        split.path_prefix += "/v1";
    return {split, split.scheme_host_port + split.path_prefix};
}

httplib::Headers headers_of(const ServerAddress& server) {
    httplib::Headers headers;
    if (!server.api_key.empty()) headers.emplace("Authorization", "Bearer " + server.api_key);
    return headers;
}

void set_timeouts(httplib::Client& client, double seconds) {
    const auto whole = static_cast<time_t>(std::max(1.0, seconds));
    client.set_connection_timeout(std::min<time_t>(whole, 10), 0);
    client.set_read_timeout(whole, 0);
    client.set_write_timeout(whole, 0);
}

[[noreturn]] void refused(const std::string& url, int status, const std::string& body) {
    std::string message = url + " answered HTTP " + std::to_string(status) + ": " + http::server_message(body);
    if (status == 401) message += " (check the API key)";
    throw Error(message);
}

Json request_body(const GenerationRow& row, const ProjectionProbe* probe) {
    if (row.messages.empty()) throw Error("a served model generates from chat messages, not raw tokens");
    Json messages = Json::array();
    for (const ChatMessage& m : row.messages) messages.push_back({{"role", m.role}, {"content", m.content}});
    const SamplingOptions& s = row.sampling;
    Json body = {{"messages", messages}, {"max_tokens", s.max_new_tokens}, {"temperature", s.temperature},
                 {"top_p", s.top_p}, {"top_k", s.top_k}, {"seed", s.seed}, {"ignore_eos", !s.stop_at_eos},
                 {"stop", s.stop_strings}, {"stream", true}};
    if (s.top_logprobs >= 0) {
        body["logprobs"] = true;
        body["top_logprobs"] = s.top_logprobs;
    }
    Json steering = Json::array();
    for (const Steering& st : row.steering)
        steering.push_back({{"vector", st.vector}, {"layer", st.layer}, {"coefficient", st.alpha},
                            {"positions", steer_positions_name(st.positions)}, {"op", steer_operation_name(st.operation)},
                            {"preserve_norm", st.preserve_norm}});
    body["steering"] = steering;
    if (probe && !probe->layers.empty()) body["probe"] = {{"layers", probe->layers}, {"directions", probe->directions}};
    return body;
}

// Turns the server-sent events of one answer back into Model::generate's token events.
class EventReader {
public:
    EventReader(const std::string& url, const std::function<void(const TokenEvent&)>& on_token)
        : url_(url), on_token_(on_token) {}

    void feed(const char* data, std::size_t size) {
        pending_.append(data, size);
        for (std::size_t end; (end = pending_.find("\n\n")) != std::string::npos;) {
            const std::string event = pending_.substr(0, end);
            pending_.erase(0, end + 2);
            if (event.rfind("data: ", 0) == 0) chunk(event.substr(6));
        }
    }

    GenerationResult finish() {
        if (!done_) throw Error(url_ + ": the answer ended before its last chunk");
        if (!error_.empty()) throw Error(url_ + ": " + error_);
        if (result_.stop_reason == StopReason::EndOfSequence && !result_.tokens.empty()) result_.tokens.pop_back();
        return std::move(result_);
    }

private:
    void chunk(const std::string& text) {
        if (text == "[DONE]") return;
        const Json chunk = Json::parse(text, nullptr, false);
        if (chunk.is_discarded() || !chunk.contains("choices") || chunk["choices"].empty())
            throw Error(url_ + " sent a chunk that is not a chat completion chunk: " + text.substr(0, 200));
        const Json& choice = chunk["choices"][0];
        const std::string piece = choice.contains("delta") ? choice["delta"].value("content", std::string()) : "";
        const Json tokens = chunk.value("tokens", Json::array());
        const Json projections = chunk.value("projections", Json::array());
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            TokenEvent event;
            event.step = step_++;
            event.token = tokens[i].get<std::int32_t>();
            if (i + 1 == tokens.size()) event.text = piece;  // the chunk's text is what its last token completed
            if (i < projections.size()) event.projections = projections[i].get<std::vector<float>>();
            result_.tokens.push_back(event.token);
            if (on_token_) on_token_(event);
        }
        if (tokens.empty() && !piece.empty()) throw Error(url_ + " is not a persona-cli serve: its chunks list no tokens");
        result_.text += piece;
        if (choice.contains("finish_reason") && !choice["finish_reason"].is_null()) {
            done_ = true;
            error_ = choice.value("error", std::string());
            const auto reason = stop_reason_from_name(choice.value("stop_reason", std::string()));
            if (reason) result_.stop_reason = *reason;
        }
    }

    std::string url_;
    const std::function<void(const TokenEvent&)>& on_token_;
    std::string pending_;
    int step_ = 0;
    bool done_ = false;
    std::string error_;
    GenerationResult result_;
};

}  // namespace

ModelFacts fetch_served_facts(const ServerAddress& server) {
    const Endpoint endpoint = endpoint_of(server);
    httplib::Client client(endpoint.split.scheme_host_port);
    set_timeouts(client, std::min(server.timeout_seconds, 30.0));
    const std::string url = endpoint.url + "/models";
    const httplib::Result reply = client.Get(endpoint.split.path_prefix + "/models", headers_of(server));
    if (!reply) throw Error("cannot reach " + url + ": " + http::transport_problem(reply.error()));
    if (reply->status != 200) refused(url, reply->status, reply->body);
    const Json body = Json::parse(reply->body, nullptr, false);
    if (body.is_discarded() || !body.contains("data") || !body["data"].is_array() || body["data"].empty() ||
        !body["data"][0].contains("persona_facts"))
        throw Error(url + " is not a persona-cli serve (its models list carries no persona_facts)");
    ModelFacts facts = model_facts_from_json(body["data"][0]["persona_facts"], url);
    facts.path = endpoint.split.scheme_host_port;
    return facts;
}

GenerationResult generate_served(const ServerAddress& server, const GenerationRow& row, const ProjectionProbe* probe,
                                 const std::function<void(const TokenEvent&)>& on_token, const CancelFn& cancelled) {
    check_cancelled(cancelled);
    const Endpoint endpoint = endpoint_of(server);
    const std::string url = endpoint.url + "/chat/completions";
    httplib::Client client(endpoint.split.scheme_host_port);
    set_timeouts(client, server.timeout_seconds);
    EventReader reader(url, on_token);
    httplib::Request request;
    request.method = "POST";
    request.path = endpoint.split.path_prefix + "/chat/completions";
    request.headers = headers_of(server);
    request.body = request_body(row, probe).dump();
    request.set_header("Content-Type", "application/json");
    int status = 0;
    std::string refusal;
    std::exception_ptr failure;
    request.response_handler = [&](const httplib::Response& response) {
        status = response.status;
        return true;
    };
    request.content_receiver = [&](const char* data, std::size_t size, std::uint64_t, std::uint64_t) {
        if (status != 200) {
            refusal.append(data, size);
            return true;
        }
        try {  // nothing may be thrown through httplib
            reader.feed(data, size);
            return true;
        } catch (...) {
            failure = std::current_exception();
            return false;
        }
    };
    // A cancel must not wait for the next token (the row may still be queued on the server):
    // closing the socket ends the request at once.
    std::atomic<bool> answered{false};
    std::atomic<bool> stopped{false};
    std::thread watcher([&] {
        while (!answered) {
            if (cancelled && cancelled()) {
                stopped = true;
                client.stop();
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    });
    const httplib::Result reply = client.send(request);
    answered = true;
    watcher.join();
    if (stopped) throw Cancelled();
    if (failure) std::rethrow_exception(failure);
    if (!reply) throw Error("cannot get an answer from " + url + ": " + http::transport_problem(reply.error()));
    if (status != 200) refused(url, status, refusal);
    return reader.finish();
}

}  // namespace persona
