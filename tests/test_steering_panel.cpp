// The Steering panel on the real default model: one batched job streams an unsteered and a
// steered row side by side, the heat maps grow with the tokens, strength reads in calibrated
// units, a user's change of steering regenerates the steered row alone (cancelling the job
// before it), and what a program sets starts nothing, all without blocking the UI thread.
#include "shell/engine_client.h"
#include "persona/vector_files.h"
#include "widgets/more_vectors_editor.h"
#include "widgets/projection_heat_map.h"
#include "widgets/vector_choice.h"
#include "panels/steering_panel.h"
#include "persona/project.h"
#include "engine_fixture.h"
#include "test_support.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QSlider>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QThread>
#include <QTimer>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <utility>

namespace {
constexpr int kMaxTokens = 24;
constexpr int kGenerationTimeoutMs = 180000;

double norm(const persona::LayerView& values) {
    double sum = 0;
    for (float v : values) sum += static_cast<double>(v) * v;
    return std::sqrt(sum);
}

// Pixels of the palette's saturated ends: a heat map that drew nothing has none.
int strongDivergingPixels(const QImage& image) {
    int count = 0;
    for (int y = 0; y < image.height(); ++y)
        for (int x = 0; x < image.width(); ++x) {
            const QColor c = image.pixelColor(x, y);
            const bool red = c.red() > 140 && c.green() < 110 && c.blue() < 110;
            const bool blue = c.blue() > 140 && c.red() < 110 && c.green() < 170;
            if (red || blue) ++count;
        }
    return count;
}
}  // namespace

class TestSteeringPanel : public QObject {
    Q_OBJECT

    std::unique_ptr<EngineClient> engine_;
    std::unique_ptr<SteeringPanel> panel_;
    std::optional<std::pair<QString, QString>> textsAt8_;  // unsteered, steered

    bool runToEnd() {
        QSignalSpy finished(panel_.get(), &SteeringPanel::generationFinished);
        panel_->generate();
        return finished.wait(kGenerationTimeoutMs);
    }

    // The texts at coefficient 8 (seed 5), made by whichever test needs them first, so no test
    // depends on another having run.
    const std::pair<QString, QString>& textsAt8() {
        if (!textsAt8_) {
            panel_->setCoefficient(8.0);
            if (!runToEnd()) qFatal("the generation at coefficient 8 did not finish");
            textsAt8_ = {panel_->paneText(SteeringPanel::Unsteered), panel_->paneText(SteeringPanel::Steered)};
        }
        return *textsAt8_;
    }

    // |v_l| / typical |h_l| for the vector and layer chosen now.
    double strengthScale() const {
        const int layer = panel_->steeredLayer();
        return norm(panel_->currentVector()->layer(layer)) /
               engine_->facts()->typical_residual_norms[static_cast<std::size_t>(layer)];
    }

private slots:
    void initTestCase() {
        engine_ = persona_test::loadedEngine();
        panel_ = std::make_unique<SteeringPanel>(engine_.get());
        panel_->resize(1000, 760);
        panel_->show();
        QVERIFY(QTest::qWaitForWindowExposed(panel_.get()));
        panel_->setModel(*engine_->facts());
        panel_->findChild<QSpinBox*>("max_tokens")->setValue(kMaxTokens);
        panel_->findChild<QSpinBox*>("seed")->setValue(5);
        panel_->findChild<QDoubleSpinBox*>("temperature")->setValue(0.7);
    }

