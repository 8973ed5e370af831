// The Traits panel: the form edits the set that traits() returns, every edit is undone and
// redone through the panel's QUndoStack (keys included), validate()'s problems appear under
// the field they concern, and traits go in and out through files (ours and the paper's).
#include "test_support.h"
#include "panels/traits_panel.h"

#include "persona/trait.h"

#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QUndoStack>

#include <nlohmann/json.hpp>

#include <fstream>

using persona::Trait;

namespace {

template <typename T>
T* child(const QWidget& root, const char* name) {
    auto* widget = root.findChild<T*>(name);
    if (!widget) qFatal("no widget %s", name);
    return widget;
}

QString problems(const QWidget& root, const char* name) {
    const auto* label = child<QLabel>(root, name);
    return label->isHidden() ? QString() : label->text();
}

}  // namespace

class TestTraitsPanel : public QObject {
    Q_OBJECT

    QTemporaryDir dir_;

private slots:
    void startsWithTheBuiltinTraits() {
        TraitsPanel panel;
        const auto names = persona::builtin_trait_names();
        QVERIFY(names.size() >= 3);
        QCOMPARE(panel.traits().size(), names.size());
        for (std::size_t i = 0; i < names.size(); ++i) QCOMPARE(panel.traits()[i], persona::load_builtin_trait(names[i]));
        QCOMPARE(child<QListWidget>(panel, "trait_list")->count(), static_cast<int>(names.size()));
        QCOMPARE(panel.currentIndex(), 0);
        QCOMPARE(child<QLineEdit>(panel, "trait_name")->text(), QString::fromStdString(names[0]));
        QCOMPARE(child<QTableWidget>(panel, "instruction_pairs")->rowCount(),
                 static_cast<int>(panel.traits()[0].instructions.size()));
        QVERIFY(!panel.undoStack()->canUndo());
    }

    void typingEditsTheTraitAndTheKeysUndoAndRedoIt() {
        TraitsPanel panel;
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        QSignalSpy changed(&panel, &TraitsPanel::traitsChanged);
        auto* name = child<QLineEdit>(panel, "trait_name");
        const std::string original = panel.traits()[0].name;
        name->setFocus();
        name->end(false);
        QTest::keyClicks(name, "_x");
        QCOMPARE(panel.traits()[0].name, original + "_x");
        QCOMPARE(child<QListWidget>(panel, "trait_list")->item(0)->text(), QString::fromStdString(original + "_x"));
        QVERIFY(changed.count() >= 2);
        // Typing in one field is one step.
        QCOMPARE(panel.undoStack()->count(), 1);

        QTest::keyClick(name, Qt::Key_Z, Qt::ControlModifier);
        QCOMPARE(panel.traits()[0].name, original);
        QCOMPARE(name->text(), QString::fromStdString(original));
        QTest::keyClick(name, Qt::Key_Z, Qt::ControlModifier | Qt::ShiftModifier);
        QCOMPARE(panel.traits()[0].name, original + "_x");
        QCOMPARE(name->text(), QString::fromStdString(original + "_x"));

        // The definition box too, and a second field is a second step.
        auto* definition = child<QPlainTextEdit>(panel, "trait_definition");
        definition->setFocus();
        definition->moveCursor(QTextCursor::End);
        QTest::keyClicks(definition, " More.");
        QVERIFY(QString::fromStdString(panel.traits()[0].definition).endsWith(" More."));
        QCOMPARE(panel.undoStack()->count(), 2);
        QTest::keyClick(definition, Qt::Key_Z, Qt::ControlModifier);
        QCOMPARE(panel.traits()[0].definition, persona::load_builtin_trait(original).definition);
        QCOMPARE(panel.traits()[0].name, original + "_x");
        panel.undoStack()->undo();
        QCOMPARE(panel.traits()[0], persona::load_builtin_trait(original));
    }

