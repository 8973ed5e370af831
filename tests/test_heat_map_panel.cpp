// The Heat-map panel on the real default model: a typed conversation becomes a layer x token map
// whose cells are the projections persona::Model::trace gives and `persona-cli monitor` prints,
// one column per token and L + 1 rows; and an extraction's kept samples become a layer x sample
// map, positives first.
#include "shell/engine_client.h"
#include "panels/heat_map_panel.h"
#include "persona/model.h"
#include "persona/monitoring.h"
#include "persona/tokenizer.h"
#include "persona/vector_files.h"
#include "widgets/projection_heat_map.h"
#include "cli_runner.h"
#include "engine_fixture.h"
#include "test_support.h"

#include <QComboBox>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTimer>

#include <cmath>
#include <memory>
#include <random>

namespace {
constexpr int kTimeoutMs = 240000;

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

class TestHeatMapPanel : public QObject {
    Q_OBJECT

    std::unique_ptr<EngineClient> engine_;
    std::unique_ptr<HeatMapPanel> panel_;
    std::unique_ptr<persona::Model> model_;  // the test's own copy, to check the panel against
    QTemporaryDir dir_;
    persona::PersonaVector vector_;
    QString vectorPath_;
    int layers_ = 0;  // L + 1

    // Computes the panel's map of a conversation on the probe vector; false on timeout.
    bool computeConversation(const QString& system, const QString& user, const QString& assistant) {
        if (!panel_->selectVector("probe (probe.safetensors)")) return false;
        panel_->setConversation(system, user, assistant);
        QSignalSpy finished(panel_.get(), &HeatMapPanel::computeFinished);
        panel_->compute();
        return finished.wait(kTimeoutMs);
    }

private slots:
    void initTestCase() {
        engine_ = persona_test::loadedEngine();
        const persona::ModelFacts& facts = *engine_->facts();
        layers_ = facts.layers + 1;
        panel_ = std::make_unique<HeatMapPanel>(engine_.get());
        panel_->resize(1100, 760);
        panel_->show();
        QVERIFY(QTest::qWaitForWindowExposed(panel_.get()));
        panel_->setModel(facts);

        // A fixed Gaussian direction per layer: any vector will do for checking the arithmetic.
        vector_.trait = "probe";
        vector_.layer_count = layers_;
        vector_.hidden_size = facts.hidden_size;
        vector_.values.resize(static_cast<std::size_t>(layers_ * facts.hidden_size));
        std::mt19937 generator(11);
        std::normal_distribution<float> gaussian;
        for (float& v : vector_.values) v = gaussian(generator);
        vectorPath_ = dir_.filePath("probe.safetensors");
        persona::write_vector_file(vectorPath_.toStdString(), vector_);
        QVERIFY(panel_->openVectorFile(vectorPath_));
        model_ = persona::Model::load(persona_test::defaultModelPath().toStdString());
    }

    void refusesAVectorOfAnotherModel() {
        persona::PersonaVector small = vector_;
        small.hidden_size = 8;
        small.values.assign(static_cast<std::size_t>(layers_ * 8), 1.0f);
        const QString path = dir_.filePath("small.safetensors");
        persona::write_vector_file(path.toStdString(), small);
        QVERIFY(panel_->selectVector("probe (probe.safetensors)"));
        QVERIFY(!panel_->openVectorFile(path));
        QVERIFY2(panel_->message().contains("but the model needs [31, 576]"), qPrintable(panel_->message()));
        QVERIFY(!panel_->openVectorFile(dir_.filePath("missing.safetensors")));
        QVERIFY(panel_->message().contains("missing.safetensors"));
        // A file that cannot be used leaves the vector chosen before in place.
        QVERIFY(panel_->currentVector() != nullptr);
        QCOMPARE(panel_->currentVector()->values, vector_.values);
    }

