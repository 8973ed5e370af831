#include "panels/flagging_panel.h"

#include "persona/chat_jsonl.h"
#include "persona/errors.h"
#include "shell/engine_client.h"
#include "widgets/trait_choice.h"
#include "widgets/vector_choice.h"

#include <qcustomplot.h>

#include <QCryptographicHash>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QStandardPaths>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

FlaggingPanel::FlaggingPanel(EngineClient* engine, QWidget* parent) : QWidget(parent), engine_(engine) {
    resultsDirectory_ = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + "/flagging";
    buildForm();
    buildResults();
    refreshButtons();
}

void FlaggingPanel::buildForm() {
    dataset_ = new QLineEdit(this);
    dataset_->setObjectName("flag_dataset");
    dataset_->setPlaceholderText(tr("chat JSONL: {\"messages\": [...]} per line, the last one the assistant's answer"));
    connect(dataset_, &QLineEdit::textChanged, this, &FlaggingPanel::refreshButtons);
    vector_ = new VectorChoice(this);
    vector_->setObjectName("flag_vector");
    vector_->openFilesReporting([this](const QString& error) { message_->setText(error); });
    connect(vector_, &VectorChoice::vectorChosen, this, [this] {
        if (const persona::PersonaVector* v = vector_->current())
            if (const auto suggested = v->suggested_layer()) layer_->setValue(*suggested);
        refreshButtons();
    });
    layer_ = new QSpinBox(this);
    layer_->setRange(0, 0);
    maxTokens_ = new QSpinBox(this);
    maxTokens_->setRange(1, 4096);
    maxTokens_->setValue(128);
    maxTokens_->setToolTip(tr("Of the model's own answer to each prompt"));
    runButton_ = new QPushButton(tr("Flag dataset"), this);
    runButton_->setObjectName("flag_run");
    connect(runButton_, &QPushButton::clicked, this, &FlaggingPanel::run);
    stopButton_ = new QPushButton(tr("Stop"), this);
    connect(stopButton_, &QPushButton::clicked, this, &FlaggingPanel::cancel);
    exportButton_ = new QPushButton(tr("Export flagged and kept..."), this);
    connect(exportButton_, &QPushButton::clicked, this, [this] {
        const QString flagged = QFileDialog::getSaveFileName(this, tr("Flagged samples"), QString(), tr("JSONL (*.jsonl)"));
        if (flagged.isEmpty()) return;
        const QString kept = QFileDialog::getSaveFileName(this, tr("Kept samples"), QString(), tr("JSONL (*.jsonl)"));
        if (!kept.isEmpty()) exportSplit(flagged, kept);
    });
    progress_ = new QProgressBar(this);
    progress_->setFormat(tr("%v / %m samples"));
    progress_->setValue(0);
    message_ = new QLabel(this);
    message_->setWordWrap(true);
    message_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    threshold_ = new QDoubleSpinBox(this);
    threshold_->setObjectName("flag_threshold");
    threshold_->setRange(-1e6, 1e6);
    threshold_->setDecimals(3);
    threshold_->setSingleStep(0.1);
    connect(threshold_, &QDoubleSpinBox::valueChanged, this, &FlaggingPanel::showThreshold);
    counts_ = new QLabel(this);
}

