#include "panels/monitoring_panel.h"

#include "persona/errors.h"
#include "shell/engine_client.h"
#include "widgets/judge_choice.h"
#include "widgets/trait_choice.h"
#include "widgets/vector_choice.h"

#include <qcustomplot.h>

#include <QComboBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include <cmath>

namespace {

// Blue for the most discouraging rung, red for the most encouraging, grey for the middle: the
// ladder reads as the steering colours do (widgets/diverging_colors.h).
QColor rungColor(int rung, int rungs) {
    if (rungs <= 1) return QColor(90, 90, 90);
    const double t = double(rung) / double(rungs - 1);  // 0..1
    const QColor blue(33, 102, 172), grey(120, 120, 120), red(178, 24, 43);
    const auto mix = [](const QColor& a, const QColor& b, double f) {
        return QColor::fromRgbF(float(a.redF() + (b.redF() - a.redF()) * f), float(a.greenF() + (b.greenF() - a.greenF()) * f),
                                float(a.blueF() + (b.blueF() - a.blueF()) * f));
    };
    return t < 0.5 ? mix(blue, grey, t * 2) : mix(grey, red, (t - 0.5) * 2);
}

}  // namespace

MonitoringPanel::MonitoringPanel(EngineClient* engine, QWidget* parent) : QWidget(parent), engine_(engine) {
    buildForm();
    buildResults();
    resetLadder();
    refreshButtons();
}

void MonitoringPanel::buildForm() {
    trait_ = new TraitChoice(this);
    trait_->setObjectName("monitoring_trait");
    connect(trait_, &QComboBox::currentIndexChanged, this, [this] { resetLadder(); });
    vector_ = new VectorChoice(this);
    vector_->setObjectName("monitoring_vector");
    vector_->openFilesReporting([this](const QString& error) { message_->setText(error); });
    connect(vector_, &VectorChoice::vectorChosen, this, [this] {
        if (const persona::PersonaVector* v = vector_->current())
            if (const auto suggested = v->suggested_layer()) layer_->setValue(*suggested);
        refreshButtons();
    });
    layer_ = new QSpinBox(this);
    layer_->setObjectName("monitoring_layer");
    layer_->setRange(1, 1);
    layer_->setToolTip(tr("The layer whose last-prompt-token projection is the prediction"));
    questions_ = new QSpinBox(this);
    questions_->setObjectName("monitoring_questions");
    questions_->setRange(1, 1000);
    questions_->setValue(10);
    maxTokens_ = new QSpinBox(this);
    maxTokens_->setRange(1, 4096);
    maxTokens_->setValue(48);
    judgeChoice_ = new JudgeChoice(this);
    judgeChoice_->setObjectName("monitoring_judge");

    ladder_ = new QTableWidget(0, 2, this);
    ladder_->setObjectName("monitoring_ladder");
    ladder_->setHorizontalHeaderLabels({tr("Rung"), tr("System prompt (empty: none)")});
    ladder_->horizontalHeader()->setSectionResizeMode(1, QHeaderView::Stretch);
    ladder_->verticalHeader()->setVisible(false);
    auto* addRung = new QPushButton(tr("Add rung"), this);
    connect(addRung, &QPushButton::clicked, this, [this] {
        const int row = ladder_->rowCount();
        ladder_->insertRow(row);
        ladder_->setItem(row, 0, new QTableWidgetItem(tr("rung %1").arg(row + 1)));
        ladder_->setItem(row, 1, new QTableWidgetItem);
    });
    auto* removeRung = new QPushButton(tr("Remove rung"), this);
    connect(removeRung, &QPushButton::clicked, this, [this] {
        if (ladder_->currentRow() >= 0) ladder_->removeRow(ladder_->currentRow());
    });
    auto* defaultLadder = new QPushButton(tr("Default ladder"), this);
    connect(defaultLadder, &QPushButton::clicked, this, &MonitoringPanel::resetLadder);
    ladderButtons_ = new QWidget(this);
    auto* ladderRow = new QHBoxLayout(ladderButtons_);
    ladderRow->setContentsMargins(0, 0, 0, 0);
    for (QPushButton* button : {addRung, removeRung, defaultLadder}) ladderRow->addWidget(button);

    runButton_ = new QPushButton(tr("Run study"), this);
    runButton_->setObjectName("monitoring_run");
    connect(runButton_, &QPushButton::clicked, this, &MonitoringPanel::run);
    stopButton_ = new QPushButton(tr("Stop"), this);
    connect(stopButton_, &QPushButton::clicked, this, &MonitoringPanel::cancel);
    exportButton_ = new QPushButton(tr("Export CSV..."), this);
    connect(exportButton_, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getSaveFileName(this, tr("Export the study"), QString(), tr("CSV (*.csv)"));
        if (!path.isEmpty()) exportCsv(path);
    });
    progress_ = new QProgressBar(this);
    progress_->setFormat(tr("%v / %m answers"));
    progress_->setValue(0);
    message_ = new QLabel(this);
    message_->setWordWrap(true);
    message_->setTextInteractionFlags(Qt::TextSelectableByMouse);
}

