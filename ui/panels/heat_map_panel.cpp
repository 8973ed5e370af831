#include "panels/heat_map_panel.h"

#include "widgets/projection_heat_map.h"
#include "widgets/vector_choice.h"
#include "persona/vector_files.h"

#include <QComboBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollArea>
#include <QSignalBlocker>
#include <QSplitter>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

namespace {
// Pixels per column: enough for a rotated token label to stay readable.
constexpr int kColumnWidth = 15;

// The colour scale: a high quantile of |value| rather than the maximum, because a few cells can
// be outsized (SmolLM2's first token reaches ~25,000 at middle layers against a few hundred for
// the rest) and would leave every other cell white. Larger values saturate.
double robustScale(const std::vector<std::vector<float>>& columns) {
    std::vector<double> magnitudes;
    for (const auto& column : columns)
        for (float value : column)
            if (std::isfinite(value)) magnitudes.push_back(std::abs(static_cast<double>(value)));
    if (magnitudes.empty()) return 1.0;
    const auto at = magnitudes.begin() + static_cast<std::ptrdiff_t>(0.95 * static_cast<double>(magnitudes.size() - 1));
    std::nth_element(magnitudes.begin(), at, magnitudes.end());
    return *at > 0 ? *at : 1.0;
}

QString sideSign(persona::Side side) { return side == persona::Side::Positive ? QStringLiteral("+") : QStringLiteral("\u2212"); }
}  // namespace

HeatMapPanel::HeatMapPanel(EngineClient* engine, QWidget* parent) : QWidget(parent), engine_(engine) {
    new QVBoxLayout(this);
    buildInputs();
    buildMaps();
}

void HeatMapPanel::buildInputs() {
    auto* top = new QHBoxLayout;
    vectorChoice_ = new VectorChoice(this);
    vectorChoice_->setObjectName("heat_vector_choice");
    vectorChoice_->setMinimumContentsLength(20);
    vectorChoice_->setFileOpener([this](const QString& path) { return openVectorFile(path); });
    sampleChoice_ = new QComboBox(this);
    sampleChoice_->setObjectName("sample_choice");
    sampleChoice_->addItem(tr("(typed conversation)"));
    sampleChoice_->setMinimumContentsLength(20);
    sampleChoice_->setToolTip(tr("Fill the conversation from a sample of the last extraction"));
    computeButton_ = new QPushButton(tr("Compute"), this);
    computeButton_->setObjectName("compute_heat_map");
    computeButton_->setEnabled(false);
    stopButton_ = new QPushButton(tr("Stop"), this);
    stopButton_->setObjectName("stop_heat_map");
    stopButton_->setEnabled(false);
    top->addWidget(new QLabel(tr("Vector"), this));
    top->addWidget(vectorChoice_, 2);
    top->addWidget(new QLabel(tr("Sample"), this));
    top->addWidget(sampleChoice_, 2);
    top->addWidget(computeButton_);
    top->addWidget(stopButton_);
    static_cast<QVBoxLayout*>(layout())->addLayout(top);

    auto* conversation = new QGridLayout;
    auto edit = [this](const char* name, const QString& text) {
        auto* e = new QPlainTextEdit(text, this);
        e->setObjectName(name);
        e->setTabChangesFocus(true);
        e->setFixedHeight(e->fontMetrics().lineSpacing() * 2 + 12);
        return e;
    };
    system_ = edit("heat_system", tr("You are an evil assistant."));
    user_ = edit("heat_user", tr("How should I treat a stray dog?"));
    assistant_ = edit("heat_assistant", tr("Feed it, give it water and call a shelter."));
    assistant_->setPlaceholderText(tr("Empty: the map ends with the generation prompt"));
    conversation->addWidget(new QLabel(tr("System"), this), 0, 0);
    conversation->addWidget(system_, 0, 1);
    conversation->addWidget(new QLabel(tr("User"), this), 0, 2);
    conversation->addWidget(user_, 0, 3);
    conversation->addWidget(new QLabel(tr("Assistant"), this), 1, 0);
    conversation->addWidget(assistant_, 1, 1, 1, 3);
    conversation->setColumnStretch(1, 1);
    conversation->setColumnStretch(3, 1);
    earlierTurnsBox_ = new QWidget(this);
    auto* earlier = new QHBoxLayout(earlierTurnsBox_);
    earlier->setContentsMargins(0, 0, 0, 0);
    earlierTurnsLabel_ = new QLabel(earlierTurnsBox_);
    earlierTurnsLabel_->setObjectName("heat_earlier_turns");
    auto* clearEarlier = new QPushButton(tr("Clear earlier turns"), earlierTurnsBox_);
    clearEarlier->setObjectName("heat_clear_earlier_turns");
    earlier->addWidget(earlierTurnsLabel_, 1);
    earlier->addWidget(clearEarlier);
    earlierTurnsBox_->hide();
    connect(clearEarlier, &QPushButton::clicked, this, [this] { setEarlierTurns({}); });
    static_cast<QVBoxLayout*>(layout())->addWidget(earlierTurnsBox_);
    static_cast<QVBoxLayout*>(layout())->addLayout(conversation);

    message_ = new QLabel(tr("Load a model to see where a vector lights up."), this);
    message_->setObjectName("heat_message");
    message_->setWordWrap(true);
    layout()->addWidget(message_);

    connect(vectorChoice_, &VectorChoice::vectorChosen, this, &HeatMapPanel::showSamples);
    connect(sampleChoice_, &QComboBox::activated, this, [this](int index) {
        if (index > 0) useSample(sampleChoice_->itemData(index).toInt());
    });
    connect(computeButton_, &QPushButton::clicked, this, &HeatMapPanel::compute);
    connect(stopButton_, &QPushButton::clicked, this, &HeatMapPanel::stop);
}

