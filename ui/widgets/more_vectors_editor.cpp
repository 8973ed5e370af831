#include "widgets/more_vectors_editor.h"

#include "widgets/strength_control.h"
#include "widgets/vector_choice.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>
#include <QToolButton>
#include <QVBoxLayout>

#include <algorithm>

namespace {
constexpr double kMaxShown = 1e4;

struct Programmatic {
    explicit Programmatic(int& depth) : depth_(depth) { ++depth_; }
    ~Programmatic() { --depth_; }
    int& depth_;
};
}  // namespace

MoreVectorsEditor::MoreVectorsEditor(QWidget* parent) : QWidget(parent) {
    layout_ = new QVBoxLayout(this);
    layout_->setContentsMargins(0, 0, 0, 0);
    layout_->setSpacing(2);
    addButton_ = new QPushButton(tr("+ Vector"), this);
    addButton_->setObjectName("add_vector");
    addButton_->setToolTip(tr("Steer with another vector in the same row (up to %1 in all), each with its own layer, "
                              "operation and strength")
                               .arg(persona::kMaxSteeringVectors));
    addButton_->setEnabled(false);
    connect(addButton_, &QPushButton::clicked, this, [this] {
        if (addRow()) emit rowAdded();
    });
}

void MoreVectorsEditor::refreshAddButton() { addButton_->setEnabled(layerCount_ > 0 && rowCount() < maxRows()); }

void MoreVectorsEditor::setModel(int layerCount, int hiddenSize, std::vector<double> typicalNorms) {
    while (!rows_.empty()) removeRow(rowCount() - 1);
    layerCount_ = layerCount;
    hiddenSize_ = hiddenSize;
    typicalNorms_ = std::move(typicalNorms);
    projectVectors_.clear();
    refreshAddButton();
}

void MoreVectorsEditor::setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors) {
    const Programmatic programmatic(programmatic_);
    projectVectors_ = vectors;
    for (Row& row : rows_) {
        row.vector->setProjectVectors(vectors);
        refresh(row);
    }
}

MoreVectorsEditor::Row* MoreVectorsEditor::rowOf(const QWidget* box) {
    for (Row& row : rows_)
        if (row.box == box) return &row;
    return nullptr;
}

bool MoreVectorsEditor::addRow() {
    if (rowCount() >= maxRows() || layerCount_ <= 0) return false;
    const Programmatic programmatic(programmatic_);
    Row row;
    row.box = new QWidget(this);
    row.box->setObjectName(QStringLiteral("more_vector_%1").arg(rowCount()));
    auto* line = new QHBoxLayout(row.box);
    line->setContentsMargins(0, 0, 0, 0);
    line->addWidget(new QLabel(tr("and"), row.box));
    row.vector = new VectorChoice(row.box);
    row.vector->setObjectName("more_vector_choice");
    row.vector->setMinimumContentsLength(18);
    row.vector->reset(layerCount_, hiddenSize_);
    row.vector->setProjectVectors(projectVectors_);
    row.layer = new QSpinBox(row.box);
    row.layer->setObjectName("more_layer");
    row.layer->setRange(1, layerCount_);
    row.layer->setValue(std::max(1, layerCount_ * 2 / 3));
    row.operation = new QComboBox(row.box);
    row.operation->setObjectName("more_operation");
    for (const std::string& name : persona::steer_operation_names())
        row.operation->addItem(QString::fromStdString(name), static_cast<int>(*persona::steer_operation_from_name(name)));
    row.operation->setToolTip(tr("add: push along the vector; ablate: remove its direction; cap: keep the projection on "
                                 "it at most the value"));
    row.strength = new QDoubleSpinBox(row.box);
    row.strength->setObjectName("more_strength");
    row.strength->setRange(-kMaxShown, kMaxShown);
    row.strength->setDecimals(2);
    row.strength->setSingleStep(0.05);
    row.raw = new QLabel(row.box);
    row.raw->setObjectName("more_raw_value");
    auto* remove = new QToolButton(row.box);
    remove->setObjectName("more_remove");
    remove->setText(QStringLiteral("\u00d7"));
    remove->setToolTip(tr("Stop steering with this vector"));
    line->addWidget(row.vector, 1);
    line->addWidget(new QLabel(tr("layer"), row.box));
    line->addWidget(row.layer);
    line->addWidget(row.operation);
    line->addWidget(row.strength);
    line->addWidget(row.raw);
    line->addWidget(remove);
    layout_->addWidget(row.box);

    QWidget* box = row.box;
    row.vector->openFilesReporting([this](const QString& error) { emit problem(error); });
    // A vector chosen brings its suggested layer, as the first vector's does.
    connect(row.vector, &VectorChoice::vectorChosen, this, [this, box] {
        Row* r = rowOf(box);
        if (!r) return;
        if (const persona::PersonaVector* chosen = r->vector->current()) {
            const std::optional<int> suggested = chosen->suggested_layer();
            if (suggested && *suggested >= 1 && *suggested <= layerCount_) {
                const Programmatic quiet(programmatic_);
                r->layer->setValue(*suggested);
            }
        }
        rescale(*r);
        if (!programmatic_) emit edited();
    });
    const auto rescaleAndEdit = [this, box] {
        Row* r = rowOf(box);
        if (!r || programmatic_) return;
        rescale(*r);
        emit edited();
    };
    connect(row.layer, &QSpinBox::valueChanged, this, rescaleAndEdit);
    connect(row.operation, &QComboBox::currentIndexChanged, this, rescaleAndEdit);
    connect(row.strength, &QDoubleSpinBox::valueChanged, this, [this, box](double shown) {
        Row* r = rowOf(box);
        if (!r || programmatic_) return;
        const double scale = scaleOf(*r);
        r->value = scale > 0 ? shown / scale : shown;
        refresh(*r);
        emit edited();
    });
    connect(remove, &QToolButton::clicked, this, [this, box] {
        for (int i = 0; i < rowCount(); ++i)
            if (rows_[static_cast<std::size_t>(i)].box == box) {
                removeRow(i);
                emit edited();
                return;
            }
    });

    rows_.push_back(row);
    if (!projectVectors_.empty()) row.vector->selectProjectVector(QString::fromStdString(projectVectors_.begin()->first));
    refresh(rows_.back());
    refreshAddButton();
    return true;
}

