#include "panels/training_panel.h"

#include "persona/errors.h"
#include "shell/engine_client.h"
#include "widgets/judge_choice.h"
#include "widgets/trait_choice.h"
#include "widgets/vector_choice.h"

#include <qcustomplot.h>

#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSaveFile>
#include <QScrollArea>
#include <QSpinBox>
#include <QSplitter>
#include <QStandardPaths>
#include <QTableWidget>
#include <QVBoxLayout>

#include <cmath>

namespace {

QSpinBox* spin(QWidget* parent, int low, int high, int value, const char* name) {
    auto* box = new QSpinBox(parent);
    box->setRange(low, high);
    box->setValue(value);
    box->setObjectName(name);
    return box;
}

QDoubleSpinBox* number(QWidget* parent, double low, double high, double value, int decimals, const char* name) {
    auto* box = new QDoubleSpinBox(parent);
    box->setDecimals(decimals);
    box->setRange(low, high);
    box->setValue(value);
    box->setObjectName(name);
    return box;
}

// A row of a file or folder path with its Browse button.
QHBoxLayout* pathRow(QWidget* parent, QLineEdit* edit, std::function<void()> browse) {
    auto* button = new QPushButton(QObject::tr("Browse..."), parent);
    QObject::connect(button, &QPushButton::clicked, parent, std::move(browse));
    auto* row = new QHBoxLayout;
    row->addWidget(edit, 1);
    row->addWidget(button);
    return row;
}

}  // namespace

TrainingPanel::TrainingPanel(EngineClient* engine, QWidget* parent) : QWidget(parent), engine_(engine) {
    build();
    refreshButtons();
}

