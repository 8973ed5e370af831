#include "panels/steering_panel.h"

#include "widgets/diverging_colors.h"
#include "shell/engine_client.h"
#include "widgets/projection_heat_map.h"
#include "widgets/vector_choice.h"
#include "persona/vector_files.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QRegularExpression>
#include <QScrollArea>
#include <QStackedWidget>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollBar>
#include <QSignalBlocker>
#include <QSlider>
#include <QSpinBox>
#include <QTextCursor>
#include <QTextEdit>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>
#include <random>

namespace {
// The slider moves in tenths: an int slider of -80..80 is a coefficient of -8..8.
constexpr int kSliderStepsPerUnit = 10;
constexpr double kMaxCoefficient = 8.0;
constexpr int kDebounceMs = 250;
// Repainting three plots and two panes per token steals CPU from the model on a small
// machine; ten times a second still looks like streaming.
constexpr int kRefreshMs = 100;
// Fixed, so the "random direction" is the same vector in every session and screenshot.
constexpr unsigned kRandomDirectionSeed = 20240607;
// Shown on the vector choice: it is the only honest name for it.
const char* const kRandomDirectionName = QT_TRANSLATE_NOOP("SteeringPanel", "Random direction (not a trait)");

double maxAbs(const std::vector<std::vector<float>>& columns, double start = 0.0) {
    double largest = start;
    for (const auto& column : columns)
        for (float value : column) largest = std::max(largest, std::abs(static_cast<double>(value)));
    return largest;
}

QString operationName(persona::SteerOperation operation) {
    return QString::fromLatin1(persona::steer_operation_name(operation));
}
}  // namespace

SteeringPanel::SteeringPanel(EngineClient* engine, QWidget* parent) : QWidget(parent), engine_(engine) {
    new QVBoxLayout(this);
    buildInputs();
    buildPanes();
    buildSweepView();
    connectInputs();

    regenerateDebounce_.setSingleShot(true);
    regenerateDebounce_.setInterval(kDebounceMs);
    connect(&regenerateDebounce_, &QTimer::timeout, this, &SteeringPanel::regenerate);
    refreshCoalescer_.setSingleShot(true);
    refreshCoalescer_.setInterval(kRefreshMs);
    connect(&refreshCoalescer_, &QTimer::timeout, this, &SteeringPanel::refreshViews);
}

