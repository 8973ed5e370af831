#include "shell/project_controller.h"

#include "persona/errors.h"

#include <QCryptographicHash>
#include <QDateTime>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QMessageBox>
#include <QSettings>
#include <QStandardPaths>
#include <QTimer>
#include <QUuid>

#include <algorithm>

namespace {

constexpr const char* kRecentKey = "projects/recent";
constexpr int kMaxRecent = 8;
constexpr int kDefaultAutosaveMs = 30'000;

QString newUntitledId() { return "untitled-" + QUuid::createUuid().toString(QUuid::Id128).left(12); }

QString canonicalFolder(const QString& path) {
    const QString folder = QString::fromStdString(persona::project_folder(path.toStdString()));
    const QFileInfo info(folder);
    return info.exists() ? info.canonicalFilePath() : info.absoluteFilePath();
}

QString withExtension(QString folder) {
    while (folder.endsWith('/')) folder.chop(1);
    if (!folder.endsWith(persona::kProjectExtension)) folder += persona::kProjectExtension;
    return folder;
}

QString localTime(const QString& isoUtc) {
    const QDateTime when = QDateTime::fromString(isoUtc, Qt::ISODate);
    return when.isValid() ? when.toLocalTime().toString("yyyy-MM-dd HH:mm:ss") : isoUtc;
}

struct RecoveryNote {
    QString id;
    QString original;  // project folder, "" for a project never saved
    QString name;
    QString autosaved;  // ISO 8601 UTC
};

std::vector<RecoveryNote> recoveryNotes() {
    std::vector<RecoveryNote> notes;
    const QDir folder(ProjectController::recoveryFolder());
    for (const QFileInfo& info : folder.entryInfoList({"*.json"}, QDir::Files)) {
        QFile file(info.absoluteFilePath());
        if (!file.open(QIODevice::ReadOnly)) continue;
        const QJsonObject json = QJsonDocument::fromJson(file.readAll()).object();
        RecoveryNote note{info.completeBaseName(), json.value("original").toString(), json.value("name").toString(),
                          json.value("autosaved").toString()};
        if (!QFileInfo(folder.filePath(note.id + persona::kProjectExtension)).isDir()) continue;
        notes.push_back(note);
    }
    std::sort(notes.begin(), notes.end(), [](const auto& a, const auto& b) { return a.autosaved > b.autosaved; });
    return notes;
}

void removeRecoveryFiles(const QString& id) {
    const QDir folder(ProjectController::recoveryFolder());
    QDir(folder.filePath(id + persona::kProjectExtension)).removeRecursively();
    QFile::remove(folder.filePath(id + ".json"));
}

// A recovery copy matters only when it holds changes the project on disk lacks.
bool newerThanOriginal(const RecoveryNote& note) {
    if (note.original.isEmpty()) return true;
    const QFileInfo saved(QDir(note.original).filePath(persona::kProjectFileName));
    if (!saved.exists()) return true;
    const QDateTime autosaved = QDateTime::fromString(note.autosaved, Qt::ISODate);
    return autosaved.isValid() && autosaved > saved.lastModified();
}

}  // namespace

ProjectController::ProjectController(QWidget* dialogParent, QObject* parent)
    : QObject(parent), dialogParent_(dialogParent), autosave_(new QTimer(this)) {
    untitledId_ = newUntitledId();
    project_.name = "untitled";
    autosave_->setInterval(kDefaultAutosaveMs);
    connect(autosave_, &QTimer::timeout, this, [this] {
        if (dirty_ && changedSinceAutosave_) autosaveNow();
    });

    questions_.saveChanges = [this](const QString& name) {
        const auto button = QMessageBox::warning(
            dialogParent_, tr("Unsaved changes"), tr("The project \"%1\" has unsaved changes. Save them?").arg(name),
            QMessageBox::Save | QMessageBox::Discard | QMessageBox::Cancel, QMessageBox::Save);
        return button == QMessageBox::Save ? Answer::Save : button == QMessageBox::Discard ? Answer::Discard : Answer::Cancel;
    };
    questions_.restoreRecovery = [this](const QString& name, const QString& autosaved, const QString& original) {
        const QString where = original.isEmpty() ? tr("It was never saved.") : tr("Its folder is %1.").arg(original);
        return QMessageBox::question(dialogParent_, tr("Restore unsaved work?"),
                                     tr("Persona Workbench did not close properly. An autosaved copy of \"%1\" from %2 "
                                        "holds changes that were not saved. %3\n\nRestore it? (No deletes the copy.)")
                                         .arg(name, localTime(autosaved), where),
                                     QMessageBox::Yes | QMessageBox::No, QMessageBox::Yes) == QMessageBox::Yes;
    };
    questions_.chooseSaveFolder = [this](const QString& suggested) {
        return QFileDialog::getSaveFileName(dialogParent_, tr("Save Project As"), suggested,
                                            tr("Persona projects (*.persona)"));
    };
    questions_.chooseOpenFolder = [this] {
        return QFileDialog::getExistingDirectory(dialogParent_, tr("Open Project (a NAME.persona folder)"), startFolder());
    };
    questions_.showError = [this](const QString& title, const QString& message) {
        QMessageBox::warning(dialogParent_, title, message);
    };
}

