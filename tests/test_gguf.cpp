// The GGUF reader on the real default model, on damaged copies of it, and on synthetic files
// that use every metadata value type.
#include "persona/errors.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "persona/model_facts.h"
#include "persona/tokenizer.h"
#include "test_support.h"

#include <QRandomGenerator>
#include <QElapsedTimer>
#include <QTemporaryDir>

#include <cstring>

#include <sys/stat.h>

using persona::GgufFile;
using persona::GgufValueType;

namespace {

// Builds little-endian GGUF bytes for synthetic tests.
class GgufWriter {
public:
    QByteArray bytes;
    template <typename T>
    void put(T value) { bytes.append(reinterpret_cast<const char*>(&value), sizeof(T)); }
    void putString(const QByteArray& s) {
        put<std::uint64_t>(static_cast<std::uint64_t>(s.size()));
        bytes.append(s);
    }
    void key(const QByteArray& name, GgufValueType type) {
        putString(name);
        put<std::uint32_t>(static_cast<std::uint32_t>(type));
    }
    // Magic, version 3, and the tensor and key counts that open every GGUF file.
    void header(std::uint64_t tensors, std::uint64_t keys) {
        put<std::uint32_t>(0x46554747);
        put<std::uint32_t>(3);
        put<std::uint64_t>(tensors);
        put<std::uint64_t>(keys);
    }
    void padTo(int alignment) {
        while (bytes.size() % alignment) bytes.append('\0');
    }
};

QString writeFile(const QTemporaryDir& dir, const QString& name, const QByteArray& content) {
    const QString path = dir.filePath(name);
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly) || file.write(content) != content.size()) qFatal("cannot write %s", qPrintable(path));
    return path;
}

// Opening must fail with a persona::FileError naming the file; returns its message.
QString expectFileError(const QString& path) {
    try {
        GgufFile::open(path.toStdString());
    } catch (const persona::FileError& e) {
        if (QString::fromStdString(e.path()) != path) qWarning("error names %s, not %s", e.path().c_str(), qPrintable(path));
        return QString::fromStdString(e.what());
    } catch (const std::exception& e) {
        return QStringLiteral("WRONG EXCEPTION TYPE: ") + e.what();
    }
    return QStringLiteral("NO ERROR");
}

qsizetype offsetOfKey(const QByteArray& header, const QByteArray& key) {
    QByteArray needle;
    const std::uint64_t length = static_cast<std::uint64_t>(key.size());
    needle.append(reinterpret_cast<const char*>(&length), 8);
    needle.append(key);
    return header.indexOf(needle);
}

}  // namespace

class TestGguf : public QObject {
    Q_OBJECT

private:
    QString model_;
    QByteArray header_;  // the first 4 MB: metadata and tensor table
    std::unique_ptr<QTemporaryDir> dir_;

    QString damagedCopy(const QString& name, const std::function<void(QByteArray&)>& damage, qint64 keep = -1) {
        QFile source(model_);
        if (!source.open(QIODevice::ReadOnly)) qFatal("cannot read model");
        QByteArray content = keep >= 0 ? source.read(keep) : source.readAll();
        if (damage) damage(content);
        return writeFile(*dir_, name, content);
    }

private slots:
    void initTestCase() {
        model_ = persona_test::defaultModelPath();
        header_ = persona_test::readPrefix(model_, 4 * 1024 * 1024);
        dir_ = std::make_unique<QTemporaryDir>();
        QVERIFY(dir_->isValid());
    }

