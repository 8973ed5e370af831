#include "formats/torch_pickle.h"

#include "persona/errors.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <utility>

namespace persona {
namespace {

constexpr const char* kRebuildModule = "torch._utils";
constexpr const char* kRebuildName = "_rebuild_tensor_v2";
constexpr const char* kDictModule = "collections";
constexpr const char* kDictName = "OrderedDict";
// A tensor's pickle is a few hundred bytes; these only bound what a hostile one can make us hold.
constexpr std::size_t kMaxStack = 4096;
constexpr std::size_t kMaxMemo = 4096;
constexpr std::size_t kMaxDimensions = 16;

struct Value;
using ValuePtr = std::shared_ptr<const Value>;

struct Value {
    enum class Kind { None, Bool, Int, String, Tuple, Global, Storage, Dict, Tensor } kind = Kind::None;
    std::int64_t integer = 0;       // Int, Bool
    std::string text;               // String; Global: "module.name"
    std::vector<ValuePtr> items;    // Tuple
    TorchTensorPickle tensor;       // Storage (type, key, numel), Tensor
};

ValuePtr make(Value value) { return std::make_shared<const Value>(std::move(value)); }

const char* kind_name(Value::Kind kind) {
    switch (kind) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "a boolean";
    case Value::Kind::Int: return "an integer";
    case Value::Kind::String: return "a string";
    case Value::Kind::Tuple: return "a tuple";
    case Value::Kind::Global: return "a class or function";
    case Value::Kind::Storage: return "a storage";
    case Value::Kind::Dict: return "a dict";
    case Value::Kind::Tensor: return "a tensor";
    }
    return "a value";
}

bool is_storage_class(const std::string& module, const std::string& name) {
    return module == "torch" && torch_storage_element_size(name) != 0;
}

class Machine {
public:
    Machine(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

    TorchTensorPickle run() {
        while (true) {
            if (at_ >= size_) fail("ends before its STOP opcode");
            opcode_at_ = at_;
            const std::uint8_t op = data_[at_++];
            switch (op) {
            case 0x80: {  // PROTO
                const std::uint8_t version = byte();
                if (version < 2 || version > 5) fail("uses pickle protocol " + std::to_string(version));
                break;
            }
            case 0x95: skip(8); break;  // FRAME: a length hint
            case 'c': {  // GLOBAL
                const std::string module = line();
                push_global(module, line());
                break;
            }
            case 0x93: {  // STACK_GLOBAL
                const ValuePtr name = pop(), module = pop();
                if (module->kind != Value::Kind::String || name->kind != Value::Kind::String)
                    fail("names a global with something other than strings");
                push_global(module->text, name->text);
                break;
            }
            case 'q': memoize(byte()); break;                     // BINPUT
            case 'r': memoize(little_endian(4)); break;           // LONG_BINPUT
            case 0x94: memoize(std::uint32_t(memo_.size())); break;  // MEMOIZE
            case 'h': push(recall(byte())); break;                // BINGET
            case 'j': push(recall(little_endian(4))); break;      // LONG_BINGET
            case '(':  // MARK
                if (marks_.size() >= kMaxStack) fail("nests too deeply");
                marks_.push_back(stack_.size());
                break;
            case 't': push(tuple(pop_mark())); break;  // TUPLE
            case ')': push(tuple({})); break;          // EMPTY_TUPLE
            case 0x85: case 0x86: case 0x87:  // TUPLE1, TUPLE2, TUPLE3
                push(tuple(pop_n(std::size_t(op - 0x84))));
                break;
            case 'X': push_string(little_endian(4)); break;  // BINUNICODE
            case 0x8c: push_string(byte()); break;           // SHORT_BINUNICODE
            case 'K': push_int(byte()); break;               // BININT1
            case 'M': push_int(std::int64_t(little_endian(2))); break;  // BININT2
            case 'J': push_int(std::int32_t(little_endian(4))); break;  // BININT
            case 0x8a: push_int(long1()); break;                       // LONG1
            case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
                Value value;
                value.kind = Value::Kind::Bool;
                value.integer = op == 0x88;
                push(make(std::move(value)));
                break;
            }
            case 'N': push(make(Value{})); break;  // NONE
            case '}': {  // EMPTY_DICT
                Value value;
                value.kind = Value::Kind::Dict;
                push(make(std::move(value)));
                break;
            }
            case 's': case 'u': {  // SETITEM, SETITEMS: a dict's contents do not matter here
                const std::vector<ValuePtr> items = op == 's' ? pop_n(2) : pop_mark();
                if (items.size() % 2 != 0) fail("sets a dict item without a value");
                if (stack_.empty() || stack_.back()->kind != Value::Kind::Dict) fail("sets items on something that is not a dict");
                break;
            }
            case 'Q': push(storage(pop())); break;  // BINPERSID
            case 'R': {                              // REDUCE
                const ValuePtr arguments = pop(), callable = pop();
                push(call(*callable, *arguments));
                break;
            }
            case '.': {  // STOP
                const ValuePtr result = pop();
                if (result->kind != Value::Kind::Tensor)
                    fail("holds " + std::string(kind_name(result->kind)) + ", not a tensor");
                return result->tensor;
            }
            default: {
                char shown[48];
                std::snprintf(shown, sizeof shown, "opcode 0x%02x", unsigned(op));
                fail(std::string(shown) + ", which a saved tensor does not use");
            }
            }
        }
    }

private:
    [[noreturn]] void fail(const std::string& problem) const {
        throw Error("pickle (byte " + std::to_string(opcode_at_) + ") " + problem);
    }

