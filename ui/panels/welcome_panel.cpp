#include "panels/welcome_panel.h"

#include "persona/project.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QGridLayout>
#include <QLabel>
#include <QListWidget>
#include <QPushButton>
#include <QVBoxLayout>

#include <set>

namespace {

constexpr int kPathRole = Qt::UserRole;

// Name, traits and description of a project, read without its vectors' values mattering: an
// example that cannot be read is listed with the reason rather than hidden.
QString describe(const QString& folder, bool* readable) {
    try {
        const persona::Project project = persona::read_project(folder.toStdString());
        QStringList traits;
        for (const auto& trait : project.traits) traits << QString::fromStdString(trait.name);
        *readable = true;
        QString text = QString::fromStdString(project.name.empty() ? QFileInfo(folder).completeBaseName().toStdString()
                                                                   : project.name);
        text += QObject::tr("  —  traits: %1; %2 vectors, %3 prompts")
                    .arg(traits.isEmpty() ? QObject::tr("none") : traits.join(", "))
                    .arg(project.vectors.size())
                    .arg(project.prompts.size());
        if (!project.description.empty()) {
            QString description = QString::fromStdString(project.description);
            // The first sentence is enough for a list; the tooltip has all of it.
            const int stop = description.indexOf(". ");
            if (stop > 0) description = description.left(stop + 1);
            text += "\n" + description;
        }
        return text;
    } catch (const std::exception& e) {
        *readable = false;
        return QFileInfo(folder).fileName() + "\n" + QObject::tr("cannot be read: %1").arg(QString::fromUtf8(e.what()));
    }
}

}  // namespace

WelcomePanel::WelcomePanel(QWidget* parent) : QWidget(parent) {
    setObjectName("welcome_panel");
    auto* title = new QLabel(tr("<h2>Persona Workbench</h2>"
                                "<p>Persona vectors: directions in a model's activations that stand for character "
                                "traits. Open an example to steer straight away: its vectors were extracted for the "
                                "default model.</p>"),
                             this);
    title->setWordWrap(true);

    auto* newButton = new QPushButton(tr("New Project"), this);
    newButton->setObjectName("welcome_new");
    auto* openButton = new QPushButton(tr("Open Project..."), this);
    openButton->setObjectName("welcome_open");
    connect(newButton, &QPushButton::clicked, this, &WelcomePanel::newRequested);
    connect(openButton, &QPushButton::clicked, this, &WelcomePanel::openDialogRequested);

    const auto makeList = [this](const char* name) {
        auto* list = new QListWidget(this);
        list->setObjectName(name);
        list->setWordWrap(true);
        list->setSpacing(3);
        list->setAlternatingRowColors(true);
        list->setCursor(Qt::PointingHandCursor);
        connect(list, &QListWidget::itemClicked, this, &WelcomePanel::activate);
        connect(list, &QListWidget::itemActivated, this, &WelcomePanel::activate);
        return list;
    };
    examples_ = makeList("welcome_examples");
    recent_ = makeList("welcome_recent");

    auto* buttons = new QHBoxLayout;
    buttons->addWidget(newButton);
    buttons->addWidget(openButton);
    buttons->addStretch(1);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(24, 16, 24, 16);
    layout->addWidget(title);
    layout->addLayout(buttons);
    layout->addWidget(new QLabel(tr("<b>Example projects</b> (one click opens)"), this));
    layout->addWidget(examples_, 3);
    layout->addWidget(new QLabel(tr("<b>Recent projects</b>"), this));
    layout->addWidget(recent_, 2);

    refreshExamples();
    setRecentProjects({});
}

QStringList WelcomePanel::exampleFolders() {
    QStringList folders;
    const QString fromEnvironment = qEnvironmentVariable("PERSONA_PROJECTS_DIR");
    if (!fromEnvironment.isEmpty()) folders << fromEnvironment;
    folders << QDir(QCoreApplication::applicationDirPath()).filePath("../share/persona-workbench/projects");
#ifdef PERSONA_SOURCE_DIR
    folders << QDir(QStringLiteral(PERSONA_SOURCE_DIR)).filePath("projects");
#endif
    return folders;
}

QStringList WelcomePanel::exampleProjects() {
    QStringList found;
    std::set<QString> names;
    for (const QString& folder : exampleFolders()) {
        const QDir dir(folder);
        for (const QFileInfo& info :
             dir.entryInfoList({QString("*") + persona::kProjectExtension}, QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name)) {
            if (!names.insert(info.fileName()).second) continue;
            found << info.canonicalFilePath();
        }
    }
    return found;
}

void WelcomePanel::refreshExamples() { fill(examples_, exampleProjects(), tr("No example projects were found.")); }

void WelcomePanel::setRecentProjects(const QStringList& folders) {
    fill(recent_, folders, tr("Projects you open or save appear here."));
}

void WelcomePanel::fill(QListWidget* list, const QStringList& folders, const QString& emptyText) {
    list->clear();
    for (const QString& folder : folders) {
        bool readable = false;
        auto* item = new QListWidgetItem(describe(folder, &readable), list);
        item->setData(kPathRole, folder);
        item->setToolTip(folder);
        item->setIcon(QIcon(":/icons/persona-workbench.svg"));
        if (!readable) item->setFlags(item->flags() & ~Qt::ItemIsEnabled);
    }
    if (folders.isEmpty()) {
        auto* item = new QListWidgetItem(emptyText, list);
        item->setFlags(Qt::NoItemFlags);
    }
}

void WelcomePanel::activate(QListWidgetItem* item) {
    const QString folder = item ? item->data(kPathRole).toString() : QString();
    if (!folder.isEmpty()) emit openRequested(folder);
}
