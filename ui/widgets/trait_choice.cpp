#include "widgets/trait_choice.h"

#include <QTableWidgetItem>

TraitChoice::TraitChoice(QWidget* parent) : QComboBox(parent) {
    std::vector<persona::Trait> builtin;
    for (const std::string& name : persona::builtin_trait_names()) builtin.push_back(persona::load_builtin_trait(name));
    setTraits(builtin);
}

void TraitChoice::setTraits(const std::vector<persona::Trait>& traits) {
    const QString previous = currentText();
    {
        const QSignalBlocker blocker(this);
        traits_ = traits;
        clear();
        for (const persona::Trait& trait : traits_) {
            addItem(QString::fromStdString(trait.name));
            setItemData(count() - 1, QString::fromStdString(trait.definition), Qt::ToolTipRole);
        }
        const int again = findText(previous);
        setCurrentIndex(again >= 0 ? again : 0);
    }
    if (currentText() != previous) emit currentIndexChanged(currentIndex());
}

bool TraitChoice::select(const QString& name) {
    const int index = findText(name);
    if (index >= 0) setCurrentIndex(index);
    return index >= 0;
}

const persona::Trait* TraitChoice::current() const {
    const int index = currentIndex();
    return index >= 0 && index < int(traits_.size()) ? &traits_[std::size_t(index)] : nullptr;
}

QTableWidgetItem* readOnlyItem(const QString& text) {
    auto* item = new QTableWidgetItem(text);
    item->setFlags(item->flags() & ~Qt::ItemIsEditable);
    return item;
}

QString scoreText(const std::optional<double>& score) { return score ? QString::number(*score, 'f', 1) : QStringLiteral("-"); }