    std::uint8_t byte() {
        if (at_ >= size_) fail("ends inside an opcode");
        return data_[at_++];
    }
    void skip(std::size_t count) {
        if (size_ - at_ < count) fail("ends inside an opcode");
        at_ += count;
    }
    std::uint32_t little_endian(int bytes) {
        std::uint32_t value = 0;
        for (int i = 0; i < bytes; ++i) value |= std::uint32_t(byte()) << (8 * i);
        return value;
    }
    std::int64_t long1() {
        const std::uint8_t count = byte();
        if (count > 8) fail("holds an integer of " + std::to_string(count) + " bytes");
        std::uint64_t value = 0;
        for (int i = 0; i < count; ++i) value |= std::uint64_t(byte()) << (8 * i);
        if (count > 0 && count < 8 && (value >> (8 * count - 1)) & 1) value |= ~std::uint64_t(0) << (8 * count);
        return std::int64_t(value);
    }
    std::string line() {
        const void* end = std::memchr(data_ + at_, '\n', size_ - at_);
        if (!end) fail("ends inside a global's name");
        const auto* stop = static_cast<const std::uint8_t*>(end);
        std::string text(reinterpret_cast<const char*>(data_ + at_), std::size_t(stop - (data_ + at_)));
        at_ = std::size_t(stop - data_) + 1;
        return text;
    }

