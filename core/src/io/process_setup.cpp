#include "persona/process_setup.h"

#include <cstdlib>
#include <unistd.h>

namespace persona {

void relaunch_with_openmp_settings(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;  // the user's choice, or already relaunched
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    // libgomp takes GOMP_SPINCOUNT over the policy's own count (0 for passive).
    setenv("GOMP_SPINCOUNT", PERSONA_OPENMP_SPINCOUNT, 0);
    execv("/proc/self/exe", argv);
    // Still here: the program runs on with the default policy, only slower.
}

}  // namespace persona
