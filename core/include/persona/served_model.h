#pragma once
// A model served by `persona-cli serve` on this or another machine, as the workbench uses it in
// place of a local one: the served model's facts, and generation streamed token by token with
// the same steering, sampling and per-token projections Model::generate takes and reports.
#include "persona/generation.h"
#include "persona/model_facts.h"
#include "persona/progress.h"

#include <functional>
#include <string>

namespace persona {

struct ServerAddress {
    std::string url;      // http(s)://host:port, with or without a trailing /v1
    std::string api_key;  // sent as "Authorization: Bearer KEY" when not empty; never saved
    double timeout_seconds = 600;
};

// GET /v1/models: the served model's facts (its calibration included). Throws Error naming the
// URL when the server cannot be reached, refuses the key, or is not a persona-cli serve.
ModelFacts fetch_served_facts(const ServerAddress& server);

// One row streamed from POST /v1/chat/completions: on_token sees each token as Model::generate's
// would (row 0, its step, text and, with a probe, projections), on the calling thread. A
// cancel closes the connection, which frees the row on the server, and throws Cancelled; the
// server's refusals and errors throw Error with its message.
GenerationResult generate_served(const ServerAddress& server, const GenerationRow& row, const ProjectionProbe* probe,
                                 const std::function<void(const TokenEvent&)>& on_token, const CancelFn& cancelled);

}  // namespace persona
