#pragma once
// Flagging training data (docs/method.md): for each (prompt, answer) sample of a chat dataset, the
// projection difference
//     dataset_projection - model_projection
// where each is the projection of the response-average activation at the chosen layer onto the
// unit vector v_l/|v_l| (the answer's tokens teacher-forced after the prompt): the dataset's
// answer, and the model's own answer to the same prompt. High differences mark samples that
// would pull the model toward the trait when trained on.
//
// Input: JSONL, one chat per line: {"messages":[{"role":"system"|"user"|"assistant",
// "content":"..."}, ...]} (other keys are ignored). The last message is the answer and must be
// the assistant's; the messages before it (at least one user turn) are the prompt. Blank lines
// are ignored but counted, so line numbers match the file's.
//
// Output: JSONL, one result per sample, appended batch by batch and flushed, so a run stopped
// at any point resumes by skipping the lines already in its output. Each result carries its
// input line number and a fingerprint of the run (model, dtype, vector, layer, generation
// settings): shards of one run merge (merge_flag_results), results of different runs do not.
//
// Sharding: shard i of N takes the lines whose 0-based line index satisfies index % N == i
// (interleaved, so every shard sees a similar mix of lengths); every line, bad ones included,
// belongs to exactly one shard.
#include "persona/chat_jsonl.h"
#include "persona/generation.h"
#include "persona/persona_vector.h"
#include "persona/progress.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace persona {

class Model;

struct FlagSettings {
    int layer = -1;              // hidden_states index, 0..L
    int max_new_tokens = 128;    // of the model's own answer
    float temperature = 0.0f;    // 0: greedy
    float top_p = 1.0f;
    std::uint64_t seed = 0;      // with temperature > 0: each sample's seed derives from it and
                                 // the line number, so answers do not depend on shards or batches
    int batch_size = 8;          // samples per batch: B generation rows, then 2B capture rows in
                                 // passes of B
    int shard_index = 0;
    int shard_count = 1;
    bool skip_bad_lines = false;  // false: a bad line is an error before any model work
};

struct FlagRecord {
    std::size_t line = 0;                     // 1-based line in the input
    std::optional<double> difference;         // dataset_projection - model_projection
    std::optional<double> dataset_projection;
    std::optional<double> model_projection;
    int prompt_tokens = 0;
    int dataset_answer_tokens = 0;
    int model_answer_tokens = 0;
    std::string model_answer;
    std::string unscored_reason;  // why difference is absent (empty model answer, too long)
    std::string run;              // fingerprint of the run that made it
};

nlohmann::json to_json(const FlagRecord& record);
// Throws persona::Error naming what is missing.
FlagRecord flag_record_from_json(const nlohmann::json& json);

// Highest difference first; unscored samples last; ties by line number.
void rank_flag_records(std::vector<FlagRecord>& records);

struct FlagSummary {
    std::size_t lines = 0;          // lines in the input (blank ones included)
    std::size_t in_shard = 0;       // samples (non-blank lines) of this shard
    std::size_t bad_lines_skipped = 0;
    std::size_t resumed = 0;        // already in the output when the run started
    std::size_t scored = 0;         // written by this run with a difference
    std::size_t unscored = 0;       // written by this run without one
    std::string run;
    std::vector<FlagRecord> records;  // this shard's results, resumed ones included, ranked
};

// The shard's lines of a dataset, each already parsed once (parse_chat_line) and located by
// its offset, so flagging reads only those lines again and a large dataset is never held in
// memory.
struct FlagInput {
    struct Line {
        std::size_t line;       // 1-based
        std::int64_t offset;    // byte offset of its start
    };
    std::string path;
    int shard_index = 0;
    int shard_count = 1;
    std::vector<Line> lines;            // the shard's good lines
    std::size_t line_count = 0;         // lines in the file
    std::size_t in_shard = 0;           // non-blank lines of the shard, bad ones included
    std::size_t bad_lines_skipped = 0;
};

// Checks every line of the shard (settings' shard and skip_bad_lines) before any model work,
// which a caller can do before even loading the model. `warn` receives one message per skipped
// bad line. Throws FileError naming the file and line of a bad line (unless skipped), Error for
// a shard that does not exist.
FlagInput scan_flag_input(const std::string& input_path, const FlagSettings& settings,
                          const std::function<void(const std::string&)>& warn = {});

// Flags the shard's samples of `input`, appending results to `output_path` (created when
// missing; a torn last line from an interrupted run is cut off). Progress stage "flag": samples
// done of the shard's. Throws FileError naming the file and line for an input line that changed
// since the scan, or an output that holds results of another run or shard, persona::Error for a
// vector that does not fit the model or a layer outside it, persona::Cancelled when cancelled
// (everything already written stays).
FlagSummary flag_dataset(Model& model, const PersonaVector& vector, const FlagInput& input, const std::string& output_path,
                         const FlagSettings& settings, const ProgressFn& progress = {}, const CancelFn& cancelled = {});

// scan_flag_input, then flag_dataset.
FlagSummary flag_dataset(Model& model, const PersonaVector& vector, const std::string& input_path,
                         const std::string& output_path, const FlagSettings& settings, const ProgressFn& progress = {},
                         const std::function<void(const std::string&)>& warn = {}, const CancelFn& cancelled = {});

// Reads a results file. Throws FileError naming the file and line for a line that is not a result.
std::vector<FlagRecord> read_flag_results(const std::string& path);

// The results of several files (shards of one run) in one ranked list. Throws FileError when a
// file holds results of another run than the first file's, or a line number appears twice.
std::vector<FlagRecord> merge_flag_results(const std::vector<std::string>& paths);

// Writes records as JSONL, atomically.
void write_flag_results(const std::string& path, const std::vector<FlagRecord>& records);

// The original text of the given lines of a scanned input (1-based, as FlagRecord::line), in the
// order asked, read by their offsets. Throws FileError naming the file and line for a line that
// is not the input's or cannot be read again.
std::vector<std::string> read_flag_input_lines(const FlagInput& input, const std::vector<std::size_t>& lines);

// The dataset split by its flagging results: the original lines of the samples whose difference
// is >= threshold to flagged_path, every other sample of the input (lower, unscored, or not
// flagged yet) to kept_path, each in input order, both written atomically. Returns the counts
// (flagged, kept).
std::pair<std::size_t, std::size_t> write_flag_split(const FlagInput& input, const std::vector<FlagRecord>& records,
                                                     double threshold, const std::string& flagged_path,
                                                     const std::string& kept_path);

}  // namespace persona