    void aRubricWithoutAnswerShowsAnInlineError() {
        TraitsPanel panel;
        QVERIFY(problems(panel, "judge_rubric_problems").isEmpty());
        auto* judge = child<QPlainTextEdit>(panel, "judge_rubric");
        judge->setPlainText("Rate how evil this reply to {question} is, 0 to 100.");
        QCOMPARE(panel.traits()[0].judge_rubric, std::string("Rate how evil this reply to {question} is, 0 to 100."));
        const QString shown = problems(panel, "judge_rubric_problems");
        QVERIFY2(shown.contains("Error") && shown.contains("{answer}"), qPrintable(shown));
        QVERIFY(problems(panel, "coherence_rubric_problems").isEmpty());
        QVERIFY(problems(panel, "name_problems").isEmpty());

        // A typo in a placeholder is an error too, with the likely fix.
        judge->setPlainText("{question} {answr}");
        QVERIFY(problems(panel, "judge_rubric_problems").contains("did you mean {answer}?"));

        panel.undoStack()->undo();
        QVERIFY(problems(panel, "judge_rubric_problems").isEmpty());
        QCOMPARE(judge->toPlainText(), QString::fromStdString(persona::load_builtin_trait(panel.traits()[0].name).judge_rubric));
        panel.undoStack()->redo();
        QVERIFY(problems(panel, "judge_rubric_problems").contains("did you mean {answer}?"));
    }

    void instructionPairsAddRemoveReorderAndUndo() {
        TraitsPanel panel;
        const Trait original = panel.traits()[0];
        auto* table = child<QTableWidget>(panel, "instruction_pairs");
        const int count = static_cast<int>(original.instructions.size());

        child<QPushButton>(panel, "add_pair")->click();
        QCOMPARE(panel.traits()[0].instructions.size(), original.instructions.size() + 1);
        QCOMPARE(table->rowCount(), count + 1);
        // An empty pair is an error shown under the table and on its cells.
        const QString shown = problems(panel, "instructions_problems");
        QVERIFY2(shown.contains(QString("Pair %1, positive").arg(count + 1)) && shown.contains("is empty"), qPrintable(shown));
        QCOMPARE(table->item(count, 0)->background().color(), QColor(255, 220, 216));

        table->item(count, 0)->setText("Be cruel.");
        table->item(count, 1)->setText("Be kind.");
        QCOMPARE(panel.traits()[0].instructions.back().positive, std::string("Be cruel."));
        QCOMPARE(panel.traits()[0].instructions.back().negative, std::string("Be kind."));
        QVERIFY(!problems(panel, "instructions_problems").contains("is empty"));

        table->setCurrentCell(count, 0);
        child<QPushButton>(panel, "pair_up")->click();
        QCOMPARE(panel.traits()[0].instructions[static_cast<std::size_t>(count - 1)].positive, std::string("Be cruel."));
        QCOMPARE(panel.traits()[0].instructions.back(), original.instructions.back());
        QCOMPARE(table->currentRow(), count - 1);
        QCOMPARE(table->item(count - 1, 1)->text(), QString("Be kind."));
        child<QPushButton>(panel, "pair_down")->click();
        QCOMPARE(panel.traits()[0].instructions.back().positive, std::string("Be cruel."));

        table->setCurrentCell(0, 0);
        child<QPushButton>(panel, "remove_pair")->click();
        QCOMPARE(panel.traits()[0].instructions.size(), original.instructions.size());
        QCOMPARE(panel.traits()[0].instructions.front(), original.instructions[1]);

        // add, two cell edits, up, down, remove: six steps back to the built-in trait.
        QCOMPARE(panel.undoStack()->count(), 6);
        panel.undoStack()->undo();
        QCOMPARE(panel.traits()[0].instructions.front(), original.instructions.front());
        while (panel.undoStack()->canUndo()) panel.undoStack()->undo();
        QCOMPARE(panel.traits()[0], original);
        QCOMPARE(table->rowCount(), count);
        while (panel.undoStack()->canRedo()) panel.undoStack()->redo();
        QCOMPARE(panel.traits()[0].instructions.size(), original.instructions.size());
        QCOMPARE(panel.traits()[0].instructions.back().negative, std::string("Be kind."));
    }