void MonitoringPanel::buildResults() {
    plot_ = new QCustomPlot(this);
    plot_->setObjectName("monitoring_plot");
    plot_->xAxis->setLabel(tr("projection of the last prompt token (before the answer)"));
    plot_->yAxis->setLabel(tr("judged trait score"));
    plot_->yAxis->setRange(0, 100);
    plot_->legend->setVisible(true);
    plot_->legend->setFont(QFont(font().family(), 8));
    plot_->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignLeft);
    plot_->setMinimumHeight(260);
    correlation_ = new QLabel(this);
    correlation_->setObjectName("monitoring_correlation");
    // The live gauge: where the token being written now projects, on the same axis as the points.
    gauge_ = new QCPItemStraightLine(plot_);
    gauge_->setPen(QPen(QColor(230, 140, 0), 2, Qt::DashDotLine));
    gauge_->setVisible(false);
    gaugeLabel_ = new QLabel(this);
    gaugeLabel_->setObjectName("monitoring_gauge");
    table_ = new QTableWidget(0, 6, this);
    table_->setObjectName("monitoring_points");
    table_->setHorizontalHeaderLabels({tr("Rung"), tr("Question"), tr("Projection"), tr("Trait"), tr("Coherence"), tr("Answer")});
    table_->horizontalHeader()->setSectionResizeMode(AnswerColumn, QHeaderView::Stretch);
    table_->verticalHeader()->setVisible(false);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);

    auto* form = new QFormLayout;
    form->addRow(tr("Trait"), trait_);
    form->addRow(tr("Vector"), vector_);
    form->addRow(tr("Layer"), layer_);
    form->addRow(tr("Questions"), questions_);
    form->addRow(tr("Max tokens"), maxTokens_);
    form->addRow(tr("Judge"), judgeChoice_);
    auto* runRow = new QHBoxLayout;
    runRow->addWidget(runButton_);
    runRow->addWidget(stopButton_);
    runRow->addWidget(exportButton_);
    auto* left = new QWidget(this);
    auto* leftLayout = new QVBoxLayout(left);
    leftLayout->addLayout(form);
    leftLayout->addWidget(new QLabel(tr("System-prompt ladder, discouraging to encouraging:"), left));
    leftLayout->addWidget(ladder_, 1);
    leftLayout->addWidget(ladderButtons_);
    leftLayout->addLayout(runRow);
    leftLayout->addWidget(progress_);
    leftLayout->addWidget(message_);
    auto* right = new QSplitter(Qt::Vertical, this);
    auto* plotBox = new QWidget(right);
    auto* plotLayout = new QVBoxLayout(plotBox);
    plotLayout->setContentsMargins(0, 0, 0, 0);
    plotLayout->addWidget(correlation_);
    plotLayout->addWidget(gaugeLabel_);
    plotLayout->addWidget(plot_, 1);
    right->addWidget(plotBox);
    right->addWidget(table_);
    auto* split = new QSplitter(Qt::Horizontal, this);
    split->addWidget(left);
    split->addWidget(right);
    split->setStretchFactor(1, 2);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(split);
}

void MonitoringPanel::setModel(const persona::ModelFacts& facts) {
    hasModel_ = true;
    vector_->reset(facts.layers, facts.hidden_size);
    layer_->setRange(1, facts.layers);
    refreshButtons();
}

void MonitoringPanel::setTraits(const std::vector<persona::Trait>& traits) { trait_->setTraits(traits); }

bool MonitoringPanel::selectTrait(const QString& name) { return trait_->select(name); }

const persona::Trait* MonitoringPanel::currentTrait() const { return trait_->current(); }

void MonitoringPanel::setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors) {
    vector_->setProjectVectors(vectors);
    refreshButtons();
}

std::vector<persona::LadderPrompt> MonitoringPanel::ladder() const {
    std::vector<persona::LadderPrompt> rungs;
    for (int row = 0; row < ladder_->rowCount(); ++row) {
        const auto text = [&](int column) { return ladder_->item(row, column) ? ladder_->item(row, column)->text().trimmed() : QString(); };
        const QString label = text(0).isEmpty() ? tr("rung %1").arg(row + 1) : text(0);
        rungs.push_back({label.toStdString(), text(1).toStdString()});
    }
    return rungs;
}

