#include "panels/extraction_panel.h"

#include "shell/engine_client.h"
#include "persona/paths.h"
#include "persona/vector_files.h"

#include <qcustomplot.h>

#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QSplitter>
#include <QStandardPaths>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>
#include <limits>

const std::array<const char*, 5> ExtractionPanel::kStages{"generate", "judge", "filter", "capture", "vectors"};

namespace {
constexpr std::array<persona::Aggregate, 3> kAggregates{persona::Aggregate::ResponseMean, persona::Aggregate::PromptMean,
                                                        persona::Aggregate::PromptLast};

int stageIndex(const QString& stage) {
    for (std::size_t i = 0; i < ExtractionPanel::kStages.size(); ++i)
        if (stage == QLatin1String(ExtractionPanel::kStages[i])) return static_cast<int>(i);
    return -1;
}

QString duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return QStringLiteral("?");
    const auto whole = static_cast<qint64>(std::llround(seconds));
    if (whole < 60) return ExtractionPanel::tr("%1 s").arg(whole);
    return QStringLiteral("%1:%2").arg(whole / 60).arg(whole % 60, 2, 10, QLatin1Char('0'));
}

QString score(const std::optional<double>& value, bool refusal, bool judged) {
    if (!judged) return QStringLiteral("\u2014");
    if (refusal) return ExtractionPanel::tr("refusal");
    return value ? QString::number(*value, 'f', 1) : QStringLiteral("\u2014");
}

// NaN leaves a gap in a QCustomPlot line; an infinite effect size (no spread on either side)
// has no place on a finite axis either.
double plottable(double value) { return std::isfinite(value) ? value : std::numeric_limits<double>::quiet_NaN(); }

QCustomPlot* makePlot(QWidget* parent, const QString& title) {
    auto* plot = new QCustomPlot(parent);
    plot->plotLayout()->insertRow(0);
    plot->plotLayout()->addElement(
        0, 0, new QCPTextElement(plot, title, QFont(plot->font().family(), plot->font().pointSize(), QFont::Bold)));
    plot->xAxis->setLabel(ExtractionPanel::tr("layer"));
    plot->setMinimumHeight(160);
    return plot;
}
}  // namespace

ExtractionPanel::ExtractionPanel(EngineClient* engine, QWidget* parent)
    : QWidget(parent),
      engine_(engine),
      checkpointDirectory_(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + "/checkpoints") {
    new QVBoxLayout(this);
    buildSettings();
    buildProgress();
    buildResults();
    loadBuiltinTraits();
    resetStages();
    refreshButtons();
}

void ExtractionPanel::buildProgress() {
    auto* row = new QHBoxLayout;
    for (std::size_t i = 0; i < kStages.size(); ++i) {
        auto* column = new QVBoxLayout;
        auto* bar = new QProgressBar(this);
        bar->setObjectName(QStringLiteral("stage_%1").arg(kStages[i]));
        bar->setFormat(QStringLiteral("%1 %v/%m").arg(kStages[i]));
        bar->setTextVisible(true);
        auto* eta = new QLabel(this);
        eta->setObjectName(QStringLiteral("eta_%1").arg(kStages[i]));
        eta->setAlignment(Qt::AlignCenter);
        column->addWidget(bar);
        column->addWidget(eta);
        row->addLayout(column, 1);
        stageBars_[i] = bar;
        stageEtas_[i] = eta;
    }
    static_cast<QVBoxLayout*>(layout())->addLayout(row);
}

