// MainWindow and the open project: the project shown in the panels, and the Project tree on the
// left (double click and context menu open what an item stands for).
#include "shell/main_window.h"

#include "panels/extraction_panel.h"
#include "panels/heat_map_panel.h"
#include "panels/flagging_panel.h"
#include "panels/training_panel.h"
#include "panels/monitoring_panel.h"
#include "panels/sweep_panel.h"
#include "panels/steering_panel.h"
#include "panels/traits_panel.h"
#include "persona/project.h"
#include "shell/engine_client.h"
#include "shell/project_controller.h"
#include "widgets/vector_choice.h"

#include <QLabel>
#include <QMenu>
#include <QTreeWidget>

namespace {
// What a Project tree item stands for (its Qt::UserRole holds the name, key or index).
constexpr int kTreeKindRole = Qt::UserRole + 1;
enum TreeKind { TreeNone = 0, TreeTrait, TreeVector, TreePrompt, TreeRun, TreeStudy, TreeSweep };
}  // namespace

// Called for every project change; each panel is only touched when the project now says
// something else than the panel shows, so an edit made in a panel never resets that panel.
void MainWindow::showProjectInPanels() {
    const persona::Project& project = projects_->project();
    refreshProjectTree();
    if (!project.traits.empty() && project.traits != traitsPanel_->traits()) traitsPanel_->setTraits(project.traits);
    if (!project.traits.empty()) {
        extractionPanel_->setTraits(project.traits);
        monitoringPanel_->setTraits(project.traits);
        sweepPanel_->setTraits(project.traits);
        trainingPanel_->setTraits(project.traits);
    }
    if (engine_->facts()) {
        steeringPanel_->setProjectVectors(project.vectors);
        heatMapPanel_->setProjectVectors(project.vectors);
        monitoringPanel_->setProjectVectors(project.vectors);
        sweepPanel_->setProjectVectors(project.vectors);
        flaggingPanel_->setProjectVectors(project.vectors);
        trainingPanel_->setProjectVectors(project.vectors);
    }
}

void MainWindow::applyProjectToPanels() {
    if (!engine_->facts()) return;  // onModelLoaded applies it: vectors need the model's shape
    const persona::Project& project = projects_->project();
    steeringPanel_->setProjectVectors(project.vectors);
    heatMapPanel_->setProjectVectors(project.vectors);
    persona::SteeringSettings steering = project.settings.steering;
    for (const persona::RunResult& run : project.runs)
        if (steering.layer < 0 && run.vector == steering.vector) steering.layer = run.suggested_layer;
    steeringPanel_->applySettings(steering);
    heatMapPanel_->selectProjectVector(QString::fromStdString(steering.vector));
    monitoringPanel_->vectorChoice()->selectProjectVector(QString::fromStdString(steering.vector));
    sweepPanel_->vectorChoice()->selectProjectVector(QString::fromStdString(steering.vector));
    // The newest study and sweep the project keeps, as they were drawn.
    if (!project.monitoring.empty()) {
        const auto& [key, study] = project.monitoring.back();
        monitoringPanel_->selectTrait(QString::fromStdString(study.trait));
        monitoringPanel_->showStudy(study, QString::fromStdString(key));
    }
    if (!project.sweeps.empty()) {
        const persona::SweepResult& sweep = project.sweeps.back().second;
        sweepPanel_->selectTrait(QString::fromStdString(sweep.trait));
        sweepPanel_->showResult(sweep);
    }
    if (!project.skipped_files.empty())
        showError(tr("Not read from the project (left in place): %1").arg(QString::fromStdString(project.skipped_files.front())));
}

void MainWindow::keepMonitoringStudy(const persona::MonitoringStudy& study) {
    engineState_->setText(tr("engine: ready (monitoring study done)"));
    monitoringPanel_->showStudy(study, projects_->addMonitoringStudy(study));
}

