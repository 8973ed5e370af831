#pragma once
#include "persona/generation.h"

#include <cstdint>
#include <string>
#include <vector>

namespace persona {

class GgufFile;
class Tokenizer;


// The prompt formats we render. Models ship their format as a Jinja template; rather than run
// Jinja, we recognise which family the template belongs to and write that family's format
// directly (tests check the result against real Jinja renderings character for character).
enum class ChatFamily {
    ChatML,  // <|im_start|>role\n...<|im_end|>\n  (SmolLM2, Qwen2)
    Qwen3,   // ChatML whose answers open with a <think> block, and its enable_thinking switch
    Llama3,  // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
    Llama2,  // <s>[INST] <<SYS>>...<</SYS>> ... [/INST] answer </s>  (Llama 2, Mistral-style)
    Gemma,   // <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n
    Phi3,    // <|user|>\n...<|end|>\n<|assistant|>\n  (Phi-3.5, later Phi-3 revisions)
};
const char* chat_family_name(ChatFamily family);

class ChatTemplate {
public:
    // Recognises the family from tokenizer.chat_template, or from general.architecture when the
    // file has no template (Gemma GGUFs often ship without one). Anything else is a FileError:
    // there is deliberately no ChatML fallback, because a model prompted in a format it was not
    // trained on still answers, only worse, and nobody notices.
    static ChatTemplate from_gguf(const GgufFile& file);
    // The same from loose parts: template_text may be empty; bos_text / eos_text are the model's
    // BOS and EOS token texts (empty for the family's usual ones); source names the model in
    // error messages.
    static ChatTemplate detect(const std::string& template_text, const std::string& architecture,
                               const std::string& bos_text, const std::string& eos_text, const std::string& source);

    ChatFamily family() const { return family_; }
    // ChatML templates that open with a system turn of their own when the conversation has
    // none (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
    // carry that text here, read from the template; empty when there is none.
    const std::string& default_system_prompt() const { return default_system_prompt_; }

    // Qwen3's enable_thinking. Off by default: extraction and steering average the answer's
    // activations, and a <think> block would be averaged in with it. Off, the generation prompt
    // ends in an empty <think></think>, as Qwen3's template writes it for enable_thinking=false.
    void set_thinking(bool thinking) { thinking_ = thinking; }
    bool thinking() const { return thinking_; }
    // Llama 3.1 / 3.2: every prompt opens with a system turn giving a knowledge cutoff and a date.
    bool dated_system_turn() const { return dated_system_turn_; }

    // The prompt text, exactly as the model's Jinja template renders it (BOS included where
    // the template writes it: Gemma, Llama 2 and 3). Llama 2 and Gemma throw persona::Error
    // when user and assistant turns do not alternate, as their templates do. Llama 2's template
    // has no generation prompt: its text already ends where the answer begins.
    std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

    // Renders and tokenizes in one go: special tokens in the text are parsed and no BOS is
    // added, since the rendered text already has its own. Like the models' own tooling, it
    // reads special-token text inside message contents as special tokens too.
    std::vector<std::int32_t> encode(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt) const;

private:
    ChatFamily family_ = ChatFamily::ChatML;
    std::string default_system_prompt_;
    std::string bos_text_;
    std::string eos_text_;
    bool thinking_ = false;
    bool dated_system_turn_ = false;
};

}  // namespace persona
