#include "panels/traits_panel.h"

#include <QAction>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QKeyEvent>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMenu>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QRegularExpression>
#include <QScrollArea>
#include <QSplitter>
#include <QTableWidget>
#include <QToolButton>
#include <QUndoCommand>
#include <QUndoStack>
#include <QVBoxLayout>

#include <exception>
#include <map>

using persona::Trait;
using persona::TraitProblem;
using persona::TraitProblemSeverity;

// One step of the undo history: the whole set before and after. Traits are a few kilobytes of
// text, so a copy per step is cheaper to get right than a command per kind of edit.
class TraitsEditCommand : public QUndoCommand {
public:
    TraitsEditCommand(TraitsPanel* panel, const QString& text, std::vector<Trait> before, int currentBefore,
                      std::vector<Trait> after, int currentAfter, QString mergeKey)
        : QUndoCommand(text), panel_(panel), before_(std::move(before)), after_(std::move(after)),
          currentBefore_(currentBefore), currentAfter_(currentAfter), mergeKey_(std::move(mergeKey)) {}

    void undo() override { panel_->applyState(before_, currentBefore_); }
    void redo() override { panel_->applyState(after_, currentAfter_); }
    int id() const override { return mergeKey_.isEmpty() ? -1 : 1; }
    bool mergeWith(const QUndoCommand* other) override {
        const auto* next = static_cast<const TraitsEditCommand*>(other);
        if (next->mergeKey_ != mergeKey_) return false;
        after_ = next->after_;
        currentAfter_ = next->currentAfter_;
        return true;
    }

private:
    TraitsPanel* panel_;
    std::vector<Trait> before_, after_;
    int currentBefore_, currentAfter_;
    QString mergeKey_;
};

namespace {

QString qs(const std::string& text) { return QString::fromStdString(text); }
std::string ss(const QString& text) { return text.toStdString(); }

QPlainTextEdit* makeTextBox(const QString& objectName, int height, QWidget* parent) {
    auto* box = new QPlainTextEdit(parent);
    box->setObjectName(objectName);
    box->setFixedHeight(height);
    // Its own history would fight the panel's: Ctrl+Z is routed to the panel's stack instead.
    box->setUndoRedoEnabled(false);
    return box;
}

QLabel* makeProblemLabel(const QString& objectName, QWidget* parent) {
    auto* label = new QLabel(parent);
    label->setObjectName(objectName);
    label->setWordWrap(true);
    label->setTextFormat(Qt::RichText);
    label->setVisible(false);
    return label;
}

void setCellText(QTableWidget* table, int row, int column, const QString& text) {
    QTableWidgetItem* item = table->item(row, column);
    if (!item) {
        table->setItem(row, column, new QTableWidgetItem(text));
        return;
    }
    if (item->text() != text) item->setText(text);
}

// "instructions[2].negative" -> (2, "negative"); "instructions" -> (-1, "").
std::pair<int, QString> fieldIndex(const QString& field) {
    static const QRegularExpression indexed(R"(\[(\d+)\](?:\.(\w+))?$)");
    const auto match = indexed.match(field);
    if (!match.hasMatch()) return {-1, {}};
    return {match.captured(1).toInt(), match.captured(2)};
}

QString problemLine(const QString& where, const QString& message, TraitProblemSeverity severity) {
    const bool error = severity == TraitProblemSeverity::Error;
    return QStringLiteral("<span style=\"color:%1\">%2 %3%4</span>")
        .arg(error ? "#b3261e" : "#8a6100", error ? QObject::tr("✖ Error:") : QObject::tr("⚠ Warning:"),
             where.isEmpty() ? QString() : where.toHtmlEscaped() + " ", message.toHtmlEscaped());
}

void showLines(QLabel* label, const QStringList& lines) {
    label->setText(lines.join("<br>"));
    label->setVisible(!lines.isEmpty());
}

const QColor kErrorCell(255, 220, 216);
const QColor kWarningCell(255, 240, 200);

}  // namespace

