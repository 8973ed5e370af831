#include "persona/fingerprint.h"

#include "io/atomic_file.h"
#include "io/json_file.h"
#include "persona/errors.h"
#include "persona/files.h"
#include "persona/paths.h"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <vector>

namespace persona {

namespace {

namespace fs = std::filesystem;

std::string hex_of(const unsigned char* digest, unsigned int length) {
    static const char* const kHex = "0123456789abcdef";
    std::string hex;
    for (unsigned int i = 0; i < length; ++i) {
        hex += kHex[digest[i] >> 4];
        hex += kHex[digest[i] & 15];
    }
    return hex;
}

class Sha256 {
public:
    explicit Sha256(const std::string& what) : context_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
        if (!context_ || EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr) != 1)
            throw FileError(what, "cannot hash: OpenSSL could not start SHA-256");
    }
    void add(const void* bytes, std::size_t size) { EVP_DigestUpdate(context_.get(), bytes, size); }
    void add(const std::string& text) { add(text.data(), text.size()); }
    std::string hex() {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int length = 0;
        EVP_DigestFinal_ex(context_.get(), digest, &length);
        return hex_of(digest, length);
    }

private:
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context_;
};

// The files of a Hugging Face folder that Model::load reads.
bool is_model_file(const fs::path& path) {
    const std::string name = path.filename().string();
    const std::string extension = path.extension().string();
    return extension == ".json" || extension == ".safetensors" || name == "tokenizer.model";
}

// Each file's SHA-256 by absolute path, size and modification time, read once per fingerprint
// and written back once when a hash was added. One process may fingerprint from several threads
// (the engine, a CLI command); the file itself is replaced atomically, so another process at
// worst loses an entry, never the file.
std::mutex cache_mutex;

class HashCache {
public:
    HashCache() : path_(fingerprint_cache_path()) {
        std::error_code error;
        try {
            if (fs::is_regular_file(path_, error)) entries_ = detail::read_json_file(path_);
        } catch (const Error&) {
            // A damaged cache is only a slower start.
        }
        if (!entries_.is_object()) entries_ = nlohmann::json::object();
    }

    std::string file_sha256(const fs::path& path) {
        std::error_code error;
        const fs::path absolute = fs::absolute(path, error);
        check_regular_file(absolute.string());
        const std::uintmax_t size = fs::file_size(absolute, error);
        const std::int64_t modified = fs::last_write_time(absolute, error).time_since_epoch().count();
        const std::string key = absolute.string();
        const auto found = entries_.find(key);
        if (found != entries_.end() && found->is_object() && found->value("size", std::uintmax_t(0)) == size &&
            found->value("modified", std::int64_t(0)) == modified && found->value("sha256", std::string()).size() == 64)
            return found->at("sha256").get<std::string>();
        const std::string sha = persona::file_sha256(key);
        entries_[key] = {{"size", size}, {"modified", modified}, {"sha256", sha}};
        changed_ = true;
        return sha;
    }

    void save() {
        if (!changed_) return;
        std::error_code error;
        // Entries of files that are gone (temporary folders, deleted models) would only grow the file.
        for (auto entry = entries_.begin(); entry != entries_.end();)
            entry = fs::exists(entry.key(), error) ? std::next(entry) : entries_.erase(entry);
        try {
            fs::create_directories(fs::path(path_).parent_path(), error);
            detail::write_file_atomically(path_, entries_.dump(1) + "\n");
        } catch (const Error&) {
            // A read-only cache folder costs the next start a re-hash, nothing else.
        }
    }

private:
    std::string path_;
    nlohmann::json entries_;
    bool changed_ = false;
};

}  // namespace

std::string fingerprint_cache_path() { return workbench_cache_dir() + "/fingerprints.json"; }

std::string file_sha256(const std::string& path) {
    std::error_code error;
    if (fs::exists(path, error) && !fs::is_regular_file(path, error))
        throw FileError(path, "cannot hash: not a regular file");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, std::string("cannot open to hash: ") + std::strerror(errno));
    Sha256 hash(path);
    std::vector<char> buffer(std::size_t(1) << 20);
    while (in) {
        in.read(buffer.data(), std::streamsize(buffer.size()));
        if (in.gcount() > 0) hash.add(buffer.data(), std::size_t(in.gcount()));
    }
    if (in.bad()) throw FileError(path, "cannot read while hashing");
    return hash.hex();
}

std::string text_sha256(std::string_view bytes) {
    Sha256 hash("text");
    hash.add(bytes.data(), bytes.size());
    return hash.hex();
}

std::string model_fingerprint(const std::string& path) {
    std::error_code error;
    std::lock_guard<std::mutex> lock(cache_mutex);
    HashCache cache;
    if (!fs::is_directory(path, error)) {
        const std::string sha = cache.file_sha256(path);
        cache.save();
        return sha;
    }
    std::vector<fs::path> files;
    for (const fs::directory_entry& entry : fs::directory_iterator(path, error))
        if (entry.is_regular_file(error) && is_model_file(entry.path())) files.push_back(entry.path());
    if (error) throw FileError(path, "cannot list the folder to fingerprint it: " + error.message());
    if (files.empty()) throw FileError(path, "holds no model files to fingerprint");
    std::sort(files.begin(), files.end());
    Sha256 manifest(path);
    for (const fs::path& file : files) {
        manifest.add(file.filename().string());
        manifest.add("\0", 1);
        manifest.add(cache.file_sha256(file) + "\n");
    }
    cache.save();
    return manifest.hex();
}

}  // namespace persona
