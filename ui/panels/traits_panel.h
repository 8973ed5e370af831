#pragma once
#include "persona/trait.h"

#include <QWidget>

#include <functional>
#include <vector>

class QLabel;
class QLineEdit;
class QListWidget;
class QPlainTextEdit;
class QPushButton;
class QTableWidget;
class QUndoStack;

// The set of traits being edited: a list on the left, a form for the selected trait on the
// right with persona::validate()'s problems shown under the field they concern. Every edit
// (typing included) goes through one QUndoStack, so Ctrl+Z / Ctrl+Shift+Z undo and redo it.
class TraitsPanel : public QWidget {
    Q_OBJECT
public:
    enum class QuestionList { Extraction, Evaluation };

    // Starts with the built-in traits until setTraits() replaces them.
    explicit TraitsPanel(QWidget* parent = nullptr);

    // A new set to edit (a project opened, say): selects the first trait and clears the undo
    // history, since undoing into another project's traits would make no sense.
    void setTraits(const std::vector<persona::Trait>& traits);
    std::vector<persona::Trait> traits() const { return traits_; }

    int currentIndex() const { return current_; }
    void setCurrentIndex(int index);
    QUndoStack* undoStack() const { return undoStack_; }

    // The edits the buttons make, each one undoable. The file ones report failure in the panel
    // (statusMessage()) and return false; nothing of the set is lost.
    void newTrait(const QString& builtinName = {});  // empty name: a blank trait
    // Replaces the selected trait as a whole (a script or a controller editing it).
    void setCurrentTrait(const persona::Trait& trait);
    void deleteCurrentTrait();
    bool importTraitFile(const QString& path);
    // The persona_vectors paper's layout: an extraction file and an evaluation file.
    bool importPaperTrait(const QString& name, const QString& extractPath, const QString& evalPath);
    bool exportCurrentTrait(const QString& path);
    void addInstructionPair();
    void removeInstructionPair(int row);
    void moveInstructionPair(int row, int delta);
    void addQuestion(QuestionList list);
    void removeQuestion(QuestionList list, int row);

    QString statusMessage() const;

signals:
    // Emitted after every change to traits(), undo and redo included.
    void traitsChanged();

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    friend class TraitsEditCommand;

    QWidget* buildList();
    QWidget* buildForm();
    QTableWidget* makeQuestionTable(const QString& objectName);

    // Pushes one undoable step from the present state to `after`. Steps with the same non-empty
    // mergeKey in a row (typing in one field) become one.
    void commit(const QString& text, std::vector<persona::Trait> after, int currentAfter, const QString& mergeKey = {});
    void editCurrent(const QString& text, const QString& mergeKey, const std::function<void(persona::Trait&)>& change);
    // What the undo stack calls: the whole state at once.
    void applyState(const std::vector<persona::Trait>& traits, int current);
    void refresh();
    void refreshList();
    void refreshForm();
    void showProblems();
    void showStatus(const QString& message, bool error = false);
    // `base`, or base_2, base_3, ... so no two traits share a name.
    std::string uniqueName(const std::string& base, int ignoreIndex = -1) const;
    void addTrait(persona::Trait trait, const QString& undoText);
    std::vector<std::string>& questions(persona::Trait& trait, QuestionList list) const;
    QTableWidget* questionTable(QuestionList list) const;

    void chooseImportFile();
    void chooseImportPaper();
    void chooseExportFile();

    std::vector<persona::Trait> traits_;
    int current_ = -1;
    bool refreshing_ = false;
    QUndoStack* undoStack_;

    QListWidget* list_;
    QPushButton* deleteTrait_;
    QPushButton* exportTrait_;
    QLabel* status_;
    QWidget* form_;
    QLineEdit* name_;
    QPlainTextEdit* definition_;
    QTableWidget* pairs_;
    QTableWidget* extraction_;
    QTableWidget* evaluation_;
    QPlainTextEdit* judgeRubric_;
    QPlainTextEdit* coherenceRubric_;
    QLabel* nameProblems_;
    QLabel* definitionProblems_;
    QLabel* pairsProblems_;
    QLabel* extractionProblems_;
    QLabel* evaluationProblems_;
    QLabel* judgeProblems_;
    QLabel* coherenceProblems_;
};