void SteeringPanel::buildInputs() {
    auto* inputs = new QGridLayout;
    systemPrompt_ = new QPlainTextEdit(tr("You are a helpful assistant."), this);
    systemPrompt_->setObjectName("system_prompt");
    prompt_ = new QPlainTextEdit(tr("How should I treat a stray dog?"), this);
    prompt_->setObjectName("prompt");
    for (QPlainTextEdit* edit : {systemPrompt_, prompt_}) {
        edit->setTabChangesFocus(true);
        edit->setFixedHeight(edit->fontMetrics().lineSpacing() * 2 + 12);
    }

    vectorChoice_ = new VectorChoice(this);
    vectorChoice_->setObjectName("vector_choice");
    vectorChoice_->setMinimumContentsLength(24);
    vectorChoice_->setFileOpener([this](const QString& path) { return openVectorFile(path); });
    layer_ = new QSpinBox(this);
    layer_->setObjectName("layer");
    layer_->setRange(1, 1);
    layer_->setToolTip(tr("hidden_states index: layer l steers the output of block l-1"));
    positions_ = new QComboBox(this);
    positions_->setObjectName("positions");
    for (const std::string& name : persona::steer_positions_names())
        positions_->addItem(QString::fromStdString(name), static_cast<int>(*persona::steer_positions_from_name(name)));
    operation_ = new QComboBox(this);
    operation_->setObjectName("operation");
    for (const persona::SteerOperation operation : {persona::SteerOperation::Add, persona::SteerOperation::Ablate})
        operation_->addItem(operationName(operation), static_cast<int>(operation));

    coefficientSlider_ = new QSlider(Qt::Horizontal, this);
    coefficientSlider_->setObjectName("coefficient_slider");
    const int sliderEnd = static_cast<int>(kMaxCoefficient) * kSliderStepsPerUnit;
    coefficientSlider_->setRange(-sliderEnd, sliderEnd);
    coefficientSlider_->setTickPosition(QSlider::TicksBelow);
    coefficientSlider_->setTickInterval(kSliderStepsPerUnit);
    coefficient_ = new QDoubleSpinBox(this);
    coefficient_->setObjectName("coefficient");
    coefficient_->setRange(-kMaxCoefficient, kMaxCoefficient);
    coefficient_->setDecimals(1);
    coefficient_->setSingleStep(0.1);
    coefficient_->setToolTip(tr("alpha: the steered row adds alpha times the vector at the layer"));

    maxTokens_ = new QSpinBox(this);
    maxTokens_->setObjectName("max_tokens");
    maxTokens_->setRange(1, 1024);
    maxTokens_->setValue(48);
    temperature_ = new QDoubleSpinBox(this);
    temperature_->setObjectName("temperature");
    temperature_->setRange(0.0, 2.0);
    temperature_->setSingleStep(0.1);
    temperature_->setValue(0.7);
    temperature_->setToolTip(tr("0 is greedy"));
    seed_ = new QSpinBox(this);
    seed_->setObjectName("seed");
    seed_->setRange(0, 1'000'000'000);
    seed_->setValue(1);
    seed_->setToolTip(tr("Both panes sample with this seed: only the steering differs"));

    generateButton_ = new QPushButton(tr("Generate"), this);
    generateButton_->setObjectName("generate_button");
    generateButton_->setEnabled(false);
    stopButton_ = new QPushButton(tr("Stop"), this);
    stopButton_->setObjectName("stop_generation");
    stopButton_->setEnabled(false);
    sweepList_ = new QLineEdit(QStringLiteral("-8, -4, 0, 4, 8"), this);
    sweepList_->setObjectName("sweep_coefficients");
    sweepList_->setToolTip(tr("Coefficients of the sweep, separated by commas: one column each, same prompt and seed"));
    sweepList_->setMaximumWidth(sweepList_->fontMetrics().horizontalAdvance(QStringLiteral("-8, -4, -2, 0, 2, 4, 8")) + 16);
    sweepButton_ = new QPushButton(tr("Sweep"), this);
    sweepButton_->setObjectName("sweep_button");
    sweepButton_->setEnabled(false);
    sweepButton_->setToolTip(tr("One batched generation per coefficient in the list, shown side by side"));

    auto label = [this](const QString& text) { return new QLabel(text, this); };
    inputs->addWidget(label(tr("System")), 0, 0);
    inputs->addWidget(systemPrompt_, 0, 1);
    inputs->addWidget(label(tr("Prompt")), 1, 0);
    inputs->addWidget(prompt_, 1, 1);

    auto* vectorRow = new QHBoxLayout;
    vectorRow->addWidget(label(tr("Vector")));
    vectorRow->addWidget(vectorChoice_, 1);
    auto* whereRow = new QHBoxLayout;
    whereRow->addWidget(label(tr("Layer")));
    whereRow->addWidget(layer_);
    whereRow->addWidget(positions_);
    whereRow->addWidget(operation_);
    whereRow->addStretch(1);
    inputs->addLayout(vectorRow, 0, 2);
    inputs->addLayout(whereRow, 1, 2);

    auto* coefficientRow = new QHBoxLayout;
    coefficientRow->addWidget(label(tr("Coefficient")));
    coefficientRow->addWidget(label(QString::number(-kMaxCoefficient)));
    coefficientRow->addWidget(coefficientSlider_, 1);
    coefficientRow->addWidget(label(QStringLiteral("+%1").arg(kMaxCoefficient)));
    coefficientRow->addWidget(coefficient_);
    coefficientRow->addSpacing(12);
    coefficientRow->addWidget(label(tr("Max tokens")));
    coefficientRow->addWidget(maxTokens_);
    coefficientRow->addWidget(label(tr("Temperature")));
    coefficientRow->addWidget(temperature_);
    coefficientRow->addWidget(label(tr("Seed")));
    coefficientRow->addWidget(seed_);
    coefficientRow->addSpacing(12);
    coefficientRow->addWidget(generateButton_);
    coefficientRow->addWidget(stopButton_);
    inputs->addLayout(coefficientRow, 2, 0, 1, 3);

    inputs->setColumnStretch(1, 3);
    inputs->setColumnStretch(2, 2);
    static_cast<QVBoxLayout*>(layout())->addLayout(inputs);

    message_ = new QLabel(tr("Load a model to steer it."), this);
    message_->setObjectName("steering_message");
    message_->setWordWrap(true);
    // The sweep shares the message's row: the inputs above have no width to spare.
    auto* messageRow = new QHBoxLayout;
    messageRow->addWidget(message_, 1);
    messageRow->addWidget(label(tr("Sweep coefficients")));
    messageRow->addWidget(sweepList_);
    messageRow->addWidget(sweepButton_);
    static_cast<QVBoxLayout*>(layout())->addLayout(messageRow);
}

void SteeringPanel::buildPanes() {
    views_ = new QStackedWidget(this);
    views_->setObjectName("steering_views");
    auto* pairPage = new QWidget(views_);
    auto* panes = new QGridLayout(pairPage);
    panes->setContentsMargins(0, 0, 0, 0);
    const std::array<QString, 2> names{QStringLiteral("unsteered"), QStringLiteral("steered")};
    for (int pane = 0; pane < 2; ++pane) {
        auto* title = new QLabel(pane == Unsteered ? tr("Unsteered") : tr("Steered"), this);
        title->setObjectName(names[pane] + "_title");
        auto* text = new QTextEdit(this);
        text->setObjectName(names[pane] + "_text");
        text->setReadOnly(true);
        text->setMinimumHeight(70);
        auto* map = new ProjectionHeatMap(pane == Unsteered ? tr("Unsteered: projection per layer")
                                                            : tr("Steered: projection per layer"),
                                          this);
        map->setObjectName(names[pane] + "_heat_map");
        map->setMinimumHeight(190);
        panes->addWidget(title, 0, pane);
        panes->addWidget(text, 1, pane);
        panes->addWidget(map, 2, pane);
        paneTitles_[static_cast<std::size_t>(pane)] = title;
        paneTexts_[static_cast<std::size_t>(pane)] = text;
        paneMaps_[static_cast<std::size_t>(pane)] = map;
    }
    panes->setRowStretch(1, 1);
    panes->setRowStretch(2, 2);
    differenceMap_ = new ProjectionHeatMap(tr("Steered minus unsteered"), this);
    differenceMap_->setObjectName("difference_heat_map");
    differenceMap_->setMinimumHeight(150);
    differenceMap_->setMaximumHeight(170);
    panes->addWidget(differenceMap_, 3, 0, 1, 2);
    views_->addWidget(pairPage);
    static_cast<QVBoxLayout*>(layout())->addWidget(views_, 1);
}

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

void SteeringPanel::connectInputs() {
    connect(coefficientSlider_, &QSlider::valueChanged, this, [this](int steps) {
        const QSignalBlocker blocker(coefficient_);
        coefficient_->setValue(static_cast<double>(steps) / kSliderStepsPerUnit);
        inputChanged();
    });
    connect(coefficient_, &QDoubleSpinBox::valueChanged, this, [this](double value) {
        const QSignalBlocker blocker(coefficientSlider_);
        coefficientSlider_->setValue(static_cast<int>(std::lround(value * kSliderStepsPerUnit)));
        inputChanged();
    });
    connect(systemPrompt_, &QPlainTextEdit::textChanged, this, &SteeringPanel::inputChanged);
    connect(prompt_, &QPlainTextEdit::textChanged, this, &SteeringPanel::inputChanged);
    connect(vectorChoice_, &VectorChoice::vectorChosen, this, &SteeringPanel::inputChanged);
    connect(layer_, &QSpinBox::valueChanged, this, &SteeringPanel::inputChanged);
    connect(positions_, &QComboBox::currentIndexChanged, this, &SteeringPanel::inputChanged);
    connect(operation_, &QComboBox::currentIndexChanged, this, &SteeringPanel::inputChanged);
    connect(maxTokens_, &QSpinBox::valueChanged, this, &SteeringPanel::inputChanged);
    connect(temperature_, &QDoubleSpinBox::valueChanged, this, &SteeringPanel::inputChanged);
    connect(seed_, &QSpinBox::valueChanged, this, &SteeringPanel::inputChanged);
    connect(generateButton_, &QPushButton::clicked, this, &SteeringPanel::generate);
    connect(stopButton_, &QPushButton::clicked, this, &SteeringPanel::stop);
    connect(sweepButton_, &QPushButton::clicked, this, &SteeringPanel::sweep);
    connect(sweepList_, &QLineEdit::editingFinished, this, [this] {
        if (mode_ == SweepMode) inputChanged();
    });
}

void SteeringPanel::inputChanged() {
    // Before the first Generate, typing a prompt should not start the model on every key.
    if (live_ && layerCount_ > 0) regenerateDebounce_.start();
}

void SteeringPanel::setModel(const persona::ModelFacts& facts) {
    layerCount_ = facts.layers;
    hiddenSize_ = facts.hidden_size;
    {
        const QSignalBlocker blocker(layer_);
        layer_->setRange(1, layerCount_);
        // The paper's best steering layers sat about two thirds of the way up.
        layer_->setValue(std::max(1, layerCount_ * 2 / 3));
    }
    vectorChoice_->reset(layerCount_, hiddenSize_);
    useRandomDirection();
    generateButton_->setEnabled(true);
    sweepButton_->setEnabled(true);
    message_->setText(tr("Choose a vector, a layer and a coefficient, then Generate. Tokens are tinted by their "
                         "projection on the vector at the steered layer (blue below zero, red above)."));
}

void SteeringPanel::useRandomDirection() {
    if (vectorChoice_->select(tr(kRandomDirectionName)) || layerCount_ <= 0) return;
    // Gaussian entries: |v| is about sqrt(hidden) (24 for hidden 576), so coefficients of a
    // few units reach the size of a residual-stream activation, as trait vectors do.
    std::mt19937 generator(kRandomDirectionSeed);
    std::normal_distribution<float> gaussian;
    persona::PersonaVector random;
    random.trait = "random";
    random.layer_count = layerCount_ + 1;
    random.hidden_size = hiddenSize_;
    random.values.resize(static_cast<std::size_t>(layerCount_ + 1) * static_cast<std::size_t>(hiddenSize_));
    for (float& value : random.values) value = gaussian(generator);
    random.provenance["source"] = "random Gaussian direction, not extracted from any trait";
    vectorChoice_->addVector(tr(kRandomDirectionName), std::move(random));
    vectorChoice_->setItemData(vectorChoice_->currentIndex(),
                               tr("A fixed random Gaussian vector, for trying steering before any trait is extracted. "
                                  "What it does to the text means nothing about any trait."),
                               Qt::ToolTipRole);
}

bool SteeringPanel::openVectorFile(const QString& path) {
    QString error;
    auto loaded = vectorChoice_->readFile(path, &error);
    if (!loaded) {
        message_->setText(error);
        return false;
    }
    int suggestedLayer = 0;
    const auto suggested = loaded->provenance.find("suggested_layer");
    if (suggested != loaded->provenance.end()) suggestedLayer = QString::fromStdString(suggested->second).toInt();
    const QString name = VectorChoice::fileEntryName(*loaded, path);
    addVector(name, std::move(*loaded), suggestedLayer);
    return true;
}

// The vector's suggested layer is set first, so the generation its choice starts uses it.
void SteeringPanel::addVector(const QString& name, persona::PersonaVector vector, int suggestedLayer) {
    if (suggestedLayer >= 1 && suggestedLayer <= layerCount_) {
        const QSignalBlocker blocker(layer_);
        layer_->setValue(suggestedLayer);
    }
    vectorChoice_->addVector(name, std::move(vector));
}

const persona::PersonaVector* SteeringPanel::currentVector() const { return vectorChoice_->current(); }

int SteeringPanel::steeredLayer() const { return layer_->value(); }

void SteeringPanel::setPrompt(const QString& prompt) { prompt_->setPlainText(prompt); }
void SteeringPanel::setCoefficient(double coefficient) { coefficient_->setValue(coefficient); }
double SteeringPanel::coefficient() const { return coefficient_->value(); }

QString SteeringPanel::paneText(Pane pane) const { return paneTexts_[pane]->toPlainText(); }
int SteeringPanel::tokenCount(Pane pane) const { return static_cast<int>(panes_[pane].texts.size()); }
ProjectionHeatMap* SteeringPanel::heatMap(Pane pane) const { return paneMaps_[pane]; }

void SteeringPanel::generate() {
    regenerateDebounce_.stop();
    const persona::PersonaVector* vector = currentVector();
    if (layerCount_ <= 0 || !vector) {
        message_->setText(layerCount_ <= 0 ? tr("Load a model to steer it.") : tr("Choose a vector first."));
        return;
    }
    if (prompt_->toPlainText().trimmed().isEmpty()) {
        message_->setText(tr("Write a prompt first."));
        return;
    }
    mode_ = PairMode;
    views_->setCurrentIndex(PairMode);
    runLayer_ = layer_->value();
    runMaxTokens_ = maxTokens_->value();
    runCoefficient_ = coefficient_->value();
    const auto operation = static_cast<persona::SteerOperation>(operation_->currentData().toInt());

    persona::GenerationRow unsteered;
    const QString system = systemPrompt_->toPlainText().trimmed();
    if (!system.isEmpty()) unsteered.messages.push_back({"system", system.toStdString()});
    unsteered.messages.push_back({"user", prompt_->toPlainText().toStdString()});
    unsteered.sampling.temperature = static_cast<float>(temperature_->value());
    unsteered.sampling.seed = static_cast<std::uint64_t>(seed_->value());
    unsteered.sampling.max_new_tokens = runMaxTokens_;
    persona::GenerationRow steered = unsteered;
    persona::Steering steering;
    steering.layer = runLayer_;
    const persona::LayerView direction = vector->layer(runLayer_);
    steering.vector.assign(direction.begin(), direction.end());
    steering.alpha = static_cast<float>(runCoefficient_);
    steering.positions = static_cast<persona::SteerPositions>(positions_->currentData().toInt());
    steering.operation = operation;
    steered.steering.push_back(std::move(steering));

    // Every layer, each onto the vector's own direction at that layer.
    persona::ProjectionProbe probe;
    for (int l = 0; l <= layerCount_; ++l) {
        probe.layers.push_back(l);
        const persona::LayerView values = vector->layer(l);
        probe.directions.emplace_back(values.begin(), values.end());
    }

    for (auto& pane : panes_) pane = {};
    paneTitles_[Unsteered]->setText(tr("Unsteered (seed %1)").arg(seed_->value()));
    paneTitles_[Steered]->setText(operation == persona::SteerOperation::Add
                                      ? tr("Steered: %1 at layer %2, coefficient %3")
                                            .arg(operationName(operation))
                                            .arg(runLayer_)
                                            .arg(runCoefficient_, 0, 'f', 1)
                                      : tr("Steered: %1 at layer %2").arg(operationName(operation)).arg(runLayer_));
    refreshViews();
    std::vector<persona::GenerationRow> rows;
    rows.push_back(std::move(unsteered));
    rows.push_back(std::move(steered));
    startJob(std::move(rows), std::move(probe));
}

void SteeringPanel::regenerate() {
    if (mode_ == SweepMode) sweep();
    else generate();
}

void SteeringPanel::startJob(std::vector<persona::GenerationRow> rows, persona::ProjectionProbe probe) {
    job_.cancel();  // this panel's own generation only; an extraction elsewhere runs on
    live_ = true;
    generating_ = true;
    stopButton_->setEnabled(true);
    message_->setText(tr("Generating..."));
    runClock_.start();
    emit generationStarted();

    // Callbacks of a replaced generation (already queued on the UI thread when it was
    // replaced) find another job current and are ignored.
    auto id = std::make_shared<std::uint64_t>(0);
    const auto current = [this, id] { return job_.id() == *id; };
    GenerationCallbacks callbacks;
    callbacks.receiver = this;
    callbacks.token = [this, current](const persona::TokenEvent& event) {
        if (current()) onToken(event);
    };
    callbacks.finished = [this, current](const std::vector<persona::GenerationResult>& results) {
        if (current()) onFinished(results);
    };
    callbacks.cancelled = [this, current] {
        if (!current()) return;  // replaced by a newer generation: not a stop
        settle(tr("Stopped."));
        emit generationStopped();
    };
    callbacks.failed = [this, current](const QString& error) {
        if (!current()) return;
        settle(tr("Generation failed: %1").arg(error));
        emit generationFailed(error);
    };
    job_ = engine_->generate(std::move(rows), std::move(probe), std::move(callbacks), QStringLiteral("steering/generate"));
    *id = job_.id();
}

void SteeringPanel::setSweepCoefficients(const QString& list) { sweepList_->setText(list); }

std::vector<double> SteeringPanel::sweepCoefficients() const {
    std::vector<double> coefficients;
    const QStringList parts = sweepList_->text().split(QRegularExpression(QStringLiteral("[,;\\s]+")), Qt::SkipEmptyParts);
    for (const QString& part : parts) {
        bool ok = false;
        const double value = part.toDouble(&ok);
        if (!ok || !std::isfinite(value)) return {};
        coefficients.push_back(value);
    }
    return coefficients;
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
    regenerateDebounce_.stop();
    const persona::PersonaVector* vector = currentVector();
    if (layerCount_ <= 0 || !vector) {
        message_->setText(layerCount_ <= 0 ? tr("Load a model to steer it.") : tr("Choose a vector first."));
        return;
    }
    if (prompt_->toPlainText().trimmed().isEmpty()) {
        message_->setText(tr("Write a prompt first."));
        return;
    }
    const std::vector<double> coefficients = sweepCoefficients();
    if (coefficients.empty()) {
        message_->setText(tr("The sweep needs a list of numbers, such as -8, -4, 0, 4, 8."));
        return;
    }
    mode_ = SweepMode;
    views_->setCurrentIndex(SweepMode);
    runLayer_ = layer_->value();
    runMaxTokens_ = maxTokens_->value();

    persona::GenerationRow base;
    const QString system = systemPrompt_->toPlainText().trimmed();
    if (!system.isEmpty()) base.messages.push_back({"system", system.toStdString()});
    base.messages.push_back({"user", prompt_->toPlainText().toStdString()});
    base.sampling.temperature = static_cast<float>(temperature_->value());
    base.sampling.seed = static_cast<std::uint64_t>(seed_->value());
    base.sampling.max_new_tokens = runMaxTokens_;
    const persona::LayerView direction = vector->layer(runLayer_);
    // A sweep varies alpha, so it always adds; ablation has no strength to sweep.
    const auto positions = static_cast<persona::SteerPositions>(positions_->currentData().toInt());

    for (SweepColumn& column : sweepColumns_) {
        delete column.title;
        delete column.text;
    }
    sweepColumns_.clear();
    std::vector<persona::GenerationRow> rows;
    for (double coefficient : coefficients) {
        persona::GenerationRow row = base;
        persona::Steering steering;
        steering.layer = runLayer_;
        steering.vector.assign(direction.begin(), direction.end());
        steering.alpha = static_cast<float>(coefficient);
        steering.positions = positions;
        row.steering.push_back(std::move(steering));
        rows.push_back(std::move(row));

        SweepColumn column;
        column.coefficient = coefficient;
        column.title = new QLabel(tr("coefficient %1").arg(coefficient, 0, 'g', 4), sweepColumnsHost_);
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
    startJob(std::move(rows), std::move(probe));
    message_->setText(tr("Sweeping %1 coefficients at layer %2...").arg(coefficients.size()).arg(runLayer_));
}

void SteeringPanel::stop() {
    regenerateDebounce_.stop();
    job_.cancel();
}

void SteeringPanel::onToken(const persona::TokenEvent& event) {
    if (mode_ == SweepMode) {
        if (event.row < 0 || event.row >= sweepColumnCount()) return;
        PaneTokens& tokens = sweepColumns_[static_cast<std::size_t>(event.row)].tokens;
        tokens.texts.push_back(QString::fromStdString(event.text));
        tokens.projections.push_back(event.projections);
        if (!refreshCoalescer_.isActive()) refreshCoalescer_.start();
        reportProgress();
        return;
    }
    if (event.row < 0 || event.row > 1) return;
    PaneTokens& pane = panes_[static_cast<std::size_t>(event.row)];
    pane.texts.push_back(QString::fromStdString(event.text));
    pane.projections.push_back(event.projections);
    if (!refreshCoalescer_.isActive()) refreshCoalescer_.start();
    reportProgress();
}

void SteeringPanel::onFinished(const std::vector<persona::GenerationResult>& /*results*/) {
    // The streamed tokens already hold every piece of text: the results add nothing to show.
    reportProgress();
    if (mode_ == SweepMode) {
        settle(tr("Sweep done: %1 coefficients at layer %2, seed %3.").arg(sweepColumnCount()).arg(runLayer_).arg(seed_->value()));
        emit generationFinished();
        return;
    }
    shownCoefficient_ = runCoefficient_;
    settle(tr("Done: %1 and %2 tokens.").arg(tokenCount(Unsteered)).arg(tokenCount(Steered)));
    emit generationFinished();
}

void SteeringPanel::settle(const QString& message) {
    generating_ = false;
    stopButton_->setEnabled(false);
    refreshCoalescer_.stop();
    refreshViews();
    message_->setText(message);
}

void SteeringPanel::reportProgress() {
    int steps = 0, tokens = 0;
    if (mode_ == SweepMode) {
        for (int column = 0; column < sweepColumnCount(); ++column) {
            steps = std::max(steps, sweepColumnTokens(column));
            tokens += sweepColumnTokens(column);
        }
    } else {
        steps = std::max(tokenCount(Unsteered), tokenCount(Steered));
        tokens = tokenCount(Unsteered) + tokenCount(Steered);
    }
    const double seconds = static_cast<double>(runClock_.elapsed()) / 1000.0;
    const double tokensPerSecond = seconds > 0 ? tokens / seconds : 0.0;
    emit generationProgress(steps, runMaxTokens_, tokensPerSecond);
}

void SteeringPanel::refreshViews() {
    if (mode_ == SweepMode) {
        refreshSweep();
        return;
    }
    // The two panes share one scale, so equal colours mean equal projections.
    const auto& unsteered = panes_[Unsteered].projections;
    const auto& steered = panes_[Steered].projections;
    const double mapScale = maxAbs(steered, maxAbs(unsteered));
    double tokenScale = 0;
    for (const auto* columns : {&unsteered, &steered})
        for (const auto& column : *columns)
            if (runLayer_ < static_cast<int>(column.size()))
                tokenScale = std::max(tokenScale, std::abs(static_cast<double>(column[static_cast<std::size_t>(runLayer_)])));

    const int layers = layerCount_ + 1;
    for (int pane = 0; pane < 2; ++pane) {
        renderPane(static_cast<Pane>(pane), tokenScale);
        paneMaps_[static_cast<std::size_t>(pane)]->showColumns(panes_[static_cast<std::size_t>(pane)].texts,
                                                               panes_[static_cast<std::size_t>(pane)].projections,
                                                               layers, mapScale, runMaxTokens_);
    }

    const std::size_t shared = std::min(unsteered.size(), steered.size());
    std::vector<std::vector<float>> difference(shared);
    for (std::size_t t = 0; t < shared; ++t) {
        const std::size_t n = std::min(unsteered[t].size(), steered[t].size());
        difference[t].resize(n);
        for (std::size_t l = 0; l < n; ++l) difference[t][l] = steered[t][l] - unsteered[t][l];
    }
    differenceMap_->showColumns(panes_[Steered].texts.mid(0, static_cast<int>(shared)), difference, layers,
                                maxAbs(difference), runMaxTokens_);
}

void SteeringPanel::refreshSweep() {
    // One scale for every column, as for the two panes.
    double scale = 0;
    for (const SweepColumn& column : sweepColumns_) scale = maxAbs(column.tokens.projections, scale);
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
        column.title->setText(tr("coefficient %1 (%2 tokens)").arg(column.coefficient, 0, 'g', 4).arg(column.tokens.texts.size()));
    }
}

bool SteeringPanel::useVector(const persona::PersonaVector& vector, const QString& name, int suggestedLayer) {
    if (!vectorChoice_->fits(vector)) return false;
    // A newer extraction of the same name replaces the older one rather than piling up.
    addVector(name, vector, suggestedLayer);
    return true;
}

void SteeringPanel::renderPane(Pane pane, double scale) {
    QTextEdit* edit = paneTexts_[pane];
    const PaneTokens& tokens = panes_[pane];
    edit->clear();
    QTextCursor cursor(edit->document());
    for (int t = 0; t < tokens.texts.size(); ++t) {
        const auto& projections = tokens.projections[static_cast<std::size_t>(t)];
        const double value = runLayer_ < static_cast<int>(projections.size())
                                 ? static_cast<double>(projections[static_cast<std::size_t>(runLayer_)])
                                 : 0.0;
        QTextCharFormat format;
        // Light tints keep black text readable at either end of the scale.
        format.setBackground(diverging::colorFor(value, scale, 0.6));
        format.setToolTip(tr("projection at layer %1: %2").arg(runLayer_).arg(value, 0, 'f', 2));
        cursor.insertText(tokens.texts[t], format);
    }
    edit->verticalScrollBar()->setValue(edit->verticalScrollBar()->maximum());
}