void MonitoringPanel::setLadder(const std::vector<persona::LadderPrompt>& ladder) {
    ladder_->setRowCount(0);
    for (const persona::LadderPrompt& rung : ladder) {
        const int row = ladder_->rowCount();
        ladder_->insertRow(row);
        ladder_->setItem(row, 0, new QTableWidgetItem(QString::fromStdString(rung.label)));
        ladder_->setItem(row, 1, new QTableWidgetItem(QString::fromStdString(rung.system)));
    }
    refreshButtons();
}

void MonitoringPanel::resetLadder() {
    if (const persona::Trait* trait = currentTrait()) setLadder(persona::default_prompt_ladder(*trait));
}

void MonitoringPanel::setJudge(const persona::JudgeSettings& judge) { judgeChoice_->setSettings(judge); }

void MonitoringPanel::setLayer(int layer) { layer_->setValue(layer); }
void MonitoringPanel::setQuestionLimit(int questions) { questions_->setValue(questions); }
void MonitoringPanel::setMaxTokens(int tokens) { maxTokens_->setValue(tokens); }

persona::MonitoringStudySettings MonitoringPanel::settings() const {
    persona::MonitoringStudySettings s;
    s.layer = layer_->value();
    s.prompts = ladder();
    s.question_limit = questions_->value();
    s.max_new_tokens = maxTokens_->value();
    s.judge = judgeChoice_->settings();
    return s;
}

void MonitoringPanel::refreshButtons() {
    runButton_->setEnabled(hasModel_ && !running_ && vector_->current() && currentTrait() && ladder_->rowCount() > 0);
    stopButton_->setEnabled(running_);
    exportButton_->setEnabled(study_.has_value() && !running_);
}

void MonitoringPanel::run() {
    const persona::Trait* trait = currentTrait();
    const persona::PersonaVector* vector = vector_->current();
    if (running_ || !hasModel_ || !trait || !vector) return;
    const persona::MonitoringStudySettings s = settings();
    if (s.prompts.empty()) {
        message_->setText(tr("The ladder has no rung."));
        return;
    }
    if (const QString problem = judgeChoice_->problem(); !problem.isEmpty()) {
        message_->setText(problem);
        return;
    }
    running_ = true;
    gaugeUpdates_ = 0;
    study_.reset();
    runRungs_ = s.prompts;
    runQuestions_ = trait->evaluation_questions;
    if (runQuestions_.size() > std::size_t(s.question_limit)) runQuestions_.resize(std::size_t(s.question_limit));
    table_->setRowCount(0);
    preparePlot(runRungs_);
    showCorrelation(std::nullopt, 0);
    progress_->setRange(0, int(runRungs_.size() * runQuestions_.size()));
    progress_->setValue(0);
    message_->setText(tr("Answering and judging..."));
    refreshButtons();

    MonitoringCallbacks callbacks;
    callbacks.receiver = this;
    callbacks.progress = [this](const QString& stage, qint64 done, qint64 total) {
        const bool judged = judgeChoice_->settings().kind != persona::JudgeKind::None;
        if (stage == (judged ? "judge" : "answers")) {
            progress_->setRange(0, int(total));
            progress_->setValue(int(done));
        } else if (stage != "answers" && stage != "judge") {
            message_->setText(tr("%1 %2/%3").arg(stage).arg(done).arg(total));  // loading the judge
        }
    };
    callbacks.point = [this](const persona::MonitoringPoint& point) { addPoint(point, runRungs_, runQuestions_); };
    callbacks.token = [this](int point, double projection) { showGauge(point, projection); };
    callbacks.finished = [this](const persona::MonitoringStudy& study) {
        running_ = false;
        showStudy(study);
        emit studyFinished(study);
    };
    callbacks.cancelled = [this] {
        running_ = false;
        gauge_->setVisible(false);
        gaugeLabel_->clear();
        message_->setText(tr("Stopped; the points so far stay drawn, no study was kept."));
        refreshButtons();
    };
    callbacks.failed = [this](const QString& error) {
        running_ = false;
        message_->setText(error);
        refreshButtons();
        emit studyFailed(error);
    };
    job_ = engine_->monitorStudy(*trait, *vector, s, std::move(callbacks));
    emit studyStarted();
}

void MonitoringPanel::showGauge(int point, double projection) {
    if (!running_ || runQuestions_.empty() || !std::isfinite(projection)) return;
    const std::size_t rung = std::size_t(point) / runQuestions_.size(), question = std::size_t(point) % runQuestions_.size();
    if (rung >= runRungs_.size()) return;
    gauge_->point1->setCoords(projection, 0);
    gauge_->point2->setCoords(projection, 1);
    gauge_->setVisible(true);
    ++gaugeUpdates_;
    gaugeValue_ = projection;
    gaugeLabel_->setText(tr("Now writing (%1, question %2): this token's projection %3")
                             .arg(QString::fromStdString(runRungs_[rung].label))
                             .arg(question + 1)
                             .arg(projection, 0, 'f', 2));
    // Keep the gauge in view before any point has set the axis.
    if (projection < plot_->xAxis->range().lower || projection > plot_->xAxis->range().upper)
        plot_->xAxis->setRange(std::min(plot_->xAxis->range().lower, projection - 1), std::max(plot_->xAxis->range().upper, projection + 1));
    plot_->replot(QCustomPlot::rpQueuedReplot);
}

