#pragma once
// Atomic saves for core's file writers (safetensors, GGUF): a half-written file must never
// replace a good one.
#include <cstddef>
#include <string>
#include <string_view>

namespace persona::detail {

// A temporary file beside the target that removes itself unless commit() renamed it into
// place. Every failure throws FileError naming the target.
class PendingFile {
public:
    explicit PendingFile(const std::string& target);
    ~PendingFile();
    PendingFile(const PendingFile&) = delete;
    PendingFile& operator=(const PendingFile&) = delete;

    void write(const void* bytes, std::size_t size);
    void write_zeros(std::size_t count);
    // Flushes to disk, then renames over the target.
    void commit();

private:
    [[noreturn]] void fail(const std::string& problem, int error) const;
    void sync_directory() const;

    std::string target_;
    std::string path_;
    int fd_ = -1;
};

// The whole file in one call: PendingFile, written and committed.
void write_file_atomically(const std::string& path, std::string_view bytes);

}  // namespace persona::detail
