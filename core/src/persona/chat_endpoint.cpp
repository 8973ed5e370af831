#include "persona/chat_endpoint.h"

#include "persona/errors.h"

#include "io/http_client.h"
#include "io/json_file.h"

// Debian's cpp-httplib is the compiled variant: its pkg-config flags define the same
// CPPHTTPLIB_* feature macros the library was built with. Kept out of public headers.
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <regex>
#include <thread>

namespace persona {

using http::server_message;
using http::split_base_url;
using http::SplitUrl;
using http::transport_problem;

namespace {

using Json = nlohmann::json;

std::string api_key(const ChatEndpoint& endpoint) {
    if (endpoint.api_key_env.empty()) return {};
    const char* value = std::getenv(endpoint.api_key_env.c_str());
    return value ? value : "";
}

bool retryable_status(int status) { return status == 429 || (status >= 500 && status <= 599); }

// A transport error worth another try: the connection broke or timed out, not "nobody there".
bool retryable_transport(httplib::Error error) {
    return error == httplib::Error::Read || error == httplib::Error::Write || error == httplib::Error::ConnectionTimeout;
}

void wait_or_cancel(double seconds, const CancelFn& cancelled) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
        check_cancelled(cancelled);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    check_cancelled(cancelled);
}

Json request_body(const ChatEndpoint& endpoint, const ChatCompletionRequest& request) {
    Json messages = Json::array();
    for (const ChatMessage& m : request.messages) messages.push_back({{"role", m.role}, {"content", m.content}});
    Json body = {{"model", endpoint.model}, {"messages", messages}, {"max_tokens", request.max_tokens},
                 {"temperature", request.temperature}};
    if (request.top_logprobs > 0) {
        body["logprobs"] = true;
        body["top_logprobs"] = request.top_logprobs;
    }
    if (request.seed != 0) body["seed"] = request.seed;
    return body;
}

ChatCompletion parse_completion(const std::string& url, const std::string& body, bool want_logprobs) {
    Json reply;
    try {
        reply = Json::parse(body);
    } catch (const Json::exception& e) {
        throw Error(url + " sent a reply that is not JSON (" + detail::json_error_text(e) + "): " +
                    server_message(body));
    }
    const auto malformed = [&](const std::string& what) {
        return Error(url + " sent JSON that is not a chat completion: " + what);
    };
    if (!reply.is_object() || !reply.contains("choices") || !reply.at("choices").is_array() ||
        reply.at("choices").empty())
        throw malformed("no choices");
    const Json& choice = reply.at("choices").at(0);
    if (!choice.is_object() || !choice.contains("message") || !choice.at("message").is_object())
        throw malformed("choices[0] has no message");
    ChatCompletion completion;
    const Json& message = choice.at("message");
    if (message.contains("content") && message.at("content").is_string())
        completion.text = message.at("content").get<std::string>();
    if (choice.contains("finish_reason") && choice.at("finish_reason").is_string())
        completion.finish_reason = choice.at("finish_reason").get<std::string>();
    if (!want_logprobs) return completion;

    const Json* content = nullptr;
    if (choice.contains("logprobs") && choice.at("logprobs").is_object() && choice.at("logprobs").contains("content") &&
        choice.at("logprobs").at("content").is_array())
        content = &choice.at("logprobs").at("content");
    if (!content || content->empty())
        throw Error(url + ": this endpoint does not return logprobs; the judge needs them "
                          "(model '" + (reply.contains("model") && reply.at("model").is_string()
                                            ? reply.at("model").get<std::string>() : std::string("?")) + "')");
    for (const Json& token : *content) {
        std::vector<TopLogprob> alternatives;
        if (!token.is_object() || !token.contains("top_logprobs") || !token.at("top_logprobs").is_array())
            throw Error(url + ": this endpoint does not return top_logprobs; the judge needs them");
        for (const Json& alternative : token.at("top_logprobs")) {
            if (!alternative.is_object() || !alternative.contains("token") || !alternative.at("token").is_string() ||
                !alternative.contains("logprob") || !alternative.at("logprob").is_number())
                throw malformed("a top_logprobs entry without a token string and a logprob number");
            alternatives.push_back({alternative.at("token").get<std::string>(), alternative.at("logprob").get<double>()});
        }
        completion.top_logprobs.push_back(std::move(alternatives));
    }
    return completion;
}

}  // namespace

