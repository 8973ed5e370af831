#pragma once
// A character trait and the data that extracts and evaluates its persona vector (docs/method.md,
// steps 1-2): definition, contrastive instruction pairs, questions, and the judge's rubrics.
//
// Trait file (JSON, UTF-8), schema "persona-workbench/trait" version 1. Every key is required:
//   {
//     "schema": "persona-workbench/trait",
//     "version": 1,
//     "name": "evil",                                   // lowercase slug, see validate()
//     "definition": "one paragraph in plain language",
//     "instructions": [ {"positive": "...", "negative": "..."}, ... ],   // 5 recommended
//     "extraction_questions": [ "...", ... ],          // 20 recommended
//     "evaluation_questions": [ "...", ... ],          // 20 recommended, held out
//     "judge_rubric": "... {question} ... {answer} ...",
//     "coherence_rubric": "... {question} ... {answer} ..."
//   }
// Unknown keys are rejected, not kept: every field is required and new fields come with a new
// version, so an unknown key is nearly always a misspelt one (and a misspelt rubric key would
// otherwise vanish on the next save from the GUI). resources/traits/README.md has the full text.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace persona {

constexpr const char* kTraitSchemaName = "persona-workbench/trait";
constexpr int kTraitSchemaVersion = 1;

// docs/method.md's recommended amounts; fewer is allowed but reported as a warning.
constexpr std::size_t kRecommendedInstructionPairs = 5;
constexpr std::size_t kRecommendedExtractionQuestions = 20;
constexpr std::size_t kRecommendedEvaluationQuestions = 20;

// The only placeholders a rubric may contain; any other {word} is taken for a typo.
constexpr const char* kQuestionPlaceholder = "{question}";
constexpr const char* kAnswerPlaceholder = "{answer}";

struct InstructionPair {
    std::string positive;  // asks the model to show the trait
    std::string negative;  // asks it not to
};

struct Trait {
    std::string name;
    std::string definition;
    std::vector<InstructionPair> instructions;
    std::vector<std::string> extraction_questions;
    std::vector<std::string> evaluation_questions;
    std::string judge_rubric;
    std::string coherence_rubric;
};

bool operator==(const InstructionPair& a, const InstructionPair& b);
bool operator!=(const InstructionPair& a, const InstructionPair& b);
bool operator==(const Trait& a, const Trait& b);
bool operator!=(const Trait& a, const Trait& b);

enum class TraitProblemSeverity {
    Error,    // the trait cannot be used to extract or evaluate
    Warning,  // usable, but below what docs/method.md recommends
};

struct TraitProblem {
    // Where the problem is, as the JSON file spells it: "name", "instructions[2].negative",
    // "evaluation_questions[7]", "judge_rubric". A form shows the message beside that field.
    std::string field;
    std::string message;
    TraitProblemSeverity severity = TraitProblemSeverity::Error;
};

// Every problem with the trait, in field order, errors and warnings together; empty when the
// trait is ready to use. Reading a file checks only its structure, so a form can load a draft
// and show these beside the fields.
std::vector<TraitProblem> validate(const Trait& trait);
bool has_errors(const std::vector<TraitProblem>& problems);

// Throws FileError(path, problem) when the file cannot be read, is not valid JSON (the message
// gives line and column), or does not follow the schema above.
Trait read_trait_file(const std::string& path);

// Writes the trait atomically: a crash or a failed write leaves the old file as it was. Writes
// drafts too (validate() is the caller's business). Throws FileError naming the file.
void write_trait_file(const std::string& path, const Trait& trait);

nlohmann::json to_json(const Trait& trait);

// source names where the JSON came from (a path, "built-in trait 'evil'") for the FileError.
Trait trait_from_json(const nlohmann::json& json, const std::string& source);

// Imports a trait from the persona_vectors paper's public data layout: two JSON objects, one
// for extraction and one for evaluation, each {"instruction": [{"pos": ..., "neg": ...}, ...],
// "questions": [...], "eval_prompt": "...{question}...{answer}..."}. Instructions and the judge
// rubric come from the extraction file; only "questions" is required of the evaluation file.
// The definition is taken from an optional "definition" string, else left empty; the coherence
// rubric from an optional "coherence_prompt" of the extraction file, else ours. Throws FileError naming the file and the missing or mistyped key.
Trait import_paper_trait(const std::string& name, const std::string& extract_path, const std::string& eval_path);

std::string default_coherence_rubric();

// Replaces {question} and {answer} in one pass, so text in the question or answer that looks
// like a placeholder stays as it is. Every other brace is literal.
std::string render_rubric(const std::string& rubric, const std::string& question, const std::string& answer);

// The paper's system prompts for instruction pair `pair`: "You are a(n) {trait} assistant.
// {positive}" and "You are a helpful assistant. {negative}". Underscores in the name read as
// spaces ("overly_formal" -> "an overly formal assistant"). Throws Error when pair is out of range.
std::string positive_system_prompt(const Trait& trait, std::size_t pair);
std::string negative_system_prompt(const Trait& trait, std::size_t pair);

// Traits that ship with the workbench, compiled into the library from resources/traits/*.json,
// so no install path is needed. Names in a fixed order: evil, sycophantic, hallucinating, ...
std::vector<std::string> builtin_trait_names();
// Throws Error naming the built-in traits when there is none called `name`.
Trait load_builtin_trait(const std::string& name);

}  // namespace persona
