// Two panels on one engine, as in the main window, on the real default model: moving the
// Steering slider and pressing Stop in the Steering panel while an extraction runs touch only the
// Steering panel's own jobs, so the extraction finishes with the vector an undisturbed run gives.
#include "shell/engine_client.h"
#include "panels/extraction_panel.h"
#include "panels/steering_panel.h"
#include "engine_fixture.h"
#include "test_support.h"

#include <QPushButton>
#include <QSignalSpy>
#include <QSlider>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTemporaryDir>

#include <memory>

namespace {
constexpr int kTimeoutMs = 300000;
}

class TestPanelsShareEngine : public QObject {
    Q_OBJECT

    std::unique_ptr<EngineClient> engine_;
    std::unique_ptr<ExtractionPanel> extraction_;
    std::unique_ptr<SteeringPanel> steering_;

    // Enough work that the extraction is still on the engine thread while the test drags the
    // slider: 3 questions x 2 pairs x 2 sides, 32 tokens each.
    static persona::ExtractionSettings settings() {
        persona::ExtractionSettings s;
        s.question_limit = 3;
        s.pair_limit = 2;
        s.samples_per_question = 1;
        s.max_new_tokens = 32;
        s.temperature = 1.0f;
        s.seed = 9;
        s.batch_size = 2;
        s.judge = persona::JudgeKind::None;
        return s;
    }

    std::vector<float> extract(const QString& checkpointDirectory, const std::function<void()>& whileRunning) {
        extraction_->setCheckpointDirectory(checkpointDirectory);
        extraction_->setSettings(settings());
        QSignalSpy finished(extraction_.get(), &ExtractionPanel::extractionFinished);
        QSignalSpy cancelled(extraction_.get(), &ExtractionPanel::extractionCancelled);
        QSignalSpy failed(extraction_.get(), &ExtractionPanel::extractionFailed);
        extraction_->run();
        if (!extraction_->running()) {
            qWarning("the extraction did not start");
            return {};
        }
        whileRunning();
        if (!finished.wait(kTimeoutMs) && finished.isEmpty()) {
            qWarning("the extraction did not finish: %d cancelled, %d failed", int(cancelled.count()), int(failed.count()));
            return {};
        }
        if (!cancelled.isEmpty() || !failed.isEmpty()) return {};
        return extraction_->result()->aggregate(persona::Aggregate::ResponseMean).vector.values;
    }

private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        engine_ = persona_test::loadedEngine();
        extraction_ = std::make_unique<ExtractionPanel>(engine_.get());
        extraction_->setModel(*engine_->facts());
        QVERIFY(extraction_->selectTrait("evil"));
        steering_ = std::make_unique<SteeringPanel>(engine_.get());
        steering_->setModel(*engine_->facts());
        steering_->findChild<QSpinBox*>("max_tokens")->setValue(8);
    }

    void steeringSliderAndStopLeaveARunningExtractionAlone() {
        QTemporaryDir undisturbedDir, disturbedDir;
        const std::vector<float> undisturbed = extract(undisturbedDir.path(), [] {});
        QVERIFY(!undisturbed.empty());

        int queuedGenerations = 0;
        bool extractionRanThroughout = true;
        const std::vector<float> disturbed = extract(disturbedDir.path(), [&] {
            auto* slider = steering_->findChild<QSlider*>("strength_slider");
            QVERIFY(slider);
            steering_->generate();  // queued behind the extraction: input changes now regenerate
            for (int value : {2, 5, -3, 12}) {  // strength in 0.05 steps
                slider->setValue(value);
                QTest::qWait(300);  // each move starts a generation
                if (steering_->generating()) ++queuedGenerations;
                extractionRanThroughout = extractionRanThroughout && extraction_->running();
            }
            QTest::mouseClick(steering_->findChild<QPushButton*>("stop_generation"), Qt::LeftButton);
            extractionRanThroughout = extractionRanThroughout && extraction_->running();
        });
        QVERIFY2(extractionRanThroughout, "the extraction ended before the steering panel was touched; make it longer");
        QVERIFY(queuedGenerations > 0);
        QCOMPARE(disturbed.size(), undisturbed.size());
        QVERIFY2(disturbed == undisturbed, "the disturbed run's vector differs from the undisturbed one");
        // Stop ended the steering panel's own job, which never ran: it waited behind the extraction.
        QTRY_VERIFY_WITH_TIMEOUT(!steering_->generating(), 60000);
        QCOMPARE(steering_->job().state(), persona::JobState::cancelled);
    }
};

QTEST_MAIN(TestPanelsShareEngine)
#include "test_panels_share_engine.moc"