void MonitoringPanel::cancel() {
    if (job_) job_.cancel();
}

void MonitoringPanel::preparePlot(const std::vector<persona::LadderPrompt>& rungs) {
    plot_->clearGraphs();
    for (std::size_t r = 0; r < rungs.size(); ++r) {
        QCPGraph* graph = plot_->addGraph();
        graph->setName(QString::fromStdString(rungs[r].label));
        graph->setLineStyle(QCPGraph::lsNone);
        graph->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, rungColor(int(r), int(rungs.size())), 7));
    }
    plot_->replot();
}

void MonitoringPanel::addPoint(const persona::MonitoringPoint& point, const std::vector<persona::LadderPrompt>& rungs,
                               const std::vector<std::string>& questions) {
    const int row = table_->rowCount();
    table_->insertRow(row);
    table_->setItem(row, RungColumn, readOnlyItem(QString::fromStdString(rungs[std::size_t(point.prompt_index)].label)));
    table_->setItem(row, QuestionColumn, readOnlyItem(QString::fromStdString(questions[std::size_t(point.question_index)])));
    table_->setItem(row, ProjectionColumn, readOnlyItem(QString::number(point.projection, 'f', 3)));
    table_->setItem(row, TraitColumn, readOnlyItem(scoreText(point.trait_score)));
    table_->setItem(row, CoherenceColumn, readOnlyItem(scoreText(point.coherence)));
    table_->setItem(row, AnswerColumn, readOnlyItem(QString::fromStdString(point.answer).simplified()));
    progress_->setValue(row + 1);
    // Without a score there is no y: the point stays in the table only.
    if (point.trait_score && point.prompt_index < plot_->graphCount()) {
        plot_->graph(point.prompt_index)->addData(point.projection, *point.trait_score);
        plot_->rescaleAxes();
        plot_->yAxis->setRange(0, 100);
        plot_->xAxis->scaleRange(1.1);
        plot_->replot();
    }
}

void MonitoringPanel::showCorrelation(const std::optional<persona::Correlation>& correlation, int points) {
    if (correlation)
        correlation_->setText(tr("Pearson r = %1 (95% interval %2 to %3), n = %4 scored answers")
                                  .arg(correlation->r, 0, 'f', 2)
                                  .arg(correlation->low, 0, 'f', 2)
                                  .arg(correlation->high, 0, 'f', 2)
                                  .arg(correlation->n));
    else if (points > 0)
        correlation_->setText(tr("No r: fewer than 3 scored answers, or no variation (%1 answers)").arg(points));
    else
        correlation_->clear();
}

void MonitoringPanel::showStudy(const persona::MonitoringStudy& study, const QString& savedAs) {
    if (running_) return;
    gauge_->setVisible(false);
    gaugeLabel_->clear();
    study_ = study;
    table_->setRowCount(0);
    preparePlot(study.prompts);
    for (const persona::MonitoringPoint& point : study.points) addPoint(point, study.prompts, study.questions);
    progress_->setRange(0, int(study.points.size()));
    progress_->setValue(int(study.points.size()));
    showCorrelation(study.correlation, int(study.points.size()));
    message_->setText(tr("%1, layer %2, judge %3: %4 answers in %5 s.%6")
                          .arg(QString::fromStdString(study.trait))
                          .arg(study.layer)
                          .arg(QString::fromStdString(study.judge))
                          .arg(study.points.size())
                          .arg(study.seconds, 0, 'f', 0)
                          .arg(savedAs.isEmpty() ? QString() : tr(" Kept in the project as %1.").arg(savedAs)));
    refreshButtons();
}

std::vector<std::pair<double, double>> MonitoringPanel::plotPoints(int rung) const {
    std::vector<std::pair<double, double>> points;
    if (rung < 0 || rung >= plot_->graphCount()) return points;
    for (auto it = plot_->graph(rung)->data()->constBegin(); it != plot_->graph(rung)->data()->constEnd(); ++it)
        points.emplace_back(it->key, it->value);
    return points;
}

QString MonitoringPanel::correlationText() const { return correlation_->text(); }
QString MonitoringPanel::message() const { return message_->text(); }

bool MonitoringPanel::exportCsv(const QString& path) {
    if (!study_) return false;
    try {
        persona::write_monitoring_study_csv(path.toStdString(), *study_);
    } catch (const persona::Error& e) {
        message_->setText(QString::fromUtf8(e.what()));
        return false;
    }
    message_->setText(tr("Exported %1.").arg(path));
    return true;
}
