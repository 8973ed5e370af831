#include "persona/process_memory.h"

#include <fstream>
#include <sstream>
#include <string>

namespace persona {

ProcessMemory read_process_memory() {
    ProcessMemory memory;
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        std::istringstream fields(line);
        std::string key;
        std::uint64_t kib = 0;
        fields >> key >> kib;
        if (key == "VmRSS:") memory.resident_bytes = kib * 1024;
        if (key == "VmHWM:") memory.peak_resident_bytes = kib * 1024;
    }
    return memory;
}

}  // namespace persona
