#include "model/cpu_share.h"

#include <ATen/Parallel.h>

#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace persona::model::cpu_share {

namespace {

double now_seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Each engine thread fits its own count (at::set_num_threads is per calling thread with OpenMP;
// OpenBLAS's count, below, is the process's).
struct Fit {
    int most = 0;  // 0: not enabled
    std::optional<Reading> last;
};
thread_local Fit fit;

// Readings further apart than this average over too long a past: a neighbour that started a
// second ago would hardly show in ten idle minutes, so an old reading only starts a new window.
constexpr double kShortestWindow = 0.25, kLongestWindow = 2.0;

// The f32 path's products run on OpenBLAS's own threads, which libtorch's count does not govern;
// where the BLAS is OpenBLAS, its count follows too.
void set_threads(int threads) {
    at::set_num_threads(threads);
    using SetThreads = void (*)(int);
    static const auto openblas_set_num_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    if (openblas_set_num_threads) openblas_set_num_threads(threads);
}

}  // namespace

std::optional<Reading> read() {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return std::nullopt;
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    if (tick <= 0) return std::nullopt;

    Reading reading;
    reading.seconds = now_seconds();
    std::ifstream stat("/proc/stat");
    std::string line;
    bool any = false;
    while (std::getline(stat, line)) {
        // "cpuN user nice system idle iowait irq softirq steal ...": the per-core lines only.
        if (line.rfind("cpu", 0) != 0 || line.size() < 4 || !std::isdigit(static_cast<unsigned char>(line[3]))) continue;
        std::istringstream fields(line.substr(3));
        int cpu = -1;
        unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
        fields >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
        if (!fields || cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) continue;
        reading.busy += static_cast<double>(user + nice + system + irq + softirq + steal) / tick;
        any = true;
    }
    // utime and stime are fields 14 and 15, counted after the command name's closing parenthesis.
    std::ifstream own("/proc/self/stat");
    const std::string self((std::istreambuf_iterator<char>(own)), std::istreambuf_iterator<char>());
    const std::size_t name_end = self.rfind(')');
    if (!any || name_end == std::string::npos) return std::nullopt;
    std::istringstream fields(self.substr(name_end + 1));
    std::string skipped;
    for (int field = 3; field <= 13; ++field) fields >> skipped;
    unsigned long long utime = 0, stime = 0;
    fields >> utime >> stime;
    if (!fields) return std::nullopt;
    reading.own = static_cast<double>(utime + stime) / tick;
    return reading;
}

double others_busy(const Reading& before, const Reading& after) {
    const double elapsed = after.seconds - before.seconds;
    if (elapsed <= 0) return 0;
    return std::max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / elapsed);
}

int fitted_threads(int current, int most, double free_cores) {
    int threads = current;
    if (free_cores < current - 0.5) threads = static_cast<int>(std::floor(free_cores + 0.5));
    else if (free_cores >= current + 0.75) threads = static_cast<int>(std::floor(free_cores + 0.25));
    return std::clamp(threads, 1, std::max(1, most));
}

void enable(int most) {
    fit = Fit{most, read()};
    set_threads(most);
}

void refit() {
    if (fit.most <= 1) return;
    const double now = now_seconds();
    if (fit.last && now - fit.last->seconds < kShortestWindow) return;
    const std::optional<Reading> reading = read();
    if (!reading) return;
    if (fit.last && now - fit.last->seconds <= kLongestWindow) {
        const double free_cores = fit.most - others_busy(*fit.last, *reading);
        const int current = at::get_num_threads();
        const int threads = fitted_threads(current, fit.most, free_cores);
        if (threads != current) set_threads(threads);
    }
    fit.last = reading;
}

}  // namespace persona::model::cpu_share
