// The workbench on a remote engine: the Model tab connects to persona-cli serve (real HTTP on
// loopback, the real default model), and the Steering tab's pair, heat maps and sweep then
// generate there with exactly the texts and, to float precision, the projections the same panel
// shows on a local model; Stop frees the server's rows; other work asks for a local model; a
// wrong key and a later local load behave as a user expects.
#include "cli_runner.h"
#include "engine_fixture.h"
#include "panels/model_panel.h"
#include "panels/steering_panel.h"
#include "shell/engine_client.h"
#include "test_support.h"
#include "widgets/projection_heat_map.h"

#include <QCheckBox>
#include <QDoubleSpinBox>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>

#include <cmath>
#include <memory>

namespace {
constexpr int kTimeoutMs = 180000;
const QString kKey = QStringLiteral("remote-workbench-key");
}  // namespace

class TestRemoteWorkbench : public QObject {
    Q_OBJECT
    QProcess server_;
    QString url_;
    std::unique_ptr<EngineClient> local_;
    std::unique_ptr<EngineClient> remote_;
    std::unique_ptr<ModelPanel> modelPanel_;

    // A Steering tab on `engine`, set up alike for both engines: sampled, seed 5, 20 tokens.
    std::unique_ptr<SteeringPanel> steeringPanel(EngineClient* engine) {
        auto panel = std::make_unique<SteeringPanel>(engine);
        panel->setModel(*engine->facts());
        panel->findChild<QSpinBox*>("max_tokens")->setValue(20);
        panel->findChild<QSpinBox*>("seed")->setValue(5);
        panel->findChild<QCheckBox*>("sample")->setChecked(true);
        panel->findChild<QDoubleSpinBox*>("temperature")->setValue(0.7);
        panel->setPrompt(QStringLiteral("What do you think about rainy days?"));
        panel->setStrength(0.6);
        return panel;
    }

    static bool run(SteeringPanel* panel, bool sweep = false) {
        QSignalSpy finished(panel, &SteeringPanel::generationFinished);
        QSignalSpy failed(panel, &SteeringPanel::generationFailed);
        sweep ? panel->sweep() : panel->generate();
        const bool ended = finished.wait(kTimeoutMs);
        if (!failed.isEmpty()) qWarning("%s", qPrintable(failed.first().at(0).toString()));
        return ended;
    }

private slots:
    void initTestCase() {
        QSettings().remove(ModelPanel::kServerUrlKey);
        // f32 on both sides: in bf16 the local tab prefills its rows as one batch and the server
        // prefills each alone, and bf16 matrix products of different shapes differ in the last
        // bits (heat-map values by up to 1.5%, which sampling turns into other words).
        const int port = persona_test::startServe(server_, {"--api-key", kKey, "--dtype", "f32"});
        QVERIFY(port > 0);
        url_ = QStringLiteral("http://127.0.0.1:%1").arg(port);
        local_ = std::make_unique<EngineClient>();
        {
            QSignalSpy ok(local_.get(), &EngineClient::modelLoaded);
            local_->loadModel(persona_test::defaultModelPath(), persona::ModelLoadOptions{"cpu", "f32"});
            QVERIFY(ok.wait(120000));
        }
        remote_ = std::make_unique<EngineClient>();
        modelPanel_ = std::make_unique<ModelPanel>(remote_.get());
        modelPanel_->findChild<QLineEdit*>("server_url")->setText(url_);
        modelPanel_->findChild<QLineEdit*>("server_key")->setText(kKey);
        QSignalSpy loaded(remote_.get(), &EngineClient::modelLoaded);
        QTest::mouseClick(modelPanel_->findChild<QPushButton*>("connect_server"), Qt::LeftButton);
        QVERIFY(loaded.wait(60000));
    }

    void cleanupTestCase() {
        modelPanel_.reset();
        remote_.reset();
        server_.terminate();
        server_.waitForFinished(10000);
    }

    void theModelTabShowsTheServedModel() {
        QCOMPARE(remote_->serverUrl(), url_);
        QVERIFY(remote_->modelPath().isEmpty());
        QCOMPARE(modelPanel_->findChild<QLabel*>("fact_layers")->text(), QString("30"));
        QVERIFY(modelPanel_->findChild<QLabel*>("fact_path")->text().contains(url_));
        QVERIFY(modelPanel_->findChild<QLabel*>("model_message")->text().contains("Steering tab generates there"));
        QCOMPARE(remote_->facts()->typical_residual_norms, local_->facts()->typical_residual_norms);
        QCOMPARE(QSettings().value(ModelPanel::kServerUrlKey).toString(), url_);  // the address, never the key
        for (const QString& setting : QSettings().allKeys()) QVERIFY(QSettings().value(setting).toString() != kKey);
        QVERIFY(modelPanel_->recentModels().filter(url_).isEmpty());
    }

