"""Reads a control vector written by export_control_vector with the reference `gguf` package and
checks it the way llama.cpp's loader does, and that direction.N holds hidden_states[N+1].

test_vector_files copies the file it exports in controlVectorLayerMapping to
$PERSONA_CONTROL_VECTOR_SAMPLE and the source vector to $PERSONA_CONTROL_VECTOR_SAMPLE.vector.safetensors:

    PERSONA_CONTROL_VECTOR_SAMPLE=/tmp/ours.gguf build/tests/test_vector_files controlVectorLayerMapping
    venv/bin/python tests/reference/check_control_vector.py /tmp/ours.gguf
"""
import importlib.metadata
import json
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType


def read_vector_file(path):
    # Our vector file is safetensors; parsed by hand so that only numpy and gguf are needed.
    with open(path, "rb") as f:
        (header_length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_length))
        data = f.read()
    tensor = header["vector"]
    begin, end = tensor["data_offsets"]
    assert tensor["dtype"] == "F32", tensor
    return np.frombuffer(data[begin:end], dtype="<f4").reshape(tensor["shape"]), header["__metadata__"]


def main(path):
    reader = GGUFReader(path)
    fields = reader.fields
    assert fields["general.architecture"].contents() == "controlvector"
    assert fields["controlvector.model_hint"].contents() == "llama"
    layer_count = fields["controlvector.layer_count"]
    assert layer_count.types == [GGUFValueType.UINT32], layer_count.types
    vector, metadata = read_vector_file(path + ".vector.safetensors")
    blocks = vector.shape[0] - 1
    assert metadata["layer_convention"].startswith("hidden_states: index 0 = embeddings")
    assert fields["persona_workbench.block_count"].contents() == blocks

    # llama.cpp's common_control_vector_load_one: every tensor is direction.N with N >= 1,
    # F32, 1-D, all of one length; direction.N is added to the output of block N.
    names = [t.name for t in reader.tensors]
    assert names == [f"direction.{n}" for n in range(1, blocks)], names
    assert layer_count.contents() == len(names)
    for tensor in reader.tensors:
        n = int(tensor.name.split(".")[1])
        assert tensor.tensor_type == GGMLQuantizationType.F32, tensor.tensor_type
        assert list(tensor.shape) == [vector.shape[1]], tensor.shape
        assert tensor.data_offset % reader.alignment == 0
        assert tensor.data.tobytes() == vector[n + 1].tobytes(), f"{tensor.name} is not hidden_states[{n + 1}]"
    print(f"{path}: gguf {importlib.metadata.version('gguf')} read it; "
          f"{len(names)} directions direction.1..{blocks - 1} = hidden_states[2..{blocks}], bit for bit")


if __name__ == "__main__":
    main(sys.argv[1])