    void defaultsComeFromTheModel() {
        QCOMPARE(panel_->steeredLayer(), 20);  // two thirds of 30 blocks
        QVERIFY(panel_->currentVector() != nullptr);
        QVERIFY(panel_->findChild<QComboBox*>("vector_choice")->currentText().startsWith("Random direction"));
        // Greedy unless the user asks for sampling.
        QVERIFY(!panel_->findChild<QCheckBox*>("sample")->isChecked());
        QVERIFY(!panel_->findChild<QDoubleSpinBox*>("temperature")->isEnabled());

        // Strength is calibrated: coefficient x |v_l| / typical |h_l| at the steered layer, so
        // slider, strength box and coefficient box are one value in three widgets.
        const auto& norms = engine_->facts()->typical_residual_norms;
        QCOMPARE(static_cast<int>(norms.size()), engine_->facts()->layers + 1);
        const double scale = strengthScale();
        QVERIFY2(scale > 0.01 && scale < 1, qPrintable(QString::number(scale)));
        auto* slider = panel_->findChild<QSlider*>("strength_slider");
        slider->setValue(-10);  // 0.05 a step
        QVERIFY(std::abs(panel_->strength() - -0.5) < 1e-9);
        QVERIFY(std::abs(panel_->coefficient() - -0.5 / scale) < 1e-9);
        QCOMPARE(panel_->findChild<QDoubleSpinBox*>("strength")->value(), -0.5);
        panel_->setCoefficient(2.5);
        QCOMPARE(panel_->coefficient(), 2.5);
        QCOMPARE(slider->value(), static_cast<int>(std::lround(2.5 * scale * 20)));
        QCOMPARE(panel_->findChild<QDoubleSpinBox*>("coefficient")->value(), 2.5);

        // Another layer keeps the strength, and the coefficient follows.
        auto* layer = panel_->findChild<QSpinBox*>("layer");
        const double strength = panel_->strength();
        layer->setValue(10);
        QVERIFY(std::abs(panel_->strength() - strength) < 1e-9);
        QVERIFY(std::abs(panel_->coefficient() - strength / strengthScale()) < 1e-9);
        QVERIFY(std::abs(panel_->coefficient() - 2.5) > 0.1);
        layer->setValue(20);
    }

    void steeredAndUnsteeredStreamSideBySide() {
        panel_->setCoefficient(0.0);
        QVERIFY(runToEnd());
        const QString unsteeredAt0 = panel_->paneText(SteeringPanel::Unsteered);
        QVERIFY(!unsteeredAt0.isEmpty());

        // The UI thread keeps turning while the engine thread generates.
        int ticksWhileGenerating = 0;
        QTimer heartbeat;
        connect(&heartbeat, &QTimer::timeout, [&] {
            if (panel_->generating()) ++ticksWhileGenerating;
        });
        heartbeat.start(5);
        QSignalSpy progress(panel_.get(), &SteeringPanel::generationProgress);
        panel_->setCoefficient(8.0);
        QVERIFY(runToEnd());
        heartbeat.stop();
        QVERIFY2(ticksWhileGenerating > 10, qPrintable(QString::number(ticksWhileGenerating)));
        QVERIFY(progress.count() > 1);
        QVERIFY(progress.last().at(2).toDouble() > 0);  // tokens per second

        textsAt8_ = {panel_->paneText(SteeringPanel::Unsteered), panel_->paneText(SteeringPanel::Steered)};
        const auto& [unsteeredAt8, steeredAt8] = *textsAt8_;
        QVERIFY(!steeredAt8.isEmpty());
        // Same seed, same sampling: the unsteered row does not depend on its batch neighbour.
        QCOMPARE(unsteeredAt8, unsteeredAt0);
        QVERIFY2(steeredAt8 != unsteeredAt8, qPrintable(steeredAt8));
        QCOMPARE(panel_->shownCoefficient(), 8.0);

        const int layers = engine_->facts()->layers + 1;
        for (auto pane : {SteeringPanel::Unsteered, SteeringPanel::Steered}) {
            const int tokens = panel_->tokenCount(pane);
            QVERIFY(tokens > 0 && tokens <= kMaxTokens + 1);  // + the end-of-sequence token
            QCOMPARE(panel_->heatMap(pane)->layerCount(), layers);
            QCOMPARE(panel_->heatMap(pane)->columnCount(), tokens);
        }
        auto* difference = panel_->differenceHeatMap();
        QCOMPARE(difference->columnCount(),
                 std::min(panel_->tokenCount(SteeringPanel::Unsteered), panel_->tokenCount(SteeringPanel::Steered)));

        // The first token is predicted from the prompt's last position, the same in both rows,
        // where "response" steering starts: the difference is exactly alpha |v| at the steered
        // layer and nothing below it (bf16 leaves a little slack).
        const int layer = panel_->steeredLayer();
        const double expected = 8.0 * norm(panel_->currentVector()->layer(layer));
        QVERIFY2(std::abs(difference->valueAt(0, layer) - expected) < 0.05 * expected,
                 qPrintable(QString("%1 vs %2").arg(difference->valueAt(0, layer)).arg(expected)));
        QVERIFY(std::abs(difference->valueAt(0, layer - 1)) < 0.01 * expected);
    }

