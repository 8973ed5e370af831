#pragma once
// Process-wide settings that must be in place before the model's libraries start.

namespace persona {

// libgomp (libtorch's OpenMP) reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it is loaded,
// before main. Its default lets idle OpenMP threads spin for milliseconds, and on a 2-core
// machine they starve OpenBLAS's own threads and any other program (prefill of the default model:
// 106 tokens/s with 2 threads against 355 passive; docs/platform-notes.md). Fully passive
// threads sleep between the hundreds of small parallel regions of a decode step, and waking them
// took half of it (SmolLM2 quantized, batch 1: 58-62 tokens/s passive, 122-151 with a brief
// spin). So: a brief spin (PERSONA_OPENMP_SPINCOUNT turns, about a tenth of a millisecond), then sleep.
// Call first thing in main: unless the user set OMP_WAIT_POLICY, it sets both variables (keeping
// a GOMP_SPINCOUNT the user set) and executes the program again (same arguments); it returns
// when no re-execution was needed or it failed.
void relaunch_with_openmp_settings(char** argv);

}  // namespace persona