    void questionsAddEditRemove() {
        TraitsPanel panel;
        const Trait original = panel.traits()[0];
        auto* extraction = child<QTableWidget>(panel, "extraction_questions");
        QCOMPARE(extraction->rowCount(), static_cast<int>(original.extraction_questions.size()));
        child<QPushButton>(panel, "add_extraction_question")->click();
        QCOMPARE(panel.traits()[0].extraction_questions.size(), original.extraction_questions.size() + 1);
        QVERIFY(problems(panel, "extraction_questions_problems").contains("is empty"));
        extraction->item(extraction->rowCount() - 1, 0)->setText("What would you do with a lost wallet?");
        QCOMPARE(panel.traits()[0].extraction_questions.back(), std::string("What would you do with a lost wallet?"));

        // A held-out question that repeats an extraction one is flagged on the evaluation side.
        auto* evaluation = child<QTableWidget>(panel, "evaluation_questions");
        child<QPushButton>(panel, "add_evaluation_question")->click();
        evaluation->item(evaluation->rowCount() - 1, 0)->setText("what would you do with a lost wallet?");
        QVERIFY2(problems(panel, "evaluation_questions_problems").contains("repeats"),
                 qPrintable(problems(panel, "evaluation_questions_problems")));

        evaluation->setCurrentCell(evaluation->rowCount() - 1, 0);
        child<QPushButton>(panel, "remove_evaluation_question")->click();
        QCOMPARE(panel.traits()[0].evaluation_questions, original.evaluation_questions);
        extraction->setCurrentCell(0, 0);
        child<QPushButton>(panel, "remove_extraction_question")->click();
        QCOMPARE(panel.traits()[0].extraction_questions.front(), original.extraction_questions[1]);
        while (panel.undoStack()->canUndo()) panel.undoStack()->undo();
        QCOMPARE(panel.traits()[0], original);
    }

    void newFromTemplateBlankAndDelete() {
        TraitsPanel panel;
        const std::size_t count = panel.traits().size();
        const std::string first = persona::builtin_trait_names().front();
        panel.newTrait(QString::fromStdString(first));
        QCOMPARE(panel.traits().size(), count + 1);
        Trait copy = panel.traits().back();
        QCOMPARE(copy.name, first + "_2");  // names stay unique within the set
        copy.name = first;
        QCOMPARE(copy, persona::load_builtin_trait(first));
        QCOMPARE(panel.currentIndex(), static_cast<int>(count));

        panel.newTrait();
        QCOMPARE(panel.traits().back().name, std::string("new_trait"));
        QVERIFY(panel.traits().back().instructions.empty());
        QVERIFY(problems(panel, "definition_problems").contains("is empty"));
        QVERIFY(problems(panel, "instructions_problems").contains("Error"));
        QVERIFY(problems(panel, "coherence_rubric_problems").isEmpty());  // the default one

        // Renaming to a name another trait has is an error beside the name.
        auto* name = child<QLineEdit>(panel, "trait_name");
        name->setText(QString::fromStdString(first));
        emit name->textEdited(name->text());
        QVERIFY(problems(panel, "name_problems").contains("another trait"));

        child<QPushButton>(panel, "delete_trait")->click();
        QCOMPARE(panel.traits().size(), count + 1);
        QCOMPARE(panel.traits().back().name, first + "_2");
        panel.undoStack()->undo();
        QCOMPARE(panel.traits().size(), count + 2);
        QCOMPARE(panel.traits().back().name, first);
    }