    void hoveringACellNamesLayerTokenAndValue() {
        ProjectionHeatMap* map = panel_->heatMap(SteeringPanel::Steered);
        map->replot();
        const int layer = panel_->steeredLayer();
        const QPoint cell(static_cast<int>(map->xAxis->coordToPixel(0)), static_cast<int>(map->yAxis->coordToPixel(layer)));
        const QString text = map->describeCellAt(cell);
        QVERIFY2(text.startsWith(QString("layer %1, token 0").arg(layer)), qPrintable(text));
        QVERIFY2(text.contains(QString::number(map->valueAt(0, layer), 'f', 2)), qPrintable(text));
        QVERIFY(map->describeCellAt(QPoint(1, 1)).isEmpty());  // the title, not a cell
    }

    void movingTheSliderCancelsAndRestarts() {
        // What coefficient 8 gives when nothing interrupts it.
        const auto [unsteered, steered] = textsAt8();
        QVERIFY(runToEnd());  // live: the user's changes now regenerate
        auto* coefficient = panel_->findChild<QDoubleSpinBox*>("coefficient");

        QSignalSpy started(panel_.get(), &SteeringPanel::generationStarted);
        QSignalSpy finished(panel_.get(), &SteeringPanel::generationFinished);
        QSignalSpy stopped(panel_.get(), &SteeringPanel::generationStopped);
        // After a generation, the user's change regenerates by itself.
        coefficient->setValue(-3.0);
        QVERIFY(started.wait(5000));
        const persona::JobHandle first = panel_->job();
        QVERIFY(first);
        QTRY_VERIFY_WITH_TIMEOUT(panel_->job().state() == persona::JobState::running || !panel_->generating(),
                                 kGenerationTimeoutMs);
        coefficient->setValue(8.0);

        // The change starts a second job and cancels the first, its own; only the second's
        // result is shown (with fast kernels the first may have finished before the cancel).
        QTRY_COMPARE_WITH_TIMEOUT(started.count(), 2, kGenerationTimeoutMs);
        QVERIFY(panel_->job() != first);
        QVERIFY(first.cancel_requested());
        QTRY_VERIFY_WITH_TIMEOUT(!panel_->generating(), kGenerationTimeoutMs);
        const persona::JobState firstEnding = first.wait();
        QVERIFY(firstEnding == persona::JobState::cancelled || firstEnding == persona::JobState::finished);
        QCOMPARE(panel_->job().state(), persona::JobState::finished);
        // A replaced job's ending is not shown; one that finished before the move was.
        QCOMPARE(finished.count(), firstEnding == persona::JobState::finished ? 2 : 1);
        QCOMPARE(stopped.count(), 0);   // being replaced is not a stop
        QCOMPARE(panel_->shownCoefficient(), 8.0);
        QCOMPARE(panel_->paneText(SteeringPanel::Unsteered), unsteered);
        QCOMPARE(panel_->paneText(SteeringPanel::Steered), steered);
        QVERIFY(!engine_->busy());
    }