    void readsTheDefaultModel() {
        const auto file = GgufFile::open(model_.toStdString());
        QCOMPARE(file->version(), 3u);
        QCOMPARE(file->get_string("general.architecture"), std::string("llama"));
        QCOMPARE(file->get_int("llama.block_count"), 30);
        QCOMPARE(file->get_int("llama.embedding_length"), 576);
        QCOMPARE(file->get_int("llama.attention.head_count"), 9);
        QCOMPARE(file->get_int("llama.attention.head_count_kv"), 3);
        QCOMPARE(file->find("tokenizer.ggml.tokens")->strings().size(), std::size_t(49152));
        QCOMPARE(file->find("tokenizer.ggml.tokens")->strings()[1], std::string("<|im_start|>"));
        QCOMPARE(file->find("tokenizer.ggml.token_type")->ints().size(), std::size_t(49152));
        QCOMPARE(file->find("tokenizer.ggml.merges")->strings().size(), std::size_t(48900));
        QVERIFY(file->find_float("llama.rope.freq_base").value() == 100000.0);
        QCOMPARE(file->find("tokenizer.ggml.add_bos_token")->as_bool(), false);
        QCOMPARE(file->tensors().size(), std::size_t(272));
        QCOMPARE(file->alignment(), std::size_t(32));

        const auto* q = file->find_tensor("blk.0.attn_q.weight");
        QVERIFY(q);
        QCOMPARE(q->shape, (std::vector<std::uint64_t>{576, 576}));
        QCOMPARE(persona::ggml_type_name(q->type), std::string("Q4_1"));
        QCOMPARE(q->byte_size, std::uint64_t(576 * 576 / 32 * 20));
        QCOMPARE(q->offset % 32, std::uint64_t(0));
        const auto* embedding = file->find_tensor("token_embd.weight");
        QCOMPARE(embedding->shape, (std::vector<std::uint64_t>{576, 49152}));
        QCOMPARE(persona::ggml_type_name(embedding->type), std::string("Q8_0"));
        // Tensors lie inside the file and do not overlap.
        std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;
        for (const auto& t : file->tensors()) spans.emplace_back(t.offset, t.offset + t.byte_size);
        std::sort(spans.begin(), spans.end());
        for (std::size_t i = 1; i < spans.size(); ++i) QVERIFY(spans[i - 1].second <= spans[i].first);
        QVERIFY(spans.back().second <= file->file_size());
    }

    void modelFactsOfTheDefaultModel() {
        const auto facts = persona::read_model_facts(*GgufFile::open(model_.toStdString()));
        QCOMPARE(facts.architecture, std::string("llama"));
        QCOMPARE(facts.layers, 30);
        QCOMPARE(facts.hidden_size, 576);
        QCOMPARE(facts.attention_heads, 9);
        QCOMPARE(facts.kv_heads, 3);
        QCOMPARE(facts.head_dim, 64);
        QCOMPARE(facts.vocabulary_size, 49152);
        QCOMPARE(facts.context_length, 8192);
        QCOMPARE(facts.feed_forward_size, 1536);
        QCOMPARE(facts.file_type, std::string("Q4_1"));
        QCOMPARE(facts.tensor_types.at("Q4_1"), 210);
        QCOMPARE(facts.tensor_types.at("Q8_0"), 1);
        QCOMPARE(facts.tensor_types.at("F32"), 61);
        QVERIFY(facts.has_chat_template);
        // 135M parameters with tied embeddings.
        QCOMPARE(facts.parameters, std::uint64_t(134515008));
    }

    void readsTheSecondModel() {
        const auto file = GgufFile::open(persona_test::secondModelPath().toStdString());
        const auto facts = persona::read_model_facts(*file);
        QCOMPARE(facts.architecture, std::string("gemma3"));
        QCOMPARE(facts.layers, 18);
        QCOMPARE(facts.hidden_size, 640);
        QCOMPARE(facts.kv_heads, 1);
        QCOMPARE(facts.head_dim, 256);
        QCOMPARE(facts.vocabulary_size, 262144);
        QCOMPARE(file->find("tokenizer.ggml.scores")->floats().size(), std::size_t(262144));
        QVERIFY(!facts.has_chat_template);
    }

    void truncatedCopiesFailClearly_data() {
        QTest::addColumn<qint64>("keep");
        QTest::addColumn<QString>("expected");
        const auto file = GgufFile::open(model_.toStdString());
        const qint64 size = static_cast<qint64>(file->file_size());
        QTest::newRow("3 bytes") << qint64(3) << "too small";
        QTest::newRow("inside header") << qint64(13) << "truncated";
        QTest::newRow("inside first key") << qint64(30) << "truncated";
        QTest::newRow("inside vocabulary") << qint64(500000) << "truncated";
        QTest::newRow("inside tensor table") << qint64(file->data_offset() - 100) << "truncated";
        QTest::newRow("inside tensor data") << size / 2 << "runs past the end";
        QTest::newRow("one byte short") << size - 1 << "runs past the end";
    }
    void truncatedCopiesFailClearly() {
        QFETCH(qint64, keep);
        QFETCH(QString, expected);
        const QString path = damagedCopy(QStringLiteral("truncated-%1.gguf").arg(keep), nullptr, keep);
        const QString message = expectFileError(path);
        QVERIFY2(message.startsWith(path + ": ") && message.contains(expected), qPrintable(message));
    }