TraitsPanel::TraitsPanel(QWidget* parent) : QWidget(parent), undoStack_(new QUndoStack(this)) {
    auto* layout = new QHBoxLayout(this);
    auto* splitter = new QSplitter(this);
    splitter->addWidget(buildList());
    splitter->addWidget(buildForm());
    splitter->setStretchFactor(1, 1);
    splitter->setSizes({170, 770});
    layout->addWidget(splitter);

    // Shortcuts for when the focus is on the list or a table; the text boxes route the same keys
    // through eventFilter(), since they would otherwise take them for their own undo.
    auto* undo = undoStack_->createUndoAction(this, tr("Undo"));
    undo->setShortcut(QKeySequence::Undo);
    undo->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    auto* redo = undoStack_->createRedoAction(this, tr("Redo"));
    redo->setShortcuts({QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_Z), QKeySequence(Qt::CTRL | Qt::Key_Y)});
    redo->setShortcutContext(Qt::WidgetWithChildrenShortcut);
    addAction(undo);
    addAction(redo);
    undo->setIcon(QIcon::fromTheme("edit-undo", style()->standardIcon(QStyle::SP_ArrowBack)));
    redo->setIcon(QIcon::fromTheme("edit-redo", style()->standardIcon(QStyle::SP_ArrowForward)));
    findChild<QToolButton*>("undo_button")->setDefaultAction(undo);
    findChild<QToolButton*>("redo_button")->setDefaultAction(redo);

    std::vector<Trait> builtins;
    try {
        for (const std::string& name : persona::builtin_trait_names()) builtins.push_back(persona::load_builtin_trait(name));
    } catch (const std::exception& e) {
        showStatus(tr("Could not read the built-in traits: %1").arg(e.what()), true);
    }
    setTraits(builtins);
}

QWidget* TraitsPanel::buildList() {
    auto* column = new QWidget(this);
    auto* layout = new QVBoxLayout(column);
    layout->setContentsMargins(0, 0, 0, 0);
    list_ = new QListWidget(column);
    list_->setObjectName("trait_list");
    layout->addWidget(list_, 1);

    auto* newButton = new QToolButton(column);
    newButton->setObjectName("new_trait");
    newButton->setText(tr("New"));
    newButton->setToolTip(tr("A blank trait, or a copy of a built-in one to start from"));
    newButton->setPopupMode(QToolButton::InstantPopup);
    auto* newMenu = new QMenu(newButton);
    newMenu->addAction(tr("Blank trait"), this, [this] { newTrait(); });
    newMenu->addSeparator();
    for (const std::string& name : persona::builtin_trait_names())
        newMenu->addAction(tr("From template: %1").arg(qs(name)), this, [this, name] { newTrait(qs(name)); });
    newButton->setMenu(newMenu);

    deleteTrait_ = new QPushButton(tr("Delete"), column);
    deleteTrait_->setObjectName("delete_trait");

    auto* importButton = new QToolButton(column);
    importButton->setObjectName("import_trait");
    importButton->setText(tr("Import"));
    importButton->setPopupMode(QToolButton::InstantPopup);
    auto* importMenu = new QMenu(importButton);
    importMenu->addAction(tr("Trait file (.json)…"), this, &TraitsPanel::chooseImportFile);
    importMenu->addAction(tr("Paper's format (extraction + evaluation files)…"), this, &TraitsPanel::chooseImportPaper);
    importButton->setMenu(importMenu);

    exportTrait_ = new QPushButton(tr("Export…"), column);
    exportTrait_->setObjectName("export_trait");

    auto* undoButton = new QToolButton(column);
    undoButton->setObjectName("undo_button");
    auto* redoButton = new QToolButton(column);
    redoButton->setObjectName("redo_button");

    auto* buttons = new QGridLayout;
    buttons->addWidget(newButton, 0, 0);
    buttons->addWidget(deleteTrait_, 0, 1);
    buttons->addWidget(importButton, 1, 0);
    buttons->addWidget(exportTrait_, 1, 1);
    auto* history = new QHBoxLayout;
    history->addWidget(undoButton);
    history->addWidget(redoButton);
    history->addStretch(1);
    buttons->addLayout(history, 2, 0, 1, 2);
    for (QToolButton* tool : {newButton, importButton}) tool->setSizePolicy(QSizePolicy::Preferred, QSizePolicy::Fixed);
    layout->addLayout(buttons);

    status_ = new QLabel(column);
    status_->setObjectName("traits_status");
    status_->setWordWrap(true);
    status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(status_);

    connect(list_, &QListWidget::currentRowChanged, this, [this](int row) {
        if (!refreshing_) setCurrentIndex(row);
    });
    connect(deleteTrait_, &QPushButton::clicked, this, &TraitsPanel::deleteCurrentTrait);
    connect(exportTrait_, &QPushButton::clicked, this, &TraitsPanel::chooseExportFile);
    return column;
}

