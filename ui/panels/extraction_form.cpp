// ExtractionPanel's settings form: the trait, counts, sampling and the judge, read into and
// written from persona::ExtractionSettings.
#include "panels/extraction_panel.h"

#include "persona/paths.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileInfo>
#include <QGridLayout>
#include <QGroupBox>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QRegularExpression>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QVBoxLayout>

void ExtractionPanel::buildSettings() {
    auto* box = new QGroupBox(tr("Settings"), this);
    auto* grid = new QGridLayout(box);
    auto spin = [this](const char* name, int low, int high, int value, const QString& tip) {
        auto* s = new QSpinBox(this);
        s->setObjectName(name);
        s->setRange(low, high);
        s->setValue(value);
        s->setToolTip(tip);
        return s;
    };
    trait_ = new QComboBox(this);
    trait_->setObjectName("trait");
    trait_->setMinimumContentsLength(12);
    questions_ = spin("questions", 0, 1000, 0, tr("Extraction questions to use; 0 uses all of them"));
    questions_->setSpecialValueText(tr("all"));
    pairs_ = spin("pairs", 0, 100, 0, tr("Instruction pairs to use; 0 uses all of them"));
    pairs_->setSpecialValueText(tr("all"));
    samples_ = spin("samples", 1, 100, 1, tr("Answers per question, instruction pair and side"));
    maxTokens_ = spin("max_tokens", 1, 2048, 64, tr("Longest answer, in tokens"));
    temperature_ = new QDoubleSpinBox(this);
    temperature_->setObjectName("temperature");
    temperature_->setRange(0.0, 2.0);
    temperature_->setSingleStep(0.1);
    temperature_->setValue(1.0);
    temperature_->setToolTip(tr("0 is greedy; the paper samples at 1"));
    seed_ = spin("seed", 0, 1'000'000'000, 0, tr("Each sample's seed derives from this one: reruns give the same answers"));
    batch_ = spin("batch", 1, 256, 8, tr("Answers generated together"));
    judge_ = new QComboBox(this);
    judge_->setObjectName("judge");
    judge_->addItem(tr("local model"), int(JudgeChoice::StudiedModel));
    judge_->addItem(tr("second model"), int(JudgeChoice::SecondModel));
    judge_->addItem(tr("HTTP endpoint"), int(JudgeChoice::Endpoint));
    judge_->addItem(tr("none"), int(JudgeChoice::None));
    judge_->setToolTip(tr("local model: the loaded model scores each answer 0-100 for the trait and for coherence.\n"
                          "second model: another model file or folder (beside) judges instead; a small model may refuse.\n"
                          "The default is the judge model setup fetched, when it is in the model cache.\n"
                          "HTTP endpoint: an OpenAI-compatible server with logprobs; the key is read from "
                          "$OPENAI_API_KEY, never saved.\n"
                          "none: every pair is kept; the vector then contrasts the system prompts, not judged trait "
                          "expression"));
    judgeMode_ = new QComboBox(this);
    judgeMode_->setObjectName("judge_mode");
    for (const std::string& name : persona::judge_mode_names()) judgeMode_->addItem(QString::fromStdString(name));
    judgeMode_->setToolTip(tr("absolute: each answer is scored 0-100 for the trait (the reference method; for strong "
                              "judges).\npairwise: the judge sees both answers of a pair and picks the one that shows "
                              "the trait more, in both orders; 'Wins \u2265' is the probability (%) with which the "
                              "positive answer must win. For judges that score both sides alike; the fetched 1.5B "
                              "judge barely leans either way on most traits (README, \"Judge\")."));
    judgeTarget_ = new QLineEdit(this);
    judgeTarget_->setObjectName("judge_target");
    auto threshold = [this](const char* name, const QString& tip) {
        auto* s = new QDoubleSpinBox(this);
        s->setObjectName(name);
        s->setRange(0, 100);
        s->setDecimals(0);
        s->setValue(50);
        s->setToolTip(tip);
        return s;
    };
    traitThreshold_ = threshold("trait_threshold", tr("A pair stays when its positive answer scores at least this and its "
                                                      "negative less (absolute judge mode)"));
    pairwiseThreshold_ = threshold("pairwise_threshold", tr("A pair stays when the judge finds the positive answer shows the "
                                                            "trait more with at least this probability, in % (pairwise "
                                                            "judge mode)"));
    pairwiseThreshold_->setValue(70);
    negativeThreshold_ = threshold("negative_threshold", tr("A pair stays when its negative answer scores less than this "
                                                            "(absolute judge mode); auto: 100 minus 'Trait \u2265', "
                                                            "the reference method's rule"));
    // The minimum stands for "no value of its own".
    negativeThreshold_->setRange(-1, 100);
    negativeThreshold_->setSpecialValueText(tr("auto"));
    negativeThreshold_->setValue(-1);
    coherenceThreshold_ = threshold("coherence_threshold", tr("Both answers of a kept pair score at least this for coherence"));
    connect(judge_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { updateJudgeTarget(); });
    connect(judgeMode_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] { updateJudgeTarget(); });
    // The default models refuse to grade (README, "Judges"): the judge model setup fetched is
    // the choice that keeps pairs, so it is the default when it is there.
    if (QFileInfo::exists(QString::fromStdString(persona::judge_model_path())))
        judge_->setCurrentIndex(judge_->findData(int(JudgeChoice::SecondModel)));
    updateJudgeTarget();

    int column = 0;
    auto add = [&](int row, const QString& label, QWidget* widget) {
        grid->addWidget(new QLabel(label, this), row, column);
        grid->addWidget(widget, row, column + 1);
    };
    add(0, tr("Trait"), trait_);
    add(1, tr("Judge"), judge_);
    grid->addWidget(judgeTarget_, 2, 0, 1, 14);
    column = 2;
    add(0, tr("Questions"), questions_);
    add(1, tr("Pairs"), pairs_);
    column = 4;
    add(0, tr("Samples"), samples_);
    add(1, tr("Batch"), batch_);
    column = 6;
    add(0, tr("Max tokens"), maxTokens_);
    add(1, tr("Seed"), seed_);
    column = 8;
    add(0, tr("Temperature"), temperature_);
    add(1, tr("Trait \u2265"), traitThreshold_);
    column = 10;
    add(0, tr("Coherence \u2265"), coherenceThreshold_);
    add(1, tr("Judge mode"), judgeMode_);
    column = 12;
    add(0, tr("Wins \u2265"), pairwiseThreshold_);
    add(1, tr("Negative <"), negativeThreshold_);
    grid->setColumnStretch(1, 1);

    runButton_ = new QPushButton(tr("Run"), this);
    runButton_->setObjectName("run_extraction");
    cancelButton_ = new QPushButton(tr("Cancel"), this);
    cancelButton_->setObjectName("cancel_extraction");
    discardButton_ = new QPushButton(tr("Discard saved progress"), this);
    discardButton_->setObjectName("discard_checkpoint");
    discardButton_->setToolTip(tr("Delete the checkpoint of these settings, so the next run starts from nothing"));
    layout()->addWidget(box);

    message_ = new QLabel(tr("Load a model to extract a persona vector."), this);
    message_->setObjectName("extraction_message");
    message_->setWordWrap(true);
    // Room for three lines, the buttons at the top: a longer message must not move them under the mouse.
    message_->setMinimumHeight(3 * message_->fontMetrics().lineSpacing());
    message_->setAlignment(Qt::AlignLeft | Qt::AlignTop);
    auto* messageRow = new QHBoxLayout;
    messageRow->addWidget(message_, 1);
    for (QPushButton* button : {runButton_, cancelButton_, discardButton_}) messageRow->addWidget(button, 0, Qt::AlignTop);
    static_cast<QVBoxLayout*>(layout())->addLayout(messageRow);

    connect(runButton_, &QPushButton::clicked, this, &ExtractionPanel::run);
    connect(cancelButton_, &QPushButton::clicked, this, &ExtractionPanel::cancel);
    connect(discardButton_, &QPushButton::clicked, this, &ExtractionPanel::discardCheckpoint);
    // The checkpoint file follows the settings: whether there is one to resume may change.
    for (QSpinBox* s : {questions_, pairs_, samples_, maxTokens_, seed_, batch_})
        connect(s, &QSpinBox::valueChanged, this, &ExtractionPanel::refreshButtons);
    connect(temperature_, &QDoubleSpinBox::valueChanged, this, &ExtractionPanel::refreshButtons);
    connect(trait_, &QComboBox::currentIndexChanged, this, &ExtractionPanel::refreshButtons);
}

