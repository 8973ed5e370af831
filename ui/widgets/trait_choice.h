#pragma once
// The trait a panel runs on, by name: the built-in traits until a project supplies its own. A
// new list keeps the chosen name when it is still there. Shared by the Monitoring and Sweeps tabs.
#include "persona/trait.h"

#include <QComboBox>

#include <optional>
#include <vector>

class QTableWidgetItem;

class TraitChoice : public QComboBox {
    Q_OBJECT
public:
    explicit TraitChoice(QWidget* parent = nullptr);
    // Emits currentIndexChanged only when the chosen name changes.
    void setTraits(const std::vector<persona::Trait>& traits);
    bool select(const QString& name);
    const persona::Trait* current() const;

private:
    std::vector<persona::Trait> traits_;
};

// Table cells of judged results, as the Monitoring and Sweeps tabs show them.
QTableWidgetItem* readOnlyItem(const QString& text);
QString scoreText(const std::optional<double>& score);  // "63.4", or "-" for no score