    // The slider's answer: only the steered row is generated again; the unsteered text and its
    // tokens stay, and the old steered text stays until the new one arrives.
    void aSteeringChangeRegeneratesOnlyTheSteeredRow() {
        const QString prompt = panel_->findChild<QPlainTextEdit*>("prompt")->toPlainText();
        panel_->setPrompt(QStringLiteral("Describe your ideal weekend."));  // the unsteered row must be made anew
        panel_->setCoefficient(0.0);
        QVERIFY(runToEnd());
        QCOMPARE(panel_->lastJobRows(), 2);
        const QString unsteered = panel_->paneText(SteeringPanel::Unsteered);
        const int unsteeredTokens = panel_->tokenCount(SteeringPanel::Unsteered);
        const QString steeredBefore = panel_->paneText(SteeringPanel::Steered);
        QCOMPARE(steeredBefore, unsteered);  // strength 0, greedy

        QSignalSpy started(panel_.get(), &SteeringPanel::generationStarted);
        QSignalSpy finished(panel_.get(), &SteeringPanel::generationFinished);
        auto* slider = panel_->findChild<QSlider*>("strength_slider");
        slider->setValue(slider->value() + 30);  // +1.5: a user's move
        QVERIFY(started.wait(2000));
        QCOMPARE(panel_->lastJobRows(), 1);
        QCOMPARE(panel_->paneText(SteeringPanel::Steered), steeredBefore);  // greyed, until new tokens
        QVERIFY(finished.wait(kGenerationTimeoutMs));
        QCOMPARE(panel_->paneText(SteeringPanel::Unsteered), unsteered);
        QCOMPARE(panel_->tokenCount(SteeringPanel::Unsteered), unsteeredTokens);
        QVERIFY2(panel_->paneText(SteeringPanel::Steered) != steeredBefore, qPrintable(panel_->paneText(SteeringPanel::Steered)));
        QVERIFY(panel_->findChild<QLabel*>("steered_title")->text().contains("strength 1.50"));

        // A change the unsteered row depends on regenerates both.
        panel_->findChild<QPlainTextEdit*>("prompt")->setPlainText(prompt);
        QVERIFY(started.wait(5000));
        QCOMPARE(panel_->lastJobRows(), 2);
        QVERIFY(finished.wait(kGenerationTimeoutMs));
        QVERIFY(panel_->paneText(SteeringPanel::Unsteered) != unsteered);
    }

    // What a program sets (a project opened, an extraction's vector, a saved setup) starts no
    // generation and is not a user's edit, even once Generate has been pressed.
    void programChangesStartNothing() {
        QVERIFY(runToEnd());
        const persona::SteeringSettings before = panel_->settings();
        QSignalSpy started(panel_.get(), &SteeringPanel::generationStarted);
        QSignalSpy edited(panel_.get(), &SteeringPanel::setupEdited);
        persona::PersonaVector vector = *panel_->currentVector();
        vector.trait = "extracted";
        for (float& value : vector.values) value *= 0.5f;
        QVERIFY(panel_->useVector(vector, "extracted (last extraction)", 12));
        panel_->setProjectVectors({{"vectors/extracted.response_avg.safetensors", vector}});
        panel_->setCoefficient(3.0);
        panel_->setStrength(0.25);
        panel_->setPrompt(QStringLiteral("Another prompt"));
        persona::SteeringSettings saved = before;
        saved.vector = "vectors/extracted.response_avg.safetensors";
        saved.seed = 9;
        saved.sample = true;
        panel_->applySettings(saved);
        QCOMPARE(panel_->settings().vector, saved.vector);
        QCOMPARE(panel_->settings().seed, std::uint64_t(9));
        QTest::qWait(600);  // longer than the typing debounce
        QCOMPARE(started.count(), 0);
        QCOMPARE(edited.count(), 0);
        QVERIFY(!panel_->generating());

        panel_->setProjectVectors({});
        panel_->useRandomDirection();
        panel_->applySettings(before);
        QCOMPARE(started.count(), 0);
    }

    // Chat mode: each side continues its own conversation, and a steering change answers the
    // last turn again on the steered side alone.
    void chatModeKeepsTwoConversations() {
        panel_->setChatMode(true);
        panel_->setStrength(0.5);
        QSignalSpy finished(panel_.get(), &SteeringPanel::generationFinished);
        auto* input = panel_->findChild<QLineEdit*>("chat_input");
        QVERIFY(input && input->isVisible());
        input->setText("Hello! Who are you?");
        QTest::keyClick(input, Qt::Key_Return);
        QVERIFY(finished.wait(kGenerationTimeoutMs));
        QCOMPARE(panel_->chatTurns(), 1);
        QCOMPARE(panel_->lastJobRows(), 2);
        input->setText("What do you like to do?");
        QTest::mouseClick(panel_->findChild<QPushButton*>("chat_send"), Qt::LeftButton);
        QVERIFY(finished.wait(kGenerationTimeoutMs));
        QCOMPARE(panel_->chatTurns(), 2);
        QCOMPARE(panel_->lastJobRows(), 2);

        const auto unsteered = panel_->conversation(SteeringPanel::Unsteered);
        const auto steered = panel_->conversation(SteeringPanel::Steered);
        QCOMPARE(unsteered.size(), std::size_t(4));  // system, user, assistant, user
        QCOMPARE(unsteered[2].role, std::string("assistant"));
        QVERIFY(!unsteered[2].content.empty());
        QVERIFY2(unsteered[2].content != steered[2].content, steered[2].content.c_str());
        const QString unsteeredText = panel_->paneText(SteeringPanel::Unsteered);
        for (const char* said : {"Hello! Who are you?", "What do you like to do?"}) QVERIFY(unsteeredText.contains(said));
        QVERIFY(unsteeredText.contains(QString::fromStdString(unsteered[2].content).trimmed()));
        QVERIFY(panel_->paneText(SteeringPanel::Steered).contains(QString::fromStdString(steered[2].content).trimmed()));

        auto* slider = panel_->findChild<QSlider*>("strength_slider");
        slider->setValue(slider->value() + 10);
        QVERIFY(finished.wait(kGenerationTimeoutMs));
        QCOMPARE(panel_->lastJobRows(), 1);
        QCOMPARE(panel_->paneText(SteeringPanel::Unsteered), unsteeredText);
        QCOMPARE(panel_->conversation(SteeringPanel::Steered)[2].content, steered[2].content);  // earlier turns stay

        panel_->setChatMode(false);
        QVERIFY(!input->isVisible());
        QCOMPARE(panel_->chatTurns(), 0);
    }

