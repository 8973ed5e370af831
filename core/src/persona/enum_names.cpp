// The one table of names per enum that files and the command line spell out: project.json,
// vector-file metadata, checkpoints, CLI options and the GUI's saved settings all go through
// these functions, so a name is written and read the same everywhere.
#include "persona/generation.h"
#include "persona/judge.h"
#include "persona/model.h"
#include "persona/persona_vector.h"

#include <iterator>

namespace persona {

namespace {

template <typename Enum>
struct Named {
    Enum value;
    const char* name;
};

constexpr Named<Aggregate> kAggregates[] = {
    {Aggregate::ResponseMean, "response_avg"}, {Aggregate::PromptMean, "prompt_avg"}, {Aggregate::PromptLast, "prompt_last"}};
constexpr Named<JudgeKind> kJudgeKinds[] = {{JudgeKind::Local, "local"}, {JudgeKind::None, "none"}, {JudgeKind::Http, "http"}};
constexpr Named<JudgeMode> kJudgeModes[] = {{JudgeMode::Absolute, "absolute"}, {JudgeMode::Pairwise, "pairwise"}};
constexpr Named<SteerPositions> kPositions[] = {
    {SteerPositions::Response, "response"}, {SteerPositions::Prompt, "prompt"}, {SteerPositions::All, "all"}};
constexpr Named<SteerOperation> kOperations[] = {{SteerOperation::Add, "add"}, {SteerOperation::Ablate, "ablate"},
                                                {SteerOperation::Cap, "cap"}};
constexpr Named<StopReason> kStopReasons[] = {{StopReason::MaxTokens, "max_tokens"},
                                              {StopReason::EndOfSequence, "end_of_sequence"},
                                              {StopReason::StopString, "stop_string"},
                                              {StopReason::Cancelled, "cancelled"}};
constexpr Named<DeviceChoice> kDevices[] = {
    {DeviceChoice::Auto, "auto"}, {DeviceChoice::Cpu, "cpu"}, {DeviceChoice::Cuda, "cuda"}};
constexpr Named<DTypeChoice> kDTypes[] = {
    {DTypeChoice::Auto, "auto"}, {DTypeChoice::F32, "f32"}, {DTypeChoice::BF16, "bf16"}, {DTypeChoice::F16, "f16"},
    {DTypeChoice::Quantized, "quantized"}, {DTypeChoice::QuantizedPrecise, "quantized-precise"}};

template <typename Enum, std::size_t N>
const char* name_in(const Named<Enum> (&table)[N], Enum value) {
    for (const auto& entry : table)
        if (entry.value == value) return entry.name;
    return "unknown";
}

template <typename Enum, std::size_t N>
std::optional<Enum> value_in(const Named<Enum> (&table)[N], const std::string& name) {
    for (const auto& entry : table)
        if (name == entry.name) return entry.value;
    return std::nullopt;
}

template <typename Enum, std::size_t N>
std::vector<std::string> names_in(const Named<Enum> (&table)[N]) {
    std::vector<std::string> names;
    for (const auto& entry : table) names.emplace_back(entry.name);
    return names;
}

}  // namespace

const char* aggregate_name(Aggregate aggregate) { return name_in(kAggregates, aggregate); }
std::optional<Aggregate> aggregate_from_name(const std::string& name) { return value_in(kAggregates, name); }
std::vector<std::string> aggregate_names() { return names_in(kAggregates); }

const char* judge_kind_name(JudgeKind kind) { return name_in(kJudgeKinds, kind); }
std::optional<JudgeKind> judge_kind_from_name(const std::string& name) { return value_in(kJudgeKinds, name); }
std::vector<std::string> judge_kind_names() { return names_in(kJudgeKinds); }

const char* judge_mode_name(JudgeMode mode) { return name_in(kJudgeModes, mode); }
std::optional<JudgeMode> judge_mode_from_name(const std::string& name) { return value_in(kJudgeModes, name); }
std::vector<std::string> judge_mode_names() { return names_in(kJudgeModes); }

const char* steer_positions_name(SteerPositions positions) { return name_in(kPositions, positions); }
std::optional<SteerPositions> steer_positions_from_name(const std::string& name) { return value_in(kPositions, name); }
std::vector<std::string> steer_positions_names() { return names_in(kPositions); }

const char* steer_operation_name(SteerOperation operation) { return name_in(kOperations, operation); }
std::optional<SteerOperation> steer_operation_from_name(const std::string& name) { return value_in(kOperations, name); }
std::vector<std::string> steer_operation_names() { return names_in(kOperations); }

const char* stop_reason_name(StopReason reason) { return name_in(kStopReasons, reason); }
std::optional<StopReason> stop_reason_from_name(const std::string& name) { return value_in(kStopReasons, name); }

const char* device_name(DeviceChoice device) { return name_in(kDevices, device); }
std::optional<DeviceChoice> device_from_name(const std::string& name) { return value_in(kDevices, name); }
std::vector<std::string> device_names() { return names_in(kDevices); }

const char* dtype_name(DTypeChoice dtype) { return name_in(kDTypes, dtype); }
std::optional<DTypeChoice> dtype_from_name(const std::string& name) { return value_in(kDTypes, name); }
std::vector<std::string> dtype_names() { return names_in(kDTypes); }

}  // namespace persona