ProjectController::~ProjectController() = default;

bool ProjectController::open() {
    const QString folder = questions_.chooseOpenFolder();
    return !folder.isEmpty() && openProject(folder);
}  // a recovery copy stays: it is what a crash leaves too

QString ProjectController::startFolder() const {
    if (!path_.isEmpty()) return QFileInfo(path_).absolutePath();
    const QStringList recent = recentProjects();
    return recent.isEmpty() ? QDir::homePath() : QFileInfo(recent.front()).absolutePath();
}

QString ProjectController::displayName() const {
    if (!project_.name.empty()) return QString::fromStdString(project_.name);
    if (!path_.isEmpty()) return QFileInfo(path_).completeBaseName();
    return tr("untitled");
}

// --- changing the project ---------------------------------------------------------------------

void ProjectController::setName(const QString& name) {
    project_.name = name.toStdString();
    changed();
}

void ProjectController::setDescription(const QString& description) {
    project_.description = description.toStdString();
    changed();
}

void ProjectController::setTraits(const std::vector<persona::Trait>& traits) {
    project_.traits = traits;
    changed();
}

void ProjectController::setPrompts(const std::vector<persona::Prompt>& prompts) {
    project_.prompts = prompts;
    changed();
}

void ProjectController::setSettings(const persona::ProjectSettings& settings) {
    project_.settings = settings;
    changed();
}

QString ProjectController::addRunResult(const persona::RunResult& run, const persona::PersonaVector* vector) {
    const QString key = QString::fromStdString(project_.add_run(run, vector));
    changed();
    return key;
}

QString ProjectController::addMonitoringStudy(const persona::MonitoringStudy& study) {
    const QString key = QString::fromStdString(project_.add_monitoring_study(study));
    changed();
    return key;
}

QString ProjectController::addSweep(const persona::SweepResult& sweep) {
    const QString key = QString::fromStdString(project_.add_sweep(sweep));
    changed();
    return key;
}

void ProjectController::markDirty() { changed(); }

void ProjectController::markLiveStateEdited() {
    changedSinceAutosave_ = true;
    setDirty(true);
}

void ProjectController::changed() {
    changedSinceAutosave_ = true;
    setDirty(true);
    emit projectChanged();
}

void ProjectController::setDirty(bool dirty) {
    if (dirty && !autosave_->isActive()) autosave_->start();
    if (!dirty) autosave_->stop();
    if (dirty == dirty_) return;
    dirty_ = dirty;
    emit dirtyChanged(dirty_);
}

void ProjectController::replace(persona::Project project, const QString& path, bool dirty) {
    project_ = std::move(project);
    if (path != path_) {
        path_ = path;
        emit pathChanged(path_);
    }
    changedSinceAutosave_ = dirty;
    setDirty(dirty);
    emit projectChanged();
}

// --- files --------------------------------------------------------------------------------------

bool ProjectController::newProject() {
    if (!maybeSave()) return false;
    removeRecovery();
    persona::Project fresh;
    fresh.name = "untitled";
    untitledId_ = newUntitledId();
    replace(std::move(fresh), QString(), false);
    emit projectOpened();
    return true;
}

bool ProjectController::openProject(const QString& path) {
    const QString folder = canonicalFolder(path);
    // Read first: a project that cannot be read must not cost the user the open one.
    persona::Project loaded;
    try {
        loaded = persona::read_project(folder.toStdString());
    } catch (const std::exception& e) {
        showError(tr("Cannot open project"), tr("Could not open the project:\n%1").arg(QString::fromUtf8(e.what())));
        return false;
    }
    if (!maybeSave()) return false;
    removeRecovery();
    const bool example = std::any_of(exampleFolders_.begin(), exampleFolders_.end(), [&folder](const QString& examples) {
        const QString root = QFileInfo(examples).canonicalFilePath();
        return !root.isEmpty() && folder.startsWith(root + '/');
    });
    if (example) untitledId_ = newUntitledId();  // an unsaved copy, recovered as one
    replace(std::move(loaded), example ? QString() : folder, false);
    emit projectOpened();
    if (!example) {
        addRecent(folder);
        offerRecoveryFor(folder);
    }
    return true;
}

bool ProjectController::save() { return path_.isEmpty() ? saveAs() : saveTo(path_); }

bool ProjectController::saveAs() {
    const QString suggested = path_.isEmpty() ? QDir(startFolder()).filePath(displayName() + persona::kProjectExtension) : path_;
    const QString chosen = questions_.chooseSaveFolder(suggested);
    if (chosen.isEmpty()) return false;
    return saveTo(withExtension(chosen));
}

