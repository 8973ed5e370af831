// Tokenizers from SentencePiece model files (tokenizer.model), encoded by the sentencepiece
// library itself. Core never links it: Debian's libsentencepiece carries its own protobuf and a
// process that also links libtorch crashes at start-up (docs/platform-notes.md). The library sits behind
// libpersona_sentencepiece, a module of ours with a C interface, which is dlopen'ed here with
// RTLD_LOCAL | RTLD_DEEPBIND so that it and its protobuf bind among themselves.
#include "persona/errors.h"
#include "persona/tokenizer.h"
#include "persona_sentencepiece.h"
#include "tokenizer/tokenizer_internal.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>

#ifndef PERSONA_SENTENCEPIECE_BUILD_PATH
#define PERSONA_SENTENCEPIECE_BUILD_PATH ""
#endif
#ifndef PERSONA_SENTENCEPIECE_FROM_BINDIR
#define PERSONA_SENTENCEPIECE_FROM_BINDIR "../lib/persona-workbench"
#endif

namespace persona {

namespace {

constexpr const char* kLibraryFileName = "libpersona_sentencepiece.so";
constexpr const char* kLibraryVariable = "PERSONA_SENTENCEPIECE_LIBRARY";

// The module's functions, looked up once per process. The module is never unloaded: protobuf
// registers global state that must not outlive its code.
struct Library {
    std::string path;
    decltype(&persona_spm_load) load = nullptr;
    decltype(&persona_spm_free) free = nullptr;
    decltype(&persona_spm_vocab_size) vocab_size = nullptr;
    decltype(&persona_spm_piece) piece = nullptr;
    decltype(&persona_spm_score) score = nullptr;
    decltype(&persona_spm_piece_type) piece_type = nullptr;
    decltype(&persona_spm_bos_id) bos_id = nullptr;
    decltype(&persona_spm_eos_id) eos_id = nullptr;
    decltype(&persona_spm_unk_id) unk_id = nullptr;
    decltype(&persona_spm_pad_id) pad_id = nullptr;
    decltype(&persona_spm_add_dummy_prefix) add_dummy_prefix = nullptr;
    decltype(&persona_spm_encode) encode = nullptr;
};

std::string executable_directory() {
    std::error_code error;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
    return error ? std::string() : exe.parent_path().string();
}

std::vector<std::string> candidate_paths() {
    if (const char* chosen = std::getenv(kLibraryVariable); chosen && *chosen) return {chosen};
    std::vector<std::string> paths;
    const std::string exe_dir = executable_directory();
    if (!exe_dir.empty()) {
        paths.push_back((std::filesystem::path(exe_dir) / PERSONA_SENTENCEPIECE_FROM_BINDIR / kLibraryFileName)
                            .lexically_normal()
                            .string());
        paths.push_back(exe_dir + "/" + kLibraryFileName);
    }
    if (*PERSONA_SENTENCEPIECE_BUILD_PATH) paths.emplace_back(PERSONA_SENTENCEPIECE_BUILD_PATH);
    return paths;
}

template <typename Function>
void bind(void* handle, const std::string& path, const char* name, Function& function) {
    function = reinterpret_cast<Function>(dlsym(handle, name));
    if (!function) throw Error(path + ": the SentencePiece module lacks the function " + name);
}

Library open_library() {
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer aborts the process on any RTLD_DEEPBIND dlopen, and without DEEPBIND the
    // module's protobuf binds to libtorch's: the sanitizer build has no SentencePiece.
    throw Error("SentencePiece tokenizer.model files cannot be read in the AddressSanitizer build (it refuses "
                "the RTLD_DEEPBIND load the module needs); use a regular build");
#endif
    std::string tried;
    for (const auto& path : candidate_paths()) {
        std::error_code error;
        if (!std::filesystem::is_regular_file(path, error)) {
            tried += "\n  " + path + " (not there)";
            continue;
        }
        // DEEPBIND: the module's protobuf must not bind to the one libtorch brought in.
        void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (!handle) {
            const char* why = dlerror();
            tried += "\n  " + path + " (" + (why ? why : "dlopen failed") + ")";
            continue;
        }
        Library library;
        library.path = path;
        decltype(&persona_spm_abi_version) abi_version = nullptr;
        bind(handle, path, "persona_spm_abi_version", abi_version);
        if (abi_version() != PERSONA_SPM_ABI_VERSION)
            throw Error(path + ": SentencePiece module of interface version " + std::to_string(abi_version()) +
                        ", this program needs version " + std::to_string(PERSONA_SPM_ABI_VERSION));
        bind(handle, path, "persona_spm_load", library.load);
        bind(handle, path, "persona_spm_free", library.free);
        bind(handle, path, "persona_spm_vocab_size", library.vocab_size);
        bind(handle, path, "persona_spm_piece", library.piece);
        bind(handle, path, "persona_spm_score", library.score);
        bind(handle, path, "persona_spm_piece_type", library.piece_type);
        bind(handle, path, "persona_spm_bos_id", library.bos_id);
        bind(handle, path, "persona_spm_eos_id", library.eos_id);
        bind(handle, path, "persona_spm_unk_id", library.unk_id);
        bind(handle, path, "persona_spm_pad_id", library.pad_id);
        bind(handle, path, "persona_spm_add_dummy_prefix", library.add_dummy_prefix);
        bind(handle, path, "persona_spm_encode", library.encode);
        return library;
    }
    throw Error(std::string("the SentencePiece module ") + kLibraryFileName +
                " was not found; it is built and installed with Persona Workbench (set " + kLibraryVariable +
                " to its path to choose one). Looked in:" + tried);
}

const Library& library() {
    // A failed search is not remembered, so a later call may succeed once the module is there.
    static std::mutex mutex;
    static std::unique_ptr<Library> loaded;
    std::lock_guard<std::mutex> lock(mutex);
    if (!loaded) loaded = std::make_unique<Library>(open_library());
    return *loaded;
}

using ModelHandle = std::shared_ptr<persona_spm>;

// Encodes through the library; decodes with our SentencePiece piece rules (U+2581 is a space,
// <0xNN> a byte), which are the library's for every piece a model can produce.
class LibraryEncoder final : public detail::FragmentEncoder {
public:
    LibraryEncoder(const Library& library, ModelHandle model, std::unique_ptr<detail::FragmentEncoder> pieces,
                   std::string source)
        : library_(library), model_(std::move(model)), pieces_(std::move(pieces)), source_(std::move(source)) {}

