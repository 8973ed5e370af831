#include "io/atomic_file.h"

#include "persona/errors.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace persona::detail {

namespace fs = std::filesystem;

PendingFile::PendingFile(const std::string& target) : target_(target) {
    static std::atomic<unsigned> counter{0};
    const fs::path target_path(target);
    fs::path directory = target_path.parent_path();
    if (directory.empty()) directory = ".";
    // Hidden and named after the target, so a leftover from a killed process explains itself.
    int error = 0;
    for (int attempt = 0; attempt < 100; ++attempt) {
        // Appended piece by piece: GCC 12 at -O3 in C++20 (libtorch 2.x asks for it) warns falsely
        // (-Wrestrict) about "." + std::string.
        std::string name = ".";
        name.append(target_path.filename().string()).append(".tmp-").append(std::to_string(::getpid()));
        name.append("-").append(std::to_string(counter++));
        const fs::path candidate = directory / name;
        fd_ = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd_ >= 0) {
            path_ = candidate.string();
            return;
        }
        error = errno;
        if (error != EEXIST) break;
    }
    fail("cannot create a temporary file in " + directory.string(), error);
}

PendingFile::~PendingFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
}

void PendingFile::write(const void* bytes, std::size_t size) {
    const auto* at = static_cast<const std::uint8_t*>(bytes);
    while (size > 0) {
        const std::size_t chunk = std::min<std::size_t>(size, std::size_t{1} << 30);
        const ssize_t written = ::write(fd_, at, chunk);
        if (written < 0) {
            if (errno == EINTR) continue;
            fail("cannot write", errno);
        }
        at += written;
        size -= static_cast<std::size_t>(written);
    }
}

void PendingFile::write_zeros(std::size_t count) {
    static const std::uint8_t zeros[64] = {};
    while (count > 0) {
        const std::size_t chunk = std::min(count, sizeof zeros);
        write(zeros, chunk);
        count -= chunk;
    }
}

// Data reaches the disk before the rename, so a crash leaves the old file or the whole new one.
void PendingFile::commit() {
    if (::fsync(fd_) != 0) fail("cannot flush to disk", errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot write", errno);
    if (::rename(path_.c_str(), target_.c_str()) != 0) fail("cannot replace the file", errno);
    path_.clear();
    sync_directory();
}

void PendingFile::fail(const std::string& problem, int error) const {
    throw FileError(target_, problem + ": " + std::strerror(error));
}

// Makes the rename itself durable. Best effort: some file systems cannot sync a directory.
void PendingFile::sync_directory() const {
    fs::path directory = fs::path(target_).parent_path();
    if (directory.empty()) directory = ".";
    const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
    PendingFile file(path);
    file.write(bytes.data(), bytes.size());
    file.commit();
}

}  // namespace persona::detail
