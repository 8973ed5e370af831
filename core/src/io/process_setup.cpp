#include "persona/process_setup.h"

#include <cstdlib>
#include <unistd.h>

namespace persona {

void relaunch_with_passive_openmp(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;  // the user's choice, or already relaunched
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv);
    // Still here: the program runs on with the default policy, only slower.
}

}  // namespace persona