void ExtractionPanel::buildResults() {
    auto* splitter = new QSplitter(Qt::Horizontal, this);
    table_ = new QTableWidget(0, 7, splitter);
    table_->setObjectName("sample_table");
    table_->setHorizontalHeaderLabels({tr("Question"), tr("Pair"), tr("Side"), tr("Answer"), tr("Trait"), tr("Coherence"), tr("Kept")});
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->setSelectionBehavior(QAbstractItemView::SelectRows);
    table_->setWordWrap(false);
    table_->verticalHeader()->setDefaultSectionSize(table_->fontMetrics().height() + 6);
    table_->verticalHeader()->setVisible(false);
    auto* header = table_->horizontalHeader();
    header->setSectionResizeMode(QHeaderView::ResizeToContents);
    header->setSectionResizeMode(QuestionColumn, QHeaderView::Interactive);
    header->setSectionResizeMode(AnswerColumn, QHeaderView::Stretch);
    table_->setColumnWidth(QuestionColumn, 130);

    auto* right = new QWidget(splitter);
    auto* rightLayout = new QVBoxLayout(right);
    rightLayout->setContentsMargins(0, 0, 0, 0);
    auto* choice = new QHBoxLayout;
    aggregate_ = new QComboBox(right);
    aggregate_->setObjectName("aggregate");
    for (persona::Aggregate a : kAggregates) aggregate_->addItem(QString::fromLatin1(persona::aggregate_name(a)), static_cast<int>(a));
    aggregate_->setToolTip(tr("Which activation the vector is made of: the answer's mean (the paper's choice), the prompt's "
                              "mean or the prompt's last token"));
    saveButton_ = new QPushButton(tr("Save vector\u2026"), right);
    saveButton_->setObjectName("save_vector");
    choice->addWidget(new QLabel(tr("Aggregate"), right));
    choice->addWidget(aggregate_);
    choice->addStretch(1);
    choice->addWidget(saveButton_);
    rightLayout->addLayout(choice);
    summary_ = new QLabel(right);
    summary_->setObjectName("extraction_summary");
    summary_->setWordWrap(true);
    rightLayout->addWidget(summary_);

    normPlot_ = makePlot(right, tr("Vector norm per layer"));
    normPlot_->setObjectName("norm_plot");
    normPlot_->yAxis->setLabel(tr("|v|"));
    normPlot_->addGraph();
    normPlot_->graph(0)->setName(tr("norm"));
    separationPlot_ = makePlot(right, tr("Separation of positive and negative samples"));
    separationPlot_->setObjectName("separation_plot");
    separationPlot_->yAxis->setLabel(tr("effect size (Cohen's d)"));
    separationPlot_->yAxis2->setVisible(true);
    separationPlot_->yAxis2->setLabel(tr("AUROC"));
    separationPlot_->yAxis2->setRange(0, 1.05);
    separationPlot_->addGraph(separationPlot_->xAxis, separationPlot_->yAxis);
    separationPlot_->graph(0)->setName(tr("effect size"));
    separationPlot_->addGraph(separationPlot_->xAxis, separationPlot_->yAxis2);
    separationPlot_->graph(1)->setName(tr("AUROC"));
    separationPlot_->legend->setVisible(true);
    separationPlot_->legend->setFont(QFont(font().family(), std::max(7, font().pointSize() - 2)));
    separationPlot_->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignBottom | Qt::AlignRight);

    const QColor normColor(40, 40, 40), effectColor(178, 24, 43), aurocColor(33, 102, 172);
    const std::array<std::pair<QCPGraph*, QColor>, 3> graphs{
        {{normPlot_->graph(0), normColor}, {separationPlot_->graph(0), effectColor}, {separationPlot_->graph(1), aurocColor}}};
    for (const auto& [graph, color] : graphs) {
        graph->setPen(QPen(color, 1.5));
        graph->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, color, color, 4));
    }
    std::size_t i = 0;
    for (QCustomPlot* plot : {normPlot_, separationPlot_}) {
        QSharedPointer<QCPAxisTickerFixed> ticker(new QCPAxisTickerFixed);
        ticker->setTickStep(5.0);
        plot->xAxis->setTicker(ticker);
        auto* line = new QCPItemStraightLine(plot);
        line->setPen(QPen(QColor(0, 140, 60), 1.5, Qt::DashLine));
        line->setVisible(false);
        auto* label = new QCPItemText(plot);
        label->setPositionAlignment(Qt::AlignTop | Qt::AlignLeft);
        label->position->setTypeX(QCPItemPosition::ptPlotCoords);
        label->position->setTypeY(QCPItemPosition::ptAxisRectRatio);
        label->setColor(QColor(0, 110, 50));
        label->setBrush(QBrush(QColor(255, 255, 255, 200)));
        label->setPadding(QMargins(2, 1, 2, 1));
        label->setVisible(false);
        suggestedLines_[i] = line;
        suggestedLabels_[i] = label;
        ++i;
    }
    rightLayout->addWidget(normPlot_, 1);
    rightLayout->addWidget(separationPlot_, 1);
    splitter->addWidget(table_);
    splitter->addWidget(right);
    splitter->setStretchFactor(0, 3);
    splitter->setStretchFactor(1, 2);
    splitter->setSizes({560, 360});  // the answers want the width; the plots read fine narrower
    layout()->addWidget(splitter);
    static_cast<QVBoxLayout*>(layout())->setStretchFactor(splitter, 1);

    connect(aggregate_, &QComboBox::currentIndexChanged, this, [this] {
        showPlots();
        if (const persona::AggregateResult* chosen = currentAggregate()) emit vectorChosen(chosen->vector, chosen->suggested_layer);
    });
    connect(saveButton_, &QPushButton::clicked, this, &ExtractionPanel::chooseVectorFile);
}

