#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace persona {

// A read-only memory map of a whole file. Model files are hundreds of MB; mapping them lets
// the OS page in only what is read and share pages between processes.
class MappedFile {
public:
    explicit MappedFile(const std::string& path);  // throws FileError
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const std::uint8_t* data() const { return data_; }
    std::size_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // Drops the pages of [offset, offset + length) from this process's memory once they have been
    // read (a model's weights are copied out at load); reading them again pages them back in.
    void release(std::size_t offset, std::size_t length) const;

private:
    std::string path_;
    const std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace persona