void FlaggingPanel::buildResults() {
    histogram_ = new QCustomPlot(this);
    histogram_->setObjectName("flag_histogram");
    histogram_->xAxis->setLabel(tr("projection difference (dataset answer - model's own answer)"));
    histogram_->yAxis->setLabel(tr("samples"));
    histogram_->setMinimumHeight(200);
    bars_ = new QCPBars(histogram_->xAxis, histogram_->yAxis);
    bars_->setBrush(QColor(120, 120, 120, 160));
    bars_->setPen(Qt::NoPen);
    thresholdLine_ = new QCPItemStraightLine(histogram_);
    thresholdLine_->setPen(QPen(QColor(178, 24, 43), 2));
    thresholdLine_->setVisible(false);
    // Drag the threshold: press near the line (or anywhere) and move.
    connect(histogram_, &QCustomPlot::mousePress, this, [this](QMouseEvent* event) {
        if (records_.empty()) return;
        dragging_ = true;
        setThreshold(histogram_->xAxis->pixelToCoord(event->position().x()));
    });
    connect(histogram_, &QCustomPlot::mouseMove, this, [this](QMouseEvent* event) {
        if (dragging_) setThreshold(histogram_->xAxis->pixelToCoord(event->position().x()));
    });
    connect(histogram_, &QCustomPlot::mouseRelease, this, [this](QMouseEvent*) { dragging_ = false; });

    table_ = new QTableWidget(0, 5, this);
    table_->setObjectName("flag_table");
    table_->setHorizontalHeaderLabels({tr("Line"), tr("Difference"), tr("Prompt"), tr("Dataset answer"), tr("Model's answer")});
    for (int c : {PromptColumn, DatasetAnswerColumn, ModelAnswerColumn})
        table_->horizontalHeader()->setSectionResizeMode(c, QHeaderView::Stretch);
    table_->verticalHeader()->setVisible(false);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->setSelectionBehavior(QAbstractItemView::SelectRows);
    table_->setToolTip(tr("Double-click a sample for its heat map"));
    connect(table_, &QTableWidget::cellDoubleClicked, this, [this](int row, int) { openRow(row); });

    auto* browse = new QPushButton(tr("Browse..."), this);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Dataset"), QString(), tr("Chat JSONL (*.jsonl);;All files (*)"));
        if (!path.isEmpty()) setDataset(path);
    });
    auto* datasetRow = new QHBoxLayout;
    datasetRow->addWidget(dataset_, 1);
    datasetRow->addWidget(browse);
    auto* form = new QFormLayout;
    form->addRow(tr("Dataset"), datasetRow);
    form->addRow(tr("Vector"), vector_);
    form->addRow(tr("Layer"), layer_);
    form->addRow(tr("Max tokens"), maxTokens_);
    form->addRow(tr("Threshold"), threshold_);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(runButton_);
    buttons->addWidget(stopButton_);
    auto* left = new QWidget(this);
    auto* leftLayout = new QVBoxLayout(left);
    leftLayout->addLayout(form);
    leftLayout->addLayout(buttons);
    leftLayout->addWidget(progress_);
    leftLayout->addWidget(counts_);
    leftLayout->addWidget(exportButton_);
    leftLayout->addWidget(message_);
    leftLayout->addStretch(1);
    auto* right = new QSplitter(Qt::Vertical, this);
    right->addWidget(histogram_);
    right->addWidget(table_);
    auto* split = new QSplitter(Qt::Horizontal, this);
    split->addWidget(left);
    split->addWidget(right);
    split->setStretchFactor(1, 3);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(split);
}

void FlaggingPanel::setModel(const persona::ModelFacts& facts) {
    hasModel_ = true;
    vector_->reset(facts.layers, facts.hidden_size);
    layer_->setRange(0, facts.layers);
    refreshButtons();
}

void FlaggingPanel::setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors) {
    vector_->setProjectVectors(vectors);
    refreshButtons();
}

void FlaggingPanel::setDataset(const QString& path) { dataset_->setText(path); }
void FlaggingPanel::setLayer(int layer) { layer_->setValue(layer); }
void FlaggingPanel::setMaxTokens(int tokens) { maxTokens_->setValue(tokens); }
void FlaggingPanel::setResultsDirectory(const QString& directory) { resultsDirectory_ = directory; }
double FlaggingPanel::threshold() const { return threshold_->value(); }
void FlaggingPanel::setThreshold(double threshold) { threshold_->setValue(threshold); }
QString FlaggingPanel::message() const { return message_->text(); }

