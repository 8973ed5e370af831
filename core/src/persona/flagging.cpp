#include "persona/flagging.h"

#include "io/atomic_file.h"
#include "io/fnv_hash.h"
#include "io/json_file.h"
#include "persona/errors.h"
#include "persona/files.h"
#include "persona/model.h"
#include "persona/monitoring.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

namespace persona {

namespace {

using Json = nlohmann::json;

std::string run_fingerprint(const Model& model, const PersonaVector& vector, const FlagSettings& settings) {
    detail::Fnv1a f;
    f.add(model.facts().name);
    f.add(std::to_string(model.facts().file_bytes));
    f.add(model.dtype());
    f.add(vector.values.data(), vector.values.size() * sizeof(float));
    f.add(std::to_string(settings.layer));
    f.add(std::to_string(settings.max_new_tokens));
    f.add(std::to_string(settings.temperature));
    f.add(std::to_string(settings.top_p));
    f.add(std::to_string(settings.seed));
    return f.hex();
}

// Each sample's own seed, from the run's seed and its line (as extraction derives its seeds).
std::uint64_t sample_seed(std::uint64_t seed, std::size_t line) {
    std::uint64_t x = seed + 0x9E3779B97F4A7C15ULL + line;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

// An interrupted run can leave half a result line; appending after it would glue two together.
void cut_torn_last_line(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, std::string("cannot open: ") + std::strerror(errno));
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (text.empty() || text.back() == '\n') return;
    const auto keep = text.rfind('\n');
    std::error_code error;
    std::filesystem::resize_file(path, keep == std::string::npos ? 0 : keep + 1, error);
    if (error) throw FileError(path, "cannot cut off its incomplete last line: " + error.message());
}

Json optional_number(const std::optional<double>& value) {
    return value && std::isfinite(*value) ? Json(*value) : Json(nullptr);
}

std::optional<double> number_or_null(const Json& json, const char* key) {
    const auto found = json.find(key);
    if (found == json.end() || found->is_null()) return std::nullopt;
    if (!found->is_number()) throw Error(std::string("\"") + key + "\" is not a number");
    return found->get<double>();
}

}  // namespace

Json to_json(const FlagRecord& record) {
    Json json = {{"line", record.line},
                 {"difference", optional_number(record.difference)},
                 {"dataset_projection", optional_number(record.dataset_projection)},
                 {"model_projection", optional_number(record.model_projection)},
                 {"prompt_tokens", record.prompt_tokens},
                 {"dataset_answer_tokens", record.dataset_answer_tokens},
                 {"model_answer_tokens", record.model_answer_tokens},
                 {"model_answer", record.model_answer}};
    if (!record.unscored_reason.empty()) json["unscored"] = record.unscored_reason;
    json["run"] = record.run;
    return json;
}

FlagRecord flag_record_from_json(const Json& json) {
    if (!json.is_object()) throw Error("not a JSON object");
    FlagRecord record;
    if (!json.contains("line") || !json["line"].is_number_unsigned() || json["line"].get<std::size_t>() == 0)
        throw Error("no \"line\" number");
    if (!json.contains("run") || !json["run"].is_string()) throw Error("no \"run\" fingerprint");
    record.line = json["line"].get<std::size_t>();
    record.run = json["run"].get<std::string>();
    record.difference = number_or_null(json, "difference");
    record.dataset_projection = number_or_null(json, "dataset_projection");
    record.model_projection = number_or_null(json, "model_projection");
    record.prompt_tokens = json.value("prompt_tokens", 0);
    record.dataset_answer_tokens = json.value("dataset_answer_tokens", 0);
    record.model_answer_tokens = json.value("model_answer_tokens", 0);
    record.model_answer = json.value("model_answer", std::string());
    record.unscored_reason = json.value("unscored", std::string());
    return record;
}

void rank_flag_records(std::vector<FlagRecord>& records) {
    std::stable_sort(records.begin(), records.end(), [](const FlagRecord& a, const FlagRecord& b) {
        if (a.difference.has_value() != b.difference.has_value()) return a.difference.has_value();
        if (a.difference && *a.difference != *b.difference) return *a.difference > *b.difference;
        return a.line < b.line;
    });
}

std::vector<FlagRecord> read_flag_results(const std::string& path) {
    check_regular_file(path);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, std::string("cannot open: ") + std::strerror(errno));
    std::vector<FlagRecord> records;
    const bool read = detail::for_each_jsonl_line(in, [&](const std::string& text, std::size_t line) {
        try {
            records.push_back(flag_record_from_json(Json::parse(text)));
        } catch (const Json::parse_error& e) {
            throw FileError(path, detail::jsonl_line_prefix(line) + "not JSON: " + detail::json_error_text(e));
        } catch (const Json::exception& e) {
            throw FileError(path, detail::jsonl_line_prefix(line) + "not a flagging result: " + detail::json_error_text(e));
        } catch (const Error& e) {
            throw FileError(path, detail::jsonl_line_prefix(line) + "not a flagging result: " + e.what());
        }
    });
    if (!read) throw FileError(path, "cannot read");
    return records;
}

