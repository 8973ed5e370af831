// The safetensors reader against a file made by the reference Python package, our writer read
// back, damaged files, sharded checkpoints, atomic replacement, and Hugging Face JSON configs.
#include "persona/errors.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "test_support.h"

#include <QDir>
#include <QRandomGenerator>
#include <QElapsedTimer>
#include <QTemporaryDir>

#include <cmath>
#include <csignal>
#include <cstring>

#include <sys/stat.h>
#include <limits>
#include <sys/resource.h>
#include <unistd.h>

using persona::SafetensorsCheckpoint;
using persona::SafetensorsFile;
using persona::SafetensorsFloatTensor;

namespace {

QString writeFile(const QString& path, const QByteArray& content) {
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly) || file.write(content) != content.size()) qFatal("cannot write %s", qPrintable(path));
    return path;
}

QByteArray readFile(const QString& path) {
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) qFatal("cannot read %s", qPrintable(path));
    return file.readAll();
}

// A safetensors file from raw header text and data bytes, so tests can say exactly what is wrong.
QByteArray safetensorsBytes(const QByteArray& header, const QByteArray& data) {
    const std::uint64_t length = static_cast<std::uint64_t>(header.size());
    QByteArray bytes(reinterpret_cast<const char*>(&length), 8);
    return bytes + header + data;
}

// The call must throw a persona::FileError naming `path`; returns its message.
template <typename Call>
QString expectFileError(const QString& path, Call call) {
    try {
        call();
    } catch (const persona::FileError& e) {
        if (QString::fromStdString(e.path()) != path)
            return QStringLiteral("ERROR NAMES %1, NOT %2: %3").arg(QString::fromStdString(e.path()), path, e.what());
        return QString::fromStdString(e.what());
    } catch (const std::exception& e) {
        return QStringLiteral("WRONG EXCEPTION TYPE: ") + e.what();
    }
    return QStringLiteral("NO ERROR");
}

QString expectOpenError(const QString& path) {
    return expectFileError(path, [&] { SafetensorsFile::open(path.toStdString()); });
}

bool sameBits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

std::vector<float> floatsOf(const SafetensorsFile& file, const char* name) {
    const auto* tensor = file.find_tensor(name);
    if (!tensor) qFatal("no tensor %s", name);
    return file.read_floats(*tensor);
}

QStringList entriesOf(const QString& directory) {
    return QDir(directory).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot, QDir::Name);
}

}  // namespace

class TestSafetensors : public QObject {
    Q_OBJECT

private:
    std::unique_ptr<QTemporaryDir> dir_;

    QString path(const QString& name) const { return dir_->filePath(name); }

    // A persona-vector-shaped tensor ([layers + 1, hidden]) with values that survive only an
    // exact round trip: negative zero, a subnormal, extremes and non-terminating fractions.
    static std::vector<float> sampleValues(std::size_t count) {
        std::vector<float> values(count);
        for (std::size_t i = 0; i < count; ++i) values[i] = static_cast<float>(i) / 3.0f - 5.0f;
        values[0] = -0.0f;
        values[1] = std::numeric_limits<float>::denorm_min();
        values[2] = std::numeric_limits<float>::max();
        values[3] = -std::numeric_limits<float>::infinity();
        return values;
    }

private slots:
    void initTestCase() {
        dir_ = std::make_unique<QTemporaryDir>();
        QVERIFY(dir_->isValid());
    }

