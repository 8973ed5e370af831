#include "panels/sweep_panel.h"

#include "shell/engine_client.h"
#include "widgets/judge_choice.h"
#include "widgets/trait_choice.h"
#include "widgets/vector_choice.h"

#include <qcustomplot.h>

#include <QCheckBox>
#include <QComboBox>
#include <QCryptographicHash>
#include <QDir>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QRegularExpression>
#include <QSpinBox>
#include <QSplitter>
#include <QStandardPaths>
#include <QTableWidget>
#include <QVBoxLayout>

#include <cmath>

namespace {

const QColor kLayerColors[] = {QColor(31, 119, 180), QColor(255, 127, 14), QColor(44, 160, 44), QColor(214, 39, 40),
                               QColor(148, 103, 189), QColor(140, 86, 75)};
constexpr int kRecommendedGraph = 0;  // graph 0 of each plot rings the recommended cell; curves follow

template <typename T>
std::vector<T> parseList(const QString& text, T (*convert)(const QString&, bool*)) {
    std::vector<T> values;
    for (const QString& part : text.split(QRegularExpression(QStringLiteral("[,;\\s]+")), Qt::SkipEmptyParts)) {
        bool ok = false;
        const T value = convert(part, &ok);
        if (!ok) return {};
        values.push_back(value);
    }
    return values;
}
int toInt(const QString& text, bool* ok) { return text.toInt(ok); }
double toDouble(const QString& text, bool* ok) {
    const double value = text.toDouble(ok);
    *ok = *ok && std::isfinite(value);
    return value;
}

QString listText(const std::vector<double>& values) {
    QStringList parts;
    for (double v : values) parts << QString::number(v);
    return parts.join(", ");
}

QCustomPlot* makePlot(QWidget* parent, const QString& objectName, const QString& yLabel) {
    auto* plot = new QCustomPlot(parent);
    plot->setObjectName(objectName);
    plot->xAxis->setLabel(QObject::tr("strength (calibrated: 1 = a typical activation's length)"));
    plot->yAxis->setLabel(yLabel);
    plot->yAxis->setRange(0, 100);
    plot->legend->setVisible(true);
    plot->legend->setFont(QFont(plot->font().family(), 8));
    // Below the axes, one row: inside them it hides the curves' ends.
    plot->plotLayout()->addElement(1, 0, plot->legend);
    plot->legend->setFillOrder(QCPLegend::foColumnsFirst);
    plot->plotLayout()->setRowStretchFactor(1, 0.001);
    plot->setInteractions(QCP::iSelectPlottables);
    plot->setMinimumHeight(200);
    QCPGraph* recommended = plot->addGraph();
    recommended->setName(QObject::tr("recommended"));
    recommended->setLineStyle(QCPGraph::lsNone);
    recommended->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(Qt::black, 2), Qt::NoBrush, 18));
    return plot;
}

}  // namespace

SweepPanel::SweepPanel(EngineClient* engine, QWidget* parent) : QWidget(parent), engine_(engine) {
    checkpointDirectory_ = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + "/sweeps";
    buildForm();
    buildResults();
    refreshButtons();
}