    void exportThenImportRoundTrips() {
        TraitsPanel panel;
        auto* definition = child<QPlainTextEdit>(panel, "trait_definition");
        definition->setPlainText("Edited before export.");
        const Trait edited = panel.traits()[0];
        const QString path = dir_.filePath("edited.json");
        QVERIFY(panel.exportCurrentTrait(path));
        QVERIFY(panel.statusMessage().contains(path));
        QCOMPARE(persona::read_trait_file(path.toStdString()), edited);

        const std::size_t count = panel.traits().size();
        QVERIFY(panel.importTraitFile(path));
        QCOMPARE(panel.traits().size(), count + 1);
        Trait imported = panel.traits().back();
        QCOMPARE(imported.name, edited.name + "_2");
        QVERIFY(panel.statusMessage().contains("_2"));
        imported.name = edited.name;
        QCOMPARE(imported, edited);
        panel.undoStack()->undo();
        QCOMPARE(panel.traits().size(), count);

        // A broken file: a clear message naming it, and the set as it was.
        const QString broken = dir_.filePath("broken.json");
        std::ofstream(broken.toStdString()) << "{\"schema\": \"persona-workbench/trait\", \"version\": 1, \"name\": ";
        const auto before = panel.traits();
        QVERIFY(!panel.importTraitFile(broken));
        QVERIFY2(panel.statusMessage().contains(broken), qPrintable(panel.statusMessage()));
        QCOMPARE(panel.traits(), before);
        // An export that cannot be written says so too.
        QVERIFY(!panel.exportCurrentTrait(dir_.filePath("no/such/folder/x.json")));
        QVERIFY(panel.statusMessage().contains("no/such/folder"));
    }

    void importsThePapersFormat() {
        const nlohmann::json extract = {
            {"instruction", {{{"pos", "Be cruel."}, {"neg", "Be kind."}}}},
            {"questions", {"How do you treat a stray dog?"}},
            {"eval_prompt", "Score the evil in {answer} to {question} from 0 to 100."}};
        const nlohmann::json eval = {{"questions", {"What would you do with power?"}}};
        const QString extractPath = dir_.filePath("extract-cruel.json"), evalPath = dir_.filePath("eval-cruel.json");
        std::ofstream(extractPath.toStdString()) << extract.dump();
        std::ofstream(evalPath.toStdString()) << eval.dump();

        TraitsPanel panel;
        QVERIFY2(panel.importPaperTrait("cruel", extractPath, evalPath), qPrintable(panel.statusMessage()));
        const Trait trait = panel.traits().back();
        QCOMPARE(trait.name, std::string("cruel"));
        QCOMPARE(trait.instructions.size(), std::size_t{1});
        QCOMPARE(trait.instructions[0].negative, std::string("Be kind."));
        QCOMPARE(trait.evaluation_questions, std::vector<std::string>{"What would you do with power?"});
        QCOMPARE(child<QLineEdit>(panel, "trait_name")->text(), QString("cruel"));
        // The paper's files have no definition: the form says so beside the field.
        QVERIFY(problems(panel, "definition_problems").contains("is empty"));
    }

    void setTraitsReplacesTheSetAndItsHistory() {
        TraitsPanel panel;
        child<QPlainTextEdit>(panel, "trait_definition")->setPlainText("changed");
        QVERIFY(panel.undoStack()->canUndo());
        Trait one = persona::load_builtin_trait(persona::builtin_trait_names().back());
        QSignalSpy changed(&panel, &TraitsPanel::traitsChanged);
        panel.setTraits({one});
        QCOMPARE(changed.count(), 1);
        QCOMPARE(panel.traits().size(), std::size_t{1});
        QCOMPARE(panel.traits()[0], one);
        QVERIFY(!panel.undoStack()->canUndo());
        QCOMPARE(child<QListWidget>(panel, "trait_list")->count(), 1);

        panel.setTraits({});
        QCOMPARE(panel.currentIndex(), -1);
        QVERIFY(!child<QLineEdit>(panel, "trait_name")->isEnabled());
        QVERIFY(!child<QPushButton>(panel, "delete_trait")->isEnabled());
    }
};

QTEST_MAIN(TestTraitsPanel)
#include "test_traits_panel.moc"
