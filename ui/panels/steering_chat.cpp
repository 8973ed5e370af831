// SteeringPanel's chat mode: a conversation typed below the panes, each assistant turn answered
// unsteered and steered side by side, each side continuing its own earlier answers (as LM
// Studio shows one conversation, twice).
#include "panels/steering_panel.h"

#include <QCheckBox>
#include <QFont>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QTextCursor>
#include <QVBoxLayout>

void SteeringPanel::buildChatBar() {
    chatBar_ = new QWidget(this);
    auto* row = new QHBoxLayout(chatBar_);
    row->setContentsMargins(0, 0, 0, 0);
    chatInput_ = new QLineEdit(chatBar_);
    chatInput_->setObjectName("chat_input");
    chatInput_->setPlaceholderText(tr("Your message: Enter sends it to both sides"));
    sendButton_ = new QPushButton(tr("Send"), chatBar_);
    sendButton_->setObjectName("chat_send");
    auto* newChat = new QPushButton(tr("New Chat"), chatBar_);
    newChat->setObjectName("chat_clear");
    row->addWidget(new QLabel(tr("Chat"), chatBar_));
    row->addWidget(chatInput_, 1);
    row->addWidget(sendButton_);
    row->addWidget(newChat);
    static_cast<QVBoxLayout*>(layout())->addWidget(chatBar_);
    chatBar_->setVisible(false);
    connect(chatInput_, &QLineEdit::returnPressed, this, [this] { sendChatMessage(chatInput_->text()); });
    connect(sendButton_, &QPushButton::clicked, this, [this] { sendChatMessage(chatInput_->text()); });
    connect(newChat, &QPushButton::clicked, this, &SteeringPanel::clearChat);
    connect(chatToggle_, &QCheckBox::toggled, this, &SteeringPanel::setChatMode);
}

void SteeringPanel::setChatMode(bool on) {
    if (on == chatOn_) return;
    {
        const QSignalBlocker blocker(chatToggle_);
        chatToggle_->setChecked(on);
    }
    chatOn_ = on;
    chatBar_->setVisible(on && !presenterMode_);
    prompt_->setEnabled(!on);
    prompt_->setToolTip(on ? tr("Chat mode: type below the answers") : QString());
    clearChat();
    if (on) chatInput_->setFocus();
}

void SteeringPanel::sendChatMessage(const QString& text) {
    const QString message = text.trimmed();
    if (message.isEmpty() || !chatOn_) return;
    chat_.push_back({message, {}});
    chatInput_->clear();
    generate();  // the user's own action
}

void SteeringPanel::clearChat() {
    stop();
    chat_.clear();
    for (auto& pane : panes_) pane = {};
    shownUnsteeredKey_.clear();
    refreshViews();
}

std::vector<persona::ChatMessage> SteeringPanel::conversation(Pane pane) const {
    std::vector<persona::ChatMessage> messages;
    const QString system = systemPrompt_->toPlainText().trimmed();
    if (!system.isEmpty()) messages.push_back({"system", system.toStdString()});
    if (!chatOn_) {
        messages.push_back({"user", prompt_->toPlainText().toStdString()});
        return messages;
    }
    for (std::size_t turn = 0; turn < chat_.size(); ++turn) {
        messages.push_back({"user", chat_[turn].user.toStdString()});
        if (turn + 1 < chat_.size()) messages.push_back({"assistant", chat_[turn].answers[pane].toStdString()});
    }
    return messages;
}

QString SteeringPanel::paneAnswer(Pane pane) const { return panes_[pane].texts.join(QString()); }

void SteeringPanel::renderChatHistory(Pane pane, QTextCursor& cursor) const {
    QTextCharFormat plain;
    QTextCharFormat speaker;
    speaker.setFontWeight(QFont::Bold);
    for (std::size_t turn = 0; turn < chat_.size(); ++turn) {
        cursor.insertText(tr("You: "), speaker);
        cursor.insertText(chat_[turn].user + "\n", plain);
        cursor.insertText(tr("Assistant: "), speaker);
        if (turn + 1 < chat_.size()) cursor.insertText(chat_[turn].answers[pane] + "\n\n", plain);
    }
}
