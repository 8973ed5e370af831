#pragma once
// What persona-workbench --screenshot FILE [--panel NAME] does once the window exists: give the
// panel something to show (a steered generation, a small extraction, a heat map on its vector,
// a trait draft with problems), render the window to FILE, and exit.
#include <QString>
#include <QTemporaryDir>

#include <utility>
#include <vector>

class MainWindow;
class QApplication;

class ScreenshotTour {
public:
    // panelName is the panel the window already shows, in MainWindow::showPanel's spelling.
    ScreenshotTour(QApplication& app, MainWindow& window, const QString& panelName, const QString& file);
    ScreenshotTour(const ScreenshotTour&) = delete;
    ScreenshotTour& operator=(const ScreenshotTour&) = delete;

    // Call before the window is shown and the model is opened: the tour starts when the model
    // has settled. The tour must live until app.exec() returns, since the connections it makes
    // call back into it until then.
    void start();

    // 1 when a step of the tour failed or the screenshot could not be written, else 0; the
    // application's exit code once app.exec() has returned.
    int exitCode() const { return exitCode_; }

private:
    void grabAndExit(bool succeeded);
    // Opens the shipped example project `folderName` (e.g. "evil.persona"); false when it is not
    // installed or does not open.
    bool openExample(const QString& folderName);
    // Question/answer pairs as a chat JSONL file in the scratch folder; empty when it cannot be written.
    QString writeScratchDataset(const QString& fileName, const std::vector<std::pair<const char*, const char*>>& samples);
    void runSmallExtraction();
    void runSmallFlagging();
    void runSmallTraining();

    QApplication& app_;
    MainWindow& window_;
    const QString panelName_;
    const QString file_;
    // Checkpoints of the screenshot's extraction stay out of the user's data folder.
    QTemporaryDir scratch_;
    int exitCode_ = 0;
};