// The tree on the left: the model, then what the project holds. Double-clicking a trait opens it
// in the Traits tab.
void MainWindow::refreshProjectTree() {
    const persona::Project& project = projects_->project();
    while (projectTree_->topLevelItemCount() > 1) delete projectTree_->takeTopLevelItem(1);
    auto* traits = new QTreeWidgetItem({tr("Traits (%1)").arg(project.traits.size())});
    for (const persona::Trait& trait : project.traits) {
        auto* item = new QTreeWidgetItem(traits, {QString::fromStdString(trait.name)});
        item->setData(0, kTreeKindRole, TreeTrait);
        item->setData(0, Qt::UserRole, QString::fromStdString(trait.name));
    }
    auto* runs = new QTreeWidgetItem({tr("Runs (%1)").arg(project.runs.size())});
    for (std::size_t i = 0; i < project.runs.size(); ++i) {
        const persona::RunResult& run = project.runs[i];
        auto* item = new QTreeWidgetItem(runs, {tr("%1: %2/%3 pairs kept, layer %4")
                                                    .arg(QString::fromStdString(run.trait))
                                                    .arg(run.pairs.kept)
                                                    .arg(run.pairs.total)
                                                    .arg(run.suggested_layer)});
        item->setData(0, kTreeKindRole, TreeRun);
        item->setData(0, Qt::UserRole, static_cast<int>(i));
    }
    auto* vectors = new QTreeWidgetItem({tr("Vectors (%1)").arg(project.vectors.size())});
    for (const auto& entry : project.vectors) {
        auto* item = new QTreeWidgetItem(vectors, {QString::fromStdString(entry.first)});
        item->setData(0, kTreeKindRole, TreeVector);
        item->setData(0, Qt::UserRole, QString::fromStdString(entry.first));
    }
    auto* prompts = new QTreeWidgetItem({tr("Prompts (%1)").arg(project.prompts.size())});
    for (std::size_t i = 0; i < project.prompts.size(); ++i) {
        auto* item = new QTreeWidgetItem(prompts, {QString::fromStdString(project.prompts[i].name)});
        item->setData(0, kTreeKindRole, TreePrompt);
        item->setData(0, Qt::UserRole, static_cast<int>(i));
    }
    auto* studies = new QTreeWidgetItem({tr("Monitoring (%1)").arg(project.monitoring.size())});
    for (std::size_t i = 0; i < project.monitoring.size(); ++i) {
        const persona::MonitoringStudy& study = project.monitoring[i].second;
        const QString r = study.correlation ? QString::number(study.correlation->r, 'f', 2) : QStringLiteral("-");
        auto* item = new QTreeWidgetItem(studies, {tr("%1, layer %2: r = %3")
                                                       .arg(QString::fromStdString(study.trait))
                                                       .arg(study.layer)
                                                       .arg(r)});
        item->setToolTip(0, QString::fromStdString(project.monitoring[i].first));
        item->setData(0, kTreeKindRole, TreeStudy);
        item->setData(0, Qt::UserRole, static_cast<int>(i));
    }
    auto* sweeps = new QTreeWidgetItem({tr("Sweeps (%1)").arg(project.sweeps.size())});
    for (std::size_t i = 0; i < project.sweeps.size(); ++i) {
        const persona::SweepResult& sweep = project.sweeps[i].second;
        const auto& r = sweep.recommendation;
        auto* item = new QTreeWidgetItem(
            sweeps, {r.basis == persona::RecommendationBasis::None
                         ? tr("%1: no recommendation").arg(QString::fromStdString(sweep.trait))
                         : tr("%1: layer %2, strength %3").arg(QString::fromStdString(sweep.trait)).arg(r.layer).arg(r.calibrated_strength)});
        item->setToolTip(0, QString::fromStdString(project.sweeps[i].first));
        item->setData(0, kTreeKindRole, TreeSweep);
        item->setData(0, Qt::UserRole, static_cast<int>(i));
    }
    projectTree_->addTopLevelItems({traits, runs, vectors, prompts, studies, sweeps});
    traits->setExpanded(true);
    runs->setExpanded(true);
}