// One file per dataset, vector and settings: running the same flagging again continues in it,
// and a changed setting starts another instead of meeting results it cannot extend.
QString FlaggingPanel::resultsPath() const {
    const persona::PersonaVector* vector = vector_->current();
    const QFileInfo dataset(dataset_->text().trimmed());
    if (!vector || dataset_->text().trimmed().isEmpty()) return {};
    QCryptographicHash hash(QCryptographicHash::Sha256);
    hash.addData(QByteArrayView(reinterpret_cast<const char*>(vector->values.data()),
                                qsizetype(vector->values.size() * sizeof(float))));
    for (const QString& part : {dataset.absoluteFilePath(), QString::number(dataset.size()),
                                QString::number(dataset.lastModified().toMSecsSinceEpoch()), QString::number(layer_->value()),
                                QString::number(maxTokens_->value())})
        hash.addData((part + '\n').toUtf8());
    return QDir(resultsDirectory_).filePath(dataset.completeBaseName() + "-" + QString::fromLatin1(hash.result().toHex().left(12)) +
                                            ".flagged.jsonl");
}

void FlaggingPanel::refreshButtons() {
    runButton_->setEnabled(hasModel_ && !running_ && vector_->current() && !dataset_->text().trimmed().isEmpty());
    stopButton_->setEnabled(running_);
    exportButton_->setEnabled(!running_ && input_.has_value() && !records_.empty());
}

void FlaggingPanel::run() {
    const persona::PersonaVector* vector = vector_->current();
    if (running_ || !hasModel_ || !vector || dataset_->text().trimmed().isEmpty()) return;
    persona::FlagSettings settings;
    settings.layer = layer_->value();
    settings.max_new_tokens = maxTokens_->value();
    QDir().mkpath(resultsDirectory_);
    running_ = true;
    message_->setText(tr("Flagging..."));
    refreshButtons();
    FlagCallbacks callbacks;
    callbacks.receiver = this;
    callbacks.progress = [this](qint64 done, qint64 total) {
        progress_->setRange(0, int(total));
        progress_->setValue(int(done));
    };
    callbacks.finished = [this](const persona::FlagInput& input, const persona::FlagSummary& summary) {
        running_ = false;
        showResults(input, summary);
        emit flaggingFinished();
    };
    callbacks.cancelled = [this] {
        running_ = false;
        message_->setText(tr("Stopped. Flag again with the same settings to continue where it stopped."));
        refreshButtons();
    };
    callbacks.failed = [this](const QString& error) {
        running_ = false;
        message_->setText(error);
        refreshButtons();
        emit flaggingFailed(error);
    };
    job_ = engine_->flag(*vector, dataset_->text().trimmed(), resultsPath(), settings, std::move(callbacks));
    emit flaggingStarted();
}

void FlaggingPanel::cancel() {
    if (job_) job_.cancel();
}