void SweepPanel::buildForm() {
    trait_ = new TraitChoice(this);
    trait_->setObjectName("sweep_trait");
    vector_ = new VectorChoice(this);
    vector_->setObjectName("sweep_vector");
    vector_->openFilesReporting([this](const QString& error) { message_->setText(error); });
    connect(vector_, &VectorChoice::vectorChosen, this, [this] {
        if (const persona::PersonaVector* v = vector_->current()) {
            std::vector<double> layers;
            for (int l : persona::default_sweep_layers(*v)) layers.push_back(l);
            layers_->setText(listText(layers));
        }
        refreshButtons();
    });
    layers_ = new QLineEdit(this);
    layers_->setObjectName("sweep_layers");
    layers_->setToolTip(tr("Layers to steer at (hidden_states index), e.g. 9, 13, 17, 21"));
    strengths_ = new QLineEdit(QStringLiteral("-0.5, 0.25, 0.5, 0.75, 1"), this);
    strengths_->setObjectName("sweep_strengths");
    strengths_->setToolTip(tr("Calibrated strengths (the Steering slider's units); 0, the unsteered answers, is always added"));
    questions_ = new QSpinBox(this);
    questions_->setRange(1, 1000);
    questions_->setValue(10);
    maxTokens_ = new QSpinBox(this);
    maxTokens_->setRange(1, 4096);
    maxTokens_->setValue(48);
    judge_ = new JudgeChoice(this);
    judge_->setObjectName("sweep_judge");
    promptingBaseline_ = new QCheckBox(tr("Prompting baseline (ask for the trait instead)"), this);
    promptingBaseline_->setChecked(true);
    runButton_ = new QPushButton(tr("Run sweep"), this);
    runButton_->setObjectName("sweep_run");
    connect(runButton_, &QPushButton::clicked, this, &SweepPanel::run);
    stopButton_ = new QPushButton(tr("Stop"), this);
    connect(stopButton_, &QPushButton::clicked, this, &SweepPanel::cancel);
    progress_ = new QProgressBar(this);
    progress_->setFormat(tr("%v / %m answers"));
    message_ = new QLabel(this);
    message_->setWordWrap(true);
    message_->setTextInteractionFlags(Qt::TextSelectableByMouse);
}

void SweepPanel::buildResults() {
    traitPlot_ = makePlot(this, "sweep_trait_plot", tr("judged trait score"));
    coherencePlot_ = makePlot(this, "sweep_coherence_plot", tr("judged coherence"));
    for (QCustomPlot* plot : {traitPlot_, coherencePlot_}) {
        auto* line = new QCPItemStraightLine(plot);
        line->setPen(QPen(QColor(90, 90, 90), 1.5, Qt::DashLine));
        line->setVisible(false);
        baselineLines_[plot] = line;
        connect(plot, &QCustomPlot::plottableClick, this, [this](QCPAbstractPlottable* plottable, int index, QMouseEvent*) {
            auto* graph = qobject_cast<QCPGraph*>(plottable);
            if (!graph || index < 0 || index >= graph->dataCount()) return;
            int curve = -1;
            for (int g = 1; g < graph->parentPlot()->graphCount(); ++g)
                if (graph->parentPlot()->graph(g) == graph) curve = g - 1;
            if (curve < 0 || curve >= int(runLayers_.size())) return;
            showCell(runLayers_[std::size_t(curve)], graph->dataMainKey(index));
        });
    }
    summary_ = new QLabel(this);
    summary_->setObjectName("sweep_summary");
    summary_->setWordWrap(true);
    answers_ = new QTableWidget(0, 4, this);
    answers_->setObjectName("sweep_answers");
    answers_->setHorizontalHeaderLabels({tr("Question"), tr("Trait"), tr("Coherence"), tr("Answer")});
    answers_->horizontalHeader()->setSectionResizeMode(3, QHeaderView::Stretch);
    answers_->verticalHeader()->setVisible(false);
    answers_->setEditTriggers(QAbstractItemView::NoEditTriggers);

    auto* form = new QFormLayout;
    form->addRow(tr("Trait"), trait_);
    form->addRow(tr("Vector"), vector_);
    form->addRow(tr("Layers"), layers_);
    form->addRow(tr("Strengths"), strengths_);
    form->addRow(tr("Questions"), questions_);
    form->addRow(tr("Max tokens"), maxTokens_);
    form->addRow(tr("Judge"), judge_);
    form->addRow(promptingBaseline_);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(runButton_);
    buttons->addWidget(stopButton_);
    auto* left = new QWidget(this);
    auto* leftLayout = new QVBoxLayout(left);
    leftLayout->addLayout(form);
    leftLayout->addLayout(buttons);
    leftLayout->addWidget(progress_);
    leftLayout->addWidget(message_);
    leftLayout->addStretch(1);
    auto* right = new QSplitter(Qt::Vertical, this);
    auto* plots = new QWidget(right);
    auto* plotLayout = new QVBoxLayout(plots);
    plotLayout->setContentsMargins(0, 0, 0, 0);
    plotLayout->addWidget(summary_);
    auto* plotRow = new QHBoxLayout;
    plotRow->addWidget(traitPlot_);
    plotRow->addWidget(coherencePlot_);
    plotLayout->addLayout(plotRow, 1);
    right->addWidget(plots);
    right->addWidget(answers_);
    auto* split = new QSplitter(Qt::Horizontal, this);
    split->addWidget(left);
    split->addWidget(right);
    split->setStretchFactor(1, 3);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(split);
}

