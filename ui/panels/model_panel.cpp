#include "panels/model_panel.h"

#include "shell/engine_client.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMimeData>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QTableWidget>
#include <QUrl>
#include <QVBoxLayout>

namespace {

constexpr int kPathRole = Qt::UserRole;

// The local path a drag carries when it carries exactly one.
QString droppedPath(const QMimeData* mime) {
    if (!mime || !mime->hasUrls() || mime->urls().size() != 1) return {};
    const QUrl url = mime->urls().front();
    return url.isLocalFile() ? QDir::cleanPath(url.toLocalFile()) : QString();
}

QString homeRelative(const QString& path) {
    const QString home = QDir::homePath();
    return path.startsWith(home + "/") ? "~" + path.mid(home.size()) : path;
}

}  // namespace

ModelPanel::ModelPanel(EngineClient* engine, QWidget* parent) : QWidget(parent), engine_(engine) {
    auto* layout = new QVBoxLayout(this);
    message_ = new QLabel(tr("No model loaded."), this);
    message_->setObjectName("model_message");
    message_->setWordWrap(true);
    message_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(message_);

    auto* columns = new QHBoxLayout;
    auto* left = new QVBoxLayout;
    left->addWidget(buildFactsBox());
    left->addStretch(1);
    auto* right = new QVBoxLayout;
    right->addWidget(buildOpenBox());
    right->addWidget(buildServerBox());
    right->addWidget(buildRecentBox(), 1);
    columns->addLayout(left, 3);
    columns->addLayout(right, 2);
    layout->addLayout(columns, 1);

    connect(engine_, &EngineClient::loadStarted, this, &ModelPanel::onLoadStarted);
    connect(engine_, &EngineClient::progress, this, &ModelPanel::onProgress);
    connect(engine_, &EngineClient::modelLoaded, this, &ModelPanel::onModelLoaded);
    connect(engine_, &EngineClient::loadFailed, this, &ModelPanel::onLoadFailed);
    connect(engine_, &EngineClient::loadCancelled, this, &ModelPanel::onLoadCancelled);
    connect(engine_, &EngineClient::busyChanged, this, &ModelPanel::updateButtons);
    setLoadOptions(engine_->defaultLoadOptions());
    refreshRecentList();
    updateButtons();
}

QWidget* ModelPanel::buildOpenBox() {
    auto* box = new QGroupBox(tr("Open"), this);
    auto* layout = new QVBoxLayout(box);
    auto* buttons = new QHBoxLayout;
    openFile_ = new QPushButton(tr("Open model file…"), box);
    openFile_->setObjectName("open_model_file");
    openFile_->setToolTip(tr("A GGUF file (Ctrl+M)"));
    openFolder_ = new QPushButton(tr("Open model folder…"), box);
    openFolder_->setObjectName("open_model_folder");
    openFolder_->setToolTip(tr("A Hugging Face checkpoint folder: config.json, *.safetensors, tokenizer files "
                               "(Ctrl+Shift+M)"));
    buttons->addWidget(openFile_);
    buttons->addWidget(openFolder_);
    layout->addLayout(buttons);

    auto* form = new QFormLayout;
    device_ = new QComboBox(box);
    device_->setObjectName("device_choice");
    for (const std::string& name : persona::device_names()) {
        const QString text = QString::fromStdString(name);
        device_->addItem(text == "auto" ? tr("auto (cuda when there is a GPU)") : text, text);
    }
    dtype_ = new QComboBox(box);
    dtype_->setObjectName("dtype_choice");
    for (const std::string& name : persona::dtype_names()) {
        const QString text = QString::fromStdString(name);
        dtype_->addItem(text == "auto"                ? tr("auto (bf16 where native, else f32)")
                        : text == "f16"               ? tr("f16 (cuda only)")
                        : text == "quantized-precise" ? tr("quantized-precise (f32's results, slower decode)")
                                                      : text,
                        text);
    }
    form->addRow(tr("Device:"), device_);
    form->addRow(tr("Weights dtype:"), dtype_);
    thinking_ = new QCheckBox(tr("Let the model think before answering (Qwen3)"), box);
    thinking_->setObjectName("thinking_choice");
    thinking_->setToolTip(tr("Off: answers start right away, after an empty <think> block, which extraction and "
                             "steering need (a reasoning block would be averaged into the answer). Applies on the "
                             "next load."));
    form->addRow(tr("Thinking:"), thinking_);
    adapter_ = new QLineEdit(box);
    adapter_->setObjectName("adapter_choice");
    adapter_->setPlaceholderText(tr("none"));
    adapter_->setToolTip(tr("A LoRA adapter folder in PEFT's layout (adapter_config.json, adapter_model.safetensors), "
                            "merged into the weights on the next load; the Training tab writes these"));
    auto* chooseAdapter = new QPushButton(tr("Choose..."), box);
    connect(chooseAdapter, &QPushButton::clicked, this, [this] {
        const QString folder = QFileDialog::getExistingDirectory(this, tr("LoRA adapter folder"), adapter_->text());
        if (!folder.isEmpty()) adapter_->setText(folder);
    });
    auto* adapterRow = new QHBoxLayout;
    adapterRow->addWidget(adapter_, 1);
    adapterRow->addWidget(chooseAdapter);
    form->addRow(tr("Adapter:"), adapterRow);
    layout->addLayout(form);

    auto* actions = new QHBoxLayout;
    reload_ = new QPushButton(tr("Reload with these settings"), box);
    reload_->setObjectName("reload_model");
    cancel_ = new QPushButton(tr("Cancel loading"), box);
    cancel_->setObjectName("cancel_load");
    actions->addWidget(reload_);
    actions->addWidget(cancel_);
    layout->addLayout(actions);
    progress_ = new QProgressBar(box);
    progress_->setObjectName("model_load_progress");
    progress_->setVisible(false);
    layout->addWidget(progress_);

    connect(openFile_, &QPushButton::clicked, this, &ModelPanel::chooseModelFile);
    connect(openFolder_, &QPushButton::clicked, this, &ModelPanel::chooseModelFolder);
    connect(reload_, &QPushButton::clicked, this, &ModelPanel::reloadModel);
    connect(cancel_, &QPushButton::clicked, engine_, &EngineClient::cancelLoad);
    return box;
}

