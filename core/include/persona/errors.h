#pragma once
#include "persona/progress.h"

#include <stdexcept>
#include <string>

namespace persona {

// Every error a user can cause (bad file, bad argument) names the file or input it came from,
// so the message alone tells them what to fix.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

class FileError : public Error {
public:
    FileError(const std::string& path, const std::string& problem)
        : Error(path + ": " + problem), path_(path), problem_(problem) {}
    const std::string& path() const { return path_; }
    const std::string& problem() const { return problem_; }

private:
    std::string path_;
    std::string problem_;
};

// Thrown by long jobs when the user cancels; never reported as a failure.
class Cancelled : public Error {
public:
    Cancelled() : Error("cancelled") {}
};

// What every long job calls between steps.
inline void check_cancelled(const CancelFn& cancelled) {
    if (cancelled && cancelled()) throw Cancelled();
}

}  // namespace persona