void ExtractionPanel::setCheckpointDirectory(const QString& directory) {
    checkpointDirectory_ = directory;
    refreshButtons();
}

QString ExtractionPanel::checkpointPath() const { return QString::fromStdString(settings().checkpoint_path); }

void ExtractionPanel::refreshButtons() {
    const bool saved = hasModel_ && QFile::exists(checkpointPath());
    runButton_->setEnabled(hasModel_ && !running_ && currentTrait());
    runButton_->setText(saved && !running_ ? tr("Resume") : tr("Run"));
    runButton_->setToolTip(saved ? tr("Continues from the samples saved in %1").arg(checkpointPath())
                                 : tr("Generates, judges, filters, captures activations and computes the vectors"));
    cancelButton_->setEnabled(running_);
    discardButton_->setEnabled(saved && !running_);
    saveButton_->setEnabled(currentAggregate() != nullptr);
    aggregate_->setEnabled(result_.has_value() && !result_->aggregates.empty());
}

void ExtractionPanel::resetStages() {
    for (std::size_t i = 0; i < kStages.size(); ++i) {
        stageBars_[i]->setRange(0, 1);
        stageBars_[i]->setValue(0);
        stageBars_[i]->setFormat(QStringLiteral("%1 %v/%m").arg(kStages[i]));
        stageEtas_[i]->clear();
        stageClocks_[i] = {};
    }
}

QProgressBar* ExtractionPanel::stageBar(const QString& stage) const {
    const int i = stageIndex(stage);
    return i < 0 ? nullptr : stageBars_[static_cast<std::size_t>(i)];
}

QString ExtractionPanel::stageEta(const QString& stage) const {
    const int i = stageIndex(stage);
    return i < 0 ? QString() : stageEtas_[static_cast<std::size_t>(i)]->text();
}

QString ExtractionPanel::message() const { return message_->text(); }

void ExtractionPanel::run() {
    const persona::Trait* trait = currentTrait();
    if (!hasModel_ || !trait || running_) return;
    const QString checkpoint = checkpointPath();
    if (!QDir().mkpath(QFileInfo(checkpoint).absolutePath())) {
        message_->setText(tr("Cannot create the checkpoint folder %1").arg(QFileInfo(checkpoint).absolutePath()));
        return;
    }
    const bool resuming = QFile::exists(checkpoint);
    runTrait_ = *trait;
    runSettings_ = settings();
    running_ = true;
    cancelRequested_ = false;
    auto run = std::make_shared<std::uint64_t>(0);
    const auto current = [this, run] { return job_.id() == *run; };
    table_->setRowCount(0);
    rowOfSample_.clear();
    resetStages();
    refreshButtons();
    message_->setText(resuming ? tr("Resuming '%1' from its saved samples\u2026").arg(QString::fromStdString(runTrait_.name))
                               : tr("Extracting '%1'\u2026").arg(QString::fromStdString(runTrait_.name)));
    emit extractionStarted();

    ExtractionCallbacks callbacks;
    callbacks.receiver = this;
    callbacks.progress = [this, current](const QString& stage, qint64 done, qint64 total) {
        if (current()) onProgress(stage, done, total);
    };
    callbacks.sample = [this, current](const persona::Sample& sample) {
        if (current()) onSample(sample);
    };
    callbacks.finished = [this, current](const persona::ExtractionResult& result) {
        if (current()) onFinished(result);
    };
    callbacks.cancelled = [this, current] {
        if (!current()) return;
        settle(tr("Cancelled. The finished samples are saved: Resume continues from them."));
        emit extractionCancelled();
    };
    callbacks.failed = [this, current](const QString& error) {
        if (!current()) return;
        settle(tr("Extraction failed: %1").arg(error));
        emit extractionFailed(error);
    };
    job_ = engine_->extract(runTrait_, runSettings_, std::move(callbacks));
    *run = job_.id();
}