bool ProjectController::saveTo(const QString& folder) {
    const QString target = withExtension(QFileInfo(folder).absoluteFilePath());
    persona::Project saving = project_;
    if (collectLiveState_) collectLiveState_(saving);
    if (saving.name.empty() || saving.name == "untitled") saving.name = QFileInfo(target).completeBaseName().toStdString();
    try {
        persona::write_project(target.toStdString(), saving);
    } catch (const std::exception& e) {
        showError(tr("Cannot save project"), tr("Could not save the project:\n%1").arg(QString::fromUtf8(e.what())));
        return false;
    }
    removeRecovery();  // under the id of where the project was before this save
    replace(std::move(saving), canonicalFolder(target), false);
    addRecent(path_);
    return true;
}

bool ProjectController::maybeSave() {
    if (!dirty_) return true;
    switch (questions_.saveChanges(displayName())) {
    case Answer::Save: return save();
    case Answer::Discard:
        removeRecovery();
        return true;
    case Answer::Cancel: return false;
    }
    return false;
}

void ProjectController::showError(const QString& title, const QString& message) {
    lastError_ = message;
    if (questions_.showError) questions_.showError(title, message);
}

// --- recent projects ----------------------------------------------------------------------------

QStringList ProjectController::recentProjects() const {
    QStringList existing;
    for (const QString& folder : QSettings().value(kRecentKey).toStringList())
        if (QFileInfo(QDir(folder).filePath(persona::kProjectFileName)).exists()) existing << folder;
    return existing;
}

void ProjectController::addRecent(const QString& folder) {
    QSettings settings;
    QStringList recent = settings.value(kRecentKey).toStringList();
    recent.removeAll(folder);
    recent.prepend(folder);
    while (recent.size() > kMaxRecent) recent.removeLast();
    settings.setValue(kRecentKey, recent);
    emit recentProjectsChanged();
}

void ProjectController::clearRecentProjects() {
    QSettings().remove(kRecentKey);
    emit recentProjectsChanged();
}

// --- autosave and recovery ----------------------------------------------------------------------

void ProjectController::setAutosaveInterval(int milliseconds) { autosave_->setInterval(std::max(1, milliseconds)); }

int ProjectController::autosaveInterval() const { return autosave_->interval(); }

QString ProjectController::recoveryFolder() {
    return QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).filePath("recovery");
}

QString ProjectController::recoveryId() const {
    if (path_.isEmpty()) return untitledId_;
    // One copy per project folder, so reopening the project finds its own.
    const QByteArray hash = QCryptographicHash::hash(path_.toUtf8(), QCryptographicHash::Sha256).toHex().left(16);
    return QFileInfo(path_).completeBaseName() + "-" + QString::fromLatin1(hash);
}

bool ProjectController::autosaveNow() {
    const QDir folder(recoveryFolder());
    if (!folder.mkpath(".")) {
        lastError_ = tr("Cannot create the recovery folder %1").arg(folder.path());
        return false;
    }
    const QString id = recoveryId();
    persona::Project copy = project_;
    if (collectLiveState_) collectLiveState_(copy);
    try {
        persona::write_project(folder.filePath(id + persona::kProjectExtension).toStdString(), copy);
    } catch (const std::exception& e) {
        lastError_ = tr("Autosave failed: %1").arg(QString::fromUtf8(e.what()));
        return false;
    }
    // The note is written after the copy: a note always points at a whole copy.
    const QJsonObject note{{"original", path_},
                           {"name", displayName()},
                           {"autosaved", QDateTime::currentDateTimeUtc().toString(Qt::ISODateWithMs)}};
    QFile file(folder.filePath(id + ".json.tmp"));
    if (!file.open(QIODevice::WriteOnly | QIODevice::Truncate) || file.write(QJsonDocument(note).toJson()) < 0) {
        lastError_ = tr("Autosave failed: cannot write %1").arg(file.fileName());
        return false;
    }
    file.close();
    QFile::remove(folder.filePath(id + ".json"));
    if (!QFile::rename(file.fileName(), folder.filePath(id + ".json"))) return false;
    changedSinceAutosave_ = false;
    return true;
}

void ProjectController::removeRecovery() { removeRecoveryFiles(recoveryId()); }

bool ProjectController::offerRecovery() { return offerRecoveryFor(QString()); }

bool ProjectController::offerRecoveryFor(const QString& onlyOriginal) {
    for (const RecoveryNote& note : recoveryNotes()) {
        if (!onlyOriginal.isEmpty() && note.original != onlyOriginal) continue;
        if (!newerThanOriginal(note)) {
            removeRecoveryFiles(note.id);  // the project was saved after it: nothing to recover
            continue;
        }
        if (!questions_.restoreRecovery(note.name, note.autosaved, note.original)) {
            removeRecoveryFiles(note.id);
            continue;
        }
        const QString copy = QDir(recoveryFolder()).filePath(note.id + persona::kProjectExtension);
        persona::Project restored;
        try {
            restored = persona::read_project(copy.toStdString());
        } catch (const std::exception& e) {
            showError(tr("Cannot restore"), tr("The autosaved copy cannot be read:\n%1").arg(QString::fromUtf8(e.what())));
            continue;
        }
        // The restored work is unsaved until the user saves it: it lives on under the same id.
        if (note.original.isEmpty()) untitledId_ = note.id;
        replace(std::move(restored), note.original, true);
        emit projectOpened();
        return true;
    }
    return false;
}
