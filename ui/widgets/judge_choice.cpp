#include "widgets/judge_choice.h"

#include "persona/paths.h"

#include <QFileInfo>

namespace {
enum class Entry { JudgeModel, StudiedModel, None };
}  // namespace

JudgeChoice::JudgeChoice(QWidget* parent) : QComboBox(parent) {
    addItem(tr("judge model"), int(Entry::JudgeModel));
    addItem(tr("the studied model"), int(Entry::StudiedModel));
    addItem(tr("none (projections only)"), int(Entry::None));
    setToolTip(tr("The judge model is the one setup fetched (%1)").arg(QString::fromStdString(persona::judge_model_path())));
    judge_.model_path = persona::judge_model_path();
    connect(this, &QComboBox::currentIndexChanged, this, [this] {
        switch (Entry(currentData().toInt())) {
        case Entry::JudgeModel:
            judge_ = persona::JudgeSettings(persona::JudgeKind::Local);
            judge_.model_path = persona::judge_model_path();
            break;
        case Entry::StudiedModel: judge_ = persona::JudgeSettings(persona::JudgeKind::Local); break;
        case Entry::None: judge_ = persona::JudgeSettings(persona::JudgeKind::None); break;
        }
    });
}

persona::JudgeSettings JudgeChoice::settings() const { return judge_; }

void JudgeChoice::setSettings(const persona::JudgeSettings& settings) {
    const Entry entry = settings.kind == persona::JudgeKind::None ? Entry::None
                        : settings.model_path.empty()             ? Entry::StudiedModel
                                                                  : Entry::JudgeModel;
    {
        const QSignalBlocker blocker(this);
        setCurrentIndex(findData(int(entry)));
    }
    judge_ = settings;
}

QString JudgeChoice::problem() const {
    if (judge_.kind == persona::JudgeKind::Local && !judge_.model_path.empty() &&
        !QFileInfo(QString::fromStdString(judge_.model_path)).isFile())
        return tr("The judge model %1 is not there: run setup, or choose another judge.")
            .arg(QString::fromStdString(judge_.model_path));
    return {};
}
