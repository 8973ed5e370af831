// Continuous batching over one shared KV cache. Every row's entries end at the same slot
// (cache.length), so one decode step feeds all rows at once, each at its own position (slot minus
// its left padding, as in Model::generate). Joining and leaving rebuild the cache with the new
// layout: a copy of the live entries, cheap beside a decode step, that keeps the window no wider
// than the longest row.
#include "persona/generation_batch.h"

#include "model/model_impl.h"
#include "model/row_decoding.h"

#include <algorithm>
#include <utility>

namespace persona {

using model::KvCache;
using model::RowLayout;

struct GenerationBatch::Impl {
    explicit Impl(Model::Impl& model) : m(model) {}

    struct Row {
        int id = 0;
        std::unique_ptr<model::RowDecoding> decoding;
        std::vector<Model::Impl::ResolvedSteering> steering;
        Model::Impl::ResolvedProbe probe;
        TokenFn on_token;
        std::int64_t prompt = 0;      // prompt tokens
        std::int64_t filled = 0;      // its entries in the cache: the prompt and the tokens fed back so far
        std::int64_t next_input = 0;  // the token the next step feeds
        int next_step = 1;
        int max_new_tokens = 0;
    };
    // Where a row's entries are now: a cache, its row there, and the slot they end at.
    struct Source {
        const KvCache* cache;
        std::int64_t row;
        std::int64_t end;
    };

    Model::Impl& m;
    std::vector<Row> rows;  // in the cache's row order
    KvCache cache;
    std::vector<Ended> ended;
    int next_id = 0;

    std::vector<RowLayout> layout() const {
        std::vector<RowLayout> out;
        for (const Row& row : rows) {
            const std::int64_t padding = cache.length - row.filled;
            out.push_back({padding, padding + row.prompt});
        }
        return out;
    }

    // Makes `next` the batch, each row's entries copied from `sources` to end at the new length:
    // the longest row's, so no slot left of every row is kept; room for the most tokens any row
    // may still generate.
    void relayout(std::vector<Row> next, const std::vector<Source>& sources) {
        std::int64_t length = 0, room = 1;
        for (const Row& row : next) {
            length = std::max(length, row.filled);
            room = std::max<std::int64_t>(room, row.max_new_tokens - static_cast<std::int64_t>(row.decoding->result.tokens.size()));
        }
        KvCache rebuilt;
        const auto& c = m.config();
        const std::int64_t batch = static_cast<std::int64_t>(next.size());
        for (std::size_t layer = 0; batch > 0 && layer < std::size_t(c.layers); ++layer) {
            // Zeros, not garbage, in the padding: the portable attention multiplies masked keys'
            // and values' slots by zero weights, and NaN bits would survive that.
            const auto options = torch::TensorOptions(m.device).dtype(cache_dtype(sources));
            torch::Tensor keys = torch::zeros({batch, c.kv_heads, length + room, c.head_dim}, options);
            torch::Tensor values = torch::zeros({batch, c.kv_heads, length + room, c.head_dim}, options);
            for (std::int64_t r = 0; r < batch; ++r) {
                const Source& from = sources[std::size_t(r)];
                const std::int64_t n = next[std::size_t(r)].filled;
                keys[r].narrow(1, length - n, n).copy_(from.cache->keys[layer][from.row].narrow(1, from.end - n, n));
                values[r].narrow(1, length - n, n).copy_(from.cache->values[layer][from.row].narrow(1, from.end - n, n));
            }
            rebuilt.keys.push_back(std::move(keys));
            rebuilt.values.push_back(std::move(values));
        }
        rebuilt.length = batch > 0 ? length : 0;
        cache = std::move(rebuilt);
        rows = std::move(next);
    }

    static torch::ScalarType cache_dtype(const std::vector<Source>& sources) {
        return sources.empty() ? torch::kFloat32 : sources.front().cache->keys.front().scalar_type();
    }

    // The rows still generating, with where their entries are in the current cache.
    std::vector<Source> sources_in_place() const {
        std::vector<Source> out;
        for (std::size_t r = 0; r < rows.size(); ++r) out.push_back({&cache, std::int64_t(r), cache.length});
        return out;
    }

    // Rebuilds the batch with the rows `keeps` returns true for.
    template <typename Keeps>
    void keep_only(Keeps&& keeps) {
        std::vector<Row> kept;
        std::vector<Source> sources;
        for (std::size_t r = 0; r < rows.size(); ++r) {
            if (!keeps(rows[r])) continue;
            sources.push_back({&cache, std::int64_t(r), cache.length});
            kept.push_back(std::move(rows[r]));
        }
        relayout(std::move(kept), sources);
    }

    // A forward step's hook: every row's steering, then each row's probe projections of the
    // step's last position, into projections[r] (in its probe's order).
    auto between(const std::vector<Row*>& batch_rows, std::vector<RowLayout> layout, std::int64_t past,
                 std::vector<std::vector<torch::Tensor>>& projections) const {
        std::vector<std::vector<Model::Impl::ResolvedSteering>> steering;
        std::vector<const Model::Impl::ResolvedProbe*> probes;
        for (const Row* row : batch_rows) {
            steering.push_back(row->steering);
            probes.push_back(&row->probe);
        }
        return [this, steering = std::move(steering), probes = std::move(probes), layout = std::move(layout), past,
                &projections](int layer, torch::Tensor& h) {
            m.apply_steering(h, layer, steering, layout, past);
            for (std::size_t r = 0; r < probes.size(); ++r)
                for (int slot : probes[r]->slots[std::size_t(layer)])
                    projections[r][std::size_t(slot)] =
                        torch::matmul(h.select(1, h.size(1) - 1).narrow(0, std::int64_t(r), 1), probes[r]->directions[slot]);
        };
    }