void ExtractionPanel::loadBuiltinTraits() {
    std::vector<persona::Trait> traits;
    for (const std::string& name : persona::builtin_trait_names()) traits.push_back(persona::load_builtin_trait(name));
    setTraits(traits);
}

void ExtractionPanel::setTraits(const std::vector<persona::Trait>& traits) {
    const QString previous = trait_->currentText();
    traits_ = traits;
    {
        const QSignalBlocker blocker(trait_);
        trait_->clear();
        for (const persona::Trait& trait : traits_) {
            trait_->addItem(QString::fromStdString(trait.name));
            trait_->setItemData(trait_->count() - 1, QString::fromStdString(trait.definition), Qt::ToolTipRole);
        }
        const int again = trait_->findText(previous);
        trait_->setCurrentIndex(again >= 0 ? again : 0);
    }
    refreshButtons();
}

bool ExtractionPanel::selectTrait(const QString& name) {
    const int index = trait_->findText(name);
    if (index < 0) return false;
    trait_->setCurrentIndex(index);
    return true;
}

const persona::Trait* ExtractionPanel::currentTrait() const {
    const int index = trait_->currentIndex();
    if (index < 0 || index >= static_cast<int>(traits_.size())) return nullptr;
    return &traits_[static_cast<std::size_t>(index)];
}

void ExtractionPanel::setModel(const persona::ModelFacts& facts) {
    facts_ = facts;
    hasModel_ = true;
    message_->setText(tr("Choose a trait and settings, then Run. Finished samples are saved as they come, so a "
                         "cancelled run resumes where it stopped."));
    refreshButtons();
}