void TrainingPanel::build() {
    const persona::FinetuneSettings defaults;
    dataset_ = new QLineEdit(this);
    dataset_->setObjectName("training_dataset");
    dataset_->setPlaceholderText(tr("chat JSONL: {\"messages\": [...]} per line; the loss covers the assistant turns"));
    connect(dataset_, &QLineEdit::textChanged, this, [this] {
        if (output_->text().trimmed().isEmpty() && !dataset_->text().trimmed().isEmpty()) {
            const QString base = projectFolder_.isEmpty()
                                     ? QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)
                                     : projectFolder_;
            output_->setText(QDir(base).filePath("adapters/" + QFileInfo(dataset_->text().trimmed()).completeBaseName()));
        }
        refreshButtons();
    });
    output_ = new QLineEdit(this);
    output_->setObjectName("training_output");
    output_->setToolTip(tr("The adapter (PEFT layout), training.json, shift.json and checkpoints go here"));
    connect(output_, &QLineEdit::textChanged, this, &TrainingPanel::refreshButtons);
    rank_ = spin(this, 1, 1024, defaults.lora.rank, "training_rank");
    alpha_ = number(this, 0.01, 100000, defaults.lora.alpha, 2, "training_alpha");
    learningRate_ = number(this, 1e-7, 1, defaults.learning_rate, 7, "training_lr");
    learningRate_->setSingleStep(1e-5);
    epochs_ = spin(this, 1, 1000, defaults.epochs, "training_epochs");
    batch_ = spin(this, 1, 256, defaults.batch_size, "training_batch");
    accumulation_ = spin(this, 1, 1024, defaults.gradient_accumulation, "training_accumulation");
    maxLength_ = spin(this, 2, 1 << 20, defaults.max_length, "training_max_length");
    seed_ = spin(this, 0, 1 << 30, int(defaults.seed), "training_seed");
    checkpointEvery_ = spin(this, 0, 100000, 10, "training_checkpoint_every");
    checkpointEvery_->setToolTip(tr("Optimiser steps between resumable checkpoints (0: none)"));

    steerOperation_ = new QComboBox(this);
    steerOperation_->setObjectName("training_steer_operation");
    steerOperation_->addItem(tr("none (plain fine-tuning)"));
    steerOperation_->addItem(tr("add alpha x v (preventative steering)"), int(persona::SteerOperation::Add));
    steerOperation_->addItem(tr("ablate the direction"), int(persona::SteerOperation::Ablate));
    connect(steerOperation_, &QComboBox::currentIndexChanged, this, &TrainingPanel::refreshButtons);
    vector_ = new VectorChoice(this);
    vector_->setObjectName("training_vector");
    vector_->openFilesReporting([this](const QString& error) { message_->setText(error); });
    connect(vector_, &VectorChoice::vectorChosen, this, [this] {
        if (const persona::PersonaVector* v = vector_->current())
            if (const auto suggested = v->suggested_layer()) layer_->setValue(*suggested);
        refreshButtons();
    });
    layer_ = spin(this, 0, 0, 0, "training_layer");
    coefficient_ = number(this, -1000, 1000, 5, 2, "training_coefficient");
    coefficient_->setToolTip(tr("Raw alpha: the reference recipe steers with up to 5"));
    trait_ = new TraitChoice(this);
    trait_->setObjectName("training_trait");
    judge_ = new JudgeChoice(this);
    judge_->setObjectName("training_judge");
    questions_ = spin(this, 0, 1000, 10, "training_questions");
    questions_->setToolTip(tr("Evaluation questions to answer (0: all)"));

    trainButton_ = new QPushButton(tr("Train"), this);
    trainButton_->setObjectName("training_train");
    connect(trainButton_, &QPushButton::clicked, this, &TrainingPanel::train);
    compareButton_ = new QPushButton(tr("Compare with the base model"), this);
    compareButton_->setObjectName("training_compare");
    connect(compareButton_, &QPushButton::clicked, this, &TrainingPanel::compare);
    stopButton_ = new QPushButton(tr("Stop"), this);
    connect(stopButton_, &QPushButton::clicked, this, &TrainingPanel::cancel);
    progress_ = new QProgressBar(this);
    progress_->setFormat(tr("step %v / %m"));
    progress_->setValue(0);
    status_ = new QLabel(this);
    status_->setObjectName("training_status");
    message_ = new QLabel(this);
    message_->setWordWrap(true);
    message_->setTextInteractionFlags(Qt::TextSelectableByMouse);

    lossPlot_ = new QCustomPlot(this);
    lossPlot_->setObjectName("training_loss");
    lossPlot_->addGraph();
    lossPlot_->graph(0)->setPen(QPen(QColor(33, 102, 172), 2));
    lossPlot_->xAxis->setLabel(tr("optimiser step"));
    lossPlot_->yAxis->setLabel(tr("loss per assistant token"));
    lossPlot_->setMinimumHeight(200);
    comparison_ = new QTableWidget(4, 3, this);
    comparison_->setObjectName("training_comparison");
    comparison_->setHorizontalHeaderLabels({tr("Base model"), tr("Fine-tuned"), tr("Change")});
    comparison_->setVerticalHeaderLabels({tr("Trait score"), tr("Coherence"), tr("Projection"), tr("Held-out perplexity")});
    comparison_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    comparison_->setEditTriggers(QAbstractItemView::NoEditTriggers);

    auto* data = new QFormLayout;
    data->addRow(tr("Dataset"), pathRow(this, dataset_, [this] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Training data"), QString(), tr("Chat JSONL (*.jsonl);;All files (*)"));
        if (!path.isEmpty()) setDataset(path);
    }));
    data->addRow(tr("Output folder"), pathRow(this, output_, [this] {
        const QString folder = QFileDialog::getExistingDirectory(this, tr("Adapter folder"), output_->text());
        if (!folder.isEmpty()) setOutputFolder(folder);
    }));
    auto* lora = new QGroupBox(tr("LoRA and optimiser"), this);
    auto* loraForm = new QFormLayout(lora);
    loraForm->addRow(tr("Rank / alpha"), [&] {
        auto* row = new QHBoxLayout;
        row->addWidget(rank_);
        row->addWidget(alpha_);
        return row;
    }());
    loraForm->addRow(tr("Learning rate"), learningRate_);
    loraForm->addRow(tr("Epochs"), epochs_);
    loraForm->addRow(tr("Batch x accumulation"), [&] {
        auto* row = new QHBoxLayout;
        row->addWidget(batch_);
        row->addWidget(accumulation_);
        return row;
    }());
    loraForm->addRow(tr("Max length"), maxLength_);
    loraForm->addRow(tr("Seed"), seed_);
    loraForm->addRow(tr("Checkpoint every"), checkpointEvery_);
    auto* steer = new QGroupBox(tr("Persona vector: steering during training, and the comparison's projection"), this);
    auto* steerForm = new QFormLayout(steer);
    steerForm->addRow(tr("Vector"), vector_);
    steerForm->addRow(tr("Layer"), layer_);
    steerForm->addRow(tr("Training steering"), steerOperation_);
    steerForm->addRow(tr("Coefficient"), coefficient_);
    auto* compareBox = new QGroupBox(tr("Before / after"), this);
    auto* compareForm = new QFormLayout(compareBox);
    compareForm->addRow(tr("Trait"), trait_);
    compareForm->addRow(tr("Judge"), judge_);
    compareForm->addRow(tr("Questions"), questions_);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(trainButton_);
    buttons->addWidget(stopButton_);
    buttons->addWidget(compareButton_);

    auto* left = new QWidget(this);
    auto* leftLayout = new QVBoxLayout(left);
    leftLayout->addLayout(data);
    leftLayout->addWidget(lora);
    leftLayout->addWidget(steer);
    leftLayout->addWidget(compareBox);
    leftLayout->addLayout(buttons);
    leftLayout->addWidget(progress_);
    leftLayout->addWidget(status_);
    leftLayout->addWidget(message_);
    leftLayout->addStretch(1);
    auto* right = new QSplitter(Qt::Vertical, this);
    right->addWidget(lossPlot_);
    right->addWidget(comparison_);
    // The form is long: it scrolls rather than raise the window's minimum height for every tab.
    auto* scroll = new QScrollArea(this);
    scroll->setWidget(left);
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    auto* split = new QSplitter(Qt::Horizontal, this);
    split->addWidget(scroll);
    split->addWidget(right);
    split->setStretchFactor(1, 2);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(split);
}

