#pragma once
// libtorch's thread count fitted to the cores other programs leave free. Two threads on two
// cores, one of them taken by a browser or a build, wait on each other every parallel region
// (hundreds per decode step), and a decode ran at a quarter to a half of its quiet speed; one
// thread on the free core kept nearly all of it (docs/platform-notes.md). The engine turns this
// on when the user did not fix a thread count; forward steps then refit it a few times a second.
#include <optional>

namespace persona::model::cpu_share {

// CPU time, in core-seconds, on the cores this process may run on.
struct Reading {
    double seconds = 0;       // a steady clock
    double busy = 0;          // every process (and time the hypervisor took)
    double own = 0;           // this process
};

// From /proc/stat and /proc/self/stat; nullopt where they cannot be read.
std::optional<Reading> read();

// Cores kept busy by other processes between two readings.
double others_busy(const Reading& before, const Reading& after);

// The thread count for `free_cores` free cores, from `current`, within [1, most]: fewer once more
// than half a core of the current count is taken, more only once three quarters of one is back,
// so that a neighbour's bursts do not make the count flap.
int fitted_threads(int current, int most, double free_cores);

// On the calling (engine) thread: fit its libtorch thread count from now on, at most `most`.
void enable(int most);
// Refits the calling thread's count when enabled and the last reading is at least 250 ms old;
// otherwise costs a clock read.
void refit();

}  // namespace persona::model::cpu_share