    void lateTokensOfAReplacedJobAreIgnored() {
        const auto [unsteeredAt8, steeredAt8] = textsAt8();
        QSignalSpy finished(panel_.get(), &SteeringPanel::generationFinished);
        panel_->setCoefficient(-3.0);
        panel_->generate();
        QTRY_VERIFY_WITH_TIMEOUT(panel_->tokenCount(SteeringPanel::Steered) >= 1, kGenerationTimeoutMs);
        // A busy UI thread: the engine keeps queueing this job's tokens meanwhile, and they
        // arrive after the next generation has started.
        QThread::msleep(400);
        panel_->setCoefficient(8.0);
        panel_->generate();
        QVERIFY(finished.wait(kGenerationTimeoutMs));
        QCOMPARE(finished.count(), 1);
        QCOMPARE(panel_->paneText(SteeringPanel::Unsteered), unsteeredAt8);
        QCOMPARE(panel_->paneText(SteeringPanel::Steered), steeredAt8);
    }

    void stopCancelsTheGeneration() {
        const QString prompt = panel_->findChild<QPlainTextEdit*>("prompt")->toPlainText();
        panel_->setPrompt(QStringLiteral("Tell me about the sea."));  // both rows are generated
        QSignalSpy stopped(panel_.get(), &SteeringPanel::generationStopped);
        QSignalSpy finished(panel_.get(), &SteeringPanel::generationFinished);
        panel_->generate();
        QTRY_VERIFY_WITH_TIMEOUT(panel_->tokenCount(SteeringPanel::Unsteered) >= 1, kGenerationTimeoutMs);
        QTest::mouseClick(panel_->findChild<QPushButton*>("stop_generation"), Qt::LeftButton);
        QVERIFY(stopped.wait(30000));
        QCOMPARE(finished.count(), 0);
        QVERIFY(!panel_->generating());
        QVERIFY(panel_->tokenCount(SteeringPanel::Unsteered) < kMaxTokens);
        QTRY_VERIFY(!engine_->busy());
        panel_->setPrompt(prompt);
    }