    void readsTheFileMadeByTheReferencePackage() {
        const QString fixture = QStringLiteral(PERSONA_TEST_DATA_DIR) + "/reference.safetensors";
        const auto file = SafetensorsFile::open(fixture.toStdString());
        QCOMPARE(file->metadata(), (std::map<std::string, std::string>{{"format", "pt"},
                                                                         {"made_by", "make_safetensors_fixture.py"}}));
        QCOMPARE(file->tensors().size(), std::size_t(6));
        QCOMPARE(file->tensors().front().name, std::string("i64"));  // file order: by offset
        QCOMPARE(file->data_offset() % 8, std::uint64_t(0));

        const auto* f32 = file->find_tensor("f32");
        QVERIFY(f32);
        QCOMPARE(f32->dtype, std::string("F32"));
        QCOMPARE(f32->shape, (std::vector<std::int64_t>{2, 3}));
        QCOMPARE(f32->byte_size, std::uint64_t(24));
        QCOMPARE(floatsOf(*file, "f32"), (std::vector<float>{-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f}));

        const auto* f16 = file->find_tensor("f16");
        QCOMPARE(f16->dtype, std::string("F16"));
        QCOMPARE(f16->shape, (std::vector<std::int64_t>{2, 4}));
        const auto halves = floatsOf(*file, "f16");
        const std::vector<float> expectedHalves{1.0f, -2.5f, std::ldexp(1.0f, -24), 65504.0f,
                                                std::numeric_limits<float>::infinity(),
                                                -std::numeric_limits<float>::infinity(), -0.0f, 0.333251953125f};
        QCOMPARE(halves.size(), expectedHalves.size());
        for (std::size_t i = 0; i < halves.size(); ++i)
            QVERIFY2(sameBits(halves[i], expectedHalves[i]), qPrintable(QString("f16[%1] = %2").arg(i).arg(halves[i])));

        const auto* bf16 = file->find_tensor("bf16");
        QCOMPARE(bf16->dtype, std::string("BF16"));
        const auto brains = floatsOf(*file, "bf16");
        const std::vector<float> expectedBrains{1.0f, -3.140625f, std::ldexp(1.0f, -126), 3.3895313892515355e38f,
                                                0.0078125f};
        QCOMPARE(brains.size(), expectedBrains.size());
        for (std::size_t i = 0; i < brains.size(); ++i)
            QVERIFY2(sameBits(brains[i], expectedBrains[i]), qPrintable(QString("bf16[%1] = %2").arg(i).arg(brains[i])));

        const auto* i64 = file->find_tensor("i64");
        QCOMPARE(i64->dtype, std::string("I64"));
        QCOMPARE(i64->shape, (std::vector<std::int64_t>{4}));
        std::int64_t integers[4];
        std::memcpy(integers, file->tensor_data(*i64), sizeof integers);
        QCOMPARE(integers[0], std::int64_t(0));
        QCOMPARE(integers[1], std::int64_t(-1));
        QCOMPARE(integers[2], -(std::int64_t(1) << 40));
        QCOMPARE(integers[3], (std::int64_t(1) << 62) + 7);
        const QString wrongDtype = expectFileError(fixture, [&] { file->read_floats(*i64); });
        QVERIFY2(wrongDtype.contains("'i64' has dtype I64; only F32, F16 and BF16"), qPrintable(wrongDtype));
        QVERIFY_THROWS_EXCEPTION(persona::Error, persona::convert_to_float(*i64, file->tensor_data(*i64)));

        const auto* scalar = file->find_tensor("scalar");
        QVERIFY(scalar->shape.empty());
        QCOMPARE(scalar->element_count(), std::uint64_t(1));
        QCOMPARE(floatsOf(*file, "scalar"), std::vector<float>{42.5f});
        const auto* empty = file->find_tensor("empty");
        QCOMPARE(empty->shape, (std::vector<std::int64_t>{0, 3}));
        QCOMPARE(empty->byte_size, std::uint64_t(0));
        QVERIFY(floatsOf(*file, "empty").empty());
        QVERIFY(!file->find_tensor("absent"));
    }

    void writesAndReadsBack() {
        const int layersPlusOne = 31, hidden = 576;
        const auto vector = sampleValues(std::size_t(layersPlusOne) * hidden);
        const std::vector<float> norms{1.0f, 2.0f, 3.0f};
        const std::map<std::string, std::string> metadata{
            {"persona", "pirate \xc3\xa9t\xc3\xa9"}, {"quoted", "say \"arr\"\nand\\go"}, {"layers", "30"}};
        const QString file = path("written.safetensors");
        persona::write_safetensors(file.toStdString(),
                                   {{"persona_vector", {layersPlusOne, hidden}, vector.data(), vector.size()},
                                    {"norms", {3}, norms.data(), norms.size()},
                                    {"nothing", {0, 4}, nullptr, 0}},
                                   metadata);

        const auto read = SafetensorsFile::open(file.toStdString());
        QCOMPARE(read->metadata(), metadata);
        QCOMPARE(read->tensors().size(), std::size_t(3));
        QCOMPARE(read->data_offset() % 8, std::uint64_t(0));
        const auto* persona = read->find_tensor("persona_vector");
        QCOMPARE(persona->dtype, std::string("F32"));
        QCOMPARE(persona->shape, (std::vector<std::int64_t>{layersPlusOne, hidden}));
        QCOMPARE(persona->offset, read->data_offset());  // written in the order given
        QVERIFY(std::memcmp(read->tensor_data(*persona), vector.data(), vector.size() * sizeof(float)) == 0);
        QCOMPARE(floatsOf(*read, "norms"), norms);
        QCOMPARE(read->find_tensor("nothing")->shape, (std::vector<std::int64_t>{0, 4}));
        QCOMPARE(read->file_size(), read->data_offset() + (vector.size() + norms.size()) * sizeof(float));

        // The Python cross-check (tests/reference/check_written_safetensors.py) reads this copy.
        const QByteArray sample = qgetenv("PERSONA_SAFETENSORS_SAMPLE");
        if (!sample.isEmpty()) {
            QFile::remove(QString::fromLocal8Bit(sample));
            QVERIFY(QFile::copy(file, QString::fromLocal8Bit(sample)));
        }
    }

