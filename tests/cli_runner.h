#pragma once
// Runs persona-cli (or the workbench) as a user would and collects what it printed: the one
// helper every suite that drives a program uses. A hang or a crash fails the suite at once,
// naming the command, instead of surfacing as a confusing assertion later.
#include <QByteArray>
#include <QProcess>
#include <QProcessEnvironment>
#include <QString>
#include <QStringList>
#include <QtTest>

namespace persona_test {

struct CliRun {
    int exitCode = -1;
    QByteArray out;
    QByteArray err;
};

inline CliRun runProgram(const QString& program, const QStringList& arguments, int timeoutMs = 300000,
                         const QProcessEnvironment& environment = QProcessEnvironment::systemEnvironment()) {
    QProcess process;
    process.setProcessEnvironment(environment);
    process.start(program, arguments);
    if (!process.waitForFinished(timeoutMs)) {
        process.kill();
        process.waitForFinished();
        qFatal("%s %s did not finish in %d s", qPrintable(program), qPrintable(arguments.join(' ')), timeoutMs / 1000);
    }
    if (process.exitStatus() != QProcess::NormalExit)
        qFatal("%s %s crashed", qPrintable(program), qPrintable(arguments.join(' ')));
    return {process.exitCode(), process.readAllStandardOutput(), process.readAllStandardError()};
}

inline CliRun runCli(const QStringList& arguments, int timeoutMs = 300000,
                     const QProcessEnvironment& environment = QProcessEnvironment::systemEnvironment()) {
    return runProgram(PERSONA_CLI_PATH, arguments, timeoutMs, environment);
}

// Starts persona-cli serve on a free loopback port with these options (after `serve`); the
// port, or 0 (with the server's words in a warning) when it did not start.
inline int startServe(QProcess& server, const QStringList& options) {
    server.start(PERSONA_CLI_PATH, QStringList{"--device", "cpu", "serve", "--port", "0"} + options);
    QByteArray printed;
    while (server.waitForStarted() && !printed.contains('\n') && server.waitForReadyRead(300000))
        printed += server.readAllStandardOutput();
    const QString line = QString::fromUtf8(printed).trimmed();
    if (!line.startsWith("listening on http://127.0.0.1:")) {
        qWarning("%s", qPrintable(line + server.readAllStandardError()));
        return 0;
    }
    return line.section(':', -1).toInt();
}

}  // namespace persona_test
