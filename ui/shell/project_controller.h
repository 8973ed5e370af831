#pragma once
// The open project and everything around it: New / Open / Save / Save As, the recent list,
// unsaved changes (Save / Discard / Cancel), autosave into a recovery folder and restoring it
// after a crash. Panels read project() and change it through the setters, which mark the
// project dirty and emit projectChanged(); they never write files themselves.
#include "persona/project.h"

#include <QObject>
#include <QString>
#include <QStringList>

#include <functional>
#include <vector>

class QTimer;
class QWidget;

class ProjectController : public QObject {
    Q_OBJECT
public:
    // What the controller asks the user. The defaults show dialogs over `dialogParent`; tests
    // replace them to answer without a person.
    enum class Answer { Save, Discard, Cancel };
    struct Questions {
        std::function<Answer(const QString& projectName)> saveChanges;
        // autosaved: when the recovery copy was written; original: the project's folder or "".
        std::function<bool(const QString& projectName, const QString& autosaved, const QString& original)> restoreRecovery;
        std::function<QString(const QString& suggestedFolder)> chooseSaveFolder;  // "" = cancelled
        std::function<QString()> chooseOpenFolder;                                 // "" = cancelled
        std::function<void(const QString& title, const QString& message)> showError;
    };

    explicit ProjectController(QWidget* dialogParent = nullptr, QObject* parent = nullptr);
    ~ProjectController() override;

    const persona::Project& project() const { return project_; }
    // The project folder, "" while the project was never saved.
    QString path() const { return path_; }
    bool isDirty() const { return dirty_; }
    // The project's name, else its folder's, else "untitled".
    QString displayName() const;
    QString lastError() const { return lastError_; }
    // Where file dialogs start: beside the open project, else beside the most recent one, else home.
    QString startFolder() const;

    void setQuestions(Questions questions) { questions_ = std::move(questions); }
    // Folders of shipped examples: a project opened from one opens as an unsaved copy (its
    // Save asks for a folder), so the examples themselves are never overwritten.
    void setExampleFolders(const QStringList& folders) { exampleFolders_ = folders; }
    // State the panels hold live (the Steering setup), folded into the project by every save and
    // autosave.
    void setLiveState(std::function<void(persona::Project&)> collect) { collectLiveState_ = std::move(collect); }

    // --- Changing the project: each marks it dirty and emits projectChanged() ---------------
    void setName(const QString& name);
    void setDescription(const QString& description);
    void setTraits(const std::vector<persona::Trait>& traits);
    void setPrompts(const std::vector<persona::Prompt>& prompts);
    void setSettings(const persona::ProjectSettings& settings);
    // Records an extraction run and stores its vector (when it has one) in the project;
    // returns the vector's key in project().vectors ("" without a vector).
    QString addRunResult(const persona::RunResult& run, const persona::PersonaVector* vector);
    // Keeps a finished monitoring study in the project; returns its key ("monitoring/....json").
    QString addMonitoringStudy(const persona::MonitoringStudy& study);
    // Keeps a finished sweep in the project; returns its key ("sweeps/....json").
    QString addSweep(const persona::SweepResult& sweep);
    // For changes made some other way: marks the project dirty and emits projectChanged().
    void markDirty();
    // The live state (setLiveState) changed: unsaved work, but project() is as it was, so no
    // projectChanged() (a slider move must not refresh every panel).
    void markLiveStateEdited();

    // --- Files. Each returns false when the user cancelled or it failed (lastError()) -------
    bool newProject();
    bool openProject(const QString& path);  // keeps the current project when the file is bad
    bool open();                            // asks for the folder (Questions::chooseOpenFolder)
    bool save();                            // Save As for a project never saved
    bool saveAs();
    bool saveTo(const QString& folder);
    // Save / Discard / Cancel when there are unsaved changes: true when it is fine to go on.
    bool maybeSave();

    QStringList recentProjects() const;  // existing folders, most recent first
    void clearRecentProjects();

    // --- Autosave and recovery ---------------------------------------------------------------
    // How often a dirty project is copied into the recovery folder (default 30 s).
    void setAutosaveInterval(int milliseconds);
    int autosaveInterval() const;
    // Writes the recovery copy now (what the timer does); false when it failed.
    bool autosaveNow();
    // QStandardPaths::AppDataLocation/recovery: one NAME.persona folder and NAME.json note each.
    static QString recoveryFolder();
    // Recovery copies left by a crash that are newer than their project: asks about each
    // (newest first) and restores the first one accepted; declined ones are deleted. True when
    // a copy was restored. Call once at start.
    bool offerRecovery();

signals:
    // The project was replaced (new, open, restore, save) or changed through a setter.
    void projectChanged();
    // Another project is open (new, open, restore; not a save): panels show its saved state.
    void projectOpened();
    void dirtyChanged(bool dirty);
    void pathChanged(const QString& path);
    void recentProjectsChanged();

private:
    void replace(persona::Project project, const QString& path, bool dirty);
    void setDirty(bool dirty);
    void changed();
    void addRecent(const QString& folder);
    void showError(const QString& title, const QString& message);
    QString recoveryId() const;
    void removeRecovery();
    bool offerRecoveryFor(const QString& onlyOriginal);

    QWidget* dialogParent_;
    Questions questions_;
    persona::Project project_;
    QString path_;
    bool dirty_ = false;
    bool changedSinceAutosave_ = false;
    QString untitledId_;  // recovery id of a project not yet saved
    QStringList exampleFolders_;
    std::function<void(persona::Project&)> collectLiveState_;
    QString lastError_;
    QTimer* autosave_;
};
