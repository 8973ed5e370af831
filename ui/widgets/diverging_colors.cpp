#include "widgets/diverging_colors.h"

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>

namespace diverging {
namespace {
// ColorBrewer RdBu ends: distinguishable for the common colour-vision deficiencies.
const QColor kNegative(33, 102, 172);
const QColor kPositive(178, 24, 43);
const QColor kZero(255, 255, 255);

QColor mix(const QColor& from, const QColor& to, double t) {
    return QColor::fromRgbF(static_cast<float>(from.redF() + (to.redF() - from.redF()) * t),
                            static_cast<float>(from.greenF() + (to.greenF() - from.greenF()) * t),
                            static_cast<float>(from.blueF() + (to.blueF() - from.blueF()) * t));
}
}  // namespace

QColor colorFor(double value, double scale, double strength) {
    if (!(scale > 0) || !std::isfinite(value)) return kZero;
    const double t = std::clamp(value / scale, -1.0, 1.0) * strength;
    return t < 0 ? mix(kZero, kNegative, -t) : mix(kZero, kPositive, t);
}

QCPColorGradient gradient() {
    QCPColorGradient g;
    g.setColorInterpolation(QCPColorGradient::ciRGB);
    g.setColorStopAt(0.0, kNegative);
    g.setColorStopAt(0.5, kZero);
    g.setColorStopAt(1.0, kPositive);
    g.setLevelCount(256);
    return g;
}

double maxAbs(const std::vector<std::vector<float>>& columns, double start) {
    double largest = start;
    for (const auto& column : columns)
        for (float value : column) largest = std::max(largest, std::abs(static_cast<double>(value)));
    return largest;
}

}  // namespace diverging