    void corruptedCopiesFailClearly_data() {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("expected");
        QTest::newRow("magic") << "magic" << "not a GGUF file";
        QTest::newRow("version") << "version" << "unsupported GGUF version 99";
        QTest::newRow("kv count") << "kvcount" << "metadata count";
        QTest::newRow("key length") << "keylength" << "truncated";
        QTest::newRow("value type") << "valuetype" << "unknown value type";
        QTest::newRow("array length") << "arraylength" << "does not fit";
        QTest::newRow("tensor dims") << "dims" << "dimensions";
        QTest::newRow("tensor type") << "tensortype" << "unknown quantization type 250";
        QTest::newRow("tensor offset") << "offset" << "not aligned";
    }
    void corruptedCopiesFailClearly() {
        QFETCH(QString, name);
        QFETCH(QString, expected);
        const qsizetype firstKey = 24;
        const qsizetype tokens = offsetOfKey(header_, "tokenizer.ggml.tokens");
        const qsizetype tensorName = offsetOfKey(header_, "blk.0.attn_q.weight");
        QVERIFY(tokens > 0 && tensorName > tokens);
        const qsizetype dimsAt = tensorName + 8 + 19;
        auto patch = [](QByteArray& bytes, qsizetype at, auto value) {
            std::memcpy(bytes.data() + at, &value, sizeof value);
        };
        std::function<void(QByteArray&)> damage;
        if (name == "magic") damage = [&](QByteArray& b) { b[0] = 'X'; };
        if (name == "version") damage = [&](QByteArray& b) { patch(b, 4, std::uint32_t(99)); };
        if (name == "kvcount") damage = [&](QByteArray& b) { patch(b, 16, std::uint64_t(1) << 60); };
        if (name == "keylength") damage = [&](QByteArray& b) { patch(b, firstKey, std::uint64_t(1) << 62); };
        std::uint64_t firstKeyLength;
        std::memcpy(&firstKeyLength, header_.constData() + firstKey, 8);
        if (name == "valuetype")
            damage = [&](QByteArray& b) { patch(b, firstKey + 8 + qsizetype(firstKeyLength), std::uint32_t(77)); };
        if (name == "arraylength")
            damage = [&](QByteArray& b) { patch(b, tokens + 8 + 21 + 8, std::uint64_t(1) << 40); };
        if (name == "dims") damage = [&](QByteArray& b) { patch(b, dimsAt, std::uint32_t(7)); };
        if (name == "tensortype") damage = [&](QByteArray& b) { patch(b, dimsAt + 4 + 16, std::uint32_t(250)); };
        if (name == "offset")
            damage = [&](QByteArray& b) {
                std::uint64_t offset;
                std::memcpy(&offset, b.constData() + dimsAt + 4 + 16 + 4, 8);
                patch(b, dimsAt + 4 + 16 + 4, offset + 3);
            };
        QVERIFY(damage);
        const QString path = damagedCopy("corrupt-" + name + ".gguf", damage, 4 * 1024 * 1024);
        const QString message = expectFileError(path);
        QVERIFY2(message.startsWith(path + ": ") && message.contains(expected), qPrintable(message));
    }

    void missingAndOddFilesFailClearly() {
        QVERIFY(expectFileError(dir_->filePath("absent.gguf")).contains("No such file"));
        QVERIFY(expectFileError(dir_->path()).contains("not a regular file"));
        QVERIFY(expectFileError(writeFile(*dir_, "empty.gguf", {})).contains("empty"));
    }

    // Random damage to the header must end in a parsed file or a persona::Error, never a crash
    // or another exception type.
    void randomDamageNeverCrashes() {
        QRandomGenerator random(1234);
        const QByteArray header = header_.left(static_cast<qsizetype>(GgufFile::open(model_.toStdString())->data_offset()));
        for (int round = 0; round < 60; ++round) {
            QByteArray copy = header;
            const int flips = 1 + random.bounded(8);
            for (int i = 0; i < flips; ++i) {
                // Damage concentrates where lengths and counts live: the first KB and the tensor table.
                const qsizetype at = random.bounded(2) ? random.bounded(1024)
                                                       : copy.size() - 1 - random.bounded(qsizetype(16000));
                copy[at] = static_cast<char>(random.bounded(256));
            }
            const QString path = writeFile(*dir_, "random.gguf", copy);
            try {
                GgufFile::open(path.toStdString());
            } catch (const persona::Error&) {
            } catch (const std::exception& e) {
                QFAIL(qPrintable(QString("round %1: unexpected exception %2").arg(round).arg(e.what())));
            }
        }
    }