void SweepPanel::setModel(const persona::ModelFacts& facts) {
    hasModel_ = true;
    vector_->reset(facts.layers, facts.hidden_size);
    refreshButtons();
}

void SweepPanel::setTraits(const std::vector<persona::Trait>& traits) { trait_->setTraits(traits); }

bool SweepPanel::selectTrait(const QString& name) { return trait_->select(name); }

const persona::Trait* SweepPanel::currentTrait() const { return trait_->current(); }

void SweepPanel::setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors) {
    vector_->setProjectVectors(vectors);
    refreshButtons();
}

void SweepPanel::setLayers(const std::vector<int>& layers) {
    layers_->setText(listText(std::vector<double>(layers.begin(), layers.end())));
}
void SweepPanel::setStrengths(const std::vector<double>& strengths) { strengths_->setText(listText(strengths)); }
void SweepPanel::setQuestionLimit(int questions) { questions_->setValue(questions); }
void SweepPanel::setMaxTokens(int tokens) { maxTokens_->setValue(tokens); }
void SweepPanel::setJudge(const persona::JudgeSettings& judge) { judge_->setSettings(judge); }
void SweepPanel::setCheckpointDirectory(const QString& directory) { checkpointDirectory_ = directory; }

// One file per trait, vector and form: a sweep run again as it was continues from its own checkpoint,
// and a changed setting starts a new one instead of meeting a checkpoint it cannot use.
QString SweepPanel::checkpointPath() const {
    const persona::Trait* trait = currentTrait();
    const persona::PersonaVector* vector = vector_->current();
    if (!trait || !vector) return {};
    QCryptographicHash hash(QCryptographicHash::Sha256);
    hash.addData(QByteArrayView(reinterpret_cast<const char*>(vector->values.data()),
                                qsizetype(vector->values.size() * sizeof(float))));
    const persona::JudgeSettings judge = judge_->settings();
    for (const QString& part : {layers_->text(), strengths_->text(), QString::number(questions_->value()),
                                QString::number(maxTokens_->value()), QString::fromStdString(persona::judge_label(judge)),
                                QString::number(promptingBaseline_->isChecked())})
        hash.addData((part + '\n').toUtf8());
    return QDir(checkpointDirectory_)
        .filePath(QString::fromStdString(trait->name) + "-" + QString::fromLatin1(hash.result().toHex().left(12)) +
                  ".sweep-checkpoint.json");
}

persona::SweepSettings SweepPanel::settings() const {
    persona::SweepSettings s;
    s.layers = parseList<int>(layers_->text(), toInt);
    s.coefficients = parseList<double>(strengths_->text(), toDouble);
    s.calibrated_coefficients = true;
    s.question_limit = questions_->value();
    s.max_new_tokens = maxTokens_->value();
    s.temperature = 0;  // greedy, as the Steering tab decodes: a difference between cells is the steering
    s.seed = 1;
    s.judge = judge_->settings();
    s.prompting_baseline = promptingBaseline_->isChecked();
    s.checkpoint_path = checkpointPath().toStdString();
    return s;
}

void SweepPanel::refreshButtons() {
    runButton_->setEnabled(hasModel_ && !running_ && vector_->current() && currentTrait());
    stopButton_->setEnabled(running_);
}

void SweepPanel::prepareCurves(const std::vector<int>& layers) {
    runLayers_ = layers;
    for (QCustomPlot* plot : {traitPlot_, coherencePlot_}) {
        while (plot->graphCount() > 1) plot->removeGraph(plot->graphCount() - 1);
        plot->graph(kRecommendedGraph)->data()->clear();
        for (std::size_t i = 0; i < layers.size(); ++i) {
            QCPGraph* graph = plot->addGraph();
            graph->setName(tr("layer %1").arg(layers[i]));
            const QColor color = kLayerColors[i % (sizeof kLayerColors / sizeof kLayerColors[0])];
            graph->setPen(QPen(color, 2));
            graph->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, color, 7));
        }
        baselineLines_[plot]->setVisible(false);
        plot->replot();
    }
}