    void typedConversationMatchesTrace() {
        QVERIFY(panel_->selectVector("probe (probe.safetensors)"));
        QVERIFY(panel_->currentVector() != nullptr);
        const QString system = "You are a helpful assistant.";
        const QString user = "How should I treat a stray dog?";
        const QString assistant = "Give it water and call a shelter.";
        panel_->setConversation(system, user, assistant);

        int ticksWhileComputing = 0;
        QTimer heartbeat;
        connect(&heartbeat, &QTimer::timeout, [&] {
            if (panel_->computing()) ++ticksWhileComputing;
        });
        heartbeat.start(1);
        QSignalSpy finished(panel_.get(), &HeatMapPanel::computeFinished);
        panel_->compute();
        QVERIFY(panel_->computing());
        QVERIFY(finished.wait(kTimeoutMs));
        heartbeat.stop();
        QVERIFY(ticksWhileComputing >= 1);

        // The prompt with its generation prompt, then the answer as the model would have generated
        // it (without the turn's closing tokens), traced on the test's own copy of the model.
        const auto& model = model_;
        const std::vector<persona::ChatMessage> prompt{{"system", system.toStdString()}, {"user", user.toStdString()}};
        std::vector<std::int32_t> tokens = model->encode_chat(prompt, true);
        const std::vector<std::int32_t> answer = persona::answer_tokens(*model, prompt, assistant.toStdString());
        QVERIFY(!answer.empty());
        tokens.insert(tokens.end(), answer.begin(), answer.end());
        QCOMPARE(panel_->projections().tokens, tokens);
        const int count = static_cast<int>(tokens.size());
        ProjectionHeatMap* map = panel_->conversationMap();
        QCOMPARE(map->columnCount(), count);
        QCOMPARE(map->layerCount(), layers_);
        QCOMPARE(panel_->projections().tokenTexts.size(), count);
        QCOMPARE(panel_->projections().tokenTexts.join("").toStdString(), model->tokenizer().decode(tokens, true));

        const persona::Model::Trace trace = model->trace(tokens);
        const int hidden = model->hidden_size();
        double worst = 0;
        for (int l = 0; l < layers_; ++l) {
            // bf16 activations: compare against the size of the layer's values, not each cell's.
            std::vector<double> expected(static_cast<std::size_t>(count));
            double largest = 0;
            for (int t = 0; t < count; ++t) {
                const float* h = trace.hidden_states.data() + (static_cast<std::size_t>(l) * count + t) * hidden;
                expected[static_cast<std::size_t>(t)] = persona::project(h, vector_.layer(l).values, hidden);
                if (t > 0) largest = std::max(largest, std::abs(expected[static_cast<std::size_t>(t)]));
            }
            for (int t = 0; t < count; ++t) {
                const double error = std::abs(map->valueAt(t, l) - expected[static_cast<std::size_t>(t)]);
                const double allowed = 0.02 * std::max(largest, std::abs(expected[static_cast<std::size_t>(t)])) + 1e-3;
                worst = std::max(worst, error / allowed);
                QVERIFY2(error <= allowed, qPrintable(QString("layer %1 token %2: %3 vs %4")
                                                          .arg(l)
                                                          .arg(t)
                                                          .arg(map->valueAt(t, l))
                                                          .arg(expected[static_cast<std::size_t>(t)])));
            }
        }
        qInfo("worst error / allowed: %.3f", worst);

        // Hovering a cell names its layer, token and value; the picture is not blank.
        map->replot();
        const int column = count - 2, layer = layers_ / 2;
        const QPoint cell(static_cast<int>(map->xAxis->coordToPixel(column)), static_cast<int>(map->yAxis->coordToPixel(layer)));
        const QString text = map->describeCellAt(cell);
        QVERIFY2(text.startsWith(QString("layer %1, token %2").arg(layer).arg(column)), qPrintable(text));
        QVERIFY2(text.contains(QString::number(map->valueAt(column, layer), 'f', 2)), qPrintable(text));
        QVERIFY(strongDivergingPixels(map->grab().toImage()) > 100);
        // Token texts label the columns.
        auto ticker = map->xAxis->ticker().dynamicCast<QCPAxisTickerText>();
        QVERIFY(ticker);
        QCOMPARE(ticker->ticks().size(), count);
    }