    void sweepShowsOneColumnPerStrength() {
        const auto [unsteeredAt8, steeredAt8] = textsAt8();
        QSignalSpy finished(panel_.get(), &SteeringPanel::generationFinished);
        const double at8 = 8 * strengthScale();  // the strength of coefficient 8
        panel_->setSweepStrengths(QStringLiteral("%1, 0, %2").arg(-at8, 0, 'g', 17).arg(at8, 0, 'g', 17));
        QCOMPARE(panel_->sweepStrengths(), (std::vector<double>{-at8, 0, at8}));
        int ticksWhileSweeping = 0;
        QTimer heartbeat;
        connect(&heartbeat, &QTimer::timeout, [&] {
            if (panel_->generating()) ++ticksWhileSweeping;
        });
        heartbeat.start(5);
        QTest::mouseClick(panel_->findChild<QPushButton*>("sweep_button"), Qt::LeftButton);
        QCOMPARE(panel_->mode(), SteeringPanel::SweepMode);
        QCOMPARE(panel_->sweepColumnCount(), 3);
        // The columns fill while the job runs, not only at its end.
        QTRY_VERIFY_WITH_TIMEOUT(panel_->sweepColumnTokens(0) >= 1, kGenerationTimeoutMs);
        QVERIFY(finished.wait(kGenerationTimeoutMs));
        heartbeat.stop();
        QVERIFY2(ticksWhileSweeping > 10, qPrintable(QString::number(ticksWhileSweeping)));
        QCOMPARE(panel_->sweepColumnCoefficient(0), -8.0);
        QCOMPARE(panel_->sweepColumnCoefficient(1), 0.0);
        QCOMPARE(panel_->sweepColumnCoefficient(2), 8.0);
        // Same prompt, seed and sampling as the side-by-side run: strength 0 is the unsteered
        // text, the strength of coefficient 8 the text steered at 8.
        QCOMPARE(panel_->sweepColumnText(1), unsteeredAt8);
        QCOMPARE(panel_->sweepColumnText(2), steeredAt8);
        QVERIFY(panel_->sweepColumnText(0) != unsteeredAt8);

        // Not numbers: a message, no job.
        QSignalSpy started(panel_.get(), &SteeringPanel::generationStarted);
        panel_->setSweepStrengths("-1, lots");
        QVERIFY(panel_->sweepStrengths().empty());
        panel_->sweep();
        QCOMPARE(started.count(), 0);
        QVERIFY(panel_->findChild<QLabel*>("steering_message")->text().contains("list of numbers"));

        // A sweep can be stopped like any generation.
        QSignalSpy stopped(panel_.get(), &SteeringPanel::generationStopped);
        panel_->setSweepStrengths("-0.5 0.5");
        panel_->sweep();
        QCOMPARE(panel_->sweepColumnCount(), 2);
        QTRY_VERIFY_WITH_TIMEOUT(panel_->sweepColumnTokens(0) >= 1, kGenerationTimeoutMs);
        panel_->stop();
        QVERIFY(stopped.wait(30000));
        QVERIFY(panel_->sweepColumnTokens(0) < kMaxTokens);
        QTRY_VERIFY(!engine_->busy());
    }

    // A vector steered beside the first is composed in the same row: the first adding 0 and a
    // second adding the same direction at 8 steer exactly as the first alone at 8.
    void moreVectorsComposeInTheSteeredRow() {
        const QString steeredAt8 = textsAt8().second;
        const persona::SteeringSettings before = panel_->settings();
        const std::string key = "vectors/random.response_avg.safetensors";
        persona::PersonaVector same = *panel_->currentVector();
        panel_->setProjectVectors({{key, same}});
        MoreVectorsEditor* more = panel_->moreVectors();
        QTest::mouseClick(panel_->findChild<QPushButton*>("add_vector"), Qt::LeftButton);
        QCOMPARE(more->rowCount(), 1);
        QCOMPARE(more->vectorChoice(0)->currentProjectKey(), QString::fromStdString(key));
        more->setRow(0, panel_->steeredLayer(), persona::SteerOperation::Add, 8.0);
        panel_->setCoefficient(0.0);
        QVERIFY(runToEnd());
        QCOMPARE(panel_->paneText(SteeringPanel::Steered), steeredAt8);
        QVERIFY(panel_->findChild<QLabel*>("steered_title")->text().contains("+ add random at layer 20, strength"));

        // The setup a project saves holds the row, and applying it rebuilds the row.
        const persona::SteeringSettings saved = panel_->settings();
        QCOMPARE(saved.more_vectors.size(), std::size_t(1));
        QCOMPARE(saved.more_vectors[0], (persona::SteeringTerm{key, 20, 8.0, persona::SteerOperation::Add}));
        more->removeRow(0);
        QCOMPARE(panel_->settings().more_vectors.size(), std::size_t(0));
        panel_->applySettings(saved);
        QCOMPARE(panel_->settings().more_vectors, saved.more_vectors);

        // At most four vectors in all.
        auto* add = panel_->findChild<QPushButton*>("add_vector");
        while (add->isEnabled()) QTest::mouseClick(add, Qt::LeftButton);
        QCOMPARE(more->rowCount(), MoreVectorsEditor::maxRows());
        QVERIFY(!more->addRow());

        panel_->setProjectVectors({});
        panel_->useRandomDirection();
        panel_->applySettings(before);
        QCOMPARE(more->rowCount(), 0);
        QVERIFY(add->isEnabled());
    }