    void thePairAndItsHeatMapsAreTheLocalOnes() {
        auto here = steeringPanel(local_.get());
        auto there = steeringPanel(remote_.get());
        QCOMPARE(there->coefficient(), here->coefficient());
        QVERIFY(run(here.get()));
        QVERIFY(run(there.get()));
        for (auto pane : {SteeringPanel::Unsteered, SteeringPanel::Steered}) {
            QCOMPARE(there->paneText(pane), here->paneText(pane));
            QCOMPARE(there->tokenCount(pane), here->tokenCount(pane));
            const ProjectionHeatMap* a = here->heatMap(pane);
            const ProjectionHeatMap* b = there->heatMap(pane);
            double largest = 0, scale = 0;
            for (int t = 0; t < here->tokenCount(pane); ++t)
                for (int layer = 0; layer <= 30; ++layer) {
                    largest = std::max(largest, std::abs(a->valueAt(t, layer) - b->valueAt(t, layer)));
                    scale = std::max(scale, std::abs(a->valueAt(t, layer)));
                }
            QVERIFY(scale > 0.1);
            QVERIFY2(largest <= 1e-4 * scale, qPrintable(QString("largest difference %1 of %2").arg(largest).arg(scale)));
        }
        QVERIFY(here->paneText(SteeringPanel::Steered) != here->paneText(SteeringPanel::Unsteered));
    }

    void theSweepIsTheLocalOne() {
        auto here = steeringPanel(local_.get());
        auto there = steeringPanel(remote_.get());
        for (SteeringPanel* panel : {here.get(), there.get()}) panel->setSweepStrengths("-0.6, 0, 0.6");
        QVERIFY(run(here.get(), true));
        QVERIFY(run(there.get(), true));
        QCOMPARE(there->sweepColumnCount(), 3);
        for (int column = 0; column < 3; ++column) QCOMPARE(there->sweepColumnText(column), here->sweepColumnText(column));
    }

    void stopFreesTheServer() {
        auto there = steeringPanel(remote_.get());
        there->findChild<QSpinBox*>("max_tokens")->setValue(400);
        QSignalSpy stopped(there.get(), &SteeringPanel::generationStopped);
        QSignalSpy progressed(there.get(), &SteeringPanel::generationProgress);
        there->generate();
        QVERIFY(progressed.wait(kTimeoutMs));
        there->stop();
        QVERIFY(stopped.wait(kTimeoutMs));
        QVERIFY(there->tokenCount(SteeringPanel::Unsteered) < 400);
        there->findChild<QSpinBox*>("max_tokens")->setValue(4);
        QVERIFY(run(there.get()));  // the server took the next request at once
    }

    void otherWorkAsksForALocalModel() {
        QString error;
        ConversationCallbacks callbacks;
        callbacks.receiver = remote_.get();
        callbacks.failed = [&](const QString& e) { error = e; };
        persona::PersonaVector vector;
        remote_->projectConversation({{"user", "Hi"}}, vector, callbacks);
        QTRY_VERIFY_WITH_TIMEOUT(!error.isEmpty(), kTimeoutMs);
        QVERIFY2(error.contains("needs a local model") && error.contains(url_), qPrintable(error));
    }

    void aWrongKeyIsRefusedAndALocalLoadTakesOver() {
        EngineClient other;
        QSignalSpy failed(&other, &EngineClient::loadFailed);
        other.connectServer(url_, QStringLiteral("wrong"));
        QVERIFY(failed.wait(60000));
        QVERIFY2(failed.first().at(0).toString().contains("401"), qPrintable(failed.first().at(0).toString()));
        QVERIFY(other.serverUrl().isEmpty());
        QVERIFY(!other.facts());

        QSignalSpy loaded(&other, &EngineClient::modelLoaded);
        other.connectServer(url_, kKey);
        QVERIFY(loaded.wait(60000));
        QCOMPARE(other.serverUrl(), url_);
        other.loadModel(persona_test::defaultModelPath());
        QVERIFY(loaded.wait(120000));
        QVERIFY(other.serverUrl().isEmpty());
        QCOMPARE(other.modelPath(), persona_test::defaultModelPath());
    }
};

QTEST_MAIN(TestRemoteWorkbench)
#include "test_remote_workbench.moc"