    // The Heat maps tab and `persona-cli monitor` run the same core operation: the same tokens
    // and the same projection at every layer and token.
    void sameNumbersAsTheCliMonitor() {
        const QString system = "You are a pirate.", user = "What do you think of the sea?",
                      assistant = "Arr, the sea is my home and my fortune.";
        QVERIFY(computeConversation(system, user, assistant));
        const persona_test::CliRun cli = persona_test::runCli({"monitor", "--model", persona_test::defaultModelPath(),
                                                               "--vector", vectorPath_, "--layer", "10", "--system", system,
                                                               "--prompt", user, "--answer", assistant});
        QVERIFY2(cli.exitCode == 0, cli.err.constData());
        const auto report = nlohmann::json::parse(cli.out.toStdString());
        const auto& conversation = report.at("conversations").at(0);
        QCOMPARE(conversation.at("token_ids").get<std::vector<std::int32_t>>(), panel_->projections().tokens);
        const auto& projections = conversation.at("projections");  // [layer][token], 6 significant digits
        QCOMPARE(int(projections.size()), layers_);
        const auto& columns = panel_->projections().columns;  // [token][layer]
        for (int l = 0; l < layers_; ++l)
            for (std::size_t t = 0; t < columns.size(); ++t) {
                const double cliValue = projections.at(std::size_t(l)).at(t).get<double>();
                const double panelValue = columns[t][std::size_t(l)];
                QVERIFY2(std::abs(cliValue - panelValue) <= 1e-5 * std::abs(panelValue) + 1e-6,
                         qPrintable(QString("layer %1 token %2: CLI %3, panel %4").arg(l).arg(t).arg(cliValue).arg(panelValue)));
            }
    }

    void withoutAnAnswerTheMapEndsAtTheGenerationPrompt() {
        QVERIFY(computeConversation("", "Hello", ""));
        const auto& model = model_;
        QCOMPARE(panel_->projections().tokens, model->encode_chat({{"user", "Hello"}}, true));
        QCOMPARE(panel_->conversationMap()->columnCount(), static_cast<int>(panel_->projections().tokens.size()));
    }

    // A whole conversation (a flagged multi-turn sample): the earlier turns come first in the
    // map, between the system message and the last user message, until cleared.
    void aWholeConversationMapsEveryTurn() {
        QVERIFY(panel_->selectVector("probe (probe.safetensors)"));
        const std::vector<persona::ChatMessage> conversation{{"system", "Be brief."},
                                                             {"user", "Hi!"},
                                                             {"assistant", "Hello there."},
                                                             {"user", "Any plans today?"},
                                                             {"assistant", "A walk in the park."}};
        panel_->setConversation(conversation);
        QCOMPARE(panel_->earlierTurnCount(), 2);
        QVERIFY(panel_->findChild<QLabel*>("heat_earlier_turns")->isVisibleTo(panel_.get()));
        QSignalSpy finished(panel_.get(), &HeatMapPanel::computeFinished);
        panel_->compute();
        QVERIFY(finished.wait(kTimeoutMs));
        const std::vector<persona::ChatMessage> prompt(conversation.begin(), conversation.end() - 1);
        std::vector<std::int32_t> tokens = model_->encode_chat(prompt, true);
        const std::vector<std::int32_t> answer = persona::answer_tokens(*model_, prompt, conversation.back().content);
        tokens.insert(tokens.end(), answer.begin(), answer.end());
        QCOMPARE(panel_->projections().tokens, tokens);

        QTest::mouseClick(panel_->findChild<QPushButton*>("heat_clear_earlier_turns"), Qt::LeftButton);
        QCOMPARE(panel_->earlierTurnCount(), 0);
        QVERIFY(!panel_->findChild<QLabel*>("heat_earlier_turns")->isVisibleTo(panel_.get()));
        QVERIFY(computeConversation("Be brief.", "Any plans today?", "A walk in the park."));
        QVERIFY(panel_->projections().tokens.size() < tokens.size());
    }