    // Cap keeps the projection on the vector's direction at the steered layer at most the
    // value, at every steered position; a cap above every projection changes nothing.
    void capKeepsTheProjectionAtMostTheValue() {
        const persona::SteeringSettings before = panel_->settings();
        const int layer = panel_->steeredLayer();
        panel_->setCoefficient(0.0);
        QVERIFY(runToEnd());
        const ProjectionHeatMap* unsteered = panel_->heatMap(SteeringPanel::Unsteered);
        std::vector<double> projections;
        for (int t = 0; t < unsteered->columnCount(); ++t) projections.push_back(unsteered->valueAt(t, layer));
        std::sort(projections.begin(), projections.end());
        const double cap = projections[projections.size() / 2];
        // Half the positions are above the cap unsteered: the check below can fail.
        QVERIFY2(projections.back() > cap + 0.5, qPrintable(QString::number(projections.back())));

        auto* operation = panel_->findChild<QComboBox*>("operation");
        operation->setCurrentIndex(operation->findText("cap"));
        panel_->setCoefficient(cap);  // cap's raw value is the projection itself
        QVERIFY(runToEnd());
        const ProjectionHeatMap* capped = panel_->heatMap(SteeringPanel::Steered);
        const double slack = 0.02 * std::abs(cap) + 0.05;  // bf16 activations
        for (int t = 0; t < capped->columnCount(); ++t)
            QVERIFY2(capped->valueAt(t, layer) <= cap + slack,
                     qPrintable(QString("token %1: %2 > %3").arg(t).arg(capped->valueAt(t, layer)).arg(cap)));

        panel_->setCoefficient(projections.back() + 100);
        QVERIFY(runToEnd());
        QCOMPARE(panel_->paneText(SteeringPanel::Steered), panel_->paneText(SteeringPanel::Unsteered));
        panel_->applySettings(before);
    }

    void grabsToAnImage() {
        QVERIFY(runToEnd());
        const QImage image = panel_->grab().toImage();
        QVERIFY(!image.isNull());
        QCOMPARE(image.size(), panel_->size() * panel_->devicePixelRatio());
        const QImage map = panel_->heatMap(SteeringPanel::Steered)->grab().toImage();
        QVERIFY2(strongDivergingPixels(map) > 100, qPrintable(QString::number(strongDivergingPixels(map))));
    }

    void vectorFilesFitTheModelOrAreRefused() {
        const persona::ModelFacts& facts = *engine_->facts();
        QTemporaryDir dir;
        persona::PersonaVector vector;
        vector.trait = "optimistic";
        vector.layer_count = facts.layers + 1;
        vector.hidden_size = facts.hidden_size;
        vector.values.assign(static_cast<std::size_t>(vector.layer_count * vector.hidden_size), 0.5f);
        vector.provenance["suggested_layer"] = "7";
        const QString good = dir.filePath("optimistic.safetensors");
        persona::write_vector_file(good.toStdString(), vector);
        vector.hidden_size = 8;
        vector.values.assign(static_cast<std::size_t>(vector.layer_count * vector.hidden_size), 0.5f);
        const QString wrongModel = dir.filePath("small.safetensors");
        persona::write_vector_file(wrongModel.toStdString(), vector);

        QVERIFY(!panel_->openVectorFile(wrongModel));
        QVERIFY(panel_->findChild<QLabel*>("steering_message")->text().contains("576"));
        QVERIFY(panel_->findChild<QComboBox*>("vector_choice")->currentText().startsWith("Random direction"));

        QVERIFY(panel_->openVectorFile(good));
        QCOMPARE(panel_->findChild<QComboBox*>("vector_choice")->currentText(), QString("optimistic (optimistic.safetensors)"));
        QCOMPARE(panel_->steeredLayer(), 7);
        QCOMPARE(panel_->currentVector()->trait, std::string("optimistic"));
        panel_->stop();  // the new vector scheduled a regeneration: not needed here
    }

    void cleanupTestCase() {
        panel_.reset();
        engine_.reset();
    }
};

QTEST_MAIN(TestSteeringPanel)
#include "test_steering_panel.moc"
