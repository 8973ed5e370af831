#pragma once
// Which judge scores a study's answers: the judge model setup fetches, the studied model itself,
// or none. Shared by the Monitoring and Sweep panels (the Extraction form has its own, with HTTP
// endpoints and a second model of the user's choice).
#include "persona/judge.h"

#include <QComboBox>

class JudgeChoice : public QComboBox {
    Q_OBJECT
public:
    explicit JudgeChoice(QWidget* parent = nullptr);
    persona::JudgeSettings settings() const;
    // A second local model selects "judge model" (whatever its path), else the kind's entry.
    void setSettings(const persona::JudgeSettings& settings);
    // Empty when the choice can run, else why not (the judge model is not on disk).
    QString problem() const;

private:
    persona::JudgeSettings judge_;
};