void ExtractionPanel::cancel() {
    if (!running_) return;
    cancelRequested_ = true;
    message_->setText(tr("Cancelling\u2026"));
    job_.cancel();
}

void ExtractionPanel::discardCheckpoint() {
    const QString path = checkpointPath();
    if (QFile::exists(path) && !QFile::remove(path)) message_->setText(tr("Cannot delete %1").arg(path));
    else message_->setText(tr("Saved progress discarded: the next run starts from nothing."));
    refreshButtons();
}

void ExtractionPanel::finishStage(std::size_t i) {
    QProgressBar* bar = stageBars_[i];
    if (stageClocks_[i].doneAtStart < 0) {
        bar->setFormat(tr("%1 skipped").arg(kStages[i]));
        bar->setRange(0, 1);
    }
    bar->setValue(bar->maximum());
}

void ExtractionPanel::onProgress(const QString& stage, qint64 done, qint64 total) {
    const int i = stageIndex(stage);
    if (i < 0) return;
    const auto index = static_cast<std::size_t>(i);
    // Every stage before this one is over (judge is skipped without a judge).
    for (std::size_t earlier = 0; earlier < index; ++earlier) finishStage(earlier);
    QProgressBar* bar = stageBars_[index];
    bar->setRange(0, static_cast<int>(std::max<qint64>(total, 1)));
    bar->setValue(static_cast<int>(total > 0 ? done : 1));

    // ETA from this run's own pace: samples resumed from a checkpoint took no time here.
    StageClock& clock = stageClocks_[index];
    if (clock.doneAtStart < 0) {
        clock.doneAtStart = done;
        clock.clock.start();
    }
    const qint64 progressed = done - clock.doneAtStart;
    const double elapsed = static_cast<double>(clock.clock.elapsed()) / 1000.0;
    if (done >= total) stageEtas_[index]->setText(tr("done in %1").arg(duration(elapsed)));
    else if (progressed > 0) stageEtas_[index]->setText(tr("ETA %1").arg(duration(elapsed * double(total - done) / double(progressed))));
    else stageEtas_[index]->setText(done > 0 ? tr("%1 resumed").arg(done) : tr("running\u2026"));
    emit extractionProgress(stage, done, total);
}

void ExtractionPanel::onSample(const persona::Sample& sample) {
    const SampleKey key{sample.question_index, sample.pair, sample.sample_index, static_cast<int>(sample.side)};
    auto found = rowOfSample_.find(key);
    int row;
    if (found == rowOfSample_.end()) {
        row = table_->rowCount();
        table_->insertRow(row);
        rowOfSample_[key] = row;
    } else {
        row = found->second;
    }
    showSample(row, sample, false);
    table_->scrollToItem(table_->item(row, 0));
}

void ExtractionPanel::showSample(int row, const persona::Sample& sample, bool final) {
    auto set = [&](int column, const QString& text, const QString& tip = {}) {
        auto* item = table_->item(row, column);
        if (!item) {
            item = new QTableWidgetItem;
            table_->setItem(row, column, item);
        }
        item->setText(text);
        item->setToolTip(tip.isEmpty() ? text : tip);
    };
    const QString answer = QString::fromStdString(sample.answer);
    set(QuestionColumn, QString::fromStdString(sample.question));
    set(PairColumn, QString::number(sample.pair));
    set(SideColumn, sample.side == persona::Side::Positive ? tr("positive") : tr("negative"));
    set(AnswerColumn, answer.simplified(), answer);
    set(TraitScoreColumn, score(sample.trait_score, sample.trait_refusal, sample.judged),
        sample.judged ? tr("%1 of the judge's probability fell on numbers").arg(sample.trait_numeric_mass, 0, 'f', 2) : QString());
    if (sample.coherence_skipped)
        set(CoherenceColumn, tr("not needed"), tr("Not scored: the pair fails on the trait whatever its coherence"));
    else
        set(CoherenceColumn, score(sample.coherence, sample.coherence_refusal, sample.judged));
    set(KeptColumn, final ? (sample.kept ? tr("kept") : tr("dropped")) : QStringLiteral("\u2026"));
    if (final) {
        const QColor tint = sample.kept ? QColor(225, 245, 225) : QColor(245, 230, 230);
        table_->item(row, KeptColumn)->setBackground(tint);
    }
}