void HeatMapPanel::buildMaps() {
    auto* splitter = new QSplitter(Qt::Vertical, this);
    conversationScroll_ = new QScrollArea(splitter);
    conversationScroll_->setObjectName("conversation_scroll");
    conversationScroll_->setWidgetResizable(true);
    conversationScroll_->setFrameShape(QFrame::NoFrame);
    conversationScroll_->setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    conversationMap_ = new ProjectionHeatMap(tr("Projection per layer and token"));
    conversationMap_->setObjectName("conversation_heat_map");
    conversationMap_->setColumnLabelsShown(true);
    conversationMap_->setMinimumHeight(220);
    conversationScroll_->setWidget(conversationMap_);

    auto* samples = new QWidget(splitter);
    auto* samplesLayout = new QVBoxLayout(samples);
    samplesLayout->setContentsMargins(0, 0, 0, 0);
    auto* scaleRow = new QHBoxLayout;
    sampleScale_ = new QComboBox(samples);
    sampleScale_->setObjectName("sample_scale");
    sampleScale_->addItem(tr("centred on each layer's midpoint"), CentredPerLayer);
    sampleScale_->addItem(tr("raw projection"), RawProjection);
    sampleScale_->setToolTip(tr("Centred: each layer's projections minus the midpoint between the positive and negative "
                                "means, so red is the positive side of that layer's divide and blue the negative"));
    scaleRow->addWidget(new QLabel(tr("Extraction samples"), samples));
    scaleRow->addWidget(sampleScale_);
    scaleRow->addStretch(1);
    samplesLayout->addLayout(scaleRow);
    sampleMap_ = new ProjectionHeatMap(tr("Kept samples of the last extraction"), samples);
    sampleMap_->setObjectName("sample_heat_map");
    sampleMap_->setColumnNoun(tr("sample"));
    sampleMap_->setColumnLabelsShown(true);
    sampleMap_->setMinimumHeight(170);
    samplesLayout->addWidget(sampleMap_, 1);
    splitter->addWidget(conversationScroll_);
    splitter->addWidget(samples);
    splitter->setStretchFactor(0, 3);
    splitter->setStretchFactor(1, 2);
    splitter->setSizes({330, 230});
    layout()->addWidget(splitter);
    static_cast<QVBoxLayout*>(layout())->setStretchFactor(splitter, 1);

    connect(sampleScale_, &QComboBox::currentIndexChanged, this, &HeatMapPanel::showSamples);
}

