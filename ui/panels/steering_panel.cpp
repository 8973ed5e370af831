#include "panels/steering_panel.h"

#include "widgets/diverging_colors.h"
#include "shell/engine_client.h"
#include "widgets/projection_heat_map.h"
#include "widgets/more_vectors_editor.h"
#include "widgets/strength_control.h"
#include "widgets/vector_choice.h"
#include "persona/project.h"
#include "persona/vector_files.h"

#include <QComboBox>
#include <QGridLayout>
#include <QLabel>
#include <QStackedWidget>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollBar>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QTextCursor>
#include <QTextEdit>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>
#include <random>

namespace {
// Readable from the back of a room on a projector.
constexpr double kPresenterFontScale = 2.0;
// The pair view's grid: titles, texts, heat maps, difference map.
constexpr int kPaneMapRow = 2;
constexpr int kPaneMapStretch = 2;
// Repainting three plots and two panes per token steals CPU from the model on a small
// machine; ten times a second still looks like streaming.
constexpr int kRefreshMs = 100;
// Fixed, so the "random direction" is the same vector in every session and screenshot.
constexpr unsigned kRandomDirectionSeed = 20240607;
// Shown on the vector choice: it is the only honest name for it.
const char* const kRandomDirectionName = QT_TRANSLATE_NOOP("SteeringPanel", "Random direction (not a trait)");

QString operationName(persona::SteerOperation operation) {
    return QString::fromLatin1(persona::steer_operation_name(operation));
}
}  // namespace

SteeringPanel::SteeringPanel(EngineClient* engine, QWidget* parent) : QWidget(parent), engine_(engine) {
    new QVBoxLayout(this);
    buildInputs();
    buildPanes();
    buildSweepView();
    buildChatBar();
    connectInputs();

    regenerateDebounce_.setSingleShot(true);
    connect(&regenerateDebounce_, &QTimer::timeout, this, &SteeringPanel::regenerate);
    refreshCoalescer_.setSingleShot(true);
    refreshCoalescer_.setInterval(kRefreshMs);
    connect(&refreshCoalescer_, &QTimer::timeout, this, &SteeringPanel::refreshViews);
}

void SteeringPanel::setPresenterMode(bool on) {
    if (on == presenterMode_) return;
    presenterMode_ = on;
    for (QWidget* box : {setupBox_, runControls_, messageBox_, static_cast<QWidget*>(differenceMap_)}) box->setVisible(!on);
    chatBar_->setVisible(chatOn_ && !on);
    for (ProjectionHeatMap* map : paneMaps_) map->setVisible(!on);
    paneGrid_->setRowStretch(kPaneMapRow, on ? 0 : kPaneMapStretch);  // the texts take the maps' room
    QFont font = paneTexts_[Unsteered]->font();
    font.setPointSizeF(on ? normalPaneFontSize_ * kPresenterFontScale : normalPaneFontSize_);
    for (int pane = 0; pane < 2; ++pane) {
        paneTexts_[static_cast<std::size_t>(pane)]->setFont(font);
        QFont title = paneTitles_[static_cast<std::size_t>(pane)]->font();
        title.setPointSizeF(font.pointSizeF());
        paneTitles_[static_cast<std::size_t>(pane)]->setFont(title);
    }
    views_->setCurrentIndex(PairMode);
}

void SteeringPanel::buildPanes() {
    views_ = new QStackedWidget(this);
    views_->setObjectName("steering_views");
    auto* pairPage = new QWidget(views_);
    auto* panes = paneGrid_ = new QGridLayout(pairPage);
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
        panes->addWidget(map, kPaneMapRow, pane);
        paneTitles_[static_cast<std::size_t>(pane)] = title;
        paneTexts_[static_cast<std::size_t>(pane)] = text;
        paneMaps_[static_cast<std::size_t>(pane)] = map;
    }
    normalPaneFontSize_ = paneTexts_[Unsteered]->font().pointSizeF();
    panes->setRowStretch(1, 1);
    panes->setRowStretch(kPaneMapRow, kPaneMapStretch);
    differenceMap_ = new ProjectionHeatMap(tr("Steered minus unsteered"), this);
    differenceMap_->setObjectName("difference_heat_map");
    differenceMap_->setMinimumHeight(150);
    differenceMap_->setMaximumHeight(170);
    panes->addWidget(differenceMap_, 3, 0, 1, 2);
    views_->addWidget(pairPage);
    static_cast<QVBoxLayout*>(layout())->addWidget(views_, 1);
}