void TrainingPanel::setModel(const persona::ModelFacts& facts) {
    hasModel_ = true;
    vector_->reset(facts.layers, facts.hidden_size);
    layer_->setRange(0, facts.layers);
    refreshButtons();
}

void TrainingPanel::setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors) {
    vector_->setProjectVectors(vectors);
    refreshButtons();
}

void TrainingPanel::setTraits(const std::vector<persona::Trait>& traits) { trait_->setTraits(traits); }
void TrainingPanel::setProjectFolder(const QString& folder) { projectFolder_ = folder; }
void TrainingPanel::setDataset(const QString& path) { dataset_->setText(path); }
void TrainingPanel::setOutputFolder(const QString& folder) { output_->setText(folder); }
QString TrainingPanel::outputFolder() const { return output_->text().trimmed(); }
void TrainingPanel::setComparisonQuestions(int questions) { questions_->setValue(questions); }
void TrainingPanel::setComparisonJudge(const persona::JudgeSettings& judge) { judge_->setSettings(judge); }
QString TrainingPanel::message() const { return message_->text(); }

void TrainingPanel::setSteering(persona::SteerOperation operation, int layer, double coefficient) {
    steerOperation_->setCurrentIndex(steerOperation_->findData(int(operation)));
    layer_->setValue(layer);
    coefficient_->setValue(coefficient);
}

void TrainingPanel::setSteeringOff() { steerOperation_->setCurrentIndex(0); }

persona::FinetuneSettings TrainingPanel::settings() const {
    persona::FinetuneSettings s;
    s.lora.rank = rank_->value();
    s.lora.alpha = alpha_->value();
    s.learning_rate = learningRate_->value();
    s.epochs = epochs_->value();
    s.batch_size = batch_->value();
    s.gradient_accumulation = accumulation_->value();
    s.max_length = maxLength_->value();
    s.seed = std::uint64_t(seed_->value());
    s.checkpoint_every = checkpointEvery_->value();
    s.output_dir = outputFolder().toStdString();
    const persona::PersonaVector* vector = vector_->current();
    if (steerOperation_->currentData().isValid() && vector) {
        persona::Steering steering;
        steering.layer = layer_->value();
        const persona::LayerView direction = vector->layer(steering.layer);
        steering.vector.assign(direction.begin(), direction.end());
        steering.alpha = float(coefficient_->value());
        steering.operation = persona::SteerOperation(steerOperation_->currentData().toInt());
        steering.positions = persona::SteerPositions::All;
        s.steering.push_back(std::move(steering));
    }
    return s;
}