QWidget* ModelPanel::buildServerBox() {
    auto* box = new QGroupBox(tr("Served model"), this);
    box->setToolTip(tr("A model that persona-cli serve serves on this or another machine (a GPU box, say): the "
                       "Steering tab's pairs, sweeps and heat maps generate there. The other tabs need a local model."));
    auto* form = new QFormLayout(box);
    serverUrl_ = new QLineEdit(QSettings().value(kServerUrlKey).toString(), box);
    serverUrl_->setObjectName("server_url");
    serverUrl_->setPlaceholderText(QStringLiteral("http://127.0.0.1:8080"));
    serverKey_ = new QLineEdit(box);
    serverKey_->setObjectName("server_key");
    serverKey_->setEchoMode(QLineEdit::Password);
    serverKey_->setPlaceholderText(tr("none"));
    serverKey_->setToolTip(tr("The server's --api-key; kept in memory only, never saved"));
    connectServer_ = new QPushButton(tr("Connect"), box);
    connectServer_->setObjectName("connect_server");
    auto* keyRow = new QHBoxLayout;
    keyRow->addWidget(serverKey_, 1);
    keyRow->addWidget(connectServer_);
    form->addRow(tr("Address:"), serverUrl_);
    form->addRow(tr("API key:"), keyRow);
    connect(connectServer_, &QPushButton::clicked, this, &ModelPanel::connectServer);
    connect(serverUrl_, &QLineEdit::returnPressed, this, &ModelPanel::connectServer);
    return box;
}

void ModelPanel::connectServer() {
    const QString url = serverUrl_->text().trimmed();
    if (url.isEmpty()) {
        showMessage(tr("Type the address persona-cli serve printed, e.g. http://127.0.0.1:8080.%1").arg(stillLoadedNote()));
        return;
    }
    QSettings().setValue(kServerUrlKey, url);
    engine_->connectServer(url, serverKey_->text());
}

QWidget* ModelPanel::buildRecentBox() {
    auto* box = new QGroupBox(tr("Recent models"), this);
    auto* layout = new QVBoxLayout(box);
    recent_ = new QListWidget(box);
    recent_->setObjectName("recent_models");
    recent_->setToolTip(tr("Double-click (or Enter) to open. Drop a .gguf file or a checkpoint folder on the "
                           "window to open it."));
    layout->addWidget(recent_);
    removeMissing_ = new QPushButton(tr("Remove missing"), box);
    removeMissing_->setObjectName("remove_missing_models");
    layout->addWidget(removeMissing_, 0, Qt::AlignRight);
    connect(recent_, &QListWidget::itemActivated, this, &ModelPanel::openRecentItem);
    connect(removeMissing_, &QPushButton::clicked, this, &ModelPanel::removeMissingRecentModels);
    return box;
}