void SteeringPanel::setModel(const persona::ModelFacts& facts) {
    const Programmatic programmatic(this);
    layerCount_ = facts.layers;
    hiddenSize_ = facts.hidden_size;
    typicalNorms_ = facts.typical_residual_norms;
    live_ = false;  // another model: nothing regenerates until Generate
    shownUnsteeredKey_.clear();
    {
        const QSignalBlocker blocker(layer_);
        layer_->setRange(1, layerCount_);
        // The paper's best steering layers sat about two thirds of the way up.
        layer_->setValue(std::max(1, layerCount_ * 2 / 3));
    }
    vectorChoice_->reset(layerCount_, hiddenSize_);
    moreVectors_->setModel(layerCount_, hiddenSize_, typicalNorms_);
    useRandomDirection();
    rescaleStrength();
    generateButton_->setEnabled(true);
    sweepButton_->setEnabled(true);
    message_->setText(tr("Choose a vector, a layer and a strength, then Generate. Tokens are tinted by their "
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
    const int suggestedLayer = loaded->suggested_layer().value_or(0);
    const QString name = VectorChoice::fileEntryName(*loaded, path);
    addVector(name, std::move(*loaded), suggestedLayer);
    return true;
}

// The vector's suggested layer is set first, so the strength scale and any generation use it.
void SteeringPanel::addVector(const QString& name, persona::PersonaVector vector, int suggestedLayer) {
    if (suggestedLayer >= 1 && suggestedLayer <= layerCount_) {
        const QSignalBlocker blocker(layer_);
        layer_->setValue(suggestedLayer);
    }
    vectorChoice_->addVector(name, std::move(vector));
}

void SteeringPanel::setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors) {
    const std::vector<float> before = currentVector() ? currentVector()->values : std::vector<float>{};
    vectorChoice_->setProjectVectors(vectors);
    moreVectors_->setProjectVectors(vectors);
    // The unsteered pane's projections are onto the chosen vector: only new values make them stale.
    if (!currentVector() || currentVector()->values != before) ++vectorEpoch_;
    if (!currentVector()) {
        const Programmatic programmatic(this);
        useRandomDirection();
    }
    rescaleStrength();
}

const persona::PersonaVector* SteeringPanel::currentVector() const { return vectorChoice_->current(); }

int SteeringPanel::steeredLayer() const { return layer_->value(); }

void SteeringPanel::setPrompt(const QString& prompt) {
    const Programmatic programmatic(this);
    prompt_->setPlainText(prompt);
}
bool SteeringPanel::selectProjectVector(const QString& key) { return vectorChoice_->selectProjectVector(key); }

void SteeringPanel::setConversation(const QString& system, const QString& user) {
    systemPrompt_->setPlainText(system);
    prompt_->setPlainText(user);
}

void SteeringPanel::setCoefficient(double coefficient) { strength_->setCoefficient(coefficient); }
double SteeringPanel::coefficient() const { return strength_->coefficient(); }
void SteeringPanel::setStrength(double strength) { strength_->setStrength(strength); }
double SteeringPanel::strength() const { return strength_->strength(); }

QString SteeringPanel::paneText(Pane pane) const { return paneTexts_[pane]->toPlainText(); }
int SteeringPanel::tokenCount(Pane pane) const { return static_cast<int>(panes_[pane].texts.size()); }
ProjectionHeatMap* SteeringPanel::heatMap(Pane pane) const { return paneMaps_[pane]; }

persona::GenerationRow SteeringPanel::unsteeredRow() const {
    persona::GenerationRow row;
    row.messages = conversation(Unsteered);
    row.sampling.temperature = temperature();
    row.sampling.seed = static_cast<std::uint64_t>(seed_->value());
    row.sampling.max_new_tokens = maxTokens_->value();
    row.reuse_prompt_prefix = true;  // a slider move then prefills only the last prompt token
    return row;
}

QString SteeringPanel::unsteeredKey() const {
    QStringList key{QString::number(maxTokens_->value()), QString::number(static_cast<double>(temperature()), 'g', 9),
                    QString::number(seed_->value()), QString::number(vectorEpoch_)};
    for (const persona::ChatMessage& message : conversation(Unsteered))
        key << QString::fromStdString(message.role) << QString::fromStdString(message.content);
    return key.join(QChar(0x1f));
}

bool SteeringPanel::readyToGenerate() {
    regenerateDebounce_.stop();
    if (layerCount_ <= 0 || !currentVector()) {
        message_->setText(layerCount_ <= 0 ? tr("Load a model to steer it.") : tr("Choose a vector first."));
        return false;
    }
    if (chatOn_ ? chat_.empty() : prompt_->toPlainText().trimmed().isEmpty()) {
        message_->setText(chatOn_ ? tr("Type a message below and press Send.") : tr("Write a prompt first."));
        return false;
    }
    return true;
}

bool SteeringPanel::moreSteeringOrMessage(std::vector<persona::Steering>* steering) {
    QString error;
    *steering = moreVectors_->steering(static_cast<persona::SteerPositions>(positions_->currentData().toInt()), &error);
    if (!error.isEmpty()) message_->setText(error);
    return error.isEmpty();
}

void SteeringPanel::generate() {
    if (!readyToGenerate()) return;
    std::vector<persona::Steering> moreSteering;
    if (!moreSteeringOrMessage(&moreSteering)) return;
    const persona::PersonaVector* vector = currentVector();
    mode_ = PairMode;
    views_->setCurrentIndex(PairMode);
    runLayer_ = layer_->value();
    runMaxTokens_ = maxTokens_->value();
    runCoefficient_ = strength_->coefficient();
    runUnsteeredKey_ = unsteeredKey();
    const persona::SteerOperation operation = this->operation();

    // The unsteered pane cannot have changed when nothing it depends on did: only the steered
    // row is generated, and its old text stays (greyed) until the new one streams in.
    steeredOnly_ = runUnsteeredKey_ == shownUnsteeredKey_ && !panes_[Unsteered].texts.isEmpty();
    persona::GenerationRow unsteered = unsteeredRow();
    persona::GenerationRow steered = unsteered;
    steered.messages = conversation(Steered);  // in a chat, the steered side's own earlier answers
    persona::Steering steering;
    steering.layer = runLayer_;
    const persona::LayerView direction = vector->layer(runLayer_);
    steering.vector.assign(direction.begin(), direction.end());
    steering.alpha = static_cast<float>(runCoefficient_);
    steering.positions = static_cast<persona::SteerPositions>(positions_->currentData().toInt());
    steering.operation = operation;
    steered.steering.push_back(std::move(steering));
    for (persona::Steering& more : moreSteering) steered.steering.push_back(std::move(more));

    // Every layer, each onto the vector's own direction at that layer.
    persona::ProjectionProbe probe;
    for (int l = 0; l <= layerCount_; ++l) {
        probe.layers.push_back(l);
        const persona::LayerView values = vector->layer(l);
        probe.directions.emplace_back(values.begin(), values.end());
    }

    if (steeredOnly_) {
        panes_[Steered].stale = true;
    } else {
        shownUnsteeredKey_.clear();
        for (auto& pane : panes_) pane = {};
        paneTitles_[Unsteered]->setText(temperature() > 0 ? tr("Unsteered (sampled, seed %1)").arg(seed_->value())
                                                           : tr("Unsteered (greedy)"));
    }
    QString title = operation != persona::SteerOperation::Ablate
                        ? tr("Steered: %1 at layer %2, %3")
                              .arg(operationName(operation))
                              .arg(runLayer_)
                              .arg(StrengthControl::describe(runCoefficient_, strength_->scale()))
                        : tr("Steered: %1 at layer %2").arg(operationName(operation)).arg(runLayer_);
    if (moreVectors_->rowCount() > 0) title += QStringLiteral(" ") + moreVectors_->describe();
    paneTitles_[Steered]->setText(title);
    refreshViews();
    std::vector<persona::GenerationRow> rows;
    if (!steeredOnly_) rows.push_back(std::move(unsteered));
    rows.push_back(std::move(steered));
    startJob(std::move(rows), std::move(probe));
}

void SteeringPanel::regenerate() {
    if (mode_ == SweepMode && !presenterMode_) sweep();  // the presenter view shows the pair
    else generate();
}

void SteeringPanel::startJob(std::vector<persona::GenerationRow> rows, persona::ProjectionProbe probe) {
    job_.cancel();  // this panel's own generation only; an extraction elsewhere runs on
    live_ = true;
    generating_ = true;
    lastJobRows_ = static_cast<int>(rows.size());
    jobTokens_ = 0;
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

void SteeringPanel::stop() {
    regenerateDebounce_.stop();
    job_.cancel();
}

void SteeringPanel::onToken(const persona::TokenEvent& event) {
    if (mode_ == SweepMode) {
        if (event.row < 0 || event.row >= sweepColumnCount()) return;
        PaneTokens& tokens = sweepColumns_[static_cast<std::size_t>(event.row)].tokens;
        ++jobTokens_;
        tokens.texts.push_back(QString::fromStdString(event.text));
        tokens.projections.push_back(event.projections);
        if (!refreshCoalescer_.isActive()) refreshCoalescer_.start();
        reportProgress();
        return;
    }
    const int row = steeredOnly_ ? event.row + 1 : event.row;
    if (row < 0 || row > 1) return;
    PaneTokens& pane = panes_[static_cast<std::size_t>(row)];
    if (pane.stale) pane = {};
    ++jobTokens_;
    pane.texts.push_back(QString::fromStdString(event.text));
    pane.projections.push_back(event.projections);
    if (!refreshCoalescer_.isActive()) refreshCoalescer_.start();
    reportProgress();
}

void SteeringPanel::onFinished(const std::vector<persona::GenerationResult>& /*results*/) {
    // The streamed tokens already hold every piece of text: the results add nothing to show.
    reportProgress();
    if (mode_ == SweepMode) {
        settle(tr("Sweep done: %1 strengths at layer %2, seed %3.").arg(sweepColumnCount()).arg(runLayer_).arg(seed_->value()));
        emit generationFinished();
        return;
    }
    shownCoefficient_ = runCoefficient_;
    shownUnsteeredKey_ = runUnsteeredKey_;
    panes_[Steered].stale = false;  // an answer of no tokens replaces the old one too
    if (chatOn_ && !chat_.empty())
        for (const Pane pane : {Unsteered, Steered}) chat_.back().answers[pane] = paneAnswer(pane);
    settle(steeredOnly_ ? tr("Done: %1 steered tokens (the unsteered row was kept).").arg(tokenCount(Steered))
                        : tr("Done: %1 and %2 tokens.").arg(tokenCount(Unsteered)).arg(tokenCount(Steered)));
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
    int steps = 0;
    if (mode_ == SweepMode) {
        for (int column = 0; column < sweepColumnCount(); ++column) steps = std::max(steps, sweepColumnTokens(column));
    } else {
        steps = steeredOnly_ ? tokenCount(Steered) : std::max(tokenCount(Unsteered), tokenCount(Steered));
    }
    const double seconds = static_cast<double>(runClock_.elapsed()) / 1000.0;
    const double tokensPerSecond = seconds > 0 ? jobTokens_ / seconds : 0.0;
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
    const double mapScale = diverging::maxAbs(steered, diverging::maxAbs(unsteered));
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
                                diverging::maxAbs(difference), runMaxTokens_);
}

bool SteeringPanel::useVector(const persona::PersonaVector& vector, const QString& name, int suggestedLayer) {
    if (!vectorChoice_->fits(vector)) return false;
    const Programmatic programmatic(this);
    // A newer extraction of the same name replaces the older one rather than piling up.
    addVector(name, vector, suggestedLayer);
    return true;
}

void SteeringPanel::renderPane(Pane pane, double scale) {
    QTextEdit* edit = paneTexts_[pane];
    const PaneTokens& tokens = panes_[pane];
    edit->clear();
    QTextCursor cursor(edit->document());
    if (chatOn_) renderChatHistory(pane, cursor);
    for (int t = 0; t < tokens.texts.size(); ++t) {
        const auto& projections = tokens.projections[static_cast<std::size_t>(t)];
        const double value = runLayer_ < static_cast<int>(projections.size())
                                 ? static_cast<double>(projections[static_cast<std::size_t>(runLayer_)])
                                 : 0.0;
        QTextCharFormat format;
        if (tokens.stale) {
            format.setForeground(palette().color(QPalette::Disabled, QPalette::Text));
            cursor.insertText(tokens.texts[t], format);
            continue;
        }
        // Light tints keep black text readable at either end of the scale.
        format.setBackground(diverging::colorFor(value, scale, 0.6));
        format.setToolTip(tr("projection at layer %1: %2").arg(runLayer_).arg(value, 0, 'f', 2));
        cursor.insertText(tokens.texts[t], format);
    }
    edit->verticalScrollBar()->setValue(edit->verticalScrollBar()->maximum());
}