bool ExtractionPanel::showRun(const persona::RunResult& run, const persona::PersonaVector* vector) {
    if (running_ || run.diagnostics.empty() || !vector) return false;
    persona::ExtractionResult result;
    result.trait = run.trait;
    result.pairs = run.pairs;
    // Indexed by aggregate: the run stored the diagnostics of its own aggregate only.
    result.aggregates.resize(static_cast<std::size_t>(run.aggregate) + 1);
    persona::AggregateResult& stored = result.aggregates[static_cast<std::size_t>(run.aggregate)];
    stored.diagnostics = run.diagnostics;
    stored.suggested_layer = run.suggested_layer;
    stored.vector = *vector;
    result_ = std::move(result);
    resultTrait_ = {};
    resultTrait_.name = run.trait;
    table_->setRowCount(0);
    rowOfSample_.clear();
    {
        const QSignalBlocker blocker(aggregate_);  // showing a stored run is not choosing a vector to steer with
        setAggregate(run.aggregate);
    }
    showPlots();
    refreshButtons();
    message_->setText(tr("Run of %1 (%2 UTC), stored in the project: %3 of %4 pairs kept. Its samples are not stored.")
                          .arg(QString::fromStdString(run.trait), QString::fromStdString(run.finished))
                          .arg(run.pairs.kept)
                          .arg(run.pairs.total));
    return true;
}

void ExtractionPanel::onFinished(const persona::ExtractionResult& result) {
    result_ = result;
    resultTrait_ = runTrait_;
    // Resumed samples never passed through on_sample: the result has every one, in run order.
    table_->setRowCount(0);
    rowOfSample_.clear();
    table_->setRowCount(static_cast<int>(result.samples.size()));
    for (std::size_t i = 0; i < result.samples.size(); ++i) {
        const persona::Sample& s = result.samples[i];
        rowOfSample_[{s.question_index, s.pair, s.sample_index, static_cast<int>(s.side)}] = static_cast<int>(i);
        showSample(static_cast<int>(i), s, true);
    }
    // Capture and vectors do not run when no pair was kept.
    for (std::size_t i = 0; i < kStages.size(); ++i) finishStage(i);
    // A finished run needs no checkpoint; keeping it would make the next Run skip generation.
    QFile::remove(QString::fromStdString(runSettings_.checkpoint_path));

    const QString counts = tr("%1 of %2 pairs kept; %3 samples generated, %4 judged, %5 resumed.")
                               .arg(result.pairs.kept)
                               .arg(result.pairs.total)
                               .arg(result.samples_generated)
                               .arg(result.samples_judged)
                               .arg(result.samples_resumed);
    if (result.pairs.kept == 0)
        settle(tr("No pair passed the filter (%1 failed the positive trait score, %2 the negative, %3 coherence, %4 had an "
                  "empty answer), so there is no vector. %5")
                   .arg(result.pairs.failing_positive_trait)
                   .arg(result.pairs.failing_negative_trait)
                   .arg(result.pairs.failing_coherence)
                   .arg(result.pairs.with_empty_answer)
                   .arg(counts));
    else {
        QString message = tr("Done. %1").arg(counts);
        for (const std::string& warning : result.warnings) message += tr(" Warning: %1.").arg(QString::fromStdString(warning));
        settle(message);
    }
    showPlots();
    emit extractionFinished(resultTrait_, *result_);
    if (const persona::AggregateResult* chosen = currentAggregate()) emit vectorChosen(chosen->vector, chosen->suggested_layer);
}

void ExtractionPanel::settle(const QString& message) {
    running_ = false;
    // A stage still counting down did not finish: its ETA would go stale on screen.
    for (QLabel* eta : stageEtas_)
        if (eta->text().startsWith(tr("ETA")) || eta->text() == tr("running\u2026")) eta->setText(tr("stopped"));
    message_->setText(message);
    refreshButtons();
}

persona::Aggregate ExtractionPanel::aggregate() const {
    return static_cast<persona::Aggregate>(aggregate_->currentData().toInt());
}

void ExtractionPanel::setAggregate(persona::Aggregate aggregate) {
    aggregate_->setCurrentIndex(aggregate_->findData(static_cast<int>(aggregate)));
}

const persona::AggregateResult* ExtractionPanel::currentAggregate() const {
    if (!result_ || result_->aggregates.empty()) return nullptr;
    try {
        return &result_->aggregate(aggregate());
    } catch (const std::exception&) {
        return nullptr;
    }
}