QTableWidget* TraitsPanel::makeQuestionTable(const QString& objectName) {
    auto* table = new QTableWidget(0, 1, this);
    table->setObjectName(objectName);
    table->setHorizontalHeaderLabels({tr("Question")});
    table->horizontalHeader()->setStretchLastSection(true);
    table->horizontalHeader()->setVisible(false);
    table->setSelectionBehavior(QAbstractItemView::SelectRows);
    table->setWordWrap(false);
    table->verticalHeader()->setDefaultSectionSize(22);
    table->setMinimumHeight(120);
    return table;
}

QWidget* TraitsPanel::buildForm() {
    auto* scroll = new QScrollArea(this);
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    form_ = new QWidget(scroll);
    auto* layout = new QVBoxLayout(form_);

    auto* identity = new QFormLayout;
    name_ = new QLineEdit(form_);
    name_->setObjectName("trait_name");
    name_->setPlaceholderText(tr("lowercase_name, e.g. evil"));
    nameProblems_ = makeProblemLabel("name_problems", form_);
    auto* nameColumn = new QVBoxLayout;
    nameColumn->addWidget(name_);
    nameColumn->addWidget(nameProblems_);
    identity->addRow(tr("Name:"), nameColumn);
    definition_ = makeTextBox("trait_definition", 66, form_);
    definition_->setPlaceholderText(tr("One paragraph in plain language: what the trait is."));
    definitionProblems_ = makeProblemLabel("definition_problems", form_);
    auto* definitionColumn = new QVBoxLayout;
    definitionColumn->addWidget(definition_);
    definitionColumn->addWidget(definitionProblems_);
    identity->addRow(tr("Definition:"), definitionColumn);
    layout->addLayout(identity);

    auto* pairsBox = new QGroupBox(tr("Instruction pairs (system prompts that show / do not show the trait)"), form_);
    auto* pairsLayout = new QGridLayout(pairsBox);
    pairs_ = new QTableWidget(0, 2, pairsBox);
    pairs_->setObjectName("instruction_pairs");
    pairs_->setHorizontalHeaderLabels({tr("Positive"), tr("Negative")});
    pairs_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    pairs_->verticalHeader()->setDefaultSectionSize(22);
    pairs_->setWordWrap(false);
    // Five rows, docs/method.md's number of pairs, without scrolling.
    pairs_->setFixedHeight(pairs_->horizontalHeader()->sizeHint().height() + 5 * 22 + 2 * pairs_->frameWidth() + 2);
    pairsLayout->addWidget(pairs_, 0, 0, 5, 1);
    const auto pairButton = [&](const QString& text, const QString& objectName, int row, auto slot) {
        auto* button = new QPushButton(text, pairsBox);
        button->setObjectName(objectName);
        pairsLayout->addWidget(button, row, 1);
        connect(button, &QPushButton::clicked, this, slot);
    };
    pairButton(tr("Add"), "add_pair", 0, [this] { addInstructionPair(); });
    pairButton(tr("Remove"), "remove_pair", 1, [this] { removeInstructionPair(pairs_->currentRow()); });
    pairButton(tr("Up"), "pair_up", 2, [this] { moveInstructionPair(pairs_->currentRow(), -1); });
    pairButton(tr("Down"), "pair_down", 3, [this] { moveInstructionPair(pairs_->currentRow(), +1); });
    pairsProblems_ = makeProblemLabel("instructions_problems", pairsBox);
    pairsLayout->addWidget(pairsProblems_, 5, 0, 1, 2);
    layout->addWidget(pairsBox);

    auto* rubricsRow = new QHBoxLayout;
    const auto rubricBox = [&](const QString& title, QPlainTextEdit* text, QLabel* problems) {
        auto* box = new QGroupBox(title, form_);
        auto* boxLayout = new QVBoxLayout(box);
        boxLayout->addWidget(text);
        boxLayout->addWidget(problems);
        boxLayout->addStretch(1);  // the box beside may be taller with its problems
        rubricsRow->addWidget(box);
    };
    judgeRubric_ = makeTextBox("judge_rubric", 90, form_);
    coherenceRubric_ = makeTextBox("coherence_rubric", 90, form_);
    judgeRubric_->setPlaceholderText(tr("Asks for a 0-100 score of the trait in {answer} to {question}"));
    coherenceRubric_->setPlaceholderText(tr("Asks for a 0-100 score of how coherent {answer} to {question} is"));
    judgeProblems_ = makeProblemLabel("judge_rubric_problems", form_);
    coherenceProblems_ = makeProblemLabel("coherence_rubric_problems", form_);
    rubricBox(tr("Judge rubric"), judgeRubric_, judgeProblems_);
    rubricBox(tr("Coherence rubric"), coherenceRubric_, coherenceProblems_);
    layout->addLayout(rubricsRow);
    auto* questionsRow = new QHBoxLayout;
    const auto questionBox = [&](const QString& title, QuestionList list, QTableWidget* table, QLabel* problems) {
        auto* box = new QGroupBox(title, form_);
        auto* boxLayout = new QVBoxLayout(box);
        boxLayout->addWidget(table);
        auto* buttons = new QHBoxLayout;
        const QString prefix = list == QuestionList::Extraction ? "extraction" : "evaluation";
        auto* add = new QPushButton(tr("Add"), box);
        add->setObjectName("add_" + prefix + "_question");
        auto* remove = new QPushButton(tr("Remove"), box);
        remove->setObjectName("remove_" + prefix + "_question");
        buttons->addWidget(add);
        buttons->addWidget(remove);
        buttons->addStretch(1);
        boxLayout->addLayout(buttons);
        boxLayout->addWidget(problems);
        connect(add, &QPushButton::clicked, this, [this, list] { addQuestion(list); });
        connect(remove, &QPushButton::clicked, this, [this, list, table] { removeQuestion(list, table->currentRow()); });
        questionsRow->addWidget(box);
    };
    extraction_ = makeQuestionTable("extraction_questions");
    evaluation_ = makeQuestionTable("evaluation_questions");
    extractionProblems_ = makeProblemLabel("extraction_questions_problems", form_);
    evaluationProblems_ = makeProblemLabel("evaluation_questions_problems", form_);
    questionBox(tr("Extraction questions"), QuestionList::Extraction, extraction_, extractionProblems_);
    questionBox(tr("Evaluation questions (held out)"), QuestionList::Evaluation, evaluation_, evaluationProblems_);
    layout->addLayout(questionsRow);

    layout->addStretch(1);
    scroll->setWidget(form_);

    for (QWidget* editor : {static_cast<QWidget*>(name_), static_cast<QWidget*>(definition_),
                            static_cast<QWidget*>(judgeRubric_), static_cast<QWidget*>(coherenceRubric_)})
        editor->installEventFilter(this);

    connect(name_, &QLineEdit::textEdited, this, [this](const QString& text) {
        editCurrent(tr("Edit name"), "name", [&](Trait& t) { t.name = ss(text); });
    });
    const auto connectText = [this](QPlainTextEdit* box, const QString& what, const QString& key,
                                    std::string Trait::*field) {
        connect(box, &QPlainTextEdit::textChanged, this, [this, box, what, key, field] {
            if (refreshing_) return;
            editCurrent(tr("Edit %1").arg(what), key, [&](Trait& t) { t.*field = ss(box->toPlainText()); });
        });
    };
    connectText(definition_, tr("definition"), "definition", &Trait::definition);
    connectText(judgeRubric_, tr("judge rubric"), "judge_rubric", &Trait::judge_rubric);
    connectText(coherenceRubric_, tr("coherence rubric"), "coherence_rubric", &Trait::coherence_rubric);
    connect(pairs_, &QTableWidget::itemChanged, this, [this](QTableWidgetItem* item) {
        if (refreshing_) return;
        const int row = item->row(), column = item->column();
        editCurrent(tr("Edit instruction pair %1").arg(row + 1), QStringLiteral("pair %1.%2").arg(row).arg(column),
                    [&](Trait& t) {
                        if (row >= static_cast<int>(t.instructions.size())) return;
                        auto& pair = t.instructions[static_cast<std::size_t>(row)];
                        (column == 0 ? pair.positive : pair.negative) = ss(item->text());
                    });
    });
    for (const QuestionList list : {QuestionList::Extraction, QuestionList::Evaluation}) {
        connect(questionTable(list), &QTableWidget::itemChanged, this, [this, list](QTableWidgetItem* item) {
            if (refreshing_) return;
            const int row = item->row();
            editCurrent(tr("Edit question %1").arg(row + 1),
                        QStringLiteral("question %1.%2").arg(static_cast<int>(list)).arg(row), [&](Trait& t) {
                            auto& all = questions(t, list);
                            if (row < static_cast<int>(all.size())) all[static_cast<std::size_t>(row)] = ss(item->text());
                        });
        });
    }
    return scroll;
}