QWidget* ModelPanel::buildFactsBox() {
    auto* column = new QWidget(this);
    auto* layout = new QVBoxLayout(column);
    layout->setContentsMargins(0, 0, 0, 0);
    auto* factsBox = new QGroupBox(tr("Model"), column);
    auto* form = new QFormLayout(factsBox);
    name_ = addFact(form, tr("Name"), "fact_name");
    path_ = addFact(form, tr("File"), "fact_path");
    architecture_ = addFact(form, tr("Architecture"), "fact_architecture");
    layers_ = addFact(form, tr("Layers"), "fact_layers");
    hidden_ = addFact(form, tr("Hidden size"), "fact_hidden");
    feedForward_ = addFact(form, tr("Feed-forward size"), "fact_feed_forward");
    heads_ = addFact(form, tr("Heads / KV heads"), "fact_heads");
    vocabulary_ = addFact(form, tr("Vocabulary"), "fact_vocabulary");
    parameters_ = addFact(form, tr("Parameters"), "fact_parameters");
    quantization_ = addFact(form, tr("Quantization"), "fact_quantization");
    context_ = addFact(form, tr("Context length"), "fact_context");
    tokenizer_ = addFact(form, tr("Tokenizer"), "fact_tokenizer");
    chatTemplate_ = addFact(form, tr("Chat template"), "fact_chat_template");
    deviceFact_ = addFact(form, tr("Device"), "fact_device");
    memory_ = addFact(form, tr("Memory"), "fact_memory");
    path_->setWordWrap(true);
    layout->addWidget(factsBox);

    auto* typesBox = new QGroupBox(tr("Tensor types"), column);
    auto* typesLayout = new QVBoxLayout(typesBox);
    tensorTypes_ = new QTableWidget(0, 2, typesBox);
    tensorTypes_->setObjectName("tensor_types");
    tensorTypes_->setHorizontalHeaderLabels({tr("Type"), tr("Tensors")});
    tensorTypes_->horizontalHeader()->setStretchLastSection(true);
    tensorTypes_->verticalHeader()->setVisible(false);
    tensorTypes_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    tensorTypes_->setMaximumHeight(140);
    typesLayout->addWidget(tensorTypes_);
    layout->addWidget(typesBox);
    return column;
}

QLabel* ModelPanel::addFact(QFormLayout* form, const QString& label, const QString& objectName) {
    auto* value = new QLabel(QStringLiteral("–"), this);
    value->setObjectName(objectName);
    value->setTextInteractionFlags(Qt::TextSelectableByMouse);
    form->addRow(label + ":", value);
    return value;
}

persona::ModelLoadOptions ModelPanel::loadOptions() const {
    return {device_->currentData().toString().toStdString(), dtype_->currentData().toString().toStdString(),
            thinking_->isChecked(), adapter_->text().trimmed().toStdString()};
}

void ModelPanel::setLoadOptions(const persona::ModelLoadOptions& options) {
    // An option the combo does not list (a typo on the command line) stays visible, so the
    // engine's error about it makes sense.
    const auto select = [](QComboBox* combo, const QString& value) {
        int index = combo->findData(value);
        if (index < 0) {
            combo->addItem(value, value);
            index = combo->count() - 1;
        }
        combo->setCurrentIndex(index);
    };
    select(device_, QString::fromStdString(options.device));
    select(dtype_, QString::fromStdString(options.dtype));
    thinking_->setChecked(options.thinking);
    adapter_->setText(QString::fromStdString(options.adapter));
}

bool ModelPanel::looksLikeModel(const QString& path) {
    const QFileInfo info(path);
    return info.isDir() || (info.isFile() && info.suffix().compare("gguf", Qt::CaseInsensitive) == 0);
}

void ModelPanel::openModel(const QString& path) {
    lastRequestedPath_ = path;
    engine_->loadModel(path, loadOptions());
}

void ModelPanel::reloadModel() {
    const QString path = engine_->modelPath().isEmpty() ? lastRequestedPath_ : engine_->modelPath();
    if (path.isEmpty()) {
        showMessage(tr("Open a model first: there is nothing to reload."));
        return;
    }
    openModel(path);
}

void ModelPanel::chooseModelFile() {
    const QString start = engine_->modelPath().isEmpty() ? QString() : QFileInfo(engine_->modelPath()).absolutePath();
    const QString path =
        QFileDialog::getOpenFileName(this, tr("Open Model File"), start, tr("GGUF models (*.gguf);;All files (*)"));
    if (!path.isEmpty()) openModel(path);
}

