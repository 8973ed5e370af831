#pragma once
// Process-wide settings that must be in place before the model's libraries start.

namespace persona {

// libgomp (libtorch's OpenMP) reads OMP_WAIT_POLICY once, when it is loaded, before main. Its
// default lets idle OpenMP threads spin, and on a 2-core machine they starve OpenBLAS's own
// threads: prefill of the default model ran at 106 tokens/s with 2 threads against 355 with
// the passive policy, and far worse with another program busy (docs/platform-notes.md). Call
// first thing in main: unless the user set OMP_WAIT_POLICY, it sets PASSIVE and executes the
// program again (same arguments); it returns when no re-execution was needed or it failed.
void relaunch_with_passive_openmp(char** argv);

}  // namespace persona