// The judge's file or endpoint is asked for only when the choice needs one.
void ExtractionPanel::updateJudgeTarget() {
    const auto choice = static_cast<JudgeChoice>(judge_->currentData().toInt());
    judgeTarget_->setVisible(choice == JudgeChoice::SecondModel || choice == JudgeChoice::Endpoint);
    // Without a judge every pair is kept: thresholds would filter nothing.
    const bool pairwise = judgeMode_->currentText() == QLatin1String(persona::judge_mode_name(persona::JudgeMode::Pairwise));
    traitThreshold_->setEnabled(choice != JudgeChoice::None && !pairwise);
    negativeThreshold_->setEnabled(choice != JudgeChoice::None && !pairwise);
    pairwiseThreshold_->setEnabled(choice != JudgeChoice::None && pairwise);
    coherenceThreshold_->setEnabled(choice != JudgeChoice::None);
    judgeMode_->setEnabled(choice != JudgeChoice::None);
    const QString judgeModel = QString::fromStdString(persona::judge_model_path());
    if (choice == JudgeChoice::SecondModel && judgeTarget_->text().trimmed().isEmpty() && QFileInfo::exists(judgeModel))
        judgeTarget_->setText(judgeModel);
    judgeTarget_->setPlaceholderText(choice == JudgeChoice::SecondModel
                                         ? tr("Judge model: a GGUF file or a Hugging Face folder")
                                         : tr("Endpoint and model, e.g. https://api.openai.com/v1 gpt-4o-mini"));
}

persona::ExtractionSettings ExtractionPanel::settings() const {
    persona::ExtractionSettings s;
    s.question_limit = questions_->value();
    s.pair_limit = pairs_->value();
    s.samples_per_question = samples_->value();
    s.max_new_tokens = maxTokens_->value();
    s.temperature = static_cast<float>(temperature_->value());
    s.seed = static_cast<std::uint64_t>(seed_->value());
    s.batch_size = batch_->value();
    const auto choice = static_cast<JudgeChoice>(judge_->currentData().toInt());
    const QString target = judgeTarget_->text().trimmed();
    s.judge = choice == JudgeChoice::None       ? persona::JudgeKind::None
              : choice == JudgeChoice::Endpoint ? persona::JudgeKind::Http
                                                : persona::JudgeKind::Local;
    if (choice == JudgeChoice::SecondModel) s.judge.model_path = target.toStdString();
    if (choice == JudgeChoice::Endpoint) {
        // "BASE_URL MODEL", as a person would type it.
        const QStringList parts = target.split(QRegularExpression("\\s+"), Qt::SkipEmptyParts);
        s.judge.endpoint.base_url = parts.value(0).toStdString();
        s.judge.endpoint.model = parts.value(1).toStdString();
    }
    s.judge_mode = persona::judge_mode_from_name(judgeMode_->currentText().toStdString()).value_or(persona::JudgeMode::Absolute);
    s.pairwise_threshold = pairwiseThreshold_->value();
    s.trait_threshold = traitThreshold_->value();
    if (negativeThreshold_->value() >= 0) s.negative_threshold = negativeThreshold_->value();
    s.coherence_threshold = coherenceThreshold_->value();
    if (const persona::Trait* trait = currentTrait(); trait && hasModel_)
        s.checkpoint_path = persona::extraction_checkpoint_file(checkpointDirectory_.toStdString(), *trait, s, facts_);
    return s;
}

void ExtractionPanel::setSettings(const persona::ExtractionSettings& s) {
    questions_->setValue(s.question_limit);
    pairs_->setValue(s.pair_limit);
    samples_->setValue(s.samples_per_question);
    maxTokens_->setValue(s.max_new_tokens);
    temperature_->setValue(static_cast<double>(s.temperature));
    seed_->setValue(static_cast<int>(s.seed));
    batch_->setValue(s.batch_size);
    JudgeChoice choice = JudgeChoice::StudiedModel;
    if (s.judge.kind == persona::JudgeKind::None) choice = JudgeChoice::None;
    else if (s.judge.kind == persona::JudgeKind::Http) choice = JudgeChoice::Endpoint;
    else if (!s.judge.model_path.empty()) choice = JudgeChoice::SecondModel;
    judge_->setCurrentIndex(judge_->findData(int(choice)));
    if (choice == JudgeChoice::SecondModel) judgeTarget_->setText(QString::fromStdString(s.judge.model_path));
    if (choice == JudgeChoice::Endpoint)
        judgeTarget_->setText(QString::fromStdString(s.judge.endpoint.base_url + " " + s.judge.endpoint.model));
    updateJudgeTarget();
    judgeMode_->setCurrentText(QString::fromStdString(persona::judge_mode_name(s.judge_mode)));
    traitThreshold_->setValue(s.trait_threshold);
    negativeThreshold_->setValue(s.negative_threshold.value_or(-1));
    pairwiseThreshold_->setValue(s.pairwise_threshold);
    coherenceThreshold_->setValue(s.coherence_threshold);
}