void ModelPanel::chooseModelFolder() {
    const QString path = QFileDialog::getExistingDirectory(this, tr("Open Hugging Face Checkpoint Folder"));
    if (!path.isEmpty()) openModel(path);
}

void ModelPanel::acceptDropsOn(QWidget* window) {
    window->setAcceptDrops(true);
    window->installEventFilter(this);
}

bool ModelPanel::eventFilter(QObject* watched, QEvent* event) {
    if (event->type() == QEvent::DragEnter || event->type() == QEvent::DragMove) {
        auto* drag = static_cast<QDragMoveEvent*>(event);
        // Any single local path is taken, so a wrong one gets a message rather than a "no" cursor.
        if (!droppedPath(drag->mimeData()).isEmpty()) {
            drag->acceptProposedAction();
            return true;
        }
    } else if (event->type() == QEvent::Drop) {
        auto* drop = static_cast<QDropEvent*>(event);
        const QString path = droppedPath(drop->mimeData());
        if (!path.isEmpty()) {
            drop->acceptProposedAction();
            if (looksLikeModel(path)) openModel(path);
            else
                showMessage(tr("%1 is not a model: drop a .gguf file or a Hugging Face checkpoint folder.%2")
                                .arg(path, stillLoadedNote()));
            return true;
        }
    }
    return QWidget::eventFilter(watched, event);
}

QString ModelPanel::stillLoadedNote() const {
    const persona::ModelFacts* facts = engine_->facts();
    if (!facts) return {};
    if (!engine_->serverUrl().isEmpty())
        return tr("\n%1, served at %2, is still in use.").arg(QString::fromStdString(facts->name), engine_->serverUrl());
    return tr("\n%1 (%2, %3) is still loaded.")
        .arg(QString::fromStdString(facts->name), QString::fromStdString(facts->device), QString::fromStdString(facts->dtype));
}

void ModelPanel::onLoadStarted(const QString& path) {
    loadingPath_ = path;
    showMessage((path == serverUrl_->text().trimmed() ? tr("Connecting to %1 …") : tr("Loading %1 …")).arg(path));
    progress_->setRange(0, 0);  // busy until the first figures arrive
    progress_->setVisible(true);
    updateButtons();
}

void ModelPanel::onProgress(const QString& stage, qint64 done, qint64 total) {
    if (!engine_->loading()) return;
    progress_->setFormat(stage + " %v/%m");
    if (total > 0) {
        progress_->setRange(0, static_cast<int>(total));
        progress_->setValue(static_cast<int>(done));
    }
}

void ModelPanel::onModelLoaded() {
    progress_->setVisible(false);
    showFacts(*engine_->facts());
    if (engine_->serverUrl().isEmpty()) {
        rememberRecentModel(engine_->modelPath());
    } else {
        path_->setText(tr("served at %1").arg(engine_->serverUrl()));
        showMessage(tr("Using the model served at %1: the Steering tab generates there; the other tabs need a local "
                       "model.").arg(engine_->serverUrl()));
    }
    updateButtons();
}

void ModelPanel::onLoadFailed(const QString& error) {
    progress_->setVisible(false);
    showMessage(tr("Could not load %1:\n%2%3").arg(loadingPath_, error, stillLoadedNote()));
    updateButtons();
}

void ModelPanel::onLoadCancelled() {
    progress_->setVisible(false);
    showMessage(tr("Loading %1 was cancelled.%2").arg(loadingPath_, stillLoadedNote()));
    updateButtons();
}

void ModelPanel::updateButtons() {
    const bool loading = engine_->loading();
    cancel_->setEnabled(loading);
    connectServer_->setEnabled(!loading);
    reload_->setEnabled(!loading && !(engine_->modelPath().isEmpty() && lastRequestedPath_.isEmpty()));
}

QStringList ModelPanel::recentModels() const { return QSettings().value(kRecentModelsKey).toStringList(); }

void ModelPanel::writeRecentModels(const QStringList& paths) {
    QSettings().setValue(kRecentModelsKey, paths);
    refreshRecentList();
    emit recentModelsChanged();
}

void ModelPanel::rememberRecentModel(const QString& path) {
    if (path.isEmpty()) return;
    const QString absolute = QFileInfo(path).absoluteFilePath();
    QStringList paths = recentModels();
    paths.removeAll(absolute);
    paths.prepend(absolute);
    while (paths.size() > kMaxRecentModels) paths.removeLast();
    writeRecentModels(paths);
}