std::vector<FlagRecord> merge_flag_results(const std::vector<std::string>& paths) {
    std::vector<FlagRecord> all;
    std::map<std::size_t, std::string> seen;  // line -> file it came from
    std::string run, run_file;
    for (const auto& path : paths) {
        for (auto& record : read_flag_results(path)) {
            if (run.empty()) {
                run = record.run;
                run_file = path;
            } else if (record.run != run) {
                throw FileError(path, "holds results of run " + record.run + " but " + run_file + " holds run " + run +
                                          " (another model, vector, layer or generation settings): they do not rank together");
            }
            const auto [where, inserted] = seen.emplace(record.line, path);
            if (!inserted)
                throw FileError(path, "holds input line " + std::to_string(record.line) + ", which " +
                                          (where->second == path ? std::string("it holds twice") : where->second + " holds too") +
                                          " (the same shard given twice?)");
            all.push_back(std::move(record));
        }
    }
    rank_flag_records(all);
    return all;
}

void write_flag_results(const std::string& path, const std::vector<FlagRecord>& records) {
    std::string text;
    for (const auto& record : records) text += to_json(record).dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
    detail::write_file_atomically(path, text);
}

std::vector<std::string> read_flag_input_lines(const FlagInput& input, const std::vector<std::size_t>& lines) {
    std::map<std::size_t, std::int64_t> offsets;
    for (const FlagInput::Line& line : input.lines) offsets[line.line] = line.offset;
    check_regular_file(input.path);
    std::ifstream in(input.path, std::ios::binary);
    if (!in) throw FileError(input.path, "cannot be opened again");
    std::vector<std::string> texts;
    for (std::size_t line : lines) {
        const auto found = offsets.find(line);
        if (found == offsets.end()) throw FileError(input.path, detail::jsonl_line_prefix(line) + "is not a sample of this input");
        in.clear();
        in.seekg(found->second);
        std::string text;
        if (!std::getline(in, text)) throw FileError(input.path, detail::jsonl_line_prefix(line) + "cannot be read again (did the file change?)");
        detail::strip_carriage_return(text);
        texts.push_back(std::move(text));
    }
    return texts;
}

std::pair<std::size_t, std::size_t> write_flag_split(const FlagInput& input, const std::vector<FlagRecord>& records,
                                                     double threshold, const std::string& flagged_path,
                                                     const std::string& kept_path) {
    std::map<std::size_t, bool> flagged_line;
    for (const FlagRecord& record : records) flagged_line[record.line] = record.difference && *record.difference >= threshold;
    std::vector<std::size_t> lines;
    for (const FlagInput::Line& line : input.lines) lines.push_back(line.line);
    const std::vector<std::string> texts = read_flag_input_lines(input, lines);
    std::string flagged, kept;
    std::size_t flagged_count = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const auto found = flagged_line.find(lines[i]);
        const bool flag = found != flagged_line.end() && found->second;
        (flag ? flagged : kept) += texts[i] + "\n";
        flagged_count += flag ? 1 : 0;
    }
    detail::write_file_atomically(flagged_path, flagged);
    detail::write_file_atomically(kept_path, kept);
    return {flagged_count, lines.size() - flagged_count};
}

namespace {

void check_shard(const FlagSettings& settings) {
    if (settings.shard_count < 1 || settings.shard_index < 0 || settings.shard_index >= settings.shard_count)
        throw Error("shard " + std::to_string(settings.shard_index) + "/" + std::to_string(settings.shard_count) +
                    " does not exist (shards are 0/N .. N-1/N)");
}

}  // namespace

FlagInput scan_flag_input(const std::string& input_path, const FlagSettings& settings,
                          const std::function<void(const std::string&)>& warn) {
    check_shard(settings);
    const std::size_t shard_count = static_cast<std::size_t>(settings.shard_count);
    const std::size_t shard_index = static_cast<std::size_t>(settings.shard_index);
    FlagInput input;
    input.path = input_path;
    input.shard_index = settings.shard_index;
    input.shard_count = settings.shard_count;
    check_regular_file(input_path);
    std::ifstream in(input_path, std::ios::binary);
    if (!in) throw FileError(input_path, std::string("cannot open: ") + std::strerror(errno));
    std::string text;
    std::int64_t offset = 0;
    std::size_t line = 0;
    while (std::getline(in, text)) {
        const std::int64_t start = offset;
        offset += static_cast<std::int64_t>(text.size()) + 1;
        ++line;
        if ((line - 1) % shard_count != shard_index || detail::jsonl_blank_line(text)) continue;
        ++input.in_shard;
        detail::strip_carriage_return(text);
        try {
            parse_chat_line(text, input_path, line);
        } catch (const FileError& e) {
            if (!settings.skip_bad_lines) throw;
            ++input.bad_lines_skipped;
            if (warn) warn(std::string(e.what()) + " (skipped)");
            continue;
        }
        input.lines.push_back({line, start});
    }
    if (in.bad()) throw FileError(input_path, "cannot read");
    input.line_count = line;
    return input;
}