void SweepPanel::drawCell(const persona::SweepCell& cell) {
    const auto found = std::find(runLayers_.begin(), runLayers_.end(), cell.layer);
    if (found == runLayers_.end()) return;
    const int graph = 1 + int(found - runLayers_.begin());
    if (cell.mean_trait) traitPlot_->graph(graph)->addData(cell.calibrated_strength, *cell.mean_trait);
    if (cell.mean_coherence) coherencePlot_->graph(graph)->addData(cell.calibrated_strength, *cell.mean_coherence);
    for (QCustomPlot* plot : {traitPlot_, coherencePlot_}) {
        plot->rescaleAxes();
        plot->yAxis->setRange(0, 100);
        plot->xAxis->scaleRange(1.15);
        plot->replot();
    }
}

void SweepPanel::draw(const persona::SweepResult& result) {
    prepareCurves(result.layers);
    for (const persona::SweepCell& cell : result.cells) drawCell(cell);
    const auto& r = result.recommendation;
    if (r.basis != persona::RecommendationBasis::None)
        for (const persona::SweepCell& cell : result.cells)
            if (cell.layer == r.layer && cell.coefficient == r.coefficient) {
                if (cell.mean_trait) traitPlot_->graph(kRecommendedGraph)->addData(cell.calibrated_strength, *cell.mean_trait);
                if (cell.mean_coherence)
                    coherencePlot_->graph(kRecommendedGraph)->addData(cell.calibrated_strength, *cell.mean_coherence);
            }
    if (const auto& prompted = result.prompting_baseline) {
        const std::pair<QCustomPlot*, std::optional<double>> lines[] = {{traitPlot_, prompted->mean_trait},
                                                                        {coherencePlot_, prompted->mean_coherence}};
        for (const auto& [plot, value] : lines) {
            if (!value) continue;
            QCPItemStraightLine* line = baselineLines_[plot];
            line->point1->setCoords(0, *value);
            line->point2->setCoords(1, *value);
            line->setVisible(true);
        }
    }
    for (QCustomPlot* plot : {traitPlot_, coherencePlot_}) plot->replot();

    QString text = r.basis == persona::RecommendationBasis::None
                       ? tr("No recommendation: %1").arg(QString::fromStdString(r.reason))
                       : tr("Recommended: layer %1, strength %2 (coefficient %3), by %4.")
                             .arg(r.layer)
                             .arg(r.calibrated_strength)
                             .arg(r.coefficient, 0, 'g', 3)
                             .arg(QString::fromLatin1(persona::recommendation_basis_name(r.basis)));
    if (const auto& prompted = result.prompting_baseline)
        text += tr(" Asking instead (dashed line, \"%1\"): trait %2, coherence %3.")
                    .arg(QString::fromStdString(result.prompting_system_prompt))
                    .arg(scoreText(prompted->mean_trait), scoreText(prompted->mean_coherence));
    summary_->setText(text);
}

void SweepPanel::showResult(const persona::SweepResult& result) {
    if (running_) return;
    result_ = result;
    // The form says what was swept, so Run repeats it.
    setLayers(result.layers);
    std::vector<double> strengths;
    for (double c : result.coefficients)
        if (c != 0) strengths.push_back(c);
    if (result.calibrated_coefficients) setStrengths(strengths);
    draw(result);
    const auto& r = result.recommendation;
    if (r.basis != persona::RecommendationBasis::None) showCell(r.layer, r.calibrated_strength);
    refreshButtons();
}

std::vector<std::pair<double, double>> SweepPanel::curve(int layer, bool coherence) const {
    std::vector<std::pair<double, double>> points;
    const auto found = std::find(runLayers_.begin(), runLayers_.end(), layer);
    if (found == runLayers_.end()) return points;
    const QCPGraph* graph = (coherence ? coherencePlot_ : traitPlot_)->graph(1 + int(found - runLayers_.begin()));
    for (auto it = graph->data()->constBegin(); it != graph->data()->constEnd(); ++it) points.emplace_back(it->key, it->value);
    return points;
}

