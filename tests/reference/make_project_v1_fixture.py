"""Writes the vector of tests/data/project_v1.persona, the schema-version-1 project that
test_project migrates. Needs numpy and safetensors (pip), not our code.

    python3 tests/reference/make_project_v1_fixture.py
"""
import os

import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "project_v1.persona", "vectors", "cheerful.response_avg.safetensors")

# [L+1, hidden] = [3, 4]: a model of 2 blocks with hidden size 4, values chosen to be exact in float32.
vector = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5) / 4
save_file({"vector": vector}, OUT, metadata={
    "schema": "persona-workbench/vector",
    "schema_version": "1",
    "trait": "cheerful",
    "aggregate": "response_avg",
    "layer_convention": "hidden_states: index 0 = embeddings, l = output of block l-1",
    "writer": "persona-workbench 0.1.0",
    "provenance.model": "tiny-test-model",
})
print(OUT)
