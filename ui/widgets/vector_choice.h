#pragma once
// The persona vectors a panel can use, listed in a combo box whose last entry, "Open vector...",
// asks for a file. A file that cannot be read or does not fit the loaded model leaves the
// previous choice selected. Shared by the Steering and Heat maps panels.
#include "persona/persona_vector.h"

#include <QComboBox>

#include <functional>
#include <map>
#include <string>
#include <optional>
#include <vector>

class VectorChoice : public QComboBox {
    Q_OBJECT

public:
    explicit VectorChoice(QWidget* parent = nullptr);

    // Vectors of another model do not fit the new one: every entry goes.
    void reset(int layerCount, int hiddenSize);
    // What "Open vector..." does with the chosen path; false keeps the previous choice.
    void setFileOpener(std::function<bool(const QString&)> opener);
    // The usual opener: the file read, checked, listed under its file name and selected; why it
    // could not be goes to `error`.
    void openFilesReporting(std::function<void(const QString& error)> error);

    // Reads a vector file and checks it fits the model; nothing, with the reason in *error.
    std::optional<persona::PersonaVector> readFile(const QString& path, QString* error) const;
    static QString fileEntryName(const persona::PersonaVector& vector, const QString& path);

    // Lists the vector (replacing an entry of the same name) and selects it; vectorChosen is
    // emitted even when it was selected already. `tag` is the caller's (-1: none).
    void addVector(const QString& name, persona::PersonaVector vector, int tag = -1);
    void removeTagged();  // every entry with a tag >= 0
    // The open project's vectors, by key ("vectors/evil.response_avg.safetensors"): listed (or
    // replaced) without changing the selection or emitting anything, so a project change never
    // starts work; project entries whose key is gone are dropped. Vectors that do not fit the
    // model are left out. An entry dropped while selected leaves nothing selected.
    void setProjectVectors(const std::map<std::string, persona::PersonaVector>& vectors);
    bool selectProjectVector(const QString& key);  // emits vectorChosen
    QString currentProjectKey() const;             // "" when the choice is not a project vector
    static QString projectEntryName(const QString& key);
    bool select(const QString& name);
    bool selectTag(int tag);

    const persona::PersonaVector* current() const;
    int currentTag() const;  // -1 when none is chosen
    bool fits(const persona::PersonaVector& vector) const;

signals:
    void vectorChosen(int index);

private:
    struct Entry {
        persona::PersonaVector vector;
        int tag = -1;
        QString projectKey;
    };
    void indexChanged(int index);
    // Selects the first entry that matches; vectorChosen is emitted even when it was selected.
    bool selectFirst(const std::function<bool(const Entry&)>& matches);
    void chooseFile();

    std::vector<Entry> entries_;
    std::function<bool(const QString&)> opener_;
    int previousIndex_ = -1;
    int layerCount_ = 0;  // L: the vectors have L + 1 rows
    int hiddenSize_ = 0;
};