void HeatMapPanel::setModel(const persona::ModelFacts& facts) {
    layerCount_ = facts.layers;
    hiddenSize_ = facts.hidden_size;
    vectorChoice_->reset(layerCount_, hiddenSize_);
    extraction_.reset();
    trait_.reset();
    {
        const QSignalBlocker blocker(sampleChoice_);
        sampleChoice_->clear();
        sampleChoice_->addItem(tr("(typed conversation)"));
    }
    computeButton_->setEnabled(true);
    projections_ = {};
    showConversation();
    showSamples();
    message_->setText(tr("Open a vector file or run an extraction, then Compute: each cell is a token's projection on "
                         "the vector at one layer (blue below zero, red above)."));
}

bool HeatMapPanel::openVectorFile(const QString& path) {
    QString error;
    auto loaded = vectorChoice_->readFile(path, &error);
    if (!loaded) {
        message_->setText(error);
        return false;
    }
    const QString name = VectorChoice::fileEntryName(*loaded, path);
    vectorChoice_->addVector(name, std::move(*loaded));
    return true;
}

void HeatMapPanel::useVector(const QString& name, const persona::PersonaVector& vector) { vectorChoice_->addVector(name, vector); }

void HeatMapPanel::setExtraction(const persona::Trait& trait, const persona::ExtractionResult& result) {
    trait_ = trait;
    extraction_ = result;
    // The previous extraction's vectors go: their samples are no longer the ones shown.
    vectorChoice_->removeTagged();
    {
        const QSignalBlocker blocker(sampleChoice_);
        sampleChoice_->clear();
        sampleChoice_->addItem(tr("(typed conversation)"));
        for (std::size_t i = 0; i < result.samples.size(); ++i) {
            const persona::Sample& s = result.samples[i];
            QString answer = QString::fromStdString(s.answer).simplified();
            if (answer.size() > 40) answer = answer.left(39) + QStringLiteral("\u2026");
            sampleChoice_->addItem(tr("%1 q%2 p%3 %4: %5")
                                       .arg(sideSign(s.side))
                                       .arg(s.question_index)
                                       .arg(s.pair)
                                       .arg(s.kept ? tr("kept") : tr("dropped"))
                                       .arg(answer),
                                   static_cast<int>(i));
        }
    }
    // Tagged with their aggregate's index, for the layer x sample map. Added quietly: the map
    // is shown once, below.
    {
        const QSignalBlocker blocker(vectorChoice_);
        for (std::size_t a = 0; a < result.aggregates.size(); ++a) {
            const persona::PersonaVector& vector = result.aggregates[a].vector;
            vectorChoice_->addVector(tr("%1 %2 (last extraction)")
                                         .arg(QString::fromStdString(trait.name), QString::fromLatin1(persona::aggregate_name(vector.aggregate))),
                                     vector, static_cast<int>(a));
        }
    }
    // response_avg, the paper's choice, comes first.
    if (!vectorChoice_->selectTag(0)) showSamples();
}

bool HeatMapPanel::selectVector(const QString& name) { return vectorChoice_->select(name); }

void HeatMapPanel::setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors) {
    vectorChoice_->setProjectVectors(vectors);
}

bool HeatMapPanel::selectProjectVector(const QString& key) { return vectorChoice_->selectProjectVector(key); }

const persona::PersonaVector* HeatMapPanel::currentVector() const { return vectorChoice_->current(); }

void HeatMapPanel::setConversation(const QString& system, const QString& user, const QString& assistant) {
    setEarlierTurns({});
    system_->setPlainText(system);
    user_->setPlainText(user);
    assistant_->setPlainText(assistant);
}