    static std::vector<float> projections_of(const std::vector<torch::Tensor>& probed) {
        if (probed.empty()) return {};
        const torch::Tensor values = torch::stack(probed, 1).to(torch::kCPU).contiguous();  // [1, P]
        return std::vector<float>(values.data_ptr<float>(), values.data_ptr<float>() + values.numel());
    }

    void finish(Row& row) { ended.push_back({row.id, std::move(row.decoding->result)}); }
};

GenerationBatch::GenerationBatch(Model& model) : impl_(std::make_unique<Impl>(model.internals())) {}
GenerationBatch::~GenerationBatch() = default;

std::size_t GenerationBatch::size() const { return impl_->rows.size(); }
std::size_t GenerationBatch::ended_waiting() const { return impl_->ended.size(); }

int GenerationBatch::add(const GenerationRow& request, TokenFn on_token, const CancelFn& cancelled,
                         const ProjectionProbe* probe) {
    torch::InferenceMode inference;
    Impl& b = *impl_;
    Model::Impl& m = b.m;
    const int id = b.next_id;
    Impl::Row row;
    row.id = id;
    row.decoding = std::make_unique<model::RowDecoding>(request.sampling, *m.tokenizer);
    row.decoding->result.prompt_tokens = m.checked_prompt(request, std::size_t(id));
    row.steering = m.resolve(request.steering, std::size_t(id));
    row.probe = m.resolve_probe(probe);
    row.on_token = std::move(on_token);
    row.max_new_tokens = request.sampling.max_new_tokens;
    ++b.next_id;
    if (!row.decoding->active()) {  // max_new_tokens 0
        b.finish(row);
        return id;
    }
    const auto& prompt = row.decoding->result.prompt_tokens;
    row.prompt = static_cast<std::int64_t>(prompt.size());
    // The same prefill Model::generate runs for a row alone.
    KvCache solo = m.make_cache(1, row.prompt + row.max_new_tokens);
    const std::vector<RowLayout> layout{{0, row.prompt}};
    std::vector<std::vector<torch::Tensor>> projections{std::vector<torch::Tensor>(row.probe.count())};
    const torch::Tensor hidden = m.forward(m.single_row(prompt), layout, 0, &solo, b.between({&row}, layout, 0, projections), cancelled);
    const torch::Tensor logits = m.net->logits(hidden.narrow(1, row.prompt - 1, 1)).squeeze(1).to(torch::kCPU).contiguous();
    TokenEvent event;
    event.row = id;
    event.step = 0;
    event.projections = Impl::projections_of(projections[0]);
    row.decoding->advance(logits[0].data_ptr<float>(), static_cast<std::size_t>(m.config().vocabulary), event);
    if (row.on_token) row.on_token(event);
    if (!row.decoding->active()) {
        b.finish(row);
        return id;
    }
    row.filled = row.prompt;
    row.next_input = event.token;
    std::vector<Impl::Source> sources = b.sources_in_place();
    sources.push_back({&solo, 0, row.prompt});
    std::vector<Impl::Row> next = std::move(b.rows);
    next.push_back(std::move(row));
    b.relayout(std::move(next), sources);
    return id;
}

std::vector<GenerationBatch::Ended> GenerationBatch::step(const CancelFn& cancelled) {
    torch::InferenceMode inference;
    Impl& b = *impl_;
    Model::Impl& m = b.m;
    if (!b.rows.empty()) {
        check_cancelled(cancelled);
        const std::int64_t batch = static_cast<std::int64_t>(b.rows.size());
        std::vector<std::int64_t> input;
        std::vector<Impl::Row*> rows;
        std::vector<std::vector<torch::Tensor>> projections;
        for (Impl::Row& row : b.rows) {
            input.push_back(row.next_input);
            rows.push_back(&row);
            projections.emplace_back(row.probe.count());
        }
        const std::vector<RowLayout> layout = b.layout();
        const std::int64_t past = b.cache.length;
        const torch::Tensor hidden = m.forward(torch::tensor(input, torch::kInt64).view({batch, 1}).to(m.device), layout, past,
                                               &b.cache, b.between(rows, layout, past, projections), cancelled);
        const torch::Tensor logits = m.net->logits(hidden).squeeze(1).to(torch::kCPU).contiguous();
        bool any_ended = false;
        for (std::int64_t r = 0; r < batch; ++r) {
            Impl::Row& row = b.rows[std::size_t(r)];
            ++row.filled;
            TokenEvent event;
            event.row = row.id;
            event.step = row.next_step++;
            event.projections = Impl::projections_of(projections[std::size_t(r)]);
            row.decoding->advance(logits[r].data_ptr<float>(), static_cast<std::size_t>(m.config().vocabulary), event);
            row.next_input = event.token;
            if (row.on_token) row.on_token(event);
            any_ended = any_ended || !row.decoding->active();
        }
        if (any_ended)
            b.keep_only([&](Impl::Row& row) {
                if (row.decoding->active()) return true;
                b.finish(row);
                return false;
            });
    }
    return std::exchange(b.ended, {});
}

bool GenerationBatch::remove(int id) {
    torch::InferenceMode inference;
    Impl& b = *impl_;
    const auto found = std::find_if(b.rows.begin(), b.rows.end(), [id](const Impl::Row& row) { return row.id == id; });
    if (found == b.rows.end()) return false;
    b.keep_only([id](const Impl::Row& row) { return row.id != id; });
    return true;
}

}  // namespace persona
