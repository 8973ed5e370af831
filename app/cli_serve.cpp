// persona-cli serve: the engine behind an OpenAI-compatible HTTP API (chat completions and
// completions, streamed or not; models; health), where every request may carry its own
// steering in the extension field `steering` (docs/serve.md). Requests generate together in one
// continuously batched job on the engine thread: a request joins the running batch at its next
// step and leaves it when it ends, its client goes away or its time runs out.
#include "cli_commands.h"
#include "serve_request.h"

#include "persona/errors.h"
#include "persona/generation.h"
#include "persona/generation_batch.h"
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
#include <utility>

namespace persona_cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

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
    std::int32_t token = 0;
    std::vector<float> projections;  // on the request's probe directions
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
    std::atomic<bool> client_gone{false};  // its row leaves the batch at the next step
    std::chrono::steady_clock::time_point deadline;
};

class Server {
public:
    Server(persona::Engine& engine, const persona::ModelFacts& facts, const ServeOptions& options)
        : engine_(engine), facts_(facts), options_(options), catalog_(options) {}

    int run() {
        http_.set_payload_max_length(options_.max_body_bytes);
        // A connection holds a thread while it waits or streams: enough of them that every
        // admitted request has one and a request over --max-queue still gets its 429.
        http_.new_task_queue = [this] { return new httplib::ThreadPool(static_cast<std::size_t>(options_.max_queue) + 4); };
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
                                             {"layers", facts_.layers}, {"hidden_size", facts_.hidden_size},
                                             {"persona_facts", to_json(facts_)}}}}});
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
            ParsedRequest parsed = parse_request(body, chat, catalog_, facts_, options_);
            std::string prompt;
            if (!chat) {
                prompt = field<std::string>(body, "prompt", "");
                if (prompt.empty()) throw RequestError{400, "'prompt' must be a non-empty string", "prompt"};
            }
            const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(++request_count_);
            auto admission = admit();
            if (field<bool>(body, "stream", false)) stream(std::move(parsed), prompt, id, chat, std::move(admission), response);
            else respond(std::move(parsed), prompt, id, chat, response);
        } catch (const RequestError& e) {
            reply(response, e.status, error_body(e));
        } catch (const json::exception& e) {
            reply(response, 400, error_body({400, std::string("the body is not valid JSON: ") + e.what(), ""}));
        } catch (const persona::Error& e) {
            reply(response, 400, error_body({400, e.what(), ""}));
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

    // A request waiting for a row in the batch.
    struct Pending {
        ParsedRequest request;
        std::string prompt;  // completions: the raw text, encoded instead of messages
        std::shared_ptr<TokenQueue> queue;
    };

    // Queues the request for the batch and starts the batch job when none runs.
    void enqueue(ParsedRequest request, const std::string& prompt, const std::shared_ptr<TokenQueue>& queue) {
        queue->deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options_.request_timeout_seconds);
        std::lock_guard lock(inbox_mutex_);
        inbox_.push_back({std::move(request), prompt, queue});
        if (batch_running_) return;
        batch_running_ = true;
        persona::JobEndings endings;
        endings.failed = [this](const std::string& error) { end_batch(error); };
        endings.cancelled = [this] { end_batch("cancelled"); };
        engine_.submit([this](persona::Model& model, const persona::JobContext& job) { run_batch(model, job); }, std::move(endings));
    }

    // The batch job: admits waiting requests while rows are free, drops the rows whose client
    // went away or whose time ran out, and steps the rest, until nothing is left to do.
    void run_batch(persona::Model& model, const persona::JobContext& job) {
        persona::GenerationBatch batch(model);
        while (true) {
            admit_waiting(model, batch, job);
            drop_gone(batch);
            if (running_.empty()) {
                std::lock_guard lock(inbox_mutex_);
                if (inbox_.empty()) {
                    batch_running_ = false;
                    return;
                }
                continue;
            }
            for (auto& ended : batch.step(job.cancelled)) deliver(ended);
        }
    }

    void admit_waiting(persona::Model& model, persona::GenerationBatch& batch, const persona::JobContext& job) {
        while (batch.size() < static_cast<std::size_t>(options_.max_rows)) {
            Pending next;
            {
                std::lock_guard lock(inbox_mutex_);
                if (inbox_.empty()) return;
                next = std::move(inbox_.front());
                inbox_.pop_front();
            }
            const std::shared_ptr<TokenQueue> queue = next.queue;
            try {
                persona::GenerationRow& row = next.request.row;
                const persona::ProjectionProbe& probe = next.request.probe;
                row.prompt_tokens = next.prompt.empty() ? model.encode_chat(row.messages, true)
                                                        : model.tokenizer().encode(next.prompt, true, false);
                if (row.prompt_tokens.size() + static_cast<std::size_t>(row.sampling.max_new_tokens) >
                    static_cast<std::size_t>(model.context_length()))
                    throw persona::Error("the prompt (" + std::to_string(row.prompt_tokens.size()) +
                                         " tokens) and max_tokens exceed the context of " +
                                         std::to_string(model.context_length()) + " tokens");
                const persona::CancelFn stop = [&] { return (job.cancelled && job.cancelled()) || gone(*queue); };
                const persona::Tokenizer& tokenizer = model.tokenizer();
                const int id = batch.add(row, [queue, &tokenizer](const persona::TokenEvent& event) {
                    StreamPiece piece{event.text, event.token, event.projections};
                    if (event.logprobs) piece.logprobs.push_back(logprobs_entry(tokenizer, *event.logprobs));
                    std::lock_guard lock(queue->mutex);
                    queue->pieces.push_back(std::move(piece));
                    queue->changed.notify_all();
                }, stop, probe.layers.empty() ? nullptr : &probe);
                running_[id] = queue;
            } catch (const persona::Cancelled&) {
                finish(*queue, gone_reason(*queue));
                if (job.cancelled && job.cancelled()) throw;
            } catch (const std::exception& e) {  // this request's alone: the batch is as it was
                finish(*queue, e.what());
            }
        }
    }

    bool gone(TokenQueue& queue) const {
        if (queue.client_gone) return true;
        if (std::chrono::steady_clock::now() < queue.deadline) return false;
        std::lock_guard lock(queue.mutex);
        queue.timed_out = true;
        return true;
    }

    std::string gone_reason(TokenQueue& queue) const {
        std::lock_guard lock(queue.mutex);
        return queue.timed_out ? "the request ran longer than --request-timeout (" +
                                     std::to_string(options_.request_timeout_seconds) + " s) and was stopped"
                               : "cancelled";
    }

    void drop_gone(persona::GenerationBatch& batch) {
        for (auto it = running_.begin(); it != running_.end();) {
            if (!gone(*it->second)) {
                ++it;
                continue;
            }
            batch.remove(it->first);
            finish(*it->second, gone_reason(*it->second));
            it = running_.erase(it);
        }
        std::lock_guard lock(inbox_mutex_);
        for (auto it = inbox_.begin(); it != inbox_.end();) {
            if (!gone(*it->queue)) {
                ++it;
                continue;
            }
            finish(*it->queue, gone_reason(*it->queue));
            it = inbox_.erase(it);
        }
    }

    void deliver(persona::GenerationBatch::Ended& ended) {
        const auto it = running_.find(ended.id);
        if (it == running_.end()) return;
        {
            std::lock_guard lock(it->second->mutex);
            it->second->result = std::move(ended.result);
            it->second->finished = true;
            it->second->changed.notify_all();
        }
        running_.erase(it);
    }

    // The batch job failed or was cancelled: every request in it or waiting for it ends so.
    void end_batch(const std::string& error) {
        for (auto& [id, queue] : running_) finish(*queue, error);
        running_.clear();
        std::lock_guard lock(inbox_mutex_);
        for (Pending& pending : inbox_) finish(*pending.queue, error);
        inbox_.clear();
        batch_running_ = false;
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

    void respond(ParsedRequest request, const std::string& prompt, const std::string& id, bool chat,
                 httplib::Response& response) {
        const bool with_logprobs = request.row.sampling.top_logprobs >= 0;
        const bool with_projections = !request.probe.layers.empty();
        auto queue = std::make_shared<TokenQueue>();
        enqueue(std::move(request), prompt, queue);
        std::unique_lock lock(queue->mutex);
        queue->changed.wait(lock, [&] { return queue->finished; });
        if (!queue->error.empty()) throw RequestError{queue->timed_out ? 408 : 400, queue->error, ""};
        const auto& result = queue->result;
        json choice = {{"index", 0}, {"finish_reason", finish_reason(result.stop_reason)}};
        if (chat) choice["message"] = {{"role", "assistant"}, {"content", result.text}};
        else choice["text"] = result.text;
        json logprobs = json::array();
        for (const StreamPiece& piece : queue->pieces) logprobs.insert(logprobs.end(), piece.logprobs.begin(), piece.logprobs.end());
        choice["logprobs"] = !with_logprobs ? json() : chat ? json{{"content", logprobs}} : completion_logprobs(logprobs);
        json answer = {{"id", id}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", std::time(nullptr)},
                       {"model", facts_.name}, {"choices", {choice}}, {"usage", usage(result)}, {"tokens", result.tokens}};
        if (with_projections) {  // one per token of `tokens`
            answer["projections"] = json::array();
            for (std::size_t t = 0; t < result.tokens.size() && t < queue->pieces.size(); ++t)
                answer["projections"].push_back(queue->pieces[t].projections);
        }
        reply(response, 200, answer);
    }

    // The admission is released when the stream ends, however it ends.
    void stream(ParsedRequest request, const std::string& prompt, const std::string& id, bool chat,
                std::shared_ptr<Admission> admission, httplib::Response& response) {
        const bool with_logprobs = request.row.sampling.top_logprobs >= 0;
        const bool with_projections = !request.probe.layers.empty();
        auto queue = std::make_shared<TokenQueue>();
        enqueue(std::move(request), prompt, queue);
        const json base = {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"},
                           {"created", std::time(nullptr)}, {"model", facts_.name}};
        response.set_chunked_content_provider("text/event-stream", [queue, base, chat, with_logprobs, with_projections, admission, id](std::size_t, httplib::DataSink& sink) {
            // Of the tokens that completed no text yet: each chunk lists the tokens whose text it
            // carries (the end-of-sequence token in the last one).
            json unsent_logprobs = json::array();
            json unsent_tokens = json::array();
            json unsent_projections = json::array();
            std::size_t tokens = 0;
            const auto send = [&](json choice) {
                if (with_logprobs) {
                    choice["logprobs"] = chat ? json{{"content", unsent_logprobs}} : completion_logprobs(unsent_logprobs);
                    unsent_logprobs = json::array();
                }
                json chunk = base;
                chunk["choices"] = {choice};
                chunk["tokens"] = std::exchange(unsent_tokens, json::array());
                if (with_projections) chunk["projections"] = std::exchange(unsent_projections, json::array());
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
                    unsent_tokens.push_back(piece.token);
                    if (with_projections) unsent_projections.push_back(piece.projections);
                    if (piece.text.empty()) continue;
                    const std::string& text = piece.text;
                    lock.unlock();
                    const bool sent = send(chat ? json{{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", nullptr}}
                                                : json{{"index", 0}, {"text", text}, {"finish_reason", nullptr}});
                    lock.lock();
                    if (!sent) {  // the client went away: its row leaves the batch at the next step
                        queue->client_gone = true;
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
            else last["stop_reason"] = persona::stop_reason_name(queue->result.stop_reason);  // finer than finish_reason
            lock.unlock();
            send(last);
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
        },
        // A connection that closed before the provider ran (or between its calls) ends the job too.
        [queue](bool success) {
            if (!success) queue->client_gone = true;
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
    std::mutex inbox_mutex_;
    std::deque<Pending> inbox_;    // requests waiting for a row
    bool batch_running_ = false;   // the batch job is queued or running (under inbox_mutex_)
    std::map<int, std::shared_ptr<TokenQueue>> running_;  // batch row id -> its request; engine thread only
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
        ->check(CLI::Range(1, 1024))->capture_default_str();
    serve->add_option("--max-rows", options->max_rows, "Requests generating together in one batch; the others wait")
        ->check(CLI::Range(1, 64))->capture_default_str();
    serve->add_option("--request-timeout", options->request_timeout_seconds,
                      "Seconds a request may take from its arrival, waiting included; then it stops (408)")
        ->check(CLI::Range(1, 1 << 24))->capture_default_str();
    serve->add_option("--max-tokens", options->max_tokens, "Largest max_tokens a request may ask for")->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    serve->callback([&global, &selected, options] { selected = [&global, options] { return run_serve(global, *options); }; });
}

}  // namespace persona_cli