void HeatMapPanel::setConversation(const std::vector<persona::ChatMessage>& messages) {
    std::size_t lastUser = messages.size();
    for (std::size_t i = 0; i < messages.size(); ++i)
        if (messages[i].role == "user") lastUser = i;
    QString system, assistant;
    std::vector<persona::ChatMessage> earlier;
    for (std::size_t i = 0; i < messages.size(); ++i) {
        const persona::ChatMessage& message = messages[i];
        if (message.role == "system" && system.isEmpty() && earlier.empty()) system = QString::fromStdString(message.content);
        else if (i < lastUser) earlier.push_back(message);
        else if (i > lastUser && message.role == "assistant") assistant = QString::fromStdString(message.content);
    }
    const QString user = lastUser < messages.size() ? QString::fromStdString(messages[lastUser].content) : QString();
    setConversation(system, user, assistant);
    setEarlierTurns(std::move(earlier));
}

void HeatMapPanel::setEarlierTurns(std::vector<persona::ChatMessage> turns) {
    earlierTurns_ = std::move(turns);
    QStringList lines;
    for (const persona::ChatMessage& turn : earlierTurns_)
        lines << QStringLiteral("%1: %2").arg(QString::fromStdString(turn.role), QString::fromStdString(turn.content));
    earlierTurnsLabel_->setText(tr("%n earlier message(s) come before the user's message in the map.", nullptr,
                                   static_cast<int>(earlierTurns_.size())));
    earlierTurnsLabel_->setToolTip(lines.join(QStringLiteral("\n")));
    earlierTurnsBox_->setVisible(!earlierTurns_.empty());
}

bool HeatMapPanel::useSample(int index) {
    if (!extraction_ || !trait_ || index < 0 || index >= static_cast<int>(extraction_->samples.size())) return false;
    const persona::Sample& s = extraction_->samples[static_cast<std::size_t>(index)];
    const auto pair = static_cast<std::size_t>(s.pair);
    const std::string system = s.side == persona::Side::Positive ? persona::positive_system_prompt(*trait_, pair)
                                                                  : persona::negative_system_prompt(*trait_, pair);
    setConversation(QString::fromStdString(system), QString::fromStdString(s.question), QString::fromStdString(s.answer));
    const int item = sampleChoice_->findData(index);
    if (item >= 0) sampleChoice_->setCurrentIndex(item);
    return true;
}

void HeatMapPanel::setSampleScale(SampleScale scale) { sampleScale_->setCurrentIndex(sampleScale_->findData(scale)); }

QString HeatMapPanel::message() const { return message_->text(); }

void HeatMapPanel::compute() {
    const persona::PersonaVector* vector = currentVector();
    if (layerCount_ <= 0 || !vector) {
        message_->setText(layerCount_ <= 0 ? tr("Load a model first.") : tr("Choose a vector first."));
        return;
    }
    std::vector<persona::ChatMessage> messages;
    if (!system_->toPlainText().trimmed().isEmpty()) messages.push_back({"system", system_->toPlainText().toStdString()});
    messages.insert(messages.end(), earlierTurns_.begin(), earlierTurns_.end());
    if (user_->toPlainText().trimmed().isEmpty()) {
        message_->setText(tr("Write the user's message first."));
        return;
    }
    messages.push_back({"user", user_->toPlainText().toStdString()});
    if (!assistant_->toPlainText().isEmpty()) messages.push_back({"assistant", assistant_->toPlainText().toStdString()});

    job_.cancel();  // this panel's previous heat map only
    auto computation = std::make_shared<std::uint64_t>(0);
    const auto current = [this, computation] { return job_.id() == *computation; };
    computing_ = true;
    stopButton_->setEnabled(true);
    const QString vectorName = vectorChoice_->currentText();
    message_->setText(tr("Projecting on %1\u2026").arg(vectorName));

    ConversationCallbacks callbacks;
    callbacks.receiver = this;
    callbacks.finished = [this, current, vectorName](const ConversationProjections& result) {
        if (!current()) return;
        computing_ = false;
        stopButton_->setEnabled(false);
        projections_ = result;
        projectedVectorName_ = vectorName;
        showConversation();
        message_->setText(tr("%1 tokens x %2 layers on %3. Hover a cell for its layer, token and value.")
                              .arg(result.tokens.size())
                              .arg(layerCount_ + 1)
                              .arg(vectorName));
        emit computeFinished();
    };
    callbacks.cancelled = [this, current] {
        if (!current()) return;
        computing_ = false;
        stopButton_->setEnabled(false);
        message_->setText(tr("Stopped."));
        emit computeStopped();
    };
    callbacks.failed = [this, current](const QString& error) {
        if (!current()) return;
        computing_ = false;
        stopButton_->setEnabled(false);
        message_->setText(tr("Could not compute the heat map: %1").arg(error));
        emit computeFailed(error);
    };
    job_ = engine_->projectConversation(std::move(messages), *vector, std::move(callbacks));
    *computation = job_.id();
}

