// The monitoring study (persona/monitoring_study.h) on the real default model: each point's
// prediction is persona::monitor's last prompt token for the same conversation, each score the
// judge's for that answer, r is Pearson's over the points, and the study survives JSON and CSV.
#include "persona/errors.h"
#include "persona/model.h"
#include "persona/monitoring.h"
#include "persona/monitoring_study.h"
#include "persona/project.h"
#include "persona/sweep.h"
#include "persona/trait.h"
#include "persona/vector_files.h"
#include "test_support.h"

#include <QFile>
#include <QFileInfo>
#include <QTemporaryDir>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

namespace {

// Scores from the answer's text, so a score landing on the wrong point shows.
class TextLengthJudge : public persona::Judge {
public:
    int calls = 0;
    persona::JudgeScore score(const std::string& rubric, const std::string& question, const std::string& answer,
                              const persona::CancelFn&) override {
        ++calls;
        persona::JudgeScore s;
        s.score = expected(rubric, question, answer);
        return s;
    }
    persona::JudgePick pick(const std::string&, const persona::CancelFn&) override { return {}; }
    static double expected(const std::string& rubric, const std::string& question, const std::string& answer) {
        return double((answer.size() * 7 + question.size() + rubric.size()) % 101);
    }
};

std::string fileText(const QString& path) {
    std::ifstream in(path.toStdString(), std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

class TestMonitoringStudy : public QObject {
    Q_OBJECT

    std::unique_ptr<persona::Model> model_;
    persona::Trait trait_ = persona::load_builtin_trait("optimistic");
    persona::PersonaVector vector_;

    persona::MonitoringStudySettings smallSettings() const {
        persona::MonitoringStudySettings s;
        s.layer = 20;
        s.prompts = {{"discourage", persona::negative_system_prompt(trait_, 0)}, {"none", ""},
                     {"encourage, with \"quotes\", commas", persona::positive_system_prompt(trait_, 0)}};
        s.question_limit = 2;
        s.max_new_tokens = 6;
        s.batch_size = 4;  // six conversations: one full batch, one partial
        s.judge = persona::JudgeKind::None;
        return s;
    }

private slots:
    void initTestCase() {
        model_ = persona::Model::load(persona_test::defaultModelPath().toStdString(), persona::ModelLoadOptions{"cpu", "auto"});
        vector_ = persona::read_vector_file(
            PERSONA_SOURCE_DIR "/projects/optimistic-vs-pessimistic.persona/vectors/optimistic.response_avg.safetensors");
    }

    void pearsonAndItsInterval() {
        const auto c = persona::pearson_correlation({1, 2, 3, 4, 5}, {2, 4, 5, 4, 5});
        QVERIFY(c);
        QCOMPARE(c->n, 5);
        QVERIFY(std::abs(c->r - std::sqrt(0.6)) < 1e-12);
        // Fisher's z: tanh(atanh(r) -+ 1.96 / sqrt(n - 3)).
        QVERIFY(std::abs(c->low - -0.34008203518751035) < 1e-9);
        QVERIFY(std::abs(c->high - 0.9842357551507267) < 1e-9);
        const auto negative = persona::pearson_correlation({1, 2, 3}, {3, 2, 1});
        QVERIFY(negative && std::abs(negative->r + 1) < 1e-12);
        QVERIFY(!persona::pearson_correlation({1, 2, 3}, {4, 4, 4}));  // no variation
        QVERIFY(!persona::pearson_correlation({1, 2}, {1, 2}));        // too few
    }

    void defaultLadderRunsFromDiscouragingToEncouraging() {
        const auto ladder = persona::default_prompt_ladder(trait_);
        QCOMPARE(ladder.size(), std::size_t(5));
        QCOMPARE(ladder[0].system, persona::negative_system_prompt(trait_, 1));
        QCOMPARE(ladder[1].system, persona::negative_system_prompt(trait_, 0));
        QCOMPARE(ladder[2].system, std::string());
        QCOMPARE(ladder[3].system, persona::positive_system_prompt(trait_, 0));
        QCOMPARE(ladder[4].system, persona::positive_system_prompt(trait_, 1));
        QCOMPARE(persona::default_prompt_ladder(trait_, 0).size(), std::size_t(1));
    }

    // The study's predictions are monitor()'s for the same conversations, its answers are those
    // conversations' greedy answers, its scores the judge's for them, its r Pearson's over them.
    void pointsAreMonitorsPredictionsAndTheJudgesScores() {
        auto settings = smallSettings();
        // The live gauge: the first token of each answer is generated from the last prompt token,
        // so its projection is the point's prediction (read again by the capture).
        std::map<int, std::vector<double>> streamed;
        settings.on_token = [&](int point, double projection) { streamed[point].push_back(projection); };
        TextLengthJudge judge;
        int seen = 0;
        const auto study = persona::run_monitoring_study(*model_, trait_, vector_, settings, &judge, {},
                                                         [&](const persona::MonitoringPoint&) { ++seen; });
        QCOMPARE(study.points.size(), std::size_t(6));
        QCOMPARE(seen, 6);
        QCOMPARE(judge.calls, 12);  // trait and coherence per answer

        std::vector<persona::MonitorInput> inputs;
        for (const auto& point : study.points) {
            persona::MonitorInput input;
            const std::string& system = settings.prompts[std::size_t(point.prompt_index)].system;
            if (!system.empty()) input.messages.push_back({"system", system});
            input.messages.push_back({"user", trait_.evaluation_questions[std::size_t(point.question_index)]});
            input.generate_answer = true;
            input.sampling.max_new_tokens = settings.max_new_tokens;
            input.sampling.temperature = 0;
            inputs.push_back(std::move(input));
        }
        persona::MonitorOptions options;
        options.layers = {settings.layer};
        options.batch_size = settings.batch_size;
        const auto monitored = persona::monitor(*model_, vector_, inputs, options);
        std::vector<double> x, y;
        for (std::size_t i = 0; i < study.points.size(); ++i) {
            const auto& point = study.points[i];
            QCOMPARE(point.prompt_index, int(i / 2));
            QCOMPARE(point.question_index, int(i % 2));
            QCOMPARE(point.projection, monitored[i].prompt_last.front());
            QCOMPARE(point.answer, monitored[i].answer);
            const std::string& question = study.questions[std::size_t(point.question_index)];
            QCOMPARE(point.trait_score, std::optional<double>(TextLengthJudge::expected(trait_.judge_rubric, question, point.answer)));
            QCOMPARE(point.coherence, std::optional<double>(TextLengthJudge::expected(trait_.coherence_rubric, question, point.answer)));
            x.push_back(point.projection);
            y.push_back(*point.trait_score);
            QVERIFY(!streamed[int(i)].empty() && streamed[int(i)].size() <= std::size_t(settings.max_new_tokens));
            QVERIFY2(std::abs(streamed[int(i)].front() - point.projection) <= 0.02 * (1 + std::abs(point.projection)),
                     qPrintable(QString("point %1: streamed %2, captured %3").arg(i).arg(streamed[int(i)].front()).arg(point.projection)));
        }
        // The ladder moves the prediction: optimistic prompts read higher on the optimistic vector.
        QVERIFY2(study.points[4].projection > study.points[0].projection,
                 qPrintable(QString("%1 vs %2").arg(study.points[4].projection).arg(study.points[0].projection)));
        const auto expected = persona::pearson_correlation(x, y);
        QVERIFY(study.correlation && expected);
        QCOMPARE(study.correlation->r, expected->r);

        QTemporaryDir dir;
        const QString json = dir.filePath("study.json"), csv = dir.filePath("study.csv");
        persona::write_monitoring_study(json.toStdString(), study);
        const auto back = persona::read_monitoring_study(json.toStdString());
        QCOMPARE(persona::monitoring_study_json(back), persona::monitoring_study_json(study));
        persona::write_monitoring_study_csv(csv.toStdString(), study);
        const std::string text = fileText(csv);
        QCOMPARE(int(std::count(text.begin(), text.end(), '\n')), 1 + 6);
        QVERIFY(text.find("\"encourage, with \"\"quotes\"\", commas\"") != std::string::npos);
    }

    // Without a judge the answers and predictions are there and r is not.
    void noJudgeNoCorrelation() {
        auto settings = smallSettings();
        settings.prompts.resize(2);
        settings.question_limit = 1;
        const auto study = persona::run_monitoring_study(*model_, trait_, vector_, settings);
        QCOMPARE(study.points.size(), std::size_t(2));
        QVERIFY(!study.points[0].trait_score && !study.correlation);
        QVERIFY(!study.points[0].answer.empty());
        QCOMPARE(study.judge, std::string("none"));
    }

    // A project keeps its studies in monitoring/ (JSON and CSV), saved with it and read back in
    // order; a symlink there (a stranger's project pointing outside itself) or a broken file is
    // not read, is named by the folder reader, and survives the next save untouched.
    void projectKeepsStudies() {
        auto settings = smallSettings();
        settings.prompts.resize(2);
        settings.question_limit = 1;
        const auto study = persona::run_monitoring_study(*model_, trait_, vector_, settings);
        persona::Project project;
        project.name = "studies";
        const std::string first = project.add_monitoring_study(study);
        const std::string second = project.add_monitoring_study(study);
        QVERIFY(first != second);
        QTemporaryDir dir;
        const QString folder = dir.filePath("studies.persona");
        persona::write_project(folder.toStdString(), project);
        QVERIFY(QFileInfo(folder + "/" + QString::fromStdString(second).replace(".json", ".csv")).isFile());
        auto back = persona::read_project(folder.toStdString());
        QCOMPARE(back.monitoring.size(), std::size_t(2));
        QCOMPARE(back.monitoring[0].first, first);
        QCOMPARE(back.monitoring[1].first, second);
        QCOMPARE(persona::monitoring_study_json(back.monitoring[1].second), persona::monitoring_study_json(study));

        QTemporaryDir outside;
        std::ofstream(outside.filePath("elsewhere.json").toStdString()) << persona::monitoring_study_json(study).dump();
        QVERIFY(QFile::link(outside.filePath("elsewhere.json"), folder + "/monitoring/a-link.json"));
        std::ofstream((folder + "/monitoring/broken.json").toStdString()) << "{";
        back = persona::read_project(folder.toStdString());
        QCOMPARE(back.monitoring.size(), std::size_t(2));
        QCOMPARE(back.skipped_files.size(), std::size_t(2));
        const QString reported = QString::fromStdString(back.skipped_files[0] + "\n" + back.skipped_files[1]);
        QVERIFY2(reported.contains("a-link.json: not a regular file") && reported.contains("broken.json"), qPrintable(reported));
        persona::write_project(folder.toStdString(), back);
        QCOMPARE(fileText(folder + "/monitoring/broken.json"), std::string("{"));
        QCOMPARE(persona::read_project(folder.toStdString()).monitoring.size(), std::size_t(2));

        project.monitoring[0].first = "monitoring/../escape.json";
        QVERIFY_EXCEPTION_THROWN(persona::write_project(dir.filePath("bad.persona").toStdString(), project), persona::FileError);
    }

    void badStudiesAreRefused() {
        auto settings = smallSettings();
        settings.layer = 0;
        QVERIFY_EXCEPTION_THROWN(persona::run_monitoring_study(*model_, trait_, vector_, settings), persona::Error);
        settings.layer = model_->layer_count() + 1;
        QVERIFY_EXCEPTION_THROWN(persona::run_monitoring_study(*model_, trait_, vector_, settings), persona::Error);
        settings = smallSettings();
        persona::Trait noQuestions = trait_;
        noQuestions.evaluation_questions.clear();
        QVERIFY_EXCEPTION_THROWN(persona::run_monitoring_study(*model_, noQuestions, vector_, settings), persona::Error);
        QVERIFY_EXCEPTION_THROWN(
            persona::run_monitoring_study(*model_, trait_, vector_, settings, {}, {}, [] { return true; }), persona::Cancelled);

        QTemporaryDir dir;
        const QString path = dir.filePath("bad.json");
        std::ofstream(path.toStdString()) << R"({"schema": "persona-workbench/monitoring-study", "trait": "t", "judge": "none",
            "layer": 3, "projection": "", "prompts": [{"label": "a", "system": ""}], "questions": ["q"],
            "points": [{"prompt": 2, "question": 0, "projection": 1, "trait_score": null, "coherence": null, "answer": ""}],
            "correlation": null, "seconds": 0})";
        try {
            persona::read_monitoring_study(path.toStdString());
            QFAIL("a point naming a missing prompt was read");
        } catch (const persona::FileError& e) {
            QVERIFY2(QString(e.what()).contains("bad.json") && QString(e.what()).contains("points[0].prompt"), e.what());
        }
    }
};

QTEST_GUILESS_MAIN(TestMonitoringStudy)
#include "test_monitoring_study.moc"
