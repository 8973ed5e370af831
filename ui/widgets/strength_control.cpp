#include "widgets/strength_control.h"

#include "persona/persona_vector.h"

#include <QDoubleSpinBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QSignalBlocker>
#include <QSlider>

#include <algorithm>
#include <cmath>

namespace {
// Measured on the default model: evil at strength 0.7 is mild, impolite at 1.0 is gibberish, so
// the useful range is about +-2 and a step must be well under 0.1.
constexpr double kSliderEnd = 2.0;
constexpr int kStepsPerUnit = 20;  // 0.05 per arrow press
constexpr double kMaxStrength = 20.0;
constexpr double kMaxCoefficient = 1e4;
}  // namespace

StrengthControl::StrengthControl(QWidget* parent) : QWidget(parent) {
    auto* row = new QHBoxLayout(this);
    row->setContentsMargins(0, 0, 0, 0);
    slider_ = new QSlider(Qt::Horizontal, this);
    slider_->setObjectName("strength_slider");
    const int end = static_cast<int>(kSliderEnd * kStepsPerUnit);
    slider_->setRange(-end, end);
    slider_->setSingleStep(1);
    slider_->setPageStep(kStepsPerUnit / 4);
    slider_->setTickPosition(QSlider::TicksBelow);
    slider_->setTickInterval(kStepsPerUnit / 2);
    slider_->setMinimumWidth(360);
    slider_->setToolTip(tr("Steering strength: 1 adds a vector as long as a typical activation at this layer"));
    strength_ = new QDoubleSpinBox(this);
    strength_->setObjectName("strength");
    strength_->setRange(-kMaxStrength, kMaxStrength);
    strength_->setDecimals(2);
    strength_->setSingleStep(1.0 / kStepsPerUnit);
    strength_->setToolTip(slider_->toolTip());
    coefficientBox_ = new QDoubleSpinBox(this);
    coefficientBox_->setObjectName("coefficient");
    coefficientBox_->setRange(-kMaxCoefficient, kMaxCoefficient);
    coefficientBox_->setDecimals(2);
    coefficientBox_->setSingleStep(0.1);
    coefficientBox_->setToolTip(tr("alpha, the raw coefficient: the steered row adds alpha times the vector at the layer. "
                                   "This is what a project saves."));
    row->addWidget(new QLabel(tr("Strength"), this));
    row->addWidget(new QLabel(QString::number(-kSliderEnd), this));
    row->addWidget(slider_, 1);
    row->addWidget(new QLabel(QStringLiteral("+%1").arg(kSliderEnd), this));
    row->addWidget(strength_);
    row->addWidget(new QLabel(tr("coefficient"), this));
    row->addWidget(coefficientBox_);

    connect(slider_, &QSlider::valueChanged, this, [this](int steps) {
        if (scale_ > 0) userSetCoefficient(static_cast<double>(steps) / kStepsPerUnit / scale_);
    });
    connect(strength_, &QDoubleSpinBox::valueChanged, this, [this](double strength) {
        if (scale_ > 0) userSetCoefficient(strength / scale_);
    });
    connect(coefficientBox_, &QDoubleSpinBox::valueChanged, this, &StrengthControl::userSetCoefficient);
    refreshWidgets();
}

QString StrengthControl::describe(double coefficient, double scale) {
    if (scale <= 0) return tr("coefficient %1").arg(coefficient, 0, 'f', 2);
    return tr("strength %1 (coefficient %2)").arg(coefficient * scale, 0, 'f', 2).arg(coefficient, 0, 'f', 2);
}

double StrengthControl::scaleFor(const persona::PersonaVector* vector, int layer, persona::SteerOperation operation,
                                 const std::vector<double>& typicalNorms) {
    if (!vector || layer < 0 || layer >= vector->layer_count || static_cast<std::size_t>(layer) >= typicalNorms.size())
        return 0;
    const double typical = typicalNorms[static_cast<std::size_t>(layer)];
    if (!(typical > 0)) return 0;
    switch (operation) {
        case persona::SteerOperation::Add: return vector->layer_norm(layer) / typical;
        case persona::SteerOperation::Cap: return 1.0 / typical;
        case persona::SteerOperation::Ablate: return 0;
    }
    return 0;
}

void StrengthControl::setScale(double strengthPerCoefficient, bool keepStrength) {
    const double strength = this->strength();
    scale_ = std::isfinite(strengthPerCoefficient) && strengthPerCoefficient > 0 ? strengthPerCoefficient : 0;
    if (keepStrength && scale_ > 0) coefficient_ = strength / scale_;
    refreshWidgets();
}

void StrengthControl::setCoefficient(double coefficient) {
    coefficient_ = std::clamp(coefficient, -kMaxCoefficient, kMaxCoefficient);
    refreshWidgets();
}

void StrengthControl::setStrength(double strength) {
    if (scale_ > 0) setCoefficient(strength / scale_);
}

void StrengthControl::userSetCoefficient(double coefficient) {
    if (coefficient == coefficient_) return;
    setCoefficient(coefficient);
    emit edited();
}

void StrengthControl::refreshWidgets() {
    const QSignalBlocker sliderBlocker(slider_);
    const QSignalBlocker strengthBlocker(strength_);
    const QSignalBlocker coefficientBlocker(coefficientBox_);
    slider_->setEnabled(scale_ > 0);
    strength_->setEnabled(scale_ > 0);
    slider_->setValue(static_cast<int>(std::lround(strength() * kStepsPerUnit)));
    strength_->setValue(strength());
    coefficientBox_->setValue(coefficient_);
}