void ModelPanel::forgetRecentModel(const QString& path) {
    QStringList paths = recentModels();
    if (paths.removeAll(path) > 0) writeRecentModels(paths);
}

void ModelPanel::removeMissingRecentModels() {
    QStringList kept, removed;
    for (const QString& path : recentModels()) (QFileInfo::exists(path) ? kept : removed) << path;
    if (removed.isEmpty()) return;
    writeRecentModels(kept);
    showMessage(tr("Removed from the recent list, since they no longer exist:\n%1").arg(removed.join('\n')));
}

void ModelPanel::refreshRecentList() {
    recent_->clear();
    bool anyMissing = false;
    for (const QString& path : recentModels()) {
        const QFileInfo info(path);
        const bool exists = info.exists();
        anyMissing |= !exists;
        auto* item = new QListWidgetItem(
            QStringLiteral("%1\n    %2").arg(info.fileName(), homeRelative(info.absolutePath())), recent_);
        item->setData(kPathRole, path);
        item->setIcon(style()->standardIcon(info.isDir() ? QStyle::SP_DirIcon : QStyle::SP_FileIcon));
        if (!exists) {
            item->setForeground(palette().brush(QPalette::Disabled, QPalette::Text));
            item->setText(tr("%1 (missing)\n    %2").arg(info.fileName(), homeRelative(info.absolutePath())));
            item->setToolTip(tr("%1 no longer exists").arg(path));
        } else {
            item->setToolTip(path);
        }
    }
    if (recent_->count() == 0) {
        auto* hint = new QListWidgetItem(tr("Models you open are listed here."), recent_);
        hint->setFlags(Qt::NoItemFlags);
    }
    removeMissing_->setEnabled(anyMissing);
}

void ModelPanel::openRecentItem(QListWidgetItem* item) {
    const QString path = item->data(kPathRole).toString();
    if (path.isEmpty()) return;
    if (!QFileInfo::exists(path)) {
        forgetRecentModel(path);
        showMessage(tr("%1 no longer exists; it was removed from the recent list.%2").arg(path, stillLoadedNote()));
        return;
    }
    openModel(path);
}

void ModelPanel::showMessage(const QString& message) { message_->setText(message); }

void ModelPanel::showFacts(const persona::ModelFacts& f) {
    message_->setText(tr("Model loaded."));
    name_->setText(QString::fromStdString(f.name));
    path_->setText(QString::fromStdString(f.path));
    architecture_->setText(QString::fromStdString(f.architecture));
    layers_->setText(QString::number(f.layers));
    hidden_->setText(QString::number(f.hidden_size));
    feedForward_->setText(QString::number(f.feed_forward_size));
    heads_->setText(QStringLiteral("%1 / %2 (head dim %3)").arg(f.attention_heads).arg(f.kv_heads).arg(f.head_dim));
    vocabulary_->setText(QString::number(f.vocabulary_size));
    parameters_->setText(QStringLiteral("%1 (%2)")
                             .arg(QString::fromStdString(persona::human_count(f.parameters)))
                             .arg(QLocale().toString(static_cast<qulonglong>(f.parameters))));
    quantization_->setText(QStringLiteral("%1, file %2")
                               .arg(QString::fromStdString(f.file_type))
                               .arg(QString::fromStdString(persona::human_bytes(f.file_bytes))));
    context_->setText(QString::number(f.context_length));
    tokenizer_->setText(QString::fromStdString(f.tokenizer_model));
    chatTemplate_->setText(!f.chat_format.empty() ? QString::fromStdString(f.chat_format)
                           : f.has_chat_template ? tr("present, in a format this version does not render")
                                                 : tr("absent"));
    deviceFact_->setText(QStringLiteral("%1, %2").arg(QString::fromStdString(f.device), QString::fromStdString(f.dtype)));
    memory_->setText(tr("weights %1, process %2")
                         .arg(QString::fromStdString(persona::human_bytes(f.weight_bytes)))
                         .arg(QString::fromStdString(persona::human_bytes(f.process_rss_bytes))));
    tensorTypes_->setRowCount(0);
    for (const auto& [type, count] : f.tensor_types) {
        const int row = tensorTypes_->rowCount();
        tensorTypes_->insertRow(row);
        tensorTypes_->setItem(row, 0, new QTableWidgetItem(QString::fromStdString(type)));
        tensorTypes_->setItem(row, 1, new QTableWidgetItem(QString::number(count)));
    }
}