    void writerRejectsBadArguments_data() {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("expected");
        QTest::newRow("count") << "count" << "has shape [2, 3] but 5 values";
        QTest::newRow("duplicate") << "duplicate" << "tensor 'a' appears twice";
        QTest::newRow("reserved name") << "reserved" << "cannot be called __metadata__";
        QTest::newRow("negative extent") << "negative" << "negative extent";
        QTest::newRow("missing values") << "null" << "has no values";
        QTest::newRow("bad utf-8") << "utf8" << "not valid UTF-8";
    }
    void writerRejectsBadArguments() {
        QFETCH(QString, name);
        QFETCH(QString, expected);
        QTemporaryDir dir;
        const QString file = dir.filePath("bad.safetensors");
        const std::vector<float> six(6, 1.0f);
        std::vector<SafetensorsFloatTensor> tensors{{"a", {2, 3}, six.data(), 6}};
        std::map<std::string, std::string> metadata;
        if (name == "count") tensors[0].value_count = 5;
        if (name == "duplicate") tensors.push_back(tensors[0]);
        if (name == "reserved") tensors[0].name = "__metadata__";
        if (name == "negative") tensors[0].shape = {-2, -3};
        if (name == "null") tensors[0].values = nullptr;
        if (name == "utf8") metadata["bad"] = "\xff\xfe";
        const QString message =
            expectFileError(file, [&] { persona::write_safetensors(file.toStdString(), tensors, metadata); });
        QVERIFY2(message.startsWith(file + ": cannot write: ") && message.contains(expected), qPrintable(message));
        QVERIFY2(entriesOf(dir.path()).isEmpty(), qPrintable(entriesOf(dir.path()).join(", ")));
    }

    void writingOverAnExistingFileReplacesIt() {
        QTemporaryDir dir;
        const QString file = dir.filePath("vector.safetensors");
        const std::vector<float> first(8, 1.0f), second{4.0f, 5.0f};
        persona::write_safetensors(file.toStdString(), {{"v", {2, 4}, first.data(), first.size()}}, {{"round", "1"}});
        persona::write_safetensors(file.toStdString(), {{"w", {2}, second.data(), second.size()}}, {{"round", "2"}});
        const auto read = SafetensorsFile::open(file.toStdString());
        QCOMPARE(read->metadata().at("round"), std::string("2"));
        QVERIFY(!read->find_tensor("v"));
        QCOMPARE(floatsOf(*read, "w"), second);
        QCOMPARE(entriesOf(dir.path()), QStringList{"vector.safetensors"});  // no temporary left behind
    }

