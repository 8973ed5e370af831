#pragma once
// How hard one vector steers at one layer, shown in calibrated strength (docs/method.md,
// "Calibrated strength"): coefficient x |v_l| / typical |h_l|, so 1 adds a vector as long as a
// typical activation whatever the vector and layer. A wide slider in 0.05 steps with a tick every
// half unit, a strength spin box, and the raw coefficient (alpha) beside them.
//
// The coefficient is what is stored: a project's saved coefficient comes back exactly. The
// setters emit nothing; `edited` is the user's doing only, so no program change starts work.
#include "persona/generation.h"

#include <QWidget>

#include <vector>

namespace persona { struct PersonaVector; }
class QDoubleSpinBox;
class QLabel;
class QSlider;

class StrengthControl : public QWidget {
    Q_OBJECT
public:
    explicit StrengthControl(QWidget* parent = nullptr);

    // Strength per unit of coefficient for the vector and layer now chosen (|v_l| / typical
    // |h_l|); 0 when unknown, which leaves the coefficient as the only control. With
    // keepStrength, the coefficient follows so that the strength stays what it was.
    void setScale(double strengthPerCoefficient, bool keepStrength);
    double scale() const { return scale_; }

    void setCoefficient(double coefficient);
    double coefficient() const { return coefficient_; }
    void setStrength(double strength);  // ignored while the scale is unknown
    double strength() const { return coefficient_ * scale_; }
    // "strength 0.50 (coefficient 4.12)", or the coefficient alone without a scale.
    static QString describe(double coefficient, double scale);
    // Strength per unit of the raw value steering `vector` at `layer` with `operation`: add's
    // coefficient moves the projection by |v_l| per unit, cap's value is a projection itself, so
    // both read in typical |h_l|; 0 for ablate and when the model gives no typical norms.
    static double scaleFor(const persona::PersonaVector* vector, int layer, persona::SteerOperation operation,
                           const std::vector<double>& typicalNorms);

signals:
    void edited();

private:
    void refreshWidgets();
    void userSetCoefficient(double coefficient);

    double coefficient_ = 0;
    double scale_ = 0;
    QSlider* slider_;
    QDoubleSpinBox* strength_;
    QDoubleSpinBox* coefficientBox_;
};