std::optional<double> SweepPanel::baselineLine(bool coherence) const {
    const QCPItemStraightLine* line = baselineLines_.at(coherence ? coherencePlot_ : traitPlot_);
    if (!line->visible()) return std::nullopt;
    return line->point1->coords().y();
}

void SweepPanel::showCell(int layer, double calibratedStrength) {
    const std::vector<persona::SweepCell>& cells = result_ ? result_->cells : liveCells_;
    const persona::Trait* trait = currentTrait();
    for (const persona::SweepCell& cell : cells) {
        if (cell.layer != layer || std::abs(cell.calibrated_strength - calibratedStrength) > 1e-9) continue;
        answers_->setRowCount(0);
        for (const persona::SweepAnswer& answer : cell.answers) {
            const int row = answers_->rowCount();
            answers_->insertRow(row);
            const bool known = trait && answer.question_index < int(trait->evaluation_questions.size());
            answers_->setItem(row, 0, readOnlyItem(known ? QString::fromStdString(trait->evaluation_questions[std::size_t(answer.question_index)])
                                                     : QString::number(answer.question_index)));
            answers_->setItem(row, 1, readOnlyItem(scoreText(answer.trait_score)));
            answers_->setItem(row, 2, readOnlyItem(scoreText(answer.coherence)));
            answers_->setItem(row, 3, readOnlyItem(QString::fromStdString(answer.text).simplified()));
        }
        message_->setText(tr("Answers at layer %1, strength %2.").arg(layer).arg(calibratedStrength));
        return;
    }
}

QString SweepPanel::message() const { return message_->text(); }

void SweepPanel::run() {
    const persona::Trait* trait = currentTrait();
    const persona::PersonaVector* vector = vector_->current();
    if (running_ || !hasModel_ || !trait || !vector) return;
    const persona::SweepSettings s = settings();
    if (s.layers.empty() || s.coefficients.empty()) {
        message_->setText(tr("Layers and strengths are lists of numbers, e.g. 9, 13 and -0.5, 0.5, 1."));
        return;
    }
    if (const QString problem = judge_->problem(); !problem.isEmpty()) {
        message_->setText(problem);
        return;
    }
    QDir().mkpath(checkpointDirectory_);
    running_ = true;
    result_.reset();
    liveCells_.clear();
    std::vector<int> layers = s.layers;
    std::sort(layers.begin(), layers.end());
    layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
    prepareCurves(layers);
    summary_->clear();
    answers_->setRowCount(0);
    message_->setText(tr("Steering, answering and judging..."));
    refreshButtons();

    SweepCallbacks callbacks;
    callbacks.receiver = this;
    callbacks.progress = [this](const QString& stage, qint64 done, qint64 total) {
        const bool judged = judge_->settings().kind != persona::JudgeKind::None;
        if (stage == (judged ? "judge" : "generate")) {
            progress_->setRange(0, int(total));
            progress_->setValue(int(done));
        }
    };
    callbacks.cell = [this](const persona::SweepCell& cell) {
        liveCells_.push_back(cell);
        drawCell(cell);
    };
    callbacks.finished = [this](const persona::SweepResult& result) {
        running_ = false;
        showResult(result);
        message_->setText(tr("%1 answers in %2 s%3. Click a point to read its answers.")
                              .arg(result.rows_generated)
                              .arg(result.seconds, 0, 'f', 0)
                              .arg(result.rows_resumed ? tr(", %1 of them from the checkpoint").arg(result.rows_resumed) : QString()));
        emit sweepFinished(result);
    };
    callbacks.cancelled = [this] {
        running_ = false;
        message_->setText(tr("Stopped. Run again with the same settings to continue from the last finished batch."));
        refreshButtons();
    };
    callbacks.failed = [this](const QString& error) {
        running_ = false;
        message_->setText(error);
        refreshButtons();
        emit sweepFailed(error);
    };
    job_ = engine_->sweep(*trait, *vector, s, std::move(callbacks));
    emit sweepStarted();
}

void SweepPanel::cancel() {
    if (job_) job_.cancel();
}