void TrainingPanel::setSettings(const persona::FinetuneSettings& s) {
    rank_->setValue(s.lora.rank);
    alpha_->setValue(s.lora.alpha);
    learningRate_->setValue(s.learning_rate);
    epochs_->setValue(s.epochs);
    batch_->setValue(s.batch_size);
    accumulation_->setValue(s.gradient_accumulation);
    maxLength_->setValue(s.max_length);
    seed_->setValue(int(s.seed));
    checkpointEvery_->setValue(s.checkpoint_every);
}

void TrainingPanel::refreshButtons() {
    const bool steering = steerOperation_->currentData().isValid();
    trainButton_->setEnabled(hasModel_ && !running_ && !dataset_->text().trimmed().isEmpty() && !outputFolder().isEmpty() &&
                             (!steering || vector_->current()));
    compareButton_->setEnabled(hasModel_ && !running_ && vector_->current() && trait_->current() &&
                               QFileInfo::exists(QDir(outputFolder()).filePath(persona::kAdapterWeightsFileName)));
    stopButton_->setEnabled(running_);
    coefficient_->setEnabled(steerOperation_->currentData().toInt() == int(persona::SteerOperation::Add));
}

void TrainingPanel::train() {
    if (running_ || !trainButton_->isEnabled()) return;
    std::vector<persona::TrainingExample> examples;
    try {
        examples = persona::read_training_jsonl(dataset_->text().trimmed().toStdString());
    } catch (const persona::Error& e) {
        message_->setText(QString::fromUtf8(e.what()));
        return;
    }
    persona::FinetuneSettings s = settings();
    if (const persona::ModelFacts* facts = engine_->facts()) s.base_model = facts->name;
    running_ = true;
    losses_.clear();
    result_.reset();
    drawLosses();
    message_->setText(tr("Training on %1 conversations...").arg(examples.size()));
    refreshButtons();
    FinetuneCallbacks callbacks;
    callbacks.receiver = this;
    callbacks.step = [this](const persona::FinetuneProgress& p) {
        if (losses_.size() < std::size_t(p.step)) losses_.resize(std::size_t(p.step), std::nan(""));
        losses_[std::size_t(p.step - 1)] = p.loss;
        progress_->setRange(0, p.total_steps);
        progress_->setValue(p.step);
        status_->setText(tr("loss %1 · learning rate %2 · %3 tokens/s · %4 s left")
                             .arg(p.loss, 0, 'f', 4).arg(p.learning_rate, 0, 'g', 3)
                             .arg(p.tokens_per_second, 0, 'f', 0).arg(p.eta_seconds, 0, 'f', 0));
        drawLosses();
    };
    callbacks.finished = [this](const persona::FinetuneResult& result) {
        running_ = false;
        result_ = result;
        losses_ = result.losses;
        drawLosses();
        progress_->setRange(0, result.steps);
        progress_->setValue(result.steps);
        message_->setText(tr("Trained %1 steps%2 in %3 s; the adapter is in %4. Compare it with the base model, or load it "
                             "from the Model tab.")
                              .arg(result.steps)
                              .arg(result.resumed_from_step ? tr(" (resumed at step %1)").arg(result.resumed_from_step) : QString())
                              .arg(result.seconds, 0, 'f', 0)
                              .arg(QString::fromStdString(result.adapter_dir)));
        refreshButtons();
        emit trainingFinished();
    };
    callbacks.cancelled = [this] {
        running_ = false;
        message_->setText(tr("Stopped. Train again with the same settings to continue from the last checkpoint."));
        refreshButtons();
    };
    callbacks.failed = [this](const QString& error) {
        running_ = false;
        message_->setText(error);
        refreshButtons();
        emit trainingFailed(error);
    };
    job_ = engine_->finetune(std::move(examples), std::move(s), std::move(callbacks));
    emit trainingStarted();
}