    void push(ValuePtr value) {
        if (stack_.size() >= kMaxStack) fail("grows its stack past " + std::to_string(kMaxStack));
        stack_.push_back(std::move(value));
    }
    // Never below the innermost mark: a mark above the stack would make pop_mark's range invalid.
    ValuePtr pop() {
        if (stack_.empty() || (!marks_.empty() && marks_.back() == stack_.size())) fail("pops an empty stack");
        ValuePtr value = std::move(stack_.back());
        stack_.pop_back();
        return value;
    }
    std::vector<ValuePtr> pop_n(std::size_t count) {
        std::vector<ValuePtr> items(count);
        for (std::size_t i = count; i-- > 0;) items[i] = pop();
        return items;
    }
    std::vector<ValuePtr> pop_mark() {
        if (marks_.empty()) fail("closes a mark it never set");
        const std::size_t mark = marks_.back();
        marks_.pop_back();
        std::vector<ValuePtr> items(stack_.begin() + std::ptrdiff_t(mark), stack_.end());
        stack_.resize(mark);
        return items;
    }
    void memoize(std::uint32_t index) {
        if (stack_.empty()) fail("memoizes from an empty stack");
        if (memo_.size() >= kMaxMemo && !memo_.count(index)) fail("memoizes more than " + std::to_string(kMaxMemo) + " values");
        memo_[index] = stack_.back();
    }
    ValuePtr recall(std::uint32_t index) {
        const auto found = memo_.find(index);
        if (found == memo_.end()) fail("recalls memo entry " + std::to_string(index) + ", which was never stored");
        return found->second;
    }
    void push_string(std::uint32_t length) {
        if (size_ - at_ < length) fail("ends inside a string");
        Value value;
        value.kind = Value::Kind::String;
        value.text.assign(reinterpret_cast<const char*>(data_ + at_), length);
        at_ += length;
        push(make(std::move(value)));
    }
    void push_int(std::int64_t integer) {
        Value value;
        value.kind = Value::Kind::Int;
        value.integer = integer;
        push(make(std::move(value)));
    }
    // Refused here, before any later opcode could use it.
    void push_global(const std::string& module, const std::string& name) {
        const bool allowed = (module == kRebuildModule && name == kRebuildName) ||
                             (module == kDictModule && name == kDictName) || is_storage_class(module, name);
        if (!allowed) fail("refers to " + module + "." + name + ", which a saved float tensor does not use");
        Value value;
        value.kind = Value::Kind::Global;
        value.text = module + "." + name;
        push(make(std::move(value)));
    }
    static ValuePtr tuple(std::vector<ValuePtr> items) {
        Value value;
        value.kind = Value::Kind::Tuple;
        value.items = std::move(items);
        return make(std::move(value));
    }

    // ("storage", torch.XStorage, key, location, numel), as torch.save's persistent_id writes it.
    ValuePtr storage(const ValuePtr& id) {
        const auto& items = id->items;
        if (id->kind != Value::Kind::Tuple || items.size() != 5 || items[0]->kind != Value::Kind::String ||
            items[0]->text != "storage" || items[1]->kind != Value::Kind::Global ||
            items[2]->kind != Value::Kind::String || items[3]->kind != Value::Kind::String ||
            items[4]->kind != Value::Kind::Int)
            fail("has a persistent id that is not a tensor storage");
        const std::string& type = items[1]->text;
        const std::size_t dot = type.rfind('.');
        if (type.compare(0, dot, "torch") != 0 || !torch_storage_element_size(type.substr(dot + 1)))
            fail("has a storage of type " + type);
        if (items[4]->integer < 0) fail("has a storage of negative size");
        Value value;
        value.kind = Value::Kind::Storage;
        value.tensor.storage_type = type.substr(dot + 1);
        value.tensor.storage_key = items[2]->text;
        value.tensor.storage_numel = items[4]->integer;
        return make(std::move(value));
    }

    std::vector<std::int64_t> integers(const Value& tuple, const char* what) const {
        if (tuple.kind != Value::Kind::Tuple) fail(std::string("gives a tensor ") + what + " that is not a tuple");
        if (tuple.items.size() > kMaxDimensions) fail(std::string("gives a tensor ") + what + " of " + std::to_string(tuple.items.size()) + " dimensions");
        std::vector<std::int64_t> values;
        for (const ValuePtr& item : tuple.items) {
            if (item->kind != Value::Kind::Int || item->integer < 0)
                fail(std::string("gives a tensor ") + what + " with a negative or non-integer entry");
            values.push_back(item->integer);
        }
        return values;
    }

