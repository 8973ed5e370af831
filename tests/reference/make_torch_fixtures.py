"""Writes tests/data/torch/*.pt: PyTorch archives as torch.save writes them, from known values,
plus hostile variants that test_torch_files must refuse.

No torch is needed to write them: torch.save is Python's pickler (protocol 2) with a
persistent_id for storages, inside a zip of stored records named archive/... . Stand-ins
named like torch's classes make the pickler write the same globals torch does. Where torch is
installed, --check-with-torch also loads each good file with torch.load(weights_only=True)
and compares every value, and checks any extra files given (our exports) the same way:

    python3 tests/reference/make_torch_fixtures.py
    python3 tests/reference/make_torch_fixtures.py --check-with-torch [OUR.pt EXPECTED.json ...]

Values: float32 element i of a file is (i - 5) * 0.375, except element 0 = -0.0 and element 1
= the float32 nearest 1e-40 (a subnormal). test_torch_files computes the same in C++.
"""
import argparse
import collections
import json
import pathlib
import pickle
import struct
import sys
import types
import zipfile

OUTPUT = pathlib.Path(__file__).resolve().parent.parent / "data" / "torch"
# The hostile pickle would create this file if anything ever executed it.
PAYLOAD_MARKER = "/tmp/persona-workbench-pt-payload-ran"


def values(count):
    out = [(i - 5) * 0.375 for i in range(count)]
    out[0] = -0.0
    if count > 1:
        out[1] = 1e-40
    return out


# --- stand-ins for torch's pickled names ---------------------------------------------------------
torch_module = types.ModuleType("torch")
utils_module = types.ModuleType("torch._utils")


def _rebuild_tensor_v2(*args):
    raise RuntimeError("never called: only pickled")


_rebuild_tensor_v2.__module__ = "torch._utils"
utils_module._rebuild_tensor_v2 = _rebuild_tensor_v2
STORAGE_CLASSES = {}
for storage_name in ("FloatStorage", "BFloat16Storage", "HalfStorage", "DoubleStorage", "LongStorage"):
    cls = type(storage_name, (), {"__module__": "torch"})
    setattr(torch_module, storage_name, cls)
    STORAGE_CLASSES[storage_name] = cls
torch_module._utils = utils_module


class Storage:
    def __init__(self, kind, key, data, numel):
        self.kind, self.key, self.data, self.numel = kind, key, data, numel


class Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2,
                (self.storage, self.offset, tuple(self.shape), tuple(self.stride), False, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", STORAGE_CLASSES[obj.kind], obj.key, "cpu", obj.numel)
        return None


def pickled(obj):
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch_module, utils_module
    try:
        import io
        buffer = io.BytesIO()
        TorchPickler(buffer, protocol=2).dump(obj)
        return buffer.getvalue()
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


def archive(path, pickle_bytes, storages, drop_version=False):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        for storage in storages:
            z.writestr(f"archive/data/{storage.key}", storage.data)
        if not drop_version:
            z.writestr("archive/version", "3\n")


def float32_bytes(numbers):
    return struct.pack(f"<{len(numbers)}f", *numbers)


def contiguous_stride(shape):
    stride, step = [], 1
    for extent in reversed(shape):
        stride.insert(0, step)
        step *= extent
    return stride


def write_fixtures():
    OUTPUT.mkdir(parents=True, exist_ok=True)
    # The reference's own layout: [layers + 1, hidden], float32, contiguous.
    shape = [4, 3]
    storage = Storage("FloatStorage", "0", float32_bytes(values(12)), 12)
    archive(OUTPUT / "evil_response_avg_diff.pt", pickled(Tensor(storage, 0, shape, contiguous_stride(shape))), [storage])

    # bfloat16, as a model run in bfloat16 leaves its hidden states: upper halves of the floats.
    bf16 = b"".join(float32_bytes([v])[2:4] for v in values(6))
    storage = Storage("BFloat16Storage", "0", bf16, 6)
    archive(OUTPUT / "optimistic_prompt_last_diff.pt", pickled(Tensor(storage, 0, [2, 3], [3, 1])), [storage])

    # A view: rows 1..3 of a [4, 3] storage, transposed to [3, 3] (offset 3, strides 1 and 3).
    storage = Storage("FloatStorage", "7", float32_bytes(values(12)), 12)
    archive(OUTPUT / "view.pt", pickled(Tensor(storage, 3, [3, 3], [1, 3])), [storage])

    # --- hostile and wrong files ---
    # A pickle that would run a shell command on load (pickle's classic attack): GLOBAL
    # posix.system, REDUCE. Python's pickle.loads would execute it; our reader must refuse it.
    payload = (b"\x80\x02cposix\nsystem\nq\x00X" + struct.pack("<I", len("touch " + PAYLOAD_MARKER)) +
               ("touch " + PAYLOAD_MARKER).encode() + b"q\x01\x85q\x02Rq\x03.")
    archive(OUTPUT / "runs_a_command.pt", payload, [])
    # A global hidden where the storage type belongs.
    storage = Storage("FloatStorage", "0", float32_bytes(values(12)), 12)
    hidden = pickled(Tensor(storage, 0, [4, 3], [3, 1])).replace(b"ctorch\nFloatStorage\n", b"cposix\nsystem\n")
    archive(OUTPUT / "global_in_storage.pt", hidden, [storage])
    good = (OUTPUT / "evil_response_avg_diff.pt").read_bytes()
    (OUTPUT / "truncated.pt").write_bytes(good[: len(good) // 2])
    storage = Storage("LongStorage", "0", struct.pack("<12q", *range(12)), 12)
    archive(OUTPUT / "integer_storage.pt", pickled(Tensor(storage, 0, [4, 3], [3, 1])), [storage])
    storage = Storage("FloatStorage", "0", float32_bytes(values(12)), 12)
    archive(OUTPUT / "three_dimensions.pt", pickled(Tensor(storage, 0, [2, 2, 3], [6, 3, 1])), [storage])
    storage = Storage("FloatStorage", "0", float32_bytes(values(10)), 12)  # says 12, holds 10
    archive(OUTPUT / "short_storage.pt", pickled(Tensor(storage, 0, [4, 3], [3, 1])), [storage])
    storage = Storage("FloatStorage", "0", float32_bytes(values(12)), 12)
    archive(OUTPUT / "view_outside_storage.pt", pickled(Tensor(storage, 4, [4, 3], [3, 1])), [storage])
    # The legacy (pre-1.6, non-zip) format opens with these pickles: torch's magic number and
    # protocol version 1001.
    (OUTPUT / "legacy_format.pt").write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) +
                                              pickle.dumps(1001, protocol=2))


def check_with_torch(extra):
    import torch  # only here: writing the fixtures needs no torch

    expected = {
        "evil_response_avg_diff.pt": (values(12), [4, 3]),
        "optimistic_prompt_last_diff.pt": (None, [2, 3]),
        "view.pt": ([values(12)[3 + r + 3 * c] for r in range(3) for c in range(3)], [3, 3]),
    }
    for name, (numbers, shape) in expected.items():
        tensor = torch.load(OUTPUT / name, weights_only=True)
        assert list(tensor.shape) == shape, (name, tensor.shape)
        if numbers is not None:
            got = struct.pack(f"<{len(numbers)}f", *tensor.float().flatten().tolist())
            assert got == float32_bytes(numbers), name
        print("torch.load", name, "ok", tensor.dtype)
    try:
        torch.load(OUTPUT / "runs_a_command.pt", weights_only=True)
        raise AssertionError("torch loaded the hostile pickle")
    except pickle.UnpicklingError:
        print("torch.load refuses runs_a_command.pt too")
    # Our exports: each with a JSON file of its expected float32 values and shape.
    for pt, expectation in zip(extra[::2], extra[1::2]):
        want = json.loads(pathlib.Path(expectation).read_text())
        tensor = torch.load(pt, weights_only=True)
        assert tensor.dtype == torch.float32 and list(tensor.shape) == want["shape"], (pt, tensor.dtype, tensor.shape)
        got = struct.pack(f"<{tensor.numel()}f", *tensor.flatten().tolist())
        assert got == float32_bytes(want["values"]), pt
        # And back: torch.save of what it loaded, for our reader to compare.
        torch.save(tensor.clone(), pt + ".resaved.pt")
        print("torch.load", pt, "ok; resaved as", pt + ".resaved.pt")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-with-torch", nargs="*", metavar="FILE")
    arguments = parser.parse_args()
    if arguments.check_with_torch is None:
        write_fixtures()
    else:
        check_with_torch(arguments.check_with_torch)