bool TraitsPanel::eventFilter(QObject* watched, QEvent* event) {
    if (event->type() == QEvent::ShortcutOverride || event->type() == QEvent::KeyPress) {
        auto* key = static_cast<QKeyEvent*>(event);
        const bool undo = key->matches(QKeySequence::Undo);
        const bool redo = key->matches(QKeySequence::Redo) ||
                          key->keyCombination() == QKeyCombination(Qt::CTRL | Qt::SHIFT, Qt::Key_Z);
        if (undo || redo) {
            event->accept();
            if (event->type() == QEvent::KeyPress) (undo ? undoStack_->undo() : undoStack_->redo());
            return true;
        }
    }
    return QWidget::eventFilter(watched, event);
}

void TraitsPanel::setTraits(const std::vector<Trait>& traits) {
    undoStack_->clear();
    applyState(traits, traits.empty() ? -1 : 0);
}

void TraitsPanel::setCurrentIndex(int index) {
    if (index < -1 || index >= static_cast<int>(traits_.size()) || index == current_) return;
    current_ = index;
    refresh();
}

void TraitsPanel::commit(const QString& text, std::vector<Trait> after, int currentAfter, const QString& mergeKey) {
    if (after == traits_ && currentAfter == current_) return;
    // The key names the trait too: typing in the same field of another trait is another step.
    const QString key = mergeKey.isEmpty() ? QString() : QStringLiteral("%1/%2").arg(current_).arg(mergeKey);
    undoStack_->push(new TraitsEditCommand(this, text, traits_, current_, std::move(after), currentAfter, key));
}

