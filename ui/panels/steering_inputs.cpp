// SteeringPanel's inputs: building and connecting them, telling the user's changes from a
// program's, the strength's calibration, and the setup a project saves.
#include "panels/steering_panel.h"

#include "widgets/more_vectors_editor.h"
#include "widgets/strength_control.h"
#include "widgets/vector_choice.h"
#include "persona/project.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include <algorithm>

namespace {
constexpr int kDebounceMs = 250;  // typing a prompt: regenerate once the user pauses
}  // namespace

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
    for (const std::string& name : persona::steer_operation_names())
        operation_->addItem(QString::fromStdString(name), static_cast<int>(*persona::steer_operation_from_name(name)));
    operation_->setToolTip(tr("add: push along the vector; ablate: remove its direction; cap: keep the projection on it "
                              "at most the strength, in typical activation lengths"));
    moreVectors_ = new MoreVectorsEditor(this);
    moreVectors_->setObjectName("more_vectors");

    strength_ = new StrengthControl(this);
    strength_->setObjectName("strength_control");

    maxTokens_ = new QSpinBox(this);
    maxTokens_->setObjectName("max_tokens");
    maxTokens_->setRange(1, 1024);
    maxTokens_->setValue(48);
    // Greedy by default: then a small change of strength changes the text through steering
    // alone, not through sampling noise.
    sample_ = new QCheckBox(tr("Sample"), this);
    sample_->setObjectName("sample");
    sample_->setToolTip(tr("Unticked: greedy decoding, the same text every time. Ticked: sampling at this temperature"));
    temperature_ = new QDoubleSpinBox(this);
    temperature_->setObjectName("temperature");
    temperature_->setRange(0.05, 2.0);
    temperature_->setSingleStep(0.1);
    temperature_->setValue(0.7);
    temperature_->setEnabled(false);
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
    sweepList_ = new QLineEdit(QStringLiteral("-1, -0.5, 0, 0.5, 1"), this);
    sweepList_->setObjectName("sweep_strengths");
    sweepList_->setToolTip(tr("Strengths of the sweep, separated by commas: one column each, same prompt and seed"));
    sweepList_->setMaximumWidth(sweepList_->fontMetrics().horizontalAdvance(QStringLiteral("-1, -0.5, -0.25, 0, 0.25, 0.5, 1")) + 16);
    sweepButton_ = new QPushButton(tr("Sweep"), this);
    sweepButton_->setObjectName("sweep_button");
    sweepButton_->setEnabled(false);
    sweepButton_->setToolTip(tr("One batched generation per strength in the list, shown side by side"));

    auto label = [this](const QString& text) { return new QLabel(text, this); };
    // Three boxes the presenter view can hide: what is steered, how it is run, the messages.
    setupBox_ = new QWidget(this);
    auto* setup = new QGridLayout(setupBox_);
    setup->setContentsMargins(0, 0, 0, 0);
    setup->addWidget(label(tr("System")), 0, 0);
    setup->addWidget(systemPrompt_, 0, 1);
    setup->addWidget(label(tr("Prompt")), 1, 0);
    setup->addWidget(prompt_, 1, 1);
    auto* vectorRow = new QHBoxLayout;
    vectorRow->addWidget(label(tr("Vector")));
    vectorRow->addWidget(vectorChoice_, 1);
    auto* whereRow = new QHBoxLayout;
    whereRow->addWidget(label(tr("Layer")));
    whereRow->addWidget(layer_);
    whereRow->addWidget(positions_);
    whereRow->addWidget(operation_);
    whereRow->addWidget(moreVectors_->addButton());
    whereRow->addStretch(1);
    setup->addLayout(vectorRow, 0, 2);
    setup->addLayout(whereRow, 1, 2);
    setup->addWidget(moreVectors_, 2, 1, 1, 2);
    setup->setColumnStretch(1, 3);
    setup->setColumnStretch(2, 2);
    inputs->addWidget(setupBox_, 0, 0);

    runControls_ = new QWidget(this);
    auto* run = new QHBoxLayout(runControls_);
    run->setContentsMargins(0, 0, 0, 0);
    run->addSpacing(12);
    run->addWidget(label(tr("Max tokens")));
    run->addWidget(maxTokens_);
    run->addWidget(sample_);
    run->addWidget(temperature_);
    run->addWidget(label(tr("Seed")));
    run->addWidget(seed_);
    run->addSpacing(12);
    run->addWidget(generateButton_);
    run->addWidget(stopButton_);
    chatToggle_ = new QCheckBox(tr("Chat"), this);
    chatToggle_->setObjectName("chat_mode");
    chatToggle_->setToolTip(tr("A conversation typed below the answers, each turn answered unsteered and steered"));
    run->addWidget(chatToggle_);
    auto* strengthRow = new QHBoxLayout;
    strengthRow->addWidget(strength_, 1);
    strengthRow->addWidget(runControls_);
    inputs->addLayout(strengthRow, 1, 0);
    static_cast<QVBoxLayout*>(layout())->addLayout(inputs);

    message_ = new QLabel(tr("Load a model to steer it."), this);
    message_->setObjectName("steering_message");
    message_->setWordWrap(true);
    // The sweep shares the message's row: the inputs above have no width to spare.
    messageBox_ = new QWidget(this);
    auto* messageRow = new QHBoxLayout(messageBox_);
    messageRow->setContentsMargins(0, 0, 0, 0);
    messageRow->addWidget(message_, 1);
    messageRow->addWidget(label(tr("Sweep strengths")));
    messageRow->addWidget(sweepList_);
    messageRow->addWidget(sweepButton_);
    static_cast<QVBoxLayout*>(layout())->addWidget(messageBox_);
}

