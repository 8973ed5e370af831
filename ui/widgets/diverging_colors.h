#pragma once
// One diverging palette for projections, shared by tinted tokens and heat maps so that a colour
// means the same thing everywhere: blue below zero, white at zero, red above.
#include <QColor>

#include <vector>

class QCPColorGradient;

namespace diverging {

// value / scale clamped to -1..1; `strength` < 1 keeps tinted text readable.
QColor colorFor(double value, double scale, double strength = 1.0);
QCPColorGradient gradient();
// The largest |value| in columns (at least `start`): the scale that makes views share colours.
double maxAbs(const std::vector<std::vector<float>>& columns, double start = 0.0);

}  // namespace diverging