void TraitsPanel::editCurrent(const QString& text, const QString& mergeKey, const std::function<void(Trait&)>& change) {
    if (refreshing_ || current_ < 0) return;
    std::vector<Trait> after = traits_;
    change(after[static_cast<std::size_t>(current_)]);
    commit(text, std::move(after), current_, mergeKey);
}

void TraitsPanel::applyState(const std::vector<Trait>& traits, int current) {
    traits_ = traits;
    current_ = current;
    refresh();
    emit traitsChanged();
}

std::vector<std::string>& TraitsPanel::questions(Trait& trait, QuestionList list) const {
    return list == QuestionList::Extraction ? trait.extraction_questions : trait.evaluation_questions;
}

QTableWidget* TraitsPanel::questionTable(QuestionList list) const {
    return list == QuestionList::Extraction ? extraction_ : evaluation_;
}

std::string TraitsPanel::uniqueName(const std::string& base, int ignoreIndex) const {
    const auto taken = [&](const std::string& name) {
        for (std::size_t i = 0; i < traits_.size(); ++i)
            if (static_cast<int>(i) != ignoreIndex && traits_[i].name == name) return true;
        return false;
    };
    if (!taken(base)) return base;
    for (int n = 2;; ++n)
        if (const std::string candidate = base + "_" + std::to_string(n); !taken(candidate)) return candidate;
}

void TraitsPanel::addTrait(Trait trait, const QString& undoText) {
    std::vector<Trait> after = traits_;
    after.push_back(std::move(trait));
    const int added = static_cast<int>(after.size()) - 1;
    commit(undoText, std::move(after), added);
}

void TraitsPanel::newTrait(const QString& builtinName) {
    Trait trait;
    if (builtinName.isEmpty()) {
        trait.name = uniqueName("new_trait");
        trait.coherence_rubric = persona::default_coherence_rubric();
        addTrait(std::move(trait), tr("New blank trait"));
        showStatus(tr("A blank trait: fill in the fields; the problems under them say what is missing."));
        return;
    }
    try {
        trait = persona::load_builtin_trait(ss(builtinName));
    } catch (const std::exception& e) {
        showStatus(e.what(), true);
        return;
    }
    const std::string original = trait.name;
    trait.name = uniqueName(original);
    addTrait(std::move(trait), tr("New trait from %1").arg(builtinName));
    showStatus(tr("New trait from the built-in template '%1'.").arg(builtinName));
}