    ValuePtr call(const Value& callable, const Value& arguments) {
        if (callable.kind != Value::Kind::Global) fail("calls " + std::string(kind_name(callable.kind)));
        if (arguments.kind != Value::Kind::Tuple) fail("calls " + callable.text + " without an argument tuple");
        const auto& args = arguments.items;
        if (callable.text == std::string(kDictModule) + "." + kDictName) {
            if (!args.empty()) fail("builds an OrderedDict from arguments");
            Value value;
            value.kind = Value::Kind::Dict;
            return make(std::move(value));
        }
        if (callable.text != std::string(kRebuildModule) + "." + kRebuildName) fail("calls " + callable.text);
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (args.size() < 6 || args.size() > 7) fail("rebuilds a tensor from " + std::to_string(args.size()) + " arguments");
        if (args[0]->kind != Value::Kind::Storage) fail("rebuilds a tensor from " + std::string(kind_name(args[0]->kind)));
        if (args[1]->kind != Value::Kind::Int || args[1]->integer < 0) fail("gives a tensor a negative or non-integer offset");
        Value value;
        value.kind = Value::Kind::Tensor;
        value.tensor = args[0]->tensor;
        value.tensor.storage_offset = args[1]->integer;
        value.tensor.shape = integers(*args[2], "size");
        value.tensor.stride = integers(*args[3], "stride");
        if (value.tensor.shape.size() != value.tensor.stride.size()) fail("gives a tensor a size and stride of different lengths");
        return make(std::move(value));
    }

    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t at_ = 0;
    std::size_t opcode_at_ = 0;
    std::vector<ValuePtr> stack_;
    std::vector<std::size_t> marks_;
    std::map<std::uint32_t, ValuePtr> memo_;
};

// Protocol 2 writing, as Python's pickler writes these values.
class Writer {
public:
    void op(char code) { out_ += code; }
    void global(const std::string& module, const std::string& name) { out_ += 'c' + module + '\n' + name + '\n'; memoize(); }
    void string(const std::string& text) {
        op('X');
        append_le(std::uint32_t(text.size()), 4);
        out_ += text;
        memoize();
    }
    void integer(std::int64_t value) {
        if (value >= 0 && value < 256) {
            op('K');
            append_le(std::uint64_t(value), 1);
        } else if (value >= 0 && value < 65536) {
            op('M');
            append_le(std::uint64_t(value), 2);
        } else if (value >= INT32_MIN && value <= INT32_MAX) {
            op('J');
            append_le(std::uint64_t(std::uint32_t(std::int32_t(value))), 4);
        } else {
            out_ += char(0x8a);
            out_ += char(8);
            append_le(std::uint64_t(value), 8);
        }
    }
    void integer_tuple(const std::vector<std::int64_t>& values) {
        if (values.empty()) {
            op(')');
            return;
        }
        if (values.size() > 3) op('(');
        for (std::int64_t value : values) integer(value);
        if (values.size() > 3) op('t');
        else out_ += char(0x84 + values.size());
        memoize();
    }
    void memoize() {
        op('q');
        out_ += char(memo_++);  // a tensor's pickle stores far fewer than 256 values
    }
    std::string take() { return std::move(out_); }

private:
    void append_le(std::uint64_t value, int bytes) {
        for (int i = 0; i < bytes; ++i) out_ += char((value >> (8 * i)) & 0xff);
    }
    std::string out_ = std::string("\x80\x02", 2);
    int memo_ = 0;
};

}  // namespace

std::size_t torch_storage_element_size(const std::string& storage_type) {
    if (storage_type == "FloatStorage") return 4;
    if (storage_type == "BFloat16Storage" || storage_type == "HalfStorage") return 2;
    if (storage_type == "DoubleStorage") return 8;
    return 0;
}

TorchTensorPickle read_tensor_pickle(const std::uint8_t* data, std::size_t size) {
    return Machine(data, size).run();
}

std::string write_tensor_pickle(const std::string& storage_type, const std::string& storage_key,
                                const std::vector<std::int64_t>& shape) {
    std::int64_t numel = 1;
    for (std::int64_t extent : shape) numel *= extent;
    std::vector<std::int64_t> stride(shape.size(), 1);
    for (std::size_t i = shape.size(); i-- > 1;) stride[i - 1] = stride[i] * shape[i];

    Writer w;
    w.global(kRebuildModule, kRebuildName);
    w.op('(');
    w.op('(');  // the persistent id
    w.string("storage");
    w.global("torch", storage_type);
    w.string(storage_key);
    w.string("cpu");
    w.integer(numel);
    w.op('t');
    w.memoize();
    w.op('Q');
    w.integer(0);  // storage offset
    w.integer_tuple(shape);
    w.integer_tuple(stride);
    w.op(char(0x89));  // requires_grad = False
    w.global(kDictModule, kDictName);
    w.op(')');
    w.op('R');  // backward hooks: OrderedDict()
    w.memoize();
    w.op('t');
    w.memoize();
    w.op('R');
    w.memoize();
    w.op('.');
    return w.take();
}

}  // namespace persona
