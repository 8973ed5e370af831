// The hand-written CPU kernels against plain torch ops (the checks live in cpu_kernels_check.cpp).
#include "cpu_kernels_check.h"

#include <QtTest>

class TestCpuKernels : public QObject {
    Q_OBJECT

private slots:
    void kernelsMatchTorch() {
        const persona_test::CheckResult result = persona_test::check_cpu_kernels();
        if (!result.available) QSKIP("this CPU lacks AVX512-BF16; the torch fallbacks run instead");
        for (const auto& failure : result.failures) qWarning("%s", failure.c_str());
        qInfo("%d checks, %zu failed", result.checks, result.failures.size());
        QVERIFY(result.checks > 100);
        QVERIFY(result.failures.empty());
    }

    // The attention CUDA and CPUs without the kernels take, on every libtorch.
    void portableAttentionMatchesReference() {
        const persona_test::CheckResult result = persona_test::check_portable_attention();
        for (const auto& failure : result.failures) qWarning("%s", failure.c_str());
        qInfo("%d checks, %zu failed; scaled_dot_product_attention %s", result.checks, result.failures.size(),
              result.available ? "used" : "not in this libtorch (or PERSONA_TORCH_SDPA=off)");
        QVERIFY(result.checks >= 12);
        QVERIFY(result.failures.empty());
    }
};

QTEST_GUILESS_MAIN(TestCpuKernels)
#include "test_cpu_kernels.moc"