    void failedWritesLeaveTheOldFileIntact() {
        QTemporaryDir dir;
        const QString file = dir.filePath("vector.safetensors");
        const std::vector<float> old{1.0f, 2.0f};
        persona::write_safetensors(file.toStdString(), {{"old", {2}, old.data(), old.size()}});
        const QByteArray oldBytes = readFile(file);
        const std::vector<float> big(100000, 7.0f);
        const auto writeBig = [&](const QString& target) {
            persona::write_safetensors(target.toStdString(), {{"big", {100000}, big.data(), big.size()}});
        };

        // The target is a directory.
        const QString directory = dir.filePath("a-directory");
        QVERIFY(QDir().mkdir(directory));
        QString message = expectFileError(directory, [&] { writeBig(directory); });
        QVERIFY2(message.contains("is a directory"), qPrintable(message));
        QVERIFY(QFileInfo(directory).isDir());

        // The disk fills up half-way: the file size limit makes write() fail with EFBIG.
        struct rlimit saved {};
        QCOMPARE(getrlimit(RLIMIT_FSIZE, &saved), 0);
        const auto previousHandler = std::signal(SIGXFSZ, SIG_IGN);
        struct rlimit small = saved;
        small.rlim_cur = 64 * 1024;
        QCOMPARE(setrlimit(RLIMIT_FSIZE, &small), 0);
        message = expectFileError(file, [&] { writeBig(file); });
        setrlimit(RLIMIT_FSIZE, &saved);
        std::signal(SIGXFSZ, previousHandler);
        QVERIFY2(message.startsWith(file + ": cannot write: File too large"), qPrintable(message));
        QCOMPARE(readFile(file), oldBytes);

        // The parent directory does not exist.
        const QString orphan = dir.filePath("no-such-dir/vector.safetensors");
        message = expectFileError(orphan, [&] { writeBig(orphan); });
        QVERIFY2(message.contains("cannot create a temporary file"), qPrintable(message));

        // The directory is read-only (root ignores the permission, so only other users check it).
        QFile::setPermissions(dir.path(), QFile::ReadOwner | QFile::ExeOwner);
        if (::access(qPrintable(dir.path()), W_OK) != 0) {
            message = expectFileError(file, [&] { writeBig(file); });
            QVERIFY2(message.contains("Permission denied"), qPrintable(message));
        } else {
            qInfo("running as root: the read-only directory case is not observable");
        }
        QFile::setPermissions(dir.path(), QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);

        QCOMPARE(readFile(file), oldBytes);
        QCOMPARE(entriesOf(dir.path()), (QStringList{"a-directory", "vector.safetensors"}));
    }