std::string chat_completions_url(const ChatEndpoint& endpoint) {
    std::string base = endpoint.base_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base + "/chat/completions";
}

struct ChatClient::Impl {
    Impl(ChatEndpoint endpoint_, const SplitUrl& split_)
        : endpoint(std::move(endpoint_)), split(split_), url(chat_completions_url(endpoint)),
          client(split.scheme_host_port) {}
    ChatEndpoint endpoint;
    SplitUrl split;
    std::string url;
    httplib::Client client;
};

ChatClient::ChatClient(ChatEndpoint endpoint) {
    const std::string url = chat_completions_url(endpoint);
    const SplitUrl split = split_base_url(endpoint.base_url);
    if (endpoint.model.empty()) throw Error(url + ": no model name given for the endpoint");
    impl_ = std::make_unique<Impl>(std::move(endpoint), split);
    httplib::Client& client = impl_->client;
    if (!client.is_valid()) throw Error("'" + impl_->endpoint.base_url + "' is not an endpoint URL this build can reach");
    const auto timeout = std::chrono::duration<double>(std::max(0.1, impl_->endpoint.timeout_seconds));
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(timeout);
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout - seconds);
    client.set_connection_timeout(seconds.count(), micros.count());
    client.set_read_timeout(seconds.count(), micros.count());
    client.set_write_timeout(seconds.count(), micros.count());
    client.set_keep_alive(true);
}

ChatClient::~ChatClient() = default;

const ChatEndpoint& ChatClient::endpoint() const { return impl_->endpoint; }

ChatCompletion complete_chat(const ChatEndpoint& endpoint, const ChatCompletionRequest& request,
                             const CancelFn& cancelled) {
    check_cancelled(cancelled);
    return ChatClient(endpoint).complete(request, cancelled);
}

ChatCompletion ChatClient::complete(const ChatCompletionRequest& request, const CancelFn& cancelled) {
    const ChatEndpoint& endpoint = impl_->endpoint;
    const SplitUrl& split = impl_->split;
    const std::string& url = impl_->url;
    httplib::Client& client = impl_->client;
    check_cancelled(cancelled);

    const std::string body = request_body(endpoint, request).dump();
    double delay = std::max(0.0, endpoint.retry_delay_seconds);
    for (int attempt = 0;; ++attempt) {
        check_cancelled(cancelled);
        const std::string key = api_key(endpoint);
        httplib::Headers headers;
        if (!key.empty()) headers.emplace("Authorization", "Bearer " + key);
        const httplib::Result result = client.Post(split.path_prefix + "/chat/completions", headers, body, "application/json");
        const bool last = attempt >= endpoint.retries;
        if (!result) {
            const httplib::Error error = result.error();
            if (!retryable_transport(error) || last) {
                throw Error("cannot get a chat completion from " + url + ": " + transport_problem(error) +
                            (attempt > 0 ? " after " + std::to_string(attempt + 1) + " attempts" : ""));
            }
            wait_or_cancel(delay, cancelled);
            delay *= 2;
            continue;
        }
        const int status = result->status;
        if (status == 200) return parse_completion(url, result->body, request.top_logprobs > 0);
        if (retryable_status(status) && !last) {
            double wait = delay;
            if (result->has_header("Retry-After")) {
                const double asked = std::atof(result->get_header_value("Retry-After").c_str());
                if (asked > 0) wait = std::min(asked, 60.0);
            }
            wait_or_cancel(wait, cancelled);
            delay *= 2;
            continue;
        }
        std::string message = url + " answered HTTP " + std::to_string(status) + ": " + server_message(result->body);
        if (status == 401 || status == 403)
            message += key.empty() ? " (no API key sent: $" + endpoint.api_key_env + " is not set)"
                                   : " (check the API key in $" + endpoint.api_key_env + ")";
        else if (status == 404)
            message += " (check the base URL, which usually ends in /v1, and the model name '" + endpoint.model + "')";
        else if (retryable_status(status))
            message += " (gave up after " + std::to_string(attempt + 1) + " attempts)";
        throw Error(message);
    }
}

}  // namespace persona