// Double click: a trait opens in Traits, a vector in Steering, a prompt in Steering's inputs.
void MainWindow::projectTreeActivated(QTreeWidgetItem* item) {
    if (!item) return;
    const QVariant value = item->data(0, Qt::UserRole);
    switch (item->data(0, kTreeKindRole).toInt()) {
    case TreeTrait: {
        const auto& traits = traitsPanel_->traits();
        for (std::size_t i = 0; i < traits.size(); ++i)
            if (QString::fromStdString(traits[i].name) == value.toString()) {
                traitsPanel_->setCurrentIndex(static_cast<int>(i));
                showPanel("traits");
            }
        break;
    }
    case TreeVector: openVectorIn(value.toString(), "steering"); break;
    case TreePrompt: usePrompt(value.toInt()); break;
    case TreeRun:
        if (showRun(value.toInt())) showPanel("extraction");
        break;
    case TreeSweep: {
        const auto& sweeps = projects_->project().sweeps;
        const auto index = static_cast<std::size_t>(value.toInt());
        if (index < sweeps.size()) {
            sweepPanel_->selectTrait(QString::fromStdString(sweeps[index].second.trait));
            sweepPanel_->showResult(sweeps[index].second);
            showPanel("sweeps");
        }
        break;
    }
    case TreeStudy: {
        const auto& studies = projects_->project().monitoring;
        const auto index = static_cast<std::size_t>(value.toInt());
        if (index < studies.size()) {
            monitoringPanel_->showStudy(studies[index].second, QString::fromStdString(studies[index].first));
            showPanel("monitoring");
        }
        break;
    }
    default: break;
    }
}

bool MainWindow::showRun(int index) {
    const persona::Project& project = projects_->project();
    if (index < 0 || index >= static_cast<int>(project.runs.size())) return false;
    const persona::RunResult& run = project.runs[static_cast<std::size_t>(index)];
    const auto vector = project.vectors.find(run.vector);
    return extractionPanel_->showRun(run, vector == project.vectors.end() ? nullptr : &vector->second);
}

void MainWindow::projectTreeMenu(const QPoint& position) {
    QTreeWidgetItem* item = projectTree_->itemAt(position);
    if (!item) return;
    const QVariant value = item->data(0, Qt::UserRole);
    QMenu menu(this);
    switch (item->data(0, kTreeKindRole).toInt()) {
    case TreeTrait: menu.addAction(tr("Edit in Traits"), this, [this, item] { projectTreeActivated(item); }); break;
    case TreeVector:
        menu.addAction(tr("Steer with It"), this, [this, value] { openVectorIn(value.toString(), "steering"); });
        menu.addAction(tr("Show in Heat Maps"), this, [this, value] { openVectorIn(value.toString(), "heat maps"); });
        break;
    case TreePrompt: menu.addAction(tr("Use in Steering"), this, [this, value] { usePrompt(value.toInt()); }); break;
    case TreeRun: menu.addAction(tr("Show Its Plots"), this, [this, item] { projectTreeActivated(item); }); break;
    default: return;
    }
    menu.exec(projectTree_->viewport()->mapToGlobal(position));
}

void MainWindow::openVectorIn(const QString& key, const QString& panel) {
    if (!engine_->facts()) {
        engineState_->setText(tr("Load a model to use the project's vectors."));
        return;
    }
    const bool found = panel == "steering" ? steeringPanel_->selectProjectVector(key) : heatMapPanel_->selectProjectVector(key);
    if (!found) engineState_->setText(tr("%1 does not fit the loaded model.").arg(key));
    else showPanel(panel);
}

void MainWindow::usePrompt(int index) {
    const auto& prompts = projects_->project().prompts;
    if (index < 0 || index >= static_cast<int>(prompts.size())) return;
    steeringPanel_->setConversation(QString::fromStdString(prompts[static_cast<std::size_t>(index)].system()),
                                    QString::fromStdString(prompts[static_cast<std::size_t>(index)].user()));
    showPanel("steering");
}