    void damagedFilesFailClearly_data() {
        QTest::addColumn<QByteArray>("bytes");
        QTest::addColumn<QString>("expected");
        const QByteArray data(16, '\0');
        const auto file = [&](const QByteArray& header) { return safetensorsBytes(header, data); };
        const QByteArray good = file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})");
        QByteArray longLength = good;
        const std::uint64_t pastEnd = static_cast<std::uint64_t>(good.size());
        std::memcpy(longLength.data(), &pastEnd, 8);
        QByteArray hugeLength = good;
        const std::uint64_t huge = std::uint64_t(1) << 40;
        std::memcpy(hugeLength.data(), &huge, 8);
        QByteArray deep = "{\"__metadata__\":" + QByteArray(40, '[') + QByteArray(40, ']') + "}";

        QTest::newRow("too small") << QByteArray("\x05\0\0", 3) << "too small to be a safetensors file";
        QTest::newRow("truncated header") << good.left(30) << "truncated: the header of";
        QTest::newRow("header length past the end") << longLength << "runs past the end of the file";
        QTest::newRow("huge header length") << hugeLength << "exceeds the 100 MB limit";
        QTest::newRow("not an object") << file("[1, 2]") << "does not begin with '{'";
        QTest::newRow("bad json") << file(R"({"a":{"dtype":"F32",   )") << "header is not valid JSON: parse error";
        QTest::newRow("trailing nul") << file(QByteArray(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})") + '\0')
                                      << "not valid JSON";
        QTest::newRow("offsets past the end") << file(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})")
                                              << "truncated: tensor 'a' data_offsets [0,32] run past the end";
        QTest::newRow("shape mismatch") << file(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})")
                                        << "tensor 'a' (F32 [2, 3]) needs 24 bytes but its data_offsets [0,16] hold 16";
        QTest::newRow("overlap") << file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})")
                                 << "tensors 'a' and 'b' overlap";
        QTest::newRow("unknown dtype") << file(R"({"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}})")
                                       << "tensor 'a' has unknown or unsupported dtype 'Q4'";
        QTest::newRow("duplicate names") << file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                                 R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})")
                                         << "tensor 'a' appears twice";
        QTest::newRow("duplicate field") << file(R"({"a":{"dtype":"F32","dtype":"F16","shape":[4],"data_offsets":[0,16]}})")
                                         << "key 'dtype' twice";
        QTest::newRow("negative extent") << file(R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})")
                                         << "shape entry -4 that is not a non-negative integer";
        QTest::newRow("fractional offset") << file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0.5,16]}})")
                                           << "not integers with begin <= end";
        QTest::newRow("reversed offsets") << file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}})")
                                          << "not integers with begin <= end";
        QTest::newRow("shape overflow")
            << file(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,16]}})")
            << "shape [4611686018427387904, 4611686018427387904] is too large";
        QTest::newRow("missing dtype") << file(R"({"a":{"shape":[4],"data_offsets":[0,16]}})") << "has no dtype";
        QTest::newRow("missing offsets") << file(R"({"a":{"dtype":"F32","shape":[4]}})") << "has no data_offsets";
        QTest::newRow("entry not an object") << file(R"({"a":7})") << "tensor 'a' is not a JSON object";
        QTest::newRow("metadata value") << file(R"({"__metadata__":{"n":1}})") << "__metadata__ value for 'n' is not a string";
        QTest::newRow("deep nesting") << file(deep) << "nested more than";
    }
    void damagedFilesFailClearly() {
        QFETCH(QByteArray, bytes);
        QFETCH(QString, expected);
        const QString file = writeFile(path("damaged.safetensors"), bytes);
        const QString message = expectOpenError(file);
        QVERIFY2(message.startsWith(file + ": ") && message.contains(expected), qPrintable(message));
    }

    // The duplicate-key check compared each key with every earlier one: 160,000 keys took over
    // four minutes. It is hashed now; the duplicate at the end is still found. The bound is a
    // hang check, two orders of magnitude above what it takes.
    void manyKeysParseInLinearTime() {
        QByteArray header = R"({"__metadata__":{)";
        for (int i = 0; i < 160000; ++i) header += "\"k" + QByteArray::number(i) + "\":\"v\",";
        header += R"("k5":"again"},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
        const QString file = writeFile(path("many-keys.safetensors"), safetensorsBytes(header, QByteArray(16, '\0')));
        QElapsedTimer timer;
        timer.start();
        const QString message = expectOpenError(file);
        QVERIFY2(message.contains("key 'k5' twice"), qPrintable(message.left(300)));
        QVERIFY2(timer.elapsed() < 30000, qPrintable(QString::number(timer.elapsed())));
    }

    void aFifoFailsAtOnce() {
        const QString fifo = path("vector.fifo");
        QCOMPARE(::mkfifo(fifo.toLocal8Bit().constData(), 0600), 0);
        const QString message = expectOpenError(fifo);
        QVERIFY2(message.contains("not a regular file"), qPrintable(message));
    }

    void missingAndOddFilesFailClearly() {
        QVERIFY(expectOpenError(path("absent.safetensors")).contains("No such file"));
        QVERIFY(expectOpenError(dir_->path()).contains("not a regular file"));
        QVERIFY(expectOpenError(writeFile(path("empty.safetensors"), {})).contains("empty"));
    }

    // Random damage anywhere in a file must end in a parsed file or a persona::Error, never a
    // crash or another exception type; what does parse must be safe to read in full.
    void randomDamageNeverCrashes() {
        const auto values = sampleValues(64);
        const QString original = path("undamaged.safetensors");
        persona::write_safetensors(original.toStdString(),
                                   {{"a", {4, 8}, values.data(), 32}, {"b", {2, 16}, values.data() + 32, 32}},
                                   {{"k", "v"}});
        const QByteArray pristine = readFile(original);
        QRandomGenerator random(20240611);
        int parsed = 0;
        for (int round = 0; round < 400; ++round) {
            QByteArray copy = pristine;
            if (round % 4 == 0) {
                copy.truncate(random.bounded(copy.size()));
            } else {
                const int flips = 1 + random.bounded(6);
                for (int i = 0; i < flips; ++i) {
                    // Mostly the length and the header, where every check lives.
                    const qsizetype at = random.bounded(4) ? random.bounded(qsizetype(200)) : random.bounded(copy.size());
                    copy[at] = static_cast<char>(random.bounded(256));
                }
            }
            const QString file = writeFile(path("random.safetensors"), copy);
            try {
                const auto read = SafetensorsFile::open(file.toStdString());
                ++parsed;
                for (const auto& tensor : read->tensors()) {
                    std::uint64_t checksum = 0;
                    const std::uint8_t* bytes = read->tensor_data(tensor);
                    for (std::uint64_t i = 0; i < tensor.byte_size; ++i) checksum += bytes[i];
                    (void)checksum;
                    if (tensor.dtype == "F32" || tensor.dtype == "F16" || tensor.dtype == "BF16") read->read_floats(tensor);
                }
            } catch (const persona::Error&) {
            } catch (const std::exception& e) {
                QFAIL(qPrintable(QString("round %1: unexpected exception %2").arg(round).arg(e.what())));
            }
        }
        QVERIFY(parsed > 0);  // some damage lands in data bytes and is harmless
    }

    void shardedCheckpoint() {
        QTemporaryDir dir;
        const std::vector<float> a{1, 2, 3, 4}, b{5, 6}, c{7, 8, 9};
        persona::write_safetensors(dir.filePath("model-00001-of-00002.safetensors").toStdString(),
                                   {{"model.a", {2, 2}, a.data(), a.size()}, {"model.b", {2}, b.data(), b.size()}});
        persona::write_safetensors(dir.filePath("model-00002-of-00002.safetensors").toStdString(),
                                   {{"model.c", {3}, c.data(), c.size()}, {"unlisted", {2}, b.data(), b.size()}});
        const QString index = dir.filePath("model.safetensors.index.json");
        const auto writeIndex = [&](const QByteArray& weightMap) {
            writeFile(index, R"({"metadata": {"total_size": 36}, "weight_map": {)" + weightMap + "}}");
        };
        writeIndex(R"("model.a": "model-00001-of-00002.safetensors", "model.b": "model-00001-of-00002.safetensors",
                      "model.c": "model-00002-of-00002.safetensors")");

        const auto checkpoint = SafetensorsCheckpoint::open_directory(dir.path().toStdString());
        QCOMPARE(checkpoint->shards().size(), std::size_t(2));
        QCOMPARE(checkpoint->tensors().size(), std::size_t(3));  // the index, not the shards, says what exists
        QCOMPARE(checkpoint->read_floats("model.a"), a);
        QCOMPARE(checkpoint->read_floats("model.c"), c);
        QCOMPARE(checkpoint->tensor("model.c").info->shape, (std::vector<std::int64_t>{3}));
        QVERIFY(QString::fromStdString(checkpoint->tensor("model.b").file->path()).endsWith("model-00001-of-00002.safetensors"));
        QVERIFY(!checkpoint->find_tensor("unlisted"));
        QString message = expectFileError(dir.path(), [&] { checkpoint->tensor("model.z"); });
        QVERIFY2(message.contains("checkpoint has no tensor 'model.z'"), qPrintable(message));

        const auto expectIndexError = [&](const QByteArray& weightMap, const QString& expected) {
            writeIndex(weightMap);
            const QString text = expectFileError(index, [&] { SafetensorsCheckpoint::open_directory(dir.path().toStdString()); });
            QVERIFY2(text.startsWith(index + ": ") && text.contains(expected), qPrintable(text));
        };
        expectIndexError(R"("model.a": "model-00001-of-00002.safetensors", "model.d": "model-00003-of-00003.safetensors")",
                         "shard 'model-00003-of-00003.safetensors' (holding tensor 'model.d') is missing from");
        expectIndexError(R"("model.a": "model-00002-of-00002.safetensors")",
                         "weight_map puts tensor 'model.a' in shard 'model-00002-of-00002.safetensors', which has no such tensor");
        expectIndexError(R"("model.a": "../model-00001-of-00002.safetensors")", "not a file name in the same directory");
        expectIndexError(R"("model.a": 3)", "weight_map entry for tensor 'model.a' is not a file name");
        writeFile(index, "{\"weight_map\": ");
        message = expectFileError(index, [&] { SafetensorsCheckpoint::open_directory(dir.path().toStdString()); });
        QVERIFY2(message.contains("not valid JSON"), qPrintable(message));

        // A damaged shard is reported under its own name.
        writeIndex(R"("model.a": "model-00001-of-00002.safetensors")");
        const QString shard = dir.filePath("model-00001-of-00002.safetensors");
        writeFile(shard, "garbage!");
        message = expectFileError(shard, [&] { SafetensorsCheckpoint::open_directory(dir.path().toStdString()); });
        QVERIFY2(message.contains("safetensors"), qPrintable(message));
    }

    void singleFileCheckpointAndEmptyDirectory() {
        QTemporaryDir dir;
        QString message = expectFileError(dir.path(), [&] { SafetensorsCheckpoint::open_directory(dir.path().toStdString()); });
        QVERIFY2(message.contains("holds neither model.safetensors nor model.safetensors.index.json"), qPrintable(message));
        const QString notDir = writeFile(dir.filePath("plain.txt"), "x");
        message = expectFileError(notDir, [&] { SafetensorsCheckpoint::open_directory(notDir.toStdString()); });
        QVERIFY2(message.contains("not a directory"), qPrintable(message));

        const std::vector<float> w{0.5f, -0.5f};
        persona::write_safetensors(dir.filePath("model.safetensors").toStdString(), {{"lm_head.weight", {1, 2}, w.data(), 2}});
        const auto checkpoint = SafetensorsCheckpoint::open_directory(dir.path().toStdString());
        QCOMPARE(checkpoint->shards().size(), std::size_t(1));
        QCOMPARE(checkpoint->read_floats("lm_head.weight"), w);
    }

    void readsHuggingFaceConfigs() {
        QTemporaryDir dir;
        // SmolLM2-135M-Instruct's config.json, abridged.
        const QString llama = writeFile(dir.filePath("llama.json"), R"({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
            "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
            "intermediate_size": 1536, "vocab_size": 49152, "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-05, "rope_theta": 100000, "rope_scaling": null,
            "tie_word_embeddings": true, "torch_dtype": "bfloat16", "head_dim": 64})");
        const auto config = persona::read_hf_config(llama.toStdString());
        QCOMPARE(config.model_type, std::string("llama"));
        QCOMPARE(config.architectures, std::vector<std::string>{"LlamaForCausalLM"});
        QCOMPARE(config.hidden_size, 576);
        QCOMPARE(config.num_hidden_layers, 30);
        QCOMPARE(config.num_attention_heads, 9);
        QCOMPARE(config.num_key_value_heads, 3);
        QCOMPARE(config.head_dim.value(), 64);
        QCOMPARE(config.intermediate_size, 1536);
        QCOMPARE(config.vocab_size, 49152);
        QCOMPARE(config.max_position_embeddings.value(), 8192);
        QCOMPARE(config.rms_norm_eps.value(), 1e-5);
        QCOMPARE(config.rope_theta.value(), 100000.0);
        QCOMPARE(config.tie_word_embeddings.value(), true);
        QCOMPARE(config.torch_dtype.value(), std::string("bfloat16"));
        QVERIFY(config.rope_scaling_json.empty());
        QVERIFY(!config.sliding_window);
        QVERIFY(!config.query_pre_attn_scalar);

        // Gemma-3-270m style: sliding window, attention scalar, newer "dtype" key, no kv heads.
        const QString gemma = writeFile(dir.filePath("gemma.json"), R"({
            "model_type": "gemma3_text", "hidden_size": 640, "num_hidden_layers": 18,
            "num_attention_heads": 4, "intermediate_size": 2048, "vocab_size": 262144,
            "head_dim": 256, "sliding_window": 512, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "dtype": "bfloat16"})");
        const auto gemmaConfig = persona::read_hf_config(gemma.toStdString());
        QVERIFY(gemmaConfig.architectures.empty());
        QCOMPARE(gemmaConfig.num_key_value_heads, 4);
        QCOMPARE(gemmaConfig.sliding_window.value(), 512);
        QCOMPARE(gemmaConfig.query_pre_attn_scalar.value(), 256.0);
        QCOMPARE(gemmaConfig.torch_dtype.value(), std::string("bfloat16"));
        QCOMPARE(gemmaConfig.rope_scaling_json, std::string(R"({"factor":8.0,"rope_type":"linear"})"));
        QVERIFY(!gemmaConfig.tie_word_embeddings);
        QVERIFY(!gemmaConfig.max_position_embeddings);

        const auto expectConfigError = [&](const QByteArray& text, const QString& expected) {
            const QString file = writeFile(dir.filePath("bad.json"), text);
            const QString message = expectFileError(file, [&] { persona::read_hf_config(file.toStdString()); });
            QVERIFY2(message.startsWith(file + ": ") && message.contains(expected), qPrintable(message));
        };
        const QByteArray rest = R"("num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 8, "vocab_size": 10)";
        expectConfigError(R"({"model_type": "llama", )" + rest + "}", "missing key \"hidden_size\"");
        expectConfigError(R"({"model_type": "llama", "hidden_size": "576", )" + rest + "}",
                          "hidden_size must be a whole number, not a string");
        expectConfigError(R"({"model_type": "llama", "hidden_size": 8.5, )" + rest + "}",
                          "hidden_size must be a whole number, not a number");
        expectConfigError(R"({"model_type": "llama", "hidden_size": 0, )" + rest + "}", "hidden_size is 0, below 1");
        expectConfigError(R"({"hidden_size": 8, )" + rest + "}", "missing key \"model_type\"");
        // transformers writes null for unset keys, so a null required key is a missing one.
        expectConfigError(R"({"model_type": "llama", "hidden_size": null, )" + rest + "}", "missing key \"hidden_size\"");
        expectConfigError(R"({"model_type": "llama", "hidden_size": 8, "num_key_value_heads": 3, )" + rest + "}",
                          "does not divide num_attention_heads 2");
        expectConfigError(R"({"model_type": "llama", "hidden_size": 8, "rope_theta": "big", )" + rest + "}",
                          "rope_theta must be a number, not a string");
        expectConfigError(R"({"model_type": "llama", "hidden_size": 8, "tie_word_embeddings": 1, )" + rest + "}",
                          "tie_word_embeddings must be true or false, not a number");
        expectConfigError(R"({"model_type": "llama", "hidden_size": 8, "architectures": "Llama", )" + rest + "}",
                          "architectures must be a list of strings, not a string");
        expectConfigError("{\"model_type\": ", "not valid JSON: parse error");
        expectConfigError("[]", "the top level must be an object, not an array");
        const QString absent = dir.filePath("absent.json");
        QVERIFY(expectFileError(absent, [&] { persona::read_hf_config(absent.toStdString()); }).contains("no such file"));
    }

    void readsTokenizerConfigs() {
        QTemporaryDir dir;
        const QString plain = writeFile(dir.filePath("tokenizer_config.json"), R"({
            "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
            "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false}, "eos_token": "<|im_end|>"})");
        auto config = persona::read_hf_tokenizer_config(plain.toStdString());
        QCOMPARE(config.chat_template.value(), std::string("{% for m in messages %}{{ m.content }}{% endfor %}"));
        QCOMPARE(config.bos_token.value(), std::string("<s>"));
        QCOMPARE(config.eos_token.value(), std::string("<|im_end|>"));

        writeFile(plain, R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
                             "bos_token": null})");
        config = persona::read_hf_tokenizer_config(plain.toStdString());
        QCOMPARE(config.chat_template.value(), std::string("D"));
        QVERIFY(!config.bos_token);
        QVERIFY(!config.eos_token);

        writeFile(plain, R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "rag", "template": "R"}]})");
        QString message = expectFileError(plain, [&] { persona::read_hf_tokenizer_config(plain.toStdString()); });
        QVERIFY2(message.contains("no \"default\" template (it has: tool_use, rag)"), qPrintable(message));
        writeFile(plain, R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default"}]})");
        message = expectFileError(plain, [&] { persona::read_hf_tokenizer_config(plain.toStdString()); });
        QVERIFY2(message.contains("chat_template[1] has no key \"template\""), qPrintable(message));
        writeFile(plain, R"({"eos_token": 2})");
        message = expectFileError(plain, [&] { persona::read_hf_tokenizer_config(plain.toStdString()); });
        QVERIFY2(message.contains("eos_token must be a string or an object"), qPrintable(message));

        // Newer transformers keep the template beside the config.
        writeFile(plain, R"({"eos_token": "</s>"})");
        config = persona::read_hf_tokenizer_config(plain.toStdString());
        QVERIFY(!config.chat_template);
        writeFile(dir.filePath("chat_template.jinja"), "{{ bos_token }}jinja");
        config = persona::read_hf_tokenizer_config(plain.toStdString());
        QCOMPARE(config.chat_template.value(), std::string("{{ bos_token }}jinja"));
    }
};

QTEST_GUILESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
