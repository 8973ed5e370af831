#include "widgets/vector_choice.h"

#include "persona/vector_files.h"

#include <QFileDialog>
#include <QFileInfo>
#include <QSignalBlocker>

VectorChoice::VectorChoice(QWidget* parent) : QComboBox(parent) {
    addItem(tr("Open vector..."));
    connect(this, &QComboBox::currentIndexChanged, this, &VectorChoice::indexChanged);
}

void VectorChoice::reset(int layerCount, int hiddenSize) {
    layerCount_ = layerCount;
    hiddenSize_ = hiddenSize;
    entries_.clear();
    previousIndex_ = -1;
    const QSignalBlocker blocker(this);
    clear();
    addItem(tr("Open vector..."));
    setCurrentIndex(-1);
}

void VectorChoice::setFileOpener(std::function<bool(const QString&)> opener) { opener_ = std::move(opener); }

void VectorChoice::openFilesReporting(std::function<void(const QString& error)> error) {
    opener_ = [this, error = std::move(error)](const QString& path) {
        QString problem;
        auto loaded = readFile(path, &problem);
        if (!loaded) {
            error(problem);
            return false;
        }
        addVector(fileEntryName(*loaded, path), std::move(*loaded));
        return true;
    };
}

bool VectorChoice::fits(const persona::PersonaVector& vector) const {
    return persona::vector_misfit(vector, layerCount_, hiddenSize_).empty();
}

std::optional<persona::PersonaVector> VectorChoice::readFile(const QString& path, QString* error) const {
    persona::PersonaVector vector;
    try {
        vector = persona::read_vector_file(path.toStdString());
    } catch (const std::exception& e) {
        *error = tr("Could not read the vector: %1").arg(QString::fromUtf8(e.what()));
        return std::nullopt;
    }
    if (const std::string misfit = persona::vector_misfit(vector, layerCount_, hiddenSize_); !misfit.empty()) {
        *error = tr("%1 %2.").arg(path, QString::fromStdString(misfit));
        return std::nullopt;
    }
    return vector;
}

QString VectorChoice::fileEntryName(const persona::PersonaVector& vector, const QString& path) {
    return tr("%1 (%2)").arg(QString::fromStdString(vector.trait), QFileInfo(path).fileName());
}

void VectorChoice::addVector(const QString& name, persona::PersonaVector vector, int tag) {
    int index = findText(name);
    if (index >= 0 && index < static_cast<int>(entries_.size())) {
        entries_[static_cast<std::size_t>(index)] = {std::move(vector), tag, {}};
    } else {
        entries_.push_back({std::move(vector), tag, {}});
        index = static_cast<int>(entries_.size()) - 1;
        const QSignalBlocker blocker(this);
        insertItem(index, name);  // "Open vector..." stays last
    }
    const bool alreadySelected = currentIndex() == index;  // then no signal comes
    setCurrentIndex(index);
    if (alreadySelected) indexChanged(index);
}

void VectorChoice::removeTagged() {
    const QSignalBlocker blocker(this);
    for (std::size_t i = entries_.size(); i-- > 0;)
        if (entries_[i].tag >= 0) {
            entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
            removeItem(static_cast<int>(i));
        }
}

QString VectorChoice::projectEntryName(const QString& key) {
    return tr("%1 (project)").arg(QFileInfo(key).completeBaseName());
}

void VectorChoice::setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors) {
    const QSignalBlocker blocker(this);
    const int selected = currentIndex();
    const QString selectedName = selected >= 0 && selected < static_cast<int>(entries_.size()) ? itemText(selected) : QString();
    for (std::size_t i = entries_.size(); i-- > 0;) {
        const std::string key = entries_[i].projectKey.toStdString();
        if (!entries_[i].projectKey.isEmpty() && (!vectors.count(key) || !fits(vectors.at(key)))) {
            entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
            removeItem(static_cast<int>(i));
        }
    }
    for (const auto& [key, vector] : vectors) {
        if (!fits(vector)) continue;
        const QString qkey = QString::fromStdString(key);
        const QString name = projectEntryName(qkey);
        const int index = findText(name);
        if (index >= 0 && index < static_cast<int>(entries_.size())) {
            entries_[static_cast<std::size_t>(index)] = {vector, -1, qkey};
        } else {
            entries_.push_back({vector, -1, qkey});
            insertItem(static_cast<int>(entries_.size()) - 1, name);
        }
    }
    const int now = selectedName.isEmpty() ? -1 : findText(selectedName);
    setCurrentIndex(now >= 0 && now < static_cast<int>(entries_.size()) ? now : -1);
    previousIndex_ = currentIndex();
}

bool VectorChoice::selectProjectVector(const QString& key) {
    return !key.isEmpty() && selectFirst([&key](const Entry& entry) { return entry.projectKey == key; });
}

QString VectorChoice::currentProjectKey() const {
    const int index = currentIndex();
    if (index < 0 || index >= static_cast<int>(entries_.size())) return {};
    return entries_[static_cast<std::size_t>(index)].projectKey;
}

bool VectorChoice::select(const QString& name) {
    const int index = findText(name);
    if (index < 0 || index >= static_cast<int>(entries_.size())) return false;
    setCurrentIndex(index);
    return true;
}

bool VectorChoice::selectTag(int tag) {
    return selectFirst([tag](const Entry& entry) { return entry.tag == tag; });
}

bool VectorChoice::selectFirst(const std::function<bool(const Entry&)>& matches) {
    for (std::size_t i = 0; i < entries_.size(); ++i)
        if (matches(entries_[i])) {
            const bool alreadySelected = currentIndex() == static_cast<int>(i);
            setCurrentIndex(static_cast<int>(i));
            if (alreadySelected) indexChanged(static_cast<int>(i));
            return true;
        }
    return false;
}

const persona::PersonaVector* VectorChoice::current() const {
    const int index = currentIndex();
    if (index < 0 || index >= static_cast<int>(entries_.size())) return nullptr;
    return &entries_[static_cast<std::size_t>(index)].vector;
}

int VectorChoice::currentTag() const {
    const int index = currentIndex();
    if (index < 0 || index >= static_cast<int>(entries_.size())) return -1;
    return entries_[static_cast<std::size_t>(index)].tag;
}

void VectorChoice::indexChanged(int index) {
    if (index < 0) return;
    if (index >= static_cast<int>(entries_.size())) {
        chooseFile();
        return;
    }
    previousIndex_ = index;
    emit vectorChosen(index);
}

void VectorChoice::chooseFile() {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open Vector"), QString(),
                                                      tr("Persona vectors (*.safetensors *.pt *.pth);;All files (*)"));
    if (path.isEmpty() || !opener_ || !opener_(path)) {
        const QSignalBlocker blocker(this);
        setCurrentIndex(previousIndex_);
    }
}
