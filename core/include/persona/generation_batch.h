#pragma once
// Continuous batching: a generation that rows join and leave between steps, each with its own
// steering, sampling and token stream (persona-cli serve runs its requests through one). A row's
// tokens are those Model::generate gives it alone: it is prefilled alone, then decodes one token
// per step beside whatever else is generating. Lives on the engine thread, like the Model.
#include "persona/generation.h"
#include "persona/progress.h"

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

namespace persona {

class Model;

class GenerationBatch {
public:
    explicit GenerationBatch(Model& model);
    ~GenerationBatch();
    GenerationBatch(const GenerationBatch&) = delete;
    GenerationBatch& operator=(const GenerationBatch&) = delete;

    using TokenFn = std::function<void(const TokenEvent&)>;
    // Prefills `row` (its prompt alone) and takes its first token, which reaches on_token before
    // this returns; from the next step on the row decodes with the others. Returns the row's id
    // (events carry it as TokenEvent::row). A bad row (prompt over the context, a steering vector
    // of the wrong size) throws persona::Error and leaves the batch as it was; `cancelled` stops
    // this prefill only.
    // With a probe, every event carries the token's projections on its directions, as
    // Model::generate's do.
    int add(const GenerationRow& row, TokenFn on_token, const CancelFn& cancelled = {},
            const ProjectionProbe* probe = nullptr);

    struct Ended {
        int id = 0;
        GenerationResult result;
    };
    // One token for every row generating; returns the rows that ended since the last call (in
    // add or in this step), which leave the batch.
    std::vector<Ended> step(const CancelFn& cancelled = {});
    // Takes a row out now (its client went away); false when no row has that id.
    bool remove(int id);

    std::size_t size() const;  // rows generating
    // Rows ended but not yet handed out by step().
    std::size_t ended_waiting() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace persona