void MoreVectorsEditor::removeRow(int row) {
    if (row < 0 || row >= rowCount()) return;
    rows_[static_cast<std::size_t>(row)].box->deleteLater();
    rows_[static_cast<std::size_t>(row)].box->hide();
    rows_.erase(rows_.begin() + row);
    refreshAddButton();
}

VectorChoice* MoreVectorsEditor::vectorChoice(int row) const {
    return row >= 0 && row < rowCount() ? rows_[static_cast<std::size_t>(row)].vector : nullptr;
}

void MoreVectorsEditor::setRow(int row, int layer, persona::SteerOperation operation, double value) {
    if (row < 0 || row >= rowCount()) return;
    const Programmatic programmatic(programmatic_);
    Row& r = rows_[static_cast<std::size_t>(row)];
    if (layer >= 1 && layer <= layerCount_) r.layer->setValue(layer);
    r.operation->setCurrentIndex(std::max(0, r.operation->findData(static_cast<int>(operation))));
    r.value = value;
    refresh(r);
}

persona::SteerOperation MoreVectorsEditor::operationOf(const Row& row) const {
    return static_cast<persona::SteerOperation>(row.operation->currentData().toInt());
}

double MoreVectorsEditor::scaleOf(const Row& row) const {
    return StrengthControl::scaleFor(row.vector->current(), row.layer->value(), operationOf(row), typicalNorms_);
}

void MoreVectorsEditor::rescale(Row& row) {
    const double scale = scaleOf(row);
    if (scale > 0) row.value = row.strength->value() / scale;
    refresh(row);
}

void MoreVectorsEditor::refresh(Row& row) {
    const Programmatic programmatic(programmatic_);
    const persona::SteerOperation operation = operationOf(row);
    const double scale = scaleOf(row);
    row.strength->setEnabled(operation != persona::SteerOperation::Ablate);
    row.strength->setValue(std::clamp(scale > 0 ? row.value * scale : row.value, -kMaxShown, kMaxShown));
    row.strength->setToolTip(operation == persona::SteerOperation::Cap
                                 ? tr("The most the projection on the vector may be, in typical activation lengths")
                                 : tr("Strength: 1 adds a vector as long as a typical activation at this layer"));
    if (operation == persona::SteerOperation::Ablate)
        row.raw->clear();
    else if (scale > 0)
        row.raw->setText(operation == persona::SteerOperation::Cap ? tr("(cap %1)").arg(row.value, 0, 'f', 2)
                                                                   : tr("(coefficient %1)").arg(row.value, 0, 'f', 2));
    else
        row.raw->setText(tr("(raw)"));
}

std::vector<persona::SteeringTerm> MoreVectorsEditor::terms() const {
    std::vector<persona::SteeringTerm> terms;
    for (const Row& row : rows_) {
        persona::SteeringTerm term;
        term.vector = row.vector->currentProjectKey().toStdString();
        term.layer = row.layer->value();
        term.value = row.value;
        term.operation = operationOf(row);
        terms.push_back(std::move(term));
    }
    return terms;
}

void MoreVectorsEditor::applyTerms(const std::vector<persona::SteeringTerm>& terms) {
    while (!rows_.empty()) removeRow(rowCount() - 1);
    for (const persona::SteeringTerm& term : terms) {
        if (!projectVectors_.count(term.vector) || !addRow()) continue;
        {
            const Programmatic programmatic(programmatic_);
            rows_.back().vector->selectProjectVector(QString::fromStdString(term.vector));
        }
        setRow(rowCount() - 1, term.layer, term.operation, term.value);
    }
}

std::vector<persona::Steering> MoreVectorsEditor::steering(persona::SteerPositions positions, QString* error) const {
    std::vector<persona::Steering> steering;
    for (int i = 0; i < rowCount(); ++i) {
        const Row& row = rows_[static_cast<std::size_t>(i)];
        const persona::PersonaVector* vector = row.vector->current();
        if (!vector) {
            *error = tr("Vector %1 of the ones steered with the first has none chosen: choose one or remove it.").arg(i + 2);
            return {};
        }
        persona::Steering s;
        s.layer = row.layer->value();
        const persona::LayerView values = vector->layer(s.layer);
        s.vector.assign(values.begin(), values.end());
        s.alpha = static_cast<float>(row.value);
        s.positions = positions;
        s.operation = operationOf(row);
        steering.push_back(std::move(s));
    }
    return steering;
}

QString MoreVectorsEditor::describe() const {
    QStringList parts;
    for (const Row& row : rows_) {
        const persona::SteerOperation operation = operationOf(row);
        QString part = tr("+ %1 %2 at layer %3")
                           .arg(QString::fromLatin1(persona::steer_operation_name(operation)),
                                row.vector->current() ? QString::fromStdString(row.vector->current()->trait) : tr("nothing"))
                           .arg(row.layer->value());
        if (operation == persona::SteerOperation::Add) part += tr(", strength %1").arg(row.strength->value(), 0, 'f', 2);
        if (operation == persona::SteerOperation::Cap) part += tr(", at most %1").arg(row.strength->value(), 0, 'f', 2);
        parts << part;
    }
    return parts.join(QStringLiteral(" "));
}