void SteeringPanel::connectInputs() {
    connect(strength_, &StrengthControl::edited, this, &SteeringPanel::steeringChanged);
    connect(layer_, &QSpinBox::valueChanged, this, [this] {
        rescaleStrength();
        steeringChanged();
    });
    connect(positions_, &QComboBox::currentIndexChanged, this, &SteeringPanel::steeringChanged);
    connect(operation_, &QComboBox::currentIndexChanged, this, [this] {
        // Ablation removes the direction: it has no strength.
        strength_->setEnabled(operation() != persona::SteerOperation::Ablate);
        rescaleStrength();
        steeringChanged();
    });
    connect(moreVectors_, &MoreVectorsEditor::edited, this, &SteeringPanel::steeringChanged);
    connect(moreVectors_, &MoreVectorsEditor::rowAdded, this, &SteeringPanel::setupEdited);
    connect(moreVectors_, &MoreVectorsEditor::problem, message_, &QLabel::setText);
    connect(vectorChoice_, &VectorChoice::vectorChosen, this, &SteeringPanel::vectorChanged);
    connect(systemPrompt_, &QPlainTextEdit::textChanged, this, &SteeringPanel::inputChanged);
    connect(prompt_, &QPlainTextEdit::textChanged, this, &SteeringPanel::inputChanged);
    connect(maxTokens_, &QSpinBox::valueChanged, this, &SteeringPanel::inputChanged);
    connect(sample_, &QCheckBox::toggled, this, [this](bool sampling) {
        temperature_->setEnabled(sampling);
        inputChanged();
    });
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
    if (programmatic_) return;
    emit setupEdited();
    if (live_ && layerCount_ > 0) regenerateDebounce_.start(kDebounceMs);
}

void SteeringPanel::steeringChanged() {
    if (programmatic_) return;
    emit setupEdited();
    // Zero delay: a slider drag's burst of moves collapses into one generation, started as
    // soon as the event loop is free.
    if (live_ && layerCount_ > 0) regenerateDebounce_.start(0);
}

void SteeringPanel::vectorChanged() {
    ++vectorEpoch_;  // the unsteered pane's projections were onto another vector
    rescaleStrength();
    inputChanged();
}

// Strength stays what it was and the coefficient follows: the same push at a new layer or with
// a new vector.
void SteeringPanel::rescaleStrength() {
    strength_->setScale(StrengthControl::scaleFor(currentVector(), layer_->value(), operation(), typicalNorms_), true);
}

persona::SteerOperation SteeringPanel::operation() const {
    return static_cast<persona::SteerOperation>(operation_->currentData().toInt());
}

float SteeringPanel::temperature() const { return sample_->isChecked() ? static_cast<float>(temperature_->value()) : 0.0F; }

persona::SteeringSettings SteeringPanel::settings() const {
    persona::SteeringSettings settings;
    settings.vector = vectorChoice_->currentProjectKey().toStdString();
    settings.layer = layer_->value();
    settings.coefficient = strength_->coefficient();
    settings.positions = static_cast<persona::SteerPositions>(positions_->currentData().toInt());
    settings.operation = operation();
    settings.more_vectors = moreVectors_->terms();
    settings.system_prompt = systemPrompt_->toPlainText().toStdString();
    settings.prompt = prompt_->toPlainText().toStdString();
    settings.max_new_tokens = maxTokens_->value();
    settings.sample = sample_->isChecked();
    settings.temperature = temperature_->value();
    settings.seed = static_cast<std::uint64_t>(seed_->value());
    return settings;
}

void SteeringPanel::applySettings(const persona::SteeringSettings& settings) {
    const Programmatic programmatic(this);
    vectorChoice_->selectProjectVector(QString::fromStdString(settings.vector));
    if (settings.layer >= 1 && settings.layer <= layerCount_) layer_->setValue(settings.layer);
    const auto select = [](QComboBox* box, int value) {
        const int index = box->findData(value);
        if (index >= 0) box->setCurrentIndex(index);
    };
    select(positions_, static_cast<int>(settings.positions));
    select(operation_, static_cast<int>(settings.operation));
    rescaleStrength();
    strength_->setCoefficient(settings.coefficient);
    moreVectors_->applyTerms(settings.more_vectors);
    systemPrompt_->setPlainText(QString::fromStdString(settings.system_prompt));
    if (!settings.prompt.empty()) prompt_->setPlainText(QString::fromStdString(settings.prompt));
    maxTokens_->setValue(settings.max_new_tokens);
    sample_->setChecked(settings.sample);
    temperature_->setValue(settings.temperature);
    seed_->setValue(static_cast<int>(std::min<std::uint64_t>(settings.seed, static_cast<std::uint64_t>(seed_->maximum()))));
}
