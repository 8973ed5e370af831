#pragma once
// Plain C++ face of cpu_kernels_check.cpp, so the Qt test never includes torch.
#include <string>
#include <vector>

namespace persona_test {

struct CheckResult {
    bool available = false;  // false: this CPU lacks AVX512-BF16 and the kernels never run
    int checks = 0;
    std::vector<std::string> failures;
};

CheckResult check_cpu_kernels();

// transformer.cpp's portable attention (what CUDA and CPUs without the kernels run) against the
// float64 reference, once through scaled_dot_product_attention and once through matmul + softmax.
// `available` says whether this libtorch has scaled_dot_product_attention (>= 2.0) and uses it.
CheckResult check_portable_attention();

}  // namespace persona_test