void FlaggingPanel::showResults(const persona::FlagInput& input, const persona::FlagSummary& summary) {
    input_ = input;
    records_ = summary.records;
    conversations_.clear();
    table_->setRowCount(0);
    std::vector<std::size_t> lines;
    for (const persona::FlagRecord& record : records_) lines.push_back(record.line);
    std::vector<std::string> texts;
    try {
        texts = persona::read_flag_input_lines(input, lines);
    } catch (const persona::Error& e) {
        message_->setText(QString::fromUtf8(e.what()));
    }
    for (std::size_t i = 0; i < records_.size(); ++i) {
        const persona::FlagRecord& record = records_[i];
        persona::ChatSample sample;
        if (i < texts.size()) {
            try {
                sample = persona::parse_chat_line(texts[i], input.path, record.line);
            } catch (const persona::Error&) {
                // The file changed since the run: the row keeps its numbers without the texts.
            }
        }
        std::vector<persona::ChatMessage> conversation = sample.prompt;
        conversation.push_back({"assistant", sample.answer});
        conversations_.push_back(std::move(conversation));
        QString user;
        for (const persona::ChatMessage& message : sample.prompt)
            if (message.role == "user") user = QString::fromStdString(message.content);
        const int row = table_->rowCount();
        table_->insertRow(row);
        table_->setItem(row, LineColumn, readOnlyItem(QString::number(record.line)));
        table_->setItem(row, DifferenceColumn,
                        readOnlyItem(record.difference ? QString::number(*record.difference, 'f', 3)
                                                       : tr("unscored: %1").arg(QString::fromStdString(record.unscored_reason))));
        table_->setItem(row, PromptColumn, readOnlyItem(user.simplified()));
        table_->setItem(row, DatasetAnswerColumn, readOnlyItem(QString::fromStdString(sample.answer).simplified()));
        table_->setItem(row, ModelAnswerColumn, readOnlyItem(QString::fromStdString(record.model_answer).simplified()));
    }
    // The default threshold flags the top tenth of the scored samples.
    std::vector<double> scored;
    for (const persona::FlagRecord& record : records_)
        if (record.difference) scored.push_back(*record.difference);
    std::sort(scored.begin(), scored.end());
    drawHistogram();
    if (!scored.empty()) setThreshold(scored[std::size_t(std::floor(0.9 * double(scored.size() - 1)))]);
    showThreshold();  // also when the threshold did not change
    progress_->setRange(0, int(summary.in_shard));
    progress_->setValue(int(summary.in_shard));
    message_->setText(tr("%1 samples: %2 scored, %3 unscored%4. Results: %5")
                          .arg(summary.in_shard)
                          .arg(scored.size())
                          .arg(records_.size() - scored.size())
                          .arg(summary.resumed ? tr(", %1 from an earlier run").arg(summary.resumed) : QString())
                          .arg(resultsPath()));
    refreshButtons();
}

void FlaggingPanel::drawHistogram() {
    std::vector<double> values;
    for (const persona::FlagRecord& record : records_)
        if (record.difference) values.push_back(*record.difference);
    QVector<double> keys, counts;
    if (!values.empty()) {
        const auto [low, high] = std::minmax_element(values.begin(), values.end());
        const int bins = std::clamp(int(std::sqrt(double(values.size()))) + 1, 5, 40);
        const double width = std::max((*high - *low) / bins, 1e-9);
        counts.fill(0, bins);
        for (int b = 0; b < bins; ++b) keys << *low + (b + 0.5) * width;
        for (double v : values) counts[std::min(bins - 1, int((v - *low) / width))] += 1;
        bars_->setWidth(width);
    }
    bars_->setData(keys, counts);
    histogram_->rescaleAxes();
    histogram_->xAxis->scaleRange(1.1);
    histogram_->yAxis->setRangeLower(0);
    histogram_->replot();
}

void FlaggingPanel::showThreshold() {
    thresholdLine_->point1->setCoords(threshold(), 0);
    thresholdLine_->point2->setCoords(threshold(), 1);
    thresholdLine_->setVisible(!records_.empty());
    histogram_->replot();
    counts_->setText(tr("%1 of %2 samples at or above the threshold").arg(flaggedCount()).arg(records_.size()));
    refreshButtons();
}

int FlaggingPanel::flaggedCount() const {
    return int(std::count_if(records_.begin(), records_.end(),
                             [&](const persona::FlagRecord& r) { return r.difference && *r.difference >= threshold(); }));
}

bool FlaggingPanel::exportSplit(const QString& flaggedPath, const QString& keptPath) {
    if (!input_ || records_.empty()) return false;
    try {
        const auto [flagged, kept] = persona::write_flag_split(*input_, records_, threshold(), flaggedPath.toStdString(),
                                                               keptPath.toStdString());
        message_->setText(tr("%1 flagged samples to %2, %3 kept to %4.").arg(flagged).arg(flaggedPath).arg(kept).arg(keptPath));
    } catch (const persona::Error& e) {
        message_->setText(QString::fromUtf8(e.what()));
        return false;
    }
    return true;
}

void FlaggingPanel::openRow(int row) {
    const persona::PersonaVector* vector = vector_->current();
    if (!vector || row < 0 || row >= int(conversations_.size()) || conversations_[std::size_t(row)].size() < 2) return;
    emit heatMapRequested(conversations_[std::size_t(row)], *vector);
}