void TrainingPanel::compare() {
    const persona::PersonaVector* vector = vector_->current();
    const persona::Trait* trait = trait_->current();
    if (running_ || !vector || !trait) return;
    if (const QString problem = judge_->problem(); !problem.isEmpty()) {
        message_->setText(problem);
        return;
    }
    persona::ShiftSettings settings;
    settings.layer = layer_->value();
    settings.question_limit = questions_->value();
    settings.judge = judge_->settings();
    running_ = true;
    message_->setText(tr("Answering the evaluation questions with the base and the fine-tuned model..."));
    refreshButtons();
    ShiftCallbacks callbacks;
    callbacks.receiver = this;
    callbacks.progress = [this](const QString& stage, qint64 done, qint64 total) {
        progress_->setRange(0, int(total));
        progress_->setValue(int(done));
        status_->setText(stage);
    };
    callbacks.finished = [this, settings, trait = trait->name, folder = outputFolder()](const persona::ShiftMeasure& base,
                                                                                        const persona::ShiftMeasure& tuned) {
        running_ = false;
        showComparison(base, tuned);
        // Kept beside the adapter it measured, where the project keeps it too.
        QSaveFile file(QDir(folder).filePath("shift.json"));
        const nlohmann::json report = {{"trait", trait}, {"layer", settings.layer}, {"judge", persona::judge_label(settings.judge)},
                                       {"base", persona::to_json(base)}, {"fine_tuned", persona::to_json(tuned)}};
        const std::string text = report.dump(2) + "\n";
        if (!file.open(QIODevice::WriteOnly) || file.write(text.data(), qint64(text.size())) != qint64(text.size()) || !file.commit())
            message_->setText(tr("The comparison could not be saved to %1: %2").arg(file.fileName(), file.errorString()));
        else
            message_->setText(tr("Compared on %1 answers each; saved to %2.").arg(base.answers).arg(file.fileName()));
        refreshButtons();
        emit comparisonFinished();
    };
    callbacks.cancelled = [this] {
        running_ = false;
        message_->setText(tr("Comparison stopped."));
        refreshButtons();
    };
    callbacks.failed = [this](const QString& error) {
        running_ = false;
        message_->setText(error);
        refreshButtons();
    };
    job_ = engine_->compareShift(*trait, *vector, persona::neutral_heldout_examples(), settings, outputFolder(), std::move(callbacks));
}

void TrainingPanel::cancel() {
    if (job_) job_.cancel();
}

void TrainingPanel::drawLosses() {
    QVector<double> steps, values;
    for (std::size_t i = 0; i < losses_.size(); ++i)
        if (!std::isnan(losses_[i])) {
            steps << double(i + 1);
            values << losses_[i];
        }
    lossPlot_->graph(0)->setData(steps, values);
    lossPlot_->rescaleAxes();
    lossPlot_->yAxis->scaleRange(1.1);
    lossPlot_->replot();
}

void TrainingPanel::showComparison(const persona::ShiftMeasure& base, const persona::ShiftMeasure& tuned) {
    const auto text = [](const std::optional<double>& value, int decimals) {
        return value ? QString::number(*value, 'f', decimals) : QStringLiteral("-");
    };
    const auto change = [&](const std::optional<double>& a, const std::optional<double>& b, int decimals) {
        return a && b ? QString::number(*b - *a, 'f', decimals).prepend(*b >= *a ? "+" : "") : QStringLiteral("-");
    };
    const std::pair<std::optional<double>, std::optional<double>> rows[] = {
        {base.trait_score, tuned.trait_score}, {base.coherence, tuned.coherence},
        {base.projection, tuned.projection}, {base.perplexity, tuned.perplexity}};
    const int decimals[] = {1, 1, 3, 2};
    for (int r = 0; r < 4; ++r) {
        comparison_->setItem(r, BaseColumn, readOnlyItem(text(rows[r].first, decimals[r])));
        comparison_->setItem(r, TunedColumn, readOnlyItem(text(rows[r].second, decimals[r])));
        comparison_->setItem(r, ChangeColumn, readOnlyItem(change(rows[r].first, rows[r].second, decimals[r])));
    }
}