void ExtractionPanel::showPlots() {
    const persona::AggregateResult* chosen = currentAggregate();
    markedLayer_ = -1;
    QVector<double> layers, norms, effects, aurocs;
    if (chosen)
        for (const persona::LayerDiagnostics& d : chosen->diagnostics) {
            layers << d.layer;
            norms << d.vector_norm;
            effects << plottable(d.effect_size);
            aurocs << d.auroc;
        }
    normPlot_->graph(0)->setData(layers, norms, true);
    separationPlot_->graph(0)->setData(layers, effects, true);
    separationPlot_->graph(1)->setData(layers, aurocs, true);
    const double lastLayer = layers.isEmpty() ? 1.0 : layers.back();
    for (QCustomPlot* plot : {normPlot_, separationPlot_}) {
        plot->xAxis->setRange(-0.5, lastLayer + 0.5);
        plot->yAxis->rescale();
        const QCPRange range = plot->yAxis->range();
        plot->yAxis->setRange(std::min(0.0, range.lower), range.upper + 0.08 * std::max(range.size(), 1e-9));
    }
    for (std::size_t i = 0; i < 2; ++i) {
        const bool shown = chosen && chosen->suggested_layer >= 0;
        suggestedLines_[i]->setVisible(shown);
        suggestedLabels_[i]->setVisible(shown);
        if (!shown) continue;
        const double x = chosen->suggested_layer;
        suggestedLines_[i]->point1->setCoords(x, 0);
        suggestedLines_[i]->point2->setCoords(x, 1);
        // Halfway down the plot (the AUROC line runs along its top), on the side with room.
        const bool rightHalf = x > lastLayer / 2;
        suggestedLabels_[i]->setPositionAlignment(Qt::AlignTop | (rightHalf ? Qt::AlignRight : Qt::AlignLeft));
        suggestedLabels_[i]->position->setCoords(rightHalf ? x - 0.3 : x + 0.3, 0.45);
        suggestedLabels_[i]->setText(tr("suggested layer %1").arg(chosen->suggested_layer));
    }
    if (chosen && chosen->suggested_layer >= 0 &&
        static_cast<std::size_t>(chosen->suggested_layer) < chosen->diagnostics.size()) {
        markedLayer_ = chosen->suggested_layer;
        const persona::LayerDiagnostics& d = chosen->diagnostics.at(static_cast<std::size_t>(markedLayer_));
        summary_->setText(tr("%1, %2: suggested layer %3 (AUROC %4, effect size %5, |v| %6)")
                              .arg(QString::fromStdString(chosen->vector.trait), aggregate_->currentText())
                              .arg(markedLayer_)
                              .arg(d.auroc, 0, 'f', 2)
                              .arg(d.effect_size, 0, 'f', 2)
                              .arg(d.vector_norm, 0, 'f', 2));
    } else {
        summary_->setText(result_ ? tr("No vector: no pair was kept.") : QString());
    }
    normPlot_->replot();
    separationPlot_->replot();
    refreshButtons();
}

void ExtractionPanel::chooseVectorFile() {
    const persona::AggregateResult* chosen = currentAggregate();
    if (!chosen) return;
    const QString suggestion = QStringLiteral("%1_%2.safetensors")
                                   .arg(QString::fromStdString(chosen->vector.trait), aggregate_->currentText());
    const QString path = QFileDialog::getSaveFileName(this, tr("Save Vector"), suggestion,
                                                      tr("Persona vectors (*.safetensors);;PyTorch tensor for the reference scripts (*.pt);;All files (*)"));
    if (!path.isEmpty()) saveVector(path);
}

bool ExtractionPanel::saveVector(const QString& path) {
    const persona::AggregateResult* chosen = currentAggregate();
    if (!chosen) {
        message_->setText(tr("There is no vector to save yet."));
        return false;
    }
    try {
        persona::write_vector_file(path.toStdString(), chosen->vector);
    } catch (const std::exception& e) {
        message_->setText(tr("Could not save the vector: %1").arg(QString::fromUtf8(e.what())));
        return false;
    }
    message_->setText(chosen->suggested_layer >= 0
                          ? tr("Saved %1 (%2, suggested layer %3).").arg(path, aggregate_->currentText()).arg(chosen->suggested_layer)
                          : tr("Saved %1 (%2, no suggested layer: too few pairs kept).").arg(path, aggregate_->currentText()));
    return true;
}