void TraitsPanel::setCurrentTrait(const Trait& trait) {
    editCurrent(tr("Edit trait %1").arg(qs(trait.name)), {}, [&](Trait& t) { t = trait; });
}

void TraitsPanel::deleteCurrentTrait() {
    if (current_ < 0) return;
    std::vector<Trait> after = traits_;
    const QString name = qs(after[static_cast<std::size_t>(current_)].name);
    after.erase(after.begin() + current_);
    const int next = std::min(current_, static_cast<int>(after.size()) - 1);
    commit(tr("Delete trait %1").arg(name), std::move(after), next);
    showStatus(tr("Deleted '%1' (Ctrl+Z brings it back).").arg(name));
}

bool TraitsPanel::importTraitFile(const QString& path) {
    Trait trait;
    try {
        trait = persona::read_trait_file(ss(path));
    } catch (const std::exception& e) {
        showStatus(tr("Could not import: %1").arg(e.what()), true);
        return false;
    }
    const std::string original = trait.name;
    trait.name = uniqueName(original);
    const QString renamed = trait.name == original ? QString()
                                                   : tr(" as '%1', since '%2' is taken").arg(qs(trait.name), qs(original));
    addTrait(std::move(trait), tr("Import %1").arg(QFileInfo(path).fileName()));
    showStatus(tr("Imported %1%2.").arg(path, renamed));
    return true;
}

bool TraitsPanel::importPaperTrait(const QString& name, const QString& extractPath, const QString& evalPath) {
    Trait trait;
    try {
        trait = persona::import_paper_trait(ss(name), ss(extractPath), ss(evalPath));
    } catch (const std::exception& e) {
        showStatus(tr("Could not import: %1").arg(e.what()), true);
        return false;
    }
    trait.name = uniqueName(trait.name);
    addTrait(std::move(trait), tr("Import %1").arg(name));
    showStatus(tr("Imported '%1' from the paper's files %2 and %3.").arg(name, extractPath, evalPath));
    return true;
}

bool TraitsPanel::exportCurrentTrait(const QString& path) {
    if (current_ < 0) {
        showStatus(tr("There is no trait to export."), true);
        return false;
    }
    const Trait& trait = traits_[static_cast<std::size_t>(current_)];
    try {
        persona::write_trait_file(ss(path), trait);
    } catch (const std::exception& e) {
        showStatus(tr("Could not export: %1").arg(e.what()), true);
        return false;
    }
    const bool drafty = persona::has_errors(persona::validate(trait));
    showStatus(drafty ? tr("Exported '%1' to %2, with its errors (a draft).").arg(qs(trait.name), path)
                      : tr("Exported '%1' to %2.").arg(qs(trait.name), path));
    return true;
}

void TraitsPanel::addInstructionPair() {
    if (current_ < 0) return;
    const int row = static_cast<int>(traits_[static_cast<std::size_t>(current_)].instructions.size());
    editCurrent(tr("Add instruction pair"), {}, [](Trait& t) { t.instructions.push_back({}); });
    pairs_->setCurrentCell(row, 0);
    pairs_->editItem(pairs_->item(row, 0));
}

void TraitsPanel::removeInstructionPair(int row) {
    if (current_ < 0 || row < 0 || row >= static_cast<int>(traits_[static_cast<std::size_t>(current_)].instructions.size()))
        return;
    editCurrent(tr("Remove instruction pair %1").arg(row + 1), {},
                [row](Trait& t) { t.instructions.erase(t.instructions.begin() + row); });
}

void TraitsPanel::moveInstructionPair(int row, int delta) {
    if (current_ < 0) return;
    const int count = static_cast<int>(traits_[static_cast<std::size_t>(current_)].instructions.size());
    const int target = row + delta;
    if (row < 0 || row >= count || target < 0 || target >= count) return;
    editCurrent(tr("Move instruction pair %1").arg(row + 1), {}, [row, target](Trait& t) {
        std::swap(t.instructions[static_cast<std::size_t>(row)], t.instructions[static_cast<std::size_t>(target)]);
    });
    pairs_->setCurrentCell(target, std::max(0, pairs_->currentColumn()));
}

