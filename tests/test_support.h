#pragma once
// Helpers shared by the suites: where the real models are, and temporary copies to damage.
#include "persona/errors.h"
#include "persona/paths.h"

#include <QFile>
#include <QFileInfo>
#include <QString>
#include <QStringList>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>
#include <QtTest>

// The AddressSanitizer build (tests/sanitizers.sh) cannot load the SentencePiece module: ASan
// aborts on the RTLD_DEEPBIND load it needs, so tokenizer.model cases skip there.
#if defined(__SANITIZE_ADDRESS__)
#define PERSONA_SKIP_WITHOUT_SENTENCEPIECE() QSKIP("the AddressSanitizer build reads no tokenizer.model")
#else
#define PERSONA_SKIP_WITHOUT_SENTENCEPIECE() static_cast<void>(0)
#endif

namespace persona_test {

// Real models are part of every run: a missing one is a failure with the fix in the message,
// not a silent skip.
inline QString modelPath(const char* file_name) {
    const QString path = QString::fromStdString(persona::model_cache_dir()) + "/" + file_name;
    if (!QFileInfo::exists(path))
        qFatal("model %s is missing: run packaging/setup.sh --no-gui (or set PERSONA_MODEL_DIR)",
               qPrintable(path));
    return path;
}

inline QString defaultModelPath() { return modelPath(persona::kDefaultModelFile); }

// A unit vector of `size` values drawn from a seeded normal distribution: a direction with no
// meaning, to steer or probe along.
inline std::vector<float> random_direction(int size, unsigned seed) {
    std::mt19937 generator(seed);
    std::normal_distribution<float> normal;
    std::vector<float> v(static_cast<std::size_t>(size));
    double norm = 0;
    for (auto& x : v) {
        x = normal(generator);
        norm += double(x) * x;
    }
    for (auto& x : v) x = static_cast<float>(x / std::sqrt(norm));
    return v;
}

// What dtype auto resolves to on this CPU: bf16 where it has native bf16 dot products (the
// AVX512-BF16 kernels run), f32 elsewhere. An oracle written apart from the engine's own check.
inline QString autoCpuDtype() {
    const bool native = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16") &&
                        qEnvironmentVariable("PERSONA_CPU_KERNELS") != "off";
    return native ? "bf16" : "f32";
}
inline QString secondModelPath() { return modelPath(persona::kSecondModelFile); }

// Token ids as "[1, 2, 3]" for failure messages.
inline QString ids_text(const std::vector<std::int32_t>& ids) {
    QStringList parts;
    for (const auto id : ids) parts << QString::number(id);
    return "[" + parts.join(", ") + "]";
}

// L2 norm of n floats, accumulated in double (hidden states against float64 goldens).
inline double l2(const float* v, int n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += double(v[i]) * v[i];
    return std::sqrt(s);
}

inline QByteArray readPrefix(const QString& path, qint64 bytes) {
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) qFatal("cannot read %s", qPrintable(path));
    return file.read(bytes);
}

// The message of the persona::Error that `action` throws, or a marker saying what went wrong.
inline QString errorOf(const std::function<void()>& action) {
    try {
        action();
    } catch (const persona::Error& e) {
        return QString::fromStdString(e.what());
    } catch (const std::exception& e) {
        return QStringLiteral("WRONG EXCEPTION TYPE: ") + e.what();
    }
    return QStringLiteral("NO ERROR");
}

}  // namespace persona_test