    void encode(std::string_view fragment, bool, bool, std::vector<std::int32_t>& out) const override {
        // The library puts its dummy prefix in front of every call, which is where ours would
        // go too: fragments start the text or follow a special token.
        std::vector<std::int32_t> ids(fragment.size() + 8);
        char error[512] = {};
        for (int attempt = 0; attempt < 2; ++attempt) {
            const std::ptrdiff_t count =
                library_.encode(model_.get(), fragment.data(), fragment.size(), ids.data(), ids.size(), error, sizeof error);
            if (count < 0) throw Error(source_ + ": sentencepiece could not encode the text: " + error);
            if (static_cast<std::size_t>(count) <= ids.size()) {
                out.insert(out.end(), ids.begin(), ids.begin() + count);
                return;
            }
            ids.resize(static_cast<std::size_t>(count));  // normalization made the text longer
        }
        throw Error(source_ + ": sentencepiece returned a different number of ids for the same text");
    }

    std::string token_bytes(std::int32_t id) const override { return pieces_->token_bytes(id); }

private:
    const Library& library_;  // loaded once and never unloaded
    ModelHandle model_;
    std::unique_ptr<detail::FragmentEncoder> pieces_;
    std::string source_;
};

std::optional<std::int32_t> id_or_none(std::int32_t id, std::size_t size) {
    if (id < 0 || static_cast<std::size_t>(id) >= size) return std::nullopt;
    return id;
}

}  // namespace

std::string sentencepiece_library_path() { return library().path; }

std::unique_ptr<Tokenizer> Tokenizer::from_sentencepiece(const std::string& model_path, const SentencePieceOptions& options) {
    const Library* lib = nullptr;
    try {
        lib = &library();
    } catch (const Error& e) {
        throw FileError(model_path, std::string("cannot read a SentencePiece model: ") + e.what());
    }
    char error[512] = {};
    persona_spm* raw = lib->load(model_path.c_str(), error, sizeof error);
    if (!raw) throw FileError(model_path, std::string("not a readable SentencePiece model: ") + error);
    const ModelHandle model(raw, lib->free);

    TokenizerVocabulary v;
    v.model = "llama";  // SentencePiece pieces, as GGUF names them
    const int pieces = lib->vocab_size(raw);
    if (pieces <= 0) throw FileError(model_path, "the SentencePiece model has no pieces");
    for (int id = 0; id < pieces; ++id) {
        std::size_t length = 0;
        const char* text = lib->piece(raw, id, &length);
        const int type = lib->piece_type(raw, id);
        if (!text || type < 1 || type > static_cast<int>(TokenType::Byte))
            throw FileError(model_path, "piece " + std::to_string(id) + " cannot be read");
        v.tokens.emplace_back(text, length);
        v.types.push_back(static_cast<TokenType>(type));
        v.scores.push_back(lib->score(raw, id));
    }
    const std::size_t model_pieces = v.tokens.size();

    // Added tokens: past the model's pieces they extend the vocabulary (gaps become Unused
    // padding); on a piece of its own they only mark it special or user-defined.
    std::map<std::int32_t, const AddedToken*> added;
    for (const auto& token : options.added_tokens) {
        if (token.id < 0) throw FileError(model_path, "added token '" + token.text + "' has a negative id");
        added[token.id] = &token;
    }
    const std::size_t wanted = std::max(options.vocabulary_size,
                                        added.empty() ? std::size_t{0} : static_cast<std::size_t>(added.rbegin()->first) + 1);
    for (std::size_t id = model_pieces; id < wanted; ++id) {
        v.tokens.push_back("[PAD" + std::to_string(id) + "]");
        v.types.push_back(TokenType::Unused);
        v.scores.push_back(0.0f);
    }
    for (const auto& [id, token] : added) {
        const auto index = static_cast<std::size_t>(id);
        if (index < model_pieces && v.tokens[index] != token->text)
            throw FileError(model_path, "added token " + std::to_string(id) + " '" + token->text +
                                            "' is the piece '" + v.tokens[index] + "' in the SentencePiece model");
        v.tokens[index] = token->text;
        if (index >= model_pieces || v.types[index] == TokenType::Normal || v.types[index] == TokenType::UserDefined ||
            v.types[index] == TokenType::Control)
            v.types[index] = token->special ? TokenType::Control : TokenType::UserDefined;
    }

    const auto find = [&](const std::optional<std::string>& text, const char* what) -> std::optional<std::int32_t> {
        for (std::size_t id = 0; id < v.tokens.size(); ++id)
            if (v.tokens[id] == *text) return static_cast<std::int32_t>(id);
        throw FileError(model_path, std::string(what) + " '" + *text + "' is not a token of the SentencePiece model");
    };
    v.bos_id = options.bos_text ? find(options.bos_text, "the BOS token") : id_or_none(lib->bos_id(raw), model_pieces);
    v.eos_id = options.eos_text ? find(options.eos_text, "the EOS token") : id_or_none(lib->eos_id(raw), model_pieces);
    v.padding_id = options.padding_text ? find(options.padding_text, "the padding token") : id_or_none(lib->pad_id(raw), model_pieces);
    v.unknown_id = id_or_none(lib->unk_id(raw), model_pieces);
    v.add_bos = options.add_bos.value_or(v.bos_id.has_value());
    v.add_eos = options.add_eos.value_or(false);
    v.add_space_prefix = lib->add_dummy_prefix(raw) != 0;

    const std::string source = model_path;
    return detail::TokenizerBuilder::build(
        std::move(v), model_path,
        [&](const TokenizerVocabulary& vocabulary, const detail::TokenIndex& index) {
            return std::make_unique<LibraryEncoder>(*lib, model, detail::make_sentencepiece(vocabulary, index, source),
                                                    source);
        },
        static_cast<std::int32_t>(model_pieces));
}

}  // namespace persona