void TraitsPanel::addQuestion(QuestionList list) {
    if (current_ < 0) return;
    const int row = static_cast<int>(questions(traits_[static_cast<std::size_t>(current_)], list).size());
    editCurrent(tr("Add question"), {}, [this, list](Trait& t) { questions(t, list).emplace_back(); });
    QTableWidget* table = questionTable(list);
    table->setCurrentCell(row, 0);
    table->editItem(table->item(row, 0));
}

void TraitsPanel::removeQuestion(QuestionList list, int row) {
    if (current_ < 0 || row < 0 || row >= static_cast<int>(questions(traits_[static_cast<std::size_t>(current_)], list).size()))
        return;
    editCurrent(tr("Remove question %1").arg(row + 1), {}, [this, list, row](Trait& t) {
        auto& all = questions(t, list);
        all.erase(all.begin() + row);
    });
}

QString TraitsPanel::statusMessage() const { return status_->text(); }

void TraitsPanel::showStatus(const QString& message, bool error) {
    status_->setStyleSheet(error ? "color: #b3261e;" : QString());
    status_->setText(message);
}

void TraitsPanel::refresh() {
    refreshing_ = true;
    refreshList();
    refreshForm();
    showProblems();
    refreshing_ = false;
}

void TraitsPanel::refreshList() {
    while (list_->count() > static_cast<int>(traits_.size())) delete list_->takeItem(list_->count() - 1);
    for (std::size_t i = 0; i < traits_.size(); ++i) {
        QListWidgetItem* item = list_->item(static_cast<int>(i));
        if (!item) item = new QListWidgetItem(list_);
        const Trait& trait = traits_[i];
        const auto problems = persona::validate(trait);
        const QString name = trait.name.empty() ? tr("(unnamed)") : qs(trait.name);
        if (item->text() != name) item->setText(name);
        const bool errors = persona::has_errors(problems);
        item->setIcon(style()->standardIcon(errors              ? QStyle::SP_MessageBoxCritical
                                            : problems.empty() ? QStyle::SP_DialogApplyButton
                                                               : QStyle::SP_MessageBoxWarning));
        item->setToolTip(errors ? tr("Has errors: see the form") : problems.empty() ? tr("Ready to use")
                                                                                     : tr("Usable, with warnings"));
    }
    list_->setCurrentRow(current_);
}

void TraitsPanel::refreshForm() {
    const bool any = current_ >= 0;
    form_->setEnabled(any);
    deleteTrait_->setEnabled(any);
    exportTrait_->setEnabled(any);
    static const Trait kNone;
    const Trait& trait = any ? traits_[static_cast<std::size_t>(current_)] : kNone;

    // Only what differs is set, so the box being typed in keeps its cursor.
    if (name_->text() != qs(trait.name)) name_->setText(qs(trait.name));
    const auto syncText = [](QPlainTextEdit* box, const std::string& text) {
        if (box->toPlainText() != qs(text)) box->setPlainText(qs(text));
    };
    syncText(definition_, trait.definition);
    syncText(judgeRubric_, trait.judge_rubric);
    syncText(coherenceRubric_, trait.coherence_rubric);

    pairs_->setRowCount(static_cast<int>(trait.instructions.size()));
    for (std::size_t i = 0; i < trait.instructions.size(); ++i) {
        setCellText(pairs_, static_cast<int>(i), 0, qs(trait.instructions[i].positive));
        setCellText(pairs_, static_cast<int>(i), 1, qs(trait.instructions[i].negative));
    }
    for (const QuestionList list : {QuestionList::Extraction, QuestionList::Evaluation}) {
        QTableWidget* table = questionTable(list);
        const auto& all = list == QuestionList::Extraction ? trait.extraction_questions : trait.evaluation_questions;
        table->setRowCount(static_cast<int>(all.size()));
        for (std::size_t i = 0; i < all.size(); ++i) setCellText(table, static_cast<int>(i), 0, qs(all[i]));
    }
}