FlagSummary flag_dataset(Model& model, const PersonaVector& vector, const std::string& input_path,
                         const std::string& output_path, const FlagSettings& settings, const ProgressFn& progress,
                         const std::function<void(const std::string&)>& warn, const CancelFn& cancelled) {
    return flag_dataset(model, vector, scan_flag_input(input_path, settings, warn), output_path, settings, progress, cancelled);
}

FlagSummary flag_dataset(Model& model, const PersonaVector& vector, const FlagInput& input, const std::string& output_path,
                         const FlagSettings& settings, const ProgressFn& progress, const CancelFn& cancelled) {
    check_vector_fits(vector, model);
    if (settings.layer < 0 || settings.layer > model.layer_count())
        throw Error("layer " + std::to_string(settings.layer) + " is outside 0.." + std::to_string(model.layer_count()));
    check_shard(settings);
    if (settings.max_new_tokens < 1) throw Error("the model's answers need at least 1 new token");
    const std::size_t shard_count = static_cast<std::size_t>(settings.shard_count);
    const std::size_t shard_index = static_cast<std::size_t>(settings.shard_index);
    const std::size_t batch_size = static_cast<std::size_t>(std::max(1, settings.batch_size));

    FlagSummary summary;
    summary.run = run_fingerprint(model, vector, settings);

    if (input.shard_index != settings.shard_index || input.shard_count != settings.shard_count)
        throw Error("the input was scanned for shard " + std::to_string(input.shard_index) + "/" +
                    std::to_string(input.shard_count) + ", not " + std::to_string(settings.shard_index) + "/" +
                    std::to_string(settings.shard_count));
    const std::string& input_path = input.path;
    summary.lines = input.line_count;
    summary.in_shard = input.in_shard;
    summary.bad_lines_skipped = input.bad_lines_skipped;

    // Results already written by an earlier run of the same command.
    std::set<std::size_t> done;
    const std::string shard_name = std::to_string(shard_index) + "/" + std::to_string(shard_count);
    if (std::filesystem::exists(output_path)) {
        cut_torn_last_line(output_path);
        for (auto& record : read_flag_results(output_path)) {
            if (record.run != summary.run)
                throw FileError(output_path, "holds results of another run (" + record.run + ", this one is " + summary.run +
                                                 ": the model, vector, layer or generation settings differ); "
                                                 "write to another file or remove it");
            if ((record.line - 1) % shard_count != shard_index)
                throw FileError(output_path, "holds input line " + std::to_string(record.line) +
                                                 ", which is not in shard " + shard_name + "; write to another file");
            if (!done.insert(record.line).second)
                throw FileError(output_path, "holds input line " + std::to_string(record.line) + " twice");
            summary.records.push_back(std::move(record));
        }
    }
    summary.resumed = summary.records.size();
    std::vector<FlagInput::Line> pending;
    for (const auto& p : input.lines)
        if (!done.count(p.line)) pending.push_back(p);

    std::ofstream out(output_path, std::ios::binary | std::ios::app);
    if (!out) throw FileError(output_path, std::string("cannot open for writing: ") + std::strerror(errno));
    check_regular_file(input_path);
    std::ifstream in(input_path, std::ios::binary);
    if (!in) throw FileError(input_path, std::string("cannot open: ") + std::strerror(errno));

    const auto report = [&](std::size_t done_now) {
        if (progress) progress(Progress{"flag", done_now, pending.size()});
    };
    const int context = model.context_length();
    const int hidden = model.hidden_size();
    const float* direction = vector.layer(settings.layer).values;
    const auto projection = [&](const std::vector<float>& response_mean) {
        return project(response_mean.data() + static_cast<std::size_t>(settings.layer) * static_cast<std::size_t>(hidden),
                       direction, hidden);
    };

    report(0);
    for (std::size_t start = 0; start < pending.size(); start += batch_size) {
        check_cancelled(cancelled);
        const std::size_t end = std::min(pending.size(), start + batch_size);

        struct Work {
            FlagRecord record;
            std::vector<std::int32_t> prompt;
            std::vector<std::int32_t> dataset_answer;
            std::vector<std::int32_t> model_answer;
            int dataset_row = -1;
            int model_row = -1;
        };
        std::vector<Work> work;
        std::vector<GenerationRow> generation;
        std::vector<std::size_t> generated_for;
        for (std::size_t k = start; k < end; ++k) {
            in.clear();
            in.seekg(pending[k].offset);
            std::string text;
            if (!std::getline(in, text)) throw FileError(input_path, detail::jsonl_line_prefix(pending[k].line) + "cannot be read again (did the file change?)");
            detail::strip_carriage_return(text);
            const ChatSample sample = parse_chat_line(text, input_path, pending[k].line);

            Work w;
            w.record.line = sample.line;
            w.record.run = summary.run;
            w.prompt = model.encode_chat(sample.prompt, true);
            w.dataset_answer = answer_tokens(model, sample.prompt, sample.answer);
            w.record.prompt_tokens = static_cast<int>(w.prompt.size());
            w.record.dataset_answer_tokens = static_cast<int>(w.dataset_answer.size());
            const std::size_t longest = w.prompt.size() + std::max<std::size_t>(w.dataset_answer.size(),
                                                                                 static_cast<std::size_t>(settings.max_new_tokens));
            if (w.dataset_answer.empty()) {
                w.record.unscored_reason = "the dataset's answer is empty";
            } else if (longest > static_cast<std::size_t>(context)) {
                w.record.unscored_reason = "the prompt (" + std::to_string(w.prompt.size()) + " tokens) with the dataset's answer (" +
                                           std::to_string(w.dataset_answer.size()) + ") or up to " +
                                           std::to_string(settings.max_new_tokens) + " new tokens exceeds the model's context of " +
                                           std::to_string(context);
            } else {
                GenerationRow row;
                row.prompt_tokens = w.prompt;
                row.sampling.temperature = settings.temperature;
                row.sampling.top_p = settings.top_p;
                row.sampling.seed = sample_seed(settings.seed, sample.line);
                row.sampling.max_new_tokens = settings.max_new_tokens;
                generation.push_back(std::move(row));
                generated_for.push_back(work.size());
            }
            work.push_back(std::move(w));
        }

        const auto answers = model.generate(generation, {}, nullptr, cancelled);
        std::vector<CaptureRow> capture;
        for (std::size_t g = 0; g < answers.size(); ++g) {
            Work& w = work[generated_for[g]];
            w.model_answer = answers[g].tokens;
            w.record.model_answer = answers[g].text;
            w.record.model_answer_tokens = static_cast<int>(w.model_answer.size());
            CaptureRow dataset_row{w.prompt, static_cast<int>(w.prompt.size())};
            dataset_row.tokens.insert(dataset_row.tokens.end(), w.dataset_answer.begin(), w.dataset_answer.end());
            w.dataset_row = static_cast<int>(capture.size());
            capture.push_back(std::move(dataset_row));
            if (w.model_answer.empty()) {
                w.record.unscored_reason = "the model's own answer is empty (it ended its turn at once)";
                continue;
            }
            CaptureRow model_row{w.prompt, static_cast<int>(w.prompt.size())};
            model_row.tokens.insert(model_row.tokens.end(), w.model_answer.begin(), w.model_answer.end());
            w.model_row = static_cast<int>(capture.size());
            capture.push_back(std::move(model_row));
        }
        // batch_size rows per pass, not 2 * batch_size: attention's memory grows with rows x
        // length^2, and dataset answers can be far longer than the model's.
        CaptureResult captured;
        for (std::size_t from = 0; from < capture.size(); from += batch_size) {
            const std::size_t to = std::min(capture.size(), from + batch_size);
            CaptureResult part = model.capture(std::vector<CaptureRow>(capture.begin() + static_cast<std::ptrdiff_t>(from),
                                                                       capture.begin() + static_cast<std::ptrdiff_t>(to)),
                                               {}, cancelled);
            for (auto& row : part.response_mean) captured.response_mean.push_back(std::move(row));
        }

        std::string lines;
        for (Work& w : work) {
            if (w.dataset_row >= 0) w.record.dataset_projection = projection(captured.response_mean[static_cast<std::size_t>(w.dataset_row)]);
            if (w.model_row >= 0) w.record.model_projection = projection(captured.response_mean[static_cast<std::size_t>(w.model_row)]);
            if (w.record.dataset_projection && w.record.model_projection) {
                w.record.difference = *w.record.dataset_projection - *w.record.model_projection;
                ++summary.scored;
            } else {
                ++summary.unscored;
            }
            lines += to_json(w.record).dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
            summary.records.push_back(std::move(w.record));
        }
        out << lines;
        out.flush();
        if (!out) throw FileError(output_path, "cannot be written (disk full?)");
        report(end);
    }
    rank_flag_records(summary.records);
    return summary;
}

}  // namespace persona