    // A FIFO given as a model blocked the reader forever (open before the type check).
    void aFifoFailsAtOnce() {
        const QString fifo = dir_->filePath("model.fifo");
        QCOMPARE(::mkfifo(fifo.toLocal8Bit().constData(), 0600), 0);
        QElapsedTimer timer;
        timer.start();
        const QString message = expectFileError(fifo);
        QVERIFY2(message.startsWith(fifo + ": ") && message.contains("not a regular file"), qPrintable(message));
        QVERIFY(timer.elapsed() < 5000);
    }

    // An array of one-byte integers costs 8 bytes each in memory: bounding its count by the file
    // size let a 301 MB file take 2.9 GB. Now the reader refuses it before allocating, naming the
    // file.
    void metadataThatWouldTakeGigabytesIsRefused() {
        GgufWriter w;
        w.header(0, 1);
        const std::uint64_t count = (std::uint64_t(1) << 27) + 1;  // 134 MB on disk, 1 GiB + 8 bytes in memory
        w.key("huge", GgufValueType::Array);
        w.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::UInt8));
        w.put<std::uint64_t>(count);
        w.bytes.append(QByteArray(static_cast<qsizetype>(count), '\1'));
        const QString path = writeFile(*dir_, "huge-array.gguf", w.bytes);
        w.bytes.clear();
        const QString message = expectFileError(path);
        QFile::remove(path);
        QVERIFY2(message.startsWith(path + ": ") && message.contains("MiB of memory"), qPrintable(message));
    }

    // Sizes are bounded far below int overflow: 2^31 blocks used to pass, and layers + 1 overflowed.
    void implausibleSizesAreRefused() {
        for (const std::uint64_t blocks : {std::uint64_t(1) << 31, std::uint64_t(2147483647)}) {
            GgufWriter w;
            w.header(0, 4);
            w.key("general.architecture", GgufValueType::String); w.putString("llama");
            w.key("llama.block_count", GgufValueType::UInt64); w.put<std::uint64_t>(blocks);
            w.key("llama.embedding_length", GgufValueType::UInt32); w.put<std::uint32_t>(8);
            w.key("llama.attention.head_count", GgufValueType::UInt32); w.put<std::uint32_t>(2);
            const QString path = writeFile(*dir_, "many-blocks.gguf", w.bytes);
            const auto file = GgufFile::open(path.toStdString());
            try {
                persona::read_model_facts(*file);
                QFAIL("a block count of 2^31 was accepted");
            } catch (const persona::FileError& e) {
                QVERIFY2(QString(e.what()).contains("block_count") && QString(e.what()).contains("implausible"), e.what());
            }
        }
    }

    // A token id above INT64_MAX used to be reported without the file.
    void aTokenIdAboveInt64MaxNamesTheFile() {
        GgufWriter w;
        w.header(0, 4);
        w.key("tokenizer.ggml.model", GgufValueType::String); w.putString("gpt2");
        w.key("tokenizer.ggml.tokens", GgufValueType::Array);
        w.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::String)); w.put<std::uint64_t>(2);
        w.putString("a"); w.putString("b");
        w.key("tokenizer.ggml.merges", GgufValueType::Array);
        w.put<std::uint32_t>(static_cast<std::uint32_t>(GgufValueType::String)); w.put<std::uint64_t>(0);
        w.key("tokenizer.ggml.bos_token_id", GgufValueType::UInt64); w.put<std::uint64_t>(std::uint64_t(1) << 63);
        const QString path = writeFile(*dir_, "huge-token-id.gguf", w.bytes);
        const auto file = GgufFile::open(path.toStdString());
        try {
            persona::Tokenizer::from_gguf(*file);
            QFAIL("a token id above INT64_MAX was accepted");
        } catch (const persona::FileError& e) {
            QVERIFY2(QString(e.what()).startsWith(path + ": ") && QString(e.what()).contains("bos_token_id"), e.what());
        }
    }

    void everyValueTypeAndNestedArrays() {
        GgufWriter w;
        w.header(1, 16);
        w.key("u8", GgufValueType::UInt8); w.put<std::uint8_t>(200);
        w.key("i8", GgufValueType::Int8); w.put<std::int8_t>(-100);
        w.key("u16", GgufValueType::UInt16); w.put<std::uint16_t>(60000);
        w.key("i16", GgufValueType::Int16); w.put<std::int16_t>(-30000);
        w.key("u32", GgufValueType::UInt32); w.put<std::uint32_t>(4000000000u);
        w.key("i32", GgufValueType::Int32); w.put<std::int32_t>(-2000000000);
        w.key("f32", GgufValueType::Float32); w.put<float>(1.5f);
        w.key("bool", GgufValueType::Bool); w.put<std::uint8_t>(1);
        w.key("str", GgufValueType::String); w.putString("h\xc3\xa9llo");
        w.key("u64", GgufValueType::UInt64); w.put<std::uint64_t>(std::uint64_t(1) << 63);
        w.key("i64", GgufValueType::Int64); w.put<std::int64_t>(-(std::int64_t(1) << 40));
        w.key("f64", GgufValueType::Float64); w.put<double>(-2.25);
        w.key("ints", GgufValueType::Array); w.put<std::uint32_t>(5); w.put<std::uint64_t>(3);
        w.put<std::int32_t>(-1); w.put<std::int32_t>(0); w.put<std::int32_t>(7);
        w.key("floats", GgufValueType::Array); w.put<std::uint32_t>(6); w.put<std::uint64_t>(2);
        w.put<float>(0.25f); w.put<float>(-8.0f);
        w.key("nested", GgufValueType::Array); w.put<std::uint32_t>(9); w.put<std::uint64_t>(2);
        w.put<std::uint32_t>(8); w.put<std::uint64_t>(1); w.putString("a");
        w.put<std::uint32_t>(7); w.put<std::uint64_t>(2); w.put<std::uint8_t>(0); w.put<std::uint8_t>(1);
        w.key("general.alignment", GgufValueType::UInt32); w.put<std::uint32_t>(64);
        w.putString("weights");
        w.put<std::uint32_t>(2); w.put<std::uint64_t>(4); w.put<std::uint64_t>(2);
        w.put<std::uint32_t>(0);  // F32
        w.put<std::uint64_t>(0);
        w.padTo(64);
        const int dataStart = static_cast<int>(w.bytes.size());
        for (int i = 0; i < 8; ++i) w.put<float>(static_cast<float>(i));

        const QString path = writeFile(*dir_, "all-types.gguf", w.bytes);
        const auto file = GgufFile::open(path.toStdString());
        QCOMPARE(file->find("u8")->as_int(), 200);
        QCOMPARE(file->find("i8")->as_int(), -100);
        QCOMPARE(file->find("u16")->as_int(), 60000);
        QCOMPARE(file->find("i16")->as_int(), -30000);
        QCOMPARE(file->find("u32")->as_int(), std::int64_t(4000000000));
        QCOMPARE(file->find("i32")->as_int(), -2000000000);
        QCOMPARE(file->find("f32")->as_float(), 1.5);
        QCOMPARE(file->find("bool")->as_bool(), true);
        QCOMPARE(file->find("str")->as_string(), std::string("h\xc3\xa9llo"));
        QCOMPARE(file->find("u64")->summary(), std::string("9223372036854775808"));
        QVERIFY_THROWS_EXCEPTION(persona::Error, file->find("u64")->as_int());
        QCOMPARE(file->find("i64")->as_int(), -(std::int64_t(1) << 40));
        QCOMPARE(file->find("f64")->as_float(), -2.25);
        QCOMPARE(file->find("ints")->ints(), (std::vector<std::int64_t>{-1, 0, 7}));
        QCOMPARE(file->find("floats")->floats(), (std::vector<double>{0.25, -8.0}));
        const auto& nested = file->find("nested")->arrays();
        QCOMPARE(nested.size(), std::size_t(2));
        QCOMPARE(nested[0].strings(), (std::vector<std::string>{"a"}));
        QCOMPARE(nested[1].bools(), (std::vector<bool>{false, true}));
        QVERIFY_THROWS_EXCEPTION(persona::Error, file->find("str")->as_int());
        QVERIFY_THROWS_EXCEPTION(persona::FileError, file->get_int("str"));
        QVERIFY_THROWS_EXCEPTION(persona::FileError, file->get_int("absent.key"));
        QCOMPARE(file->alignment(), std::size_t(64));
        QCOMPARE(file->data_offset(), std::uint64_t(dataStart));
        const auto* weights = file->find_tensor("weights");
        QVERIFY(weights);
        QCOMPARE(weights->element_count(), std::uint64_t(8));
        float seventh;
        std::memcpy(&seventh, file->tensor_data(*weights) + 7 * sizeof(float), sizeof seventh);
        QCOMPARE(seventh, 7.0f);
        QCOMPARE(file->metadata_keys_in_file_order().front(), std::string("u8"));
    }
};

QTEST_GUILESS_MAIN(TestGguf)
#include "test_gguf.moc"
