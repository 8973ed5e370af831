#pragma once
// The vectors the Steering panel steers with beside its first one: up to three rows, each a
// vector, a layer, an operation (add, ablate, cap) and a value, composed into the steered row
// after the first vector's steering. Values read in calibrated strength like the slider (add: as
// the slider; cap: the most projection, in typical |h_l|), raw when the model gives no
// calibration; the raw value is what a project saves.
//
// Setters emit nothing; `edited` is the user's doing only, so no program change starts work.
#include "persona/generation.h"
#include "persona/persona_vector.h"
#include "persona/project.h"

#include <QWidget>

#include <map>
#include <string>
#include <vector>

class VectorChoice;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QPushButton;
class QSpinBox;
class QVBoxLayout;

class MoreVectorsEditor : public QWidget {
    Q_OBJECT
public:
    explicit MoreVectorsEditor(QWidget* parent = nullptr);

    // Another model: every row goes.
    void setModel(int layerCount, int hiddenSize, std::vector<double> typicalNorms);
    void setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors);

    // "+ Vector": adds a row; disabled without a model and once maxRows() are there. The panel
    // places it beside its own inputs.
    QPushButton* addButton() const { return addButton_; }
    int rowCount() const { return static_cast<int>(rows_.size()); }
    static constexpr int maxRows() { return static_cast<int>(persona::kMaxSteeringVectors) - 1; }
    // A row with the first project vector, at its suggested layer, adding at strength 0; false
    // when maxRows() are there or no model is loaded.
    bool addRow();
    void removeRow(int row);
    VectorChoice* vectorChoice(int row) const;
    // Sets a row as a program: the layer, the operation and the raw value.
    void setRow(int row, int layer, persona::SteerOperation operation, double value);

    // The rows as a project saves them (vector keys; "" for a vector that is not the project's).
    std::vector<persona::SteeringTerm> terms() const;
    // Rows for the terms whose vector the project holds; the others are left out.
    void applyTerms(const std::vector<persona::SteeringTerm>& terms);
    // Every row's steering at these positions; empty and *error set when a row has no vector.
    std::vector<persona::Steering> steering(persona::SteerPositions positions, QString* error) const;
    // "+ ablate evil at layer 12 + cap sycophancy at layer 20, at most 0.50": for the steered pane's title.
    QString describe() const;

signals:
    void edited();
    // The user added a row (at strength 0: nothing steers differently yet).
    void rowAdded();
    // A vector file chosen in a row could not be used: the reason.
    void problem(const QString& message);

private:
    struct Row {
        QWidget* box = nullptr;
        VectorChoice* vector = nullptr;
        QSpinBox* layer = nullptr;
        QComboBox* operation = nullptr;
        QDoubleSpinBox* strength = nullptr;
        QLabel* raw = nullptr;
        double value = 0;  // raw: what is steered with and saved
    };
    persona::SteerOperation operationOf(const Row& row) const;
    double scaleOf(const Row& row) const;
    // The shown strength kept, the raw value follows (a new layer, vector or operation).
    void rescale(Row& row);
    void refresh(Row& row);
    Row* rowOf(const QWidget* box);

    void refreshAddButton();

    std::vector<Row> rows_;
    QVBoxLayout* layout_;
    QPushButton* addButton_;
    int layerCount_ = 0;
    int hiddenSize_ = 0;
    std::vector<double> typicalNorms_;
    std::map<std::string, persona::PersonaVector> projectVectors_;
    int programmatic_ = 0;
};
