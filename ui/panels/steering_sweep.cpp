// SteeringPanel's sweep mode: one batched job with a row per strength, the same prompt, seed
// and sampling, shown side by side as columns.
#include "panels/steering_panel.h"

#include "widgets/diverging_colors.h"
#include "widgets/strength_control.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QRegularExpression>
#include <QScrollArea>
#include <QSpinBox>
#include <QStackedWidget>
#include <QTextCursor>
#include <QTextEdit>
#include <QVBoxLayout>

#include <cmath>

void SteeringPanel::buildSweepView() {
    auto* scroll = new QScrollArea(views_);
    scroll->setObjectName("sweep_view");
    scroll->setWidgetResizable(true);
    sweepColumnsHost_ = new QWidget;
    sweepColumnsLayout_ = new QHBoxLayout(sweepColumnsHost_);
    sweepColumnsLayout_->setContentsMargins(0, 0, 0, 0);
    scroll->setWidget(sweepColumnsHost_);
    views_->addWidget(scroll);
}

void SteeringPanel::setSweepStrengths(const QString& list) { sweepList_->setText(list); }

std::vector<double> SteeringPanel::sweepStrengths() const {
    std::vector<double> strengths;
    const QStringList parts = sweepList_->text().split(QRegularExpression(QStringLiteral("[,;\\s]+")), Qt::SkipEmptyParts);
    for (const QString& part : parts) {
        bool ok = false;
        const double value = part.toDouble(&ok);
        if (!ok || !std::isfinite(value)) return {};
        strengths.push_back(value);
    }
    return strengths;
}

double SteeringPanel::sweepColumnCoefficient(int column) const {
    return column >= 0 && column < sweepColumnCount() ? sweepColumns_[static_cast<std::size_t>(column)].coefficient : 0.0;
}

QString SteeringPanel::sweepColumnText(int column) const {
    return column >= 0 && column < sweepColumnCount() ? sweepColumns_[static_cast<std::size_t>(column)].text->toPlainText()
                                                      : QString();
}

int SteeringPanel::sweepColumnTokens(int column) const {
    return column >= 0 && column < sweepColumnCount()
               ? static_cast<int>(sweepColumns_[static_cast<std::size_t>(column)].tokens.texts.size())
               : 0;
}

void SteeringPanel::sweep() {
    if (!readyToGenerate()) return;
    std::vector<persona::Steering> moreSteering;
    if (!moreSteeringOrMessage(&moreSteering)) return;
    const persona::PersonaVector* vector = currentVector();
    const std::vector<double> strengths = sweepStrengths();
    if (strengths.empty()) {
        message_->setText(tr("The sweep needs a list of numbers, such as -1, -0.5, 0, 0.5, 1."));
        return;
    }
    mode_ = SweepMode;
    views_->setCurrentIndex(SweepMode);
    runLayer_ = layer_->value();
    runMaxTokens_ = maxTokens_->value();
    shownUnsteeredKey_.clear();  // the pair view's rows are no longer what the panes show

    const persona::GenerationRow base = unsteeredRow();
    const persona::LayerView direction = vector->layer(runLayer_);
    // A sweep varies alpha, so it always adds; ablation has no strength to sweep.
    const auto positions = static_cast<persona::SteerPositions>(positions_->currentData().toInt());
    const double scale = StrengthControl::scaleFor(vector, runLayer_, persona::SteerOperation::Add, typicalNorms_);

    for (SweepColumn& column : sweepColumns_) {
        delete column.title;
        delete column.text;
    }
    sweepColumns_.clear();
    std::vector<persona::GenerationRow> rows;
    for (double strength : strengths) {
        const double coefficient = scale > 0 ? strength / scale : strength;
        persona::GenerationRow row = base;
        persona::Steering steering;
        steering.layer = runLayer_;
        steering.vector.assign(direction.begin(), direction.end());
        steering.alpha = static_cast<float>(coefficient);
        steering.positions = positions;
        row.steering.push_back(std::move(steering));
        row.steering.insert(row.steering.end(), moreSteering.begin(), moreSteering.end());
        rows.push_back(std::move(row));

        SweepColumn column;
        column.coefficient = coefficient;
        column.strengthScale = scale;
        column.title = new QLabel(StrengthControl::describe(coefficient, scale), sweepColumnsHost_);
        column.title->setAlignment(Qt::AlignCenter);
        column.text = new QTextEdit(sweepColumnsHost_);
        column.text->setReadOnly(true);
        column.text->setMinimumWidth(150);
        column.text->setObjectName(QStringLiteral("sweep_column_%1").arg(sweepColumns_.size()));
        auto* box = new QVBoxLayout;
        box->addWidget(column.title);
        box->addWidget(column.text, 1);
        sweepColumnsLayout_->addLayout(box, 1);
        sweepColumns_.push_back(std::move(column));
    }
    // Layouts left over from the previous sweep hold no widgets any more.
    for (int i = sweepColumnsLayout_->count() - 1; i >= 0; --i) {
        QLayoutItem* item = sweepColumnsLayout_->itemAt(i);
        if (item->layout() && item->layout()->count() == 0) delete sweepColumnsLayout_->takeAt(i);
    }

    persona::ProjectionProbe probe;  // the steered layer only: it tints the tokens
    probe.layers.push_back(runLayer_);
    probe.directions.emplace_back(direction.begin(), direction.end());
    steeredOnly_ = false;
    startJob(std::move(rows), std::move(probe));
    message_->setText(tr("Sweeping %1 strengths at layer %2...").arg(strengths.size()).arg(runLayer_));
}

void SteeringPanel::refreshSweep() {
    // One scale for every column, as for the two panes.
    double scale = 0;
    for (const SweepColumn& column : sweepColumns_) scale = diverging::maxAbs(column.tokens.projections, scale);
    for (SweepColumn& column : sweepColumns_) {
        column.text->clear();
        QTextCursor cursor(column.text->document());
        for (int t = 0; t < column.tokens.texts.size(); ++t) {
            const auto& projections = column.tokens.projections[static_cast<std::size_t>(t)];
            const double value = projections.empty() ? 0.0 : static_cast<double>(projections.front());
            QTextCharFormat format;
            format.setBackground(diverging::colorFor(value, scale, 0.6));
            format.setToolTip(tr("projection at layer %1: %2").arg(runLayer_).arg(value, 0, 'f', 2));
            cursor.insertText(column.tokens.texts[t], format);
        }
        column.title->setText(tr("%1 (%2 tokens)")
                                  .arg(StrengthControl::describe(column.coefficient, column.strengthScale))
                                  .arg(column.tokens.texts.size()));
    }
}
