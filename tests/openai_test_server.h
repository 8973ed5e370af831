#pragma once
// A real OpenAI-compatible server for the suites: cpp-httplib listening on a free localhost port
// in the test process, answering POST /v1/chat/completions through a handler the test sets, so
// the client code under test goes through real sockets and real HTTP.
// httplib.h comes before any Qt header (Qt's keyword macros must not reach it).
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace persona_test {

struct ServerReply {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
};

// A chat completion of one token whose top logprobs are `probabilities` (token -> p).
inline std::string logprob_completion(const std::vector<std::pair<std::string, double>>& probabilities) {
    nlohmann::json top = nlohmann::json::array();
    for (const auto& [token, p] : probabilities) {
        nlohmann::json alternative;
        alternative["token"] = token;
        alternative["logprob"] = std::log(p);
        alternative["bytes"] = nullptr;
        top.push_back(alternative);
    }
    nlohmann::json generated;
    generated["token"] = probabilities.empty() ? std::string() : probabilities.front().first;
    generated["logprob"] = top.empty() ? 0.0 : top[0]["logprob"].get<double>();
    generated["top_logprobs"] = top;
    nlohmann::json choice;
    choice["index"] = 0;
    choice["message"] = {{"role", "assistant"}, {"content", generated["token"]}};
    choice["logprobs"]["content"] = nlohmann::json::array({generated});
    choice["finish_reason"] = "length";
    nlohmann::json reply;
    reply["id"] = "chatcmpl-test";
    reply["object"] = "chat.completion";
    reply["model"] = "test-judge";
    reply["choices"] = nlohmann::json::array({choice});
    return reply.dump();
}

// A chat completion with text and no logprobs, as a server that ignores "logprobs" sends.
inline std::string text_completion(const std::string& text) {
    nlohmann::json choice;
    choice["index"] = 0;
    choice["message"] = {{"role", "assistant"}, {"content", text}};
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = "stop";
    nlohmann::json reply;
    reply["id"] = "chatcmpl-test";
    reply["object"] = "chat.completion";
    reply["model"] = "test-writer";
    reply["choices"] = nlohmann::json::array({choice});
    return reply.dump();
}

class OpenAiTestServer {
public:
    struct Request {
        nlohmann::json body;
        std::string authorization;  // the Authorization header, "" when absent
        int client_port = 0;        // the same for requests over one kept-open connection
    };
    using Handler = std::function<ServerReply(const nlohmann::json& body, int request_number)>;

    OpenAiTestServer() {
        server_.Post("/v1/chat/completions", [this](const httplib::Request& request, httplib::Response& response) {
            Handler handler;
            int number = 0;
            nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                requests_.push_back({body, request.get_header_value("Authorization"), request.remote_port});
                number = int(requests_.size());
                handler = handler_;
            }
            const ServerReply reply = handler ? handler(body, number) : ServerReply{500, "{\"error\":\"no handler\"}"};
            response.status = reply.status;
            response.set_content(reply.body, reply.content_type.c_str());
        });
        port_ = server_.bind_to_any_port("127.0.0.1");
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        // 0.11 has no wait_until_ready(): wait for the listening loop (a bound socket already
        // queues connections, so this only keeps stop() from racing the start).
        for (int i = 0; i < 2000 && !server_.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ~OpenAiTestServer() {
        server_.stop();
        thread_.join();
    }

    int port() const { return port_; }
    std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

    void set_handler(Handler handler) {
        std::lock_guard<std::mutex> lock(mutex_);
        handler_ = std::move(handler);
    }
    std::vector<Request> requests() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return requests_;
    }
    void clear_requests() {
        std::lock_guard<std::mutex> lock(mutex_);
        requests_.clear();
    }

private:
    httplib::Server server_;
    int port_ = 0;
    std::thread thread_;
    mutable std::mutex mutex_;
    Handler handler_;
    std::vector<Request> requests_;
};

// The user message of a chat completion request.
inline std::string user_message(const nlohmann::json& body) {
    for (const auto& message : body.at("messages"))
        if (message.at("role") == "user") return message.at("content").get<std::string>();
    return {};
}

}  // namespace persona_test
