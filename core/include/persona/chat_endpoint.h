#pragma once
// An OpenAI-compatible chat completions endpoint (OpenAI, llama.cpp's llama-server, vLLM, ...):
// what the HTTP judge scores with and what trait drafting may write with. Plain data; the HTTP
// library stays inside core.
#include "persona/generation.h"
#include "persona/progress.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace persona {

struct ChatEndpoint {
    // Up to and including the API version: "https://api.openai.com/v1", "http://localhost:8080/v1".
    // Requests go to BASE/chat/completions.
    std::string base_url;
    std::string model;  // the model name the server knows
    // The API key is read from this environment variable at each request and never stored
    // anywhere (not in settings files, checkpoints or labels). Unset or empty: no Authorization
    // header, which local servers accept.
    std::string api_key_env = "OPENAI_API_KEY";
    double timeout_seconds = 60;
    // Retries after HTTP 429 or 5xx or a dropped connection, waiting retry_delay_seconds, then
    // twice that, and so on (or what the server's Retry-After asks, up to a minute).
    int retries = 4;
    double retry_delay_seconds = 1;
};

struct ChatCompletionRequest {
    std::vector<ChatMessage> messages;
    int max_tokens = 256;
    double temperature = 0;
    int top_logprobs = 0;  // > 0: ask for logprobs with this many alternatives per token
    std::uint64_t seed = 0;  // sent only when not 0
};

struct TopLogprob {
    std::string token;
    double logprob = 0;
};

struct ChatCompletion {
    std::string text;
    std::string finish_reason;
    // Per generated token, the alternatives the server listed (empty unless asked for).
    std::vector<std::vector<TopLogprob>> top_logprobs;
};

// Talks to one endpoint over a connection it keeps open between requests (a judge sends
// thousands; a TLS handshake each would cost more than the scoring). Use from one thread.
class ChatClient {
public:
    // Throws Error when the URL is not http(s)://host[:port][/path] or no model is named.
    explicit ChatClient(ChatEndpoint endpoint);
    ~ChatClient();
    ChatClient(const ChatClient&) = delete;
    ChatClient& operator=(const ChatClient&) = delete;

    // See complete_chat().
    ChatCompletion complete(const ChatCompletionRequest& request, const CancelFn& cancelled = {});
    const ChatEndpoint& endpoint() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// POST BASE/chat/completions once, on a connection of its own. Throws persona::Error naming the URL when the server cannot be
// reached, answers with an HTTP error (its own message quoted), or sends something that is not
// a chat completion; when logprobs were asked for and none came back, the error says the
// endpoint does not return them. Throws Cancelled when `cancelled` turns true before a request
// or while waiting to retry.
ChatCompletion complete_chat(const ChatEndpoint& endpoint, const ChatCompletionRequest& request,
                             const CancelFn& cancelled = {});

// "BASE/chat/completions", for messages.
std::string chat_completions_url(const ChatEndpoint& endpoint);

}  // namespace persona