void TraitsPanel::showProblems() {
    QStringList name, definition, pairs, extraction, evaluation, judge, coherence;
    // Cell backgrounds and tooltips back to plain before this round's problems mark them.
    for (QTableWidget* table : {pairs_, extraction_, evaluation_})
        for (int r = 0; r < table->rowCount(); ++r)
            for (int c = 0; c < table->columnCount(); ++c)
                if (QTableWidgetItem* item = table->item(r, c)) {
                    item->setBackground(QBrush());
                    item->setToolTip(item->text());
                }

    if (current_ >= 0) {
        const Trait& trait = traits_[static_cast<std::size_t>(current_)];
        const auto mark = [](QTableWidget* table, int row, int column, const QString& message, TraitProblemSeverity severity) {
            QTableWidgetItem* item = table->item(row, column);
            if (!item) return;
            // An error outranks a warning already on the cell.
            if (severity == TraitProblemSeverity::Error || item->background().style() == Qt::NoBrush)
                item->setBackground(severity == TraitProblemSeverity::Error ? kErrorCell : kWarningCell);
            item->setToolTip(message + "\n\n" + item->text());
        };
        for (const TraitProblem& problem : persona::validate(trait)) {
            const QString field = qs(problem.field), message = qs(problem.message);
            const auto [index, part] = fieldIndex(field);
            if (field == "name") {
                name << problemLine({}, message, problem.severity);
            } else if (field == "definition") {
                definition << problemLine({}, message, problem.severity);
            } else if (field.startsWith("instructions")) {
                if (index < 0) {
                    pairs << problemLine({}, message, problem.severity);
                } else {
                    pairs << problemLine(tr("Pair %1, %2:").arg(index + 1).arg(part), message, problem.severity);
                    mark(pairs_, index, part == "negative" ? 1 : 0, message, problem.severity);
                }
            } else if (field.startsWith("extraction_questions") || field.startsWith("evaluation_questions")) {
                const bool isExtraction = field.startsWith("extraction_questions");
                QStringList& lines = isExtraction ? extraction : evaluation;
                if (index < 0) {
                    lines << problemLine({}, message, problem.severity);
                } else {
                    lines << problemLine(tr("Question %1:").arg(index + 1), message, problem.severity);
                    mark(isExtraction ? extraction_ : evaluation_, index, 0, message, problem.severity);
                }
            } else if (field == "judge_rubric") {
                judge << problemLine({}, message, problem.severity);
            } else if (field == "coherence_rubric") {
                coherence << problemLine({}, message, problem.severity);
            } else {
                definition << problemLine(field + ":", message, problem.severity);
            }
        }
        // Not a property of one trait, so validate() cannot see it: names file and select traits.
        if (!trait.name.empty() && uniqueName(trait.name, current_) != trait.name)
            name << problemLine({}, tr("is also the name of another trait in this set"), TraitProblemSeverity::Error);
    }
    showLines(nameProblems_, name);
    showLines(definitionProblems_, definition);
    showLines(pairsProblems_, pairs);
    showLines(extractionProblems_, extraction);
    showLines(evaluationProblems_, evaluation);
    showLines(judgeProblems_, judge);
    showLines(coherenceProblems_, coherence);
}

void TraitsPanel::chooseImportFile() {
    const QString path = QFileDialog::getOpenFileName(this, tr("Import Trait"), QString(), tr("Trait files (*.json);;All files (*)"));
    if (!path.isEmpty()) importTraitFile(path);
}

void TraitsPanel::chooseImportPaper() {
    const QString extract = QFileDialog::getOpenFileName(this, tr("The Paper's Extraction File (trait_data_extract/NAME.json)"),
                                                         QString(), tr("JSON files (*.json);;All files (*)"));
    if (extract.isEmpty()) return;
    const QString eval = QFileDialog::getOpenFileName(this, tr("The Paper's Evaluation File (trait_data_eval/NAME.json)"),
                                                      QFileInfo(extract).absolutePath(), tr("JSON files (*.json);;All files (*)"));
    if (eval.isEmpty()) return;
    // The paper names both files after the trait.
    importPaperTrait(QFileInfo(extract).completeBaseName().toLower(), extract, eval);
}

void TraitsPanel::chooseExportFile() {
    if (current_ < 0) return;
    const QString suggested = qs(traits_[static_cast<std::size_t>(current_)].name) + ".json";
    const QString path = QFileDialog::getSaveFileName(this, tr("Export Trait"), suggested, tr("Trait files (*.json)"));
    if (!path.isEmpty()) exportCurrentTrait(path);
}