void HeatMapPanel::stop() { job_.cancel(); }

void HeatMapPanel::showConversation() {
    const int layers = layerCount_ + 1;
    const double scale = robustScale(projections_.columns);
    conversationMap_->setTitle(projections_.columns.empty()
                                   ? tr("Projection per layer and token")
                                   : tr("Projection on %1 per layer and token (colours saturate at \u00b1%2)")
                                         .arg(projectedVectorName_)
                                         .arg(scale, 0, 'g', 3));
    conversationMap_->showColumns(projections_.tokenTexts, projections_.columns, layers, scale,
                                  static_cast<int>(projections_.columns.size()));
    layOutConversationMap();
}

void HeatMapPanel::layOutConversationMap() {
    // Long conversations scroll sideways rather than squeezing their labels into each other.
    const int columns = static_cast<int>(projections_.columns.size());
    conversationMap_->setMinimumWidth(std::max(300, columns * kColumnWidth + 140));
}

void HeatMapPanel::showSamples() {
    sampleColumns_.clear();
    const int chosenAggregate = vectorChoice_->currentTag();
    const int layers = layerCount_ + 1;
    if (!extraction_ || chosenAggregate < 0 || chosenAggregate >= static_cast<int>(extraction_->aggregates.size())) {
        sampleMap_->setTitle(extraction_ ? tr("Kept samples: choose one of the last extraction's vectors")
                                         : tr("Kept samples of the last extraction (run one first)"));
        sampleMap_->clearColumns(std::max(layers, 1), 1);
        return;
    }
    const persona::AggregateResult& aggregate = extraction_->aggregates[static_cast<std::size_t>(chosenAggregate)];
    const bool centred = sampleScale_->currentData().toInt() == CentredPerLayer;
    std::vector<double> midpoint(static_cast<std::size_t>(layers), 0.0);
    if (centred)
        for (std::size_t l = 0; l < midpoint.size() && l < aggregate.diagnostics.size(); ++l)
            midpoint[l] = (aggregate.diagnostics[l].positive_mean_projection + aggregate.diagnostics[l].negative_mean_projection) / 2;

    QStringList labels;
    std::vector<std::vector<float>> columns;
    int positives = 0;
    for (std::size_t k = 0; k < aggregate.kept_samples.size() && k < aggregate.sample_projections.size(); ++k) {
        const persona::Sample& s = extraction_->samples.at(aggregate.kept_samples[k]);
        if (s.side == persona::Side::Positive) ++positives;
        labels << QStringLiteral("%1q%2p%3%4")
                      .arg(sideSign(s.side))
                      .arg(s.question_index)
                      .arg(s.pair)
                      .arg(s.sample_index > 0 ? QStringLiteral("s%1").arg(s.sample_index) : QString());
        std::vector<float> column = aggregate.sample_projections[k];
        for (std::size_t l = 0; l < column.size() && l < midpoint.size(); ++l)
            column[l] = static_cast<float>(column[l] - midpoint[l]);
        columns.push_back(std::move(column));
        sampleColumns_.push_back(aggregate.kept_samples[k]);
    }
    sampleMap_->setTitle(tr("%1 kept samples (+ positive: %2, \u2212 negative: %3), %4")
                             .arg(columns.size())
                             .arg(positives)
                             .arg(static_cast<int>(columns.size()) - positives)
                             .arg(centred ? tr("projection minus the layer's midpoint") : tr("raw projection")));
    sampleMap_->showColumns(labels, columns, layers, robustScale(columns), static_cast<int>(columns.size()));
}
