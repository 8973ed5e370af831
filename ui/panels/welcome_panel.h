#pragma once
// The start page: example projects that ship with the workbench and recently opened ones, each
// opened with one click, plus New and Open. Shown as the first tab.
#include <QStringList>
#include <QWidget>

class QLabel;
class QListWidget;
class QListWidgetItem;

class WelcomePanel : public QWidget {
    Q_OBJECT
public:
    explicit WelcomePanel(QWidget* parent = nullptr);

    // Example project folders (*.persona) found in exampleFolders(), sorted by name.
    static QStringList exampleProjects();
    // Where examples are looked for, first match wins per name: $PERSONA_PROJECTS_DIR, the
    // installed share/persona-workbench/projects beside the executable, the source tree's
    // projects/ (PERSONA_SOURCE_DIR, for a build that was not installed).
    static QStringList exampleFolders();

    QListWidget* examplesList() const { return examples_; }
    QListWidget* recentList() const { return recent_; }

public slots:
    void setRecentProjects(const QStringList& folders);
    void refreshExamples();

signals:
    void openRequested(const QString& folder);
    void newRequested();
    void openDialogRequested();

private:
    void fill(QListWidget* list, const QStringList& folders, const QString& emptyText);
    void activate(QListWidgetItem* item);

    QListWidget* examples_;
    QListWidget* recent_;
};