    void extractionSamplesFormALayerBySampleMap() {
        const persona::Trait trait = persona::load_builtin_trait("evil");
        persona::ExtractionSettings settings;
        settings.question_limit = 2;
        settings.pair_limit = 1;
        settings.max_new_tokens = 8;
        settings.seed = 2;
        settings.judge = persona::JudgeKind::None;
        std::optional<persona::ExtractionResult> result;
        ExtractionCallbacks callbacks;
        callbacks.receiver = this;
        callbacks.finished = [&](const persona::ExtractionResult& r) { result = r; };
        engine_->extract(trait, settings, std::move(callbacks));
        QTRY_VERIFY_WITH_TIMEOUT(result.has_value(), kTimeoutMs);
        QCOMPARE(result->pairs.kept, std::size_t(2));

        panel_->setExtraction(trait, *result);
        // The extraction's response_avg vector is chosen, and its kept samples fill the map.
        QVERIFY(panel_->findChild<QComboBox*>("heat_vector_choice")->currentText().contains("response_avg"));
        const persona::AggregateResult& aggregate = result->aggregate(persona::Aggregate::ResponseMean);
        QCOMPARE(panel_->currentVector()->values, aggregate.vector.values);
        ProjectionHeatMap* map = panel_->sampleMap();
        QCOMPARE(map->columnCount(), 4);
        QCOMPARE(map->layerCount(), layers_);
        const auto& columns = panel_->sampleColumns();
        QCOMPARE(result->samples[columns[0]].side, persona::Side::Positive);
        QCOMPARE(result->samples[columns[1]].side, persona::Side::Positive);
        QCOMPARE(result->samples[columns[2]].side, persona::Side::Negative);

        panel_->setSampleScale(HeatMapPanel::RawProjection);
        for (int k = 0; k < 4; ++k)
            for (int l = 0; l < layers_; ++l)
                QCOMPARE(map->valueAt(k, l), static_cast<double>(aggregate.sample_projections[static_cast<std::size_t>(k)][static_cast<std::size_t>(l)]));
        panel_->setSampleScale(HeatMapPanel::CentredPerLayer);
        // Two kept pairs suggest no layer; any layer shows the centring.
        QCOMPARE(aggregate.suggested_layer, -1);
        const int layer = layers_ / 2;
        const auto& d = aggregate.diagnostics[static_cast<std::size_t>(layer)];
        const double midpoint = (d.positive_mean_projection + d.negative_mean_projection) / 2;
        QVERIFY(std::abs(map->valueAt(0, layer) - (aggregate.sample_projections[0][static_cast<std::size_t>(layer)] - midpoint)) < 1e-3);
        // Centred on the midpoint, the positive side's mean sits half the gap between the sides
        // above zero, and the negative side's as far below it.
        const double halfGap = (d.positive_mean_projection - d.negative_mean_projection) / 2;
        QVERIFY(std::abs((map->valueAt(0, layer) + map->valueAt(1, layer)) / 2 - halfGap) < 1e-3 * (1 + std::abs(halfGap)));
        QVERIFY(std::abs((map->valueAt(2, layer) + map->valueAt(3, layer)) / 2 + halfGap) < 1e-3 * (1 + std::abs(halfGap)));
        QVERIFY(map->describeCellAt(QPoint(static_cast<int>(map->xAxis->coordToPixel(2)),
                                           static_cast<int>(map->yAxis->coordToPixel(layer))))
                    .startsWith(QString("layer %1, sample 2").arg(layer)));

        // A sample fills the conversation with the prompt it was generated from.
        QVERIFY(panel_->useSample(static_cast<int>(columns[0])));
        const persona::Sample& sample = result->samples[columns[0]];
        QCOMPARE(panel_->findChild<QPlainTextEdit*>("heat_system")->toPlainText().toStdString(),
                 persona::positive_system_prompt(trait, static_cast<std::size_t>(sample.pair)));
        QCOMPARE(panel_->findChild<QPlainTextEdit*>("heat_user")->toPlainText().toStdString(), sample.question);
        QCOMPARE(panel_->findChild<QPlainTextEdit*>("heat_assistant")->toPlainText().toStdString(), sample.answer);
        QVERIFY(!panel_->useSample(99));

        // A vector file has no samples of its own: the map says so rather than show stale ones.
        QVERIFY(panel_->selectVector("probe (probe.safetensors)"));
        QCOMPARE(map->columnCount(), 0);
    }

    void cleanupTestCase() {
        model_.reset();
        panel_.reset();
        engine_.reset();
    }
};

QTEST_MAIN(TestHeatMapPanel)
#include "test_heat_map_panel.moc"
