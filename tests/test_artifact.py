"""The artifact contract (kiln.artifact): one module both the compiler and the runtime use."""

import json
import subprocess
import sys

import numpy as np
import pytest

from kiln.artifact import (PARAMETERS_KEY, SIGNATURE_KEY, GuardSpec, Signature, TensorSpec,
                           parameters_path)

# A signature as the compiler writes it, every optional part present.
FULL = {
    "inputs": [{"name": "ids", "shape": [1, None], "dtype": "int64",
                "bounds": [None, [2, None]]},
               {"name": "x", "shape": [4], "dtype": "bfloat16"}],
    "outputs": [{"shape": [1, None, 8], "dtype": "float32"}, {"shape": [2], "dtype": "int64"}],
    "kiln_version": "0.1.0",
    "mutated_inputs": [{"output": None, "input": 1}],
    "guards": [{"output": 1, "op": "aten.embedding", "source": "m.py:3: e(ids)",
                "message": "index out of range", "dim": 0}],
    "written_inputs": [1],
    "output_tree": {"kind": "tuple", "items": [{"kind": "tensor", "index": 0}]},
    "state": ["cache"],
}


@pytest.mark.parametrize("data", [
    FULL,
    {"inputs": [{"name": "x", "shape": [2, 3], "dtype": "float32"}],
     "outputs": [{"shape": [2, 3], "dtype": "float32"}], "kiln_version": "0.1.0",
     "mutated_inputs": []},
], ids=["every-part", "plain"])
def test_signature_json_round_trips_byte_for_byte(data):
    text = json.dumps(data)
    signature = Signature.from_json(text)
    assert signature.to_json() == text
    assert Signature.from_json(signature.to_json()) == signature


def test_signature_reads_typed_parts():
    signature = Signature.from_dict(FULL)
    assert signature.inputs[0] == TensorSpec((1, None), "int64", "ids", (None, (2, None)))
    assert signature.outputs[1].name is None
    assert signature.guards == (GuardSpec(1, "aten.embedding", "m.py:3: e(ids)",
                                          "index out of range", 0),)


def test_parameters_path_rule():
    assert parameters_path("a/model.vmfb").as_posix() == "a/model.irpa"
    assert parameters_path("m.b1").as_posix() == "m.b1.irpa"


def test_compile_side_does_not_import_the_runtime():
    """The compiler and parameters.py take the contract from kiln.artifact, not kiln.runtime
    (which imports iree.runtime)."""
    code = ("import sys, kiln.compiler, kiln.parameters, kiln.device_state; "
            "print('kiln.runtime' in sys.modules, 'iree.runtime' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "False"]


def test_compiled_artifact_carries_the_contract_keys(tmp_path):
    """What the compiler writes under SIGNATURE_KEY the runtime reads as a Signature."""
    import torch

    import kiln
    from kiln.runtime.device import _iree_runtime

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2

    vmfb = kiln.compile_to_vmfb(Double(), (torch.ones(3),), cache=False)
    rt = _iree_runtime()
    module = rt.VmModule.copy_buffer(rt.VmInstance(), vmfb)
    reflection = dict(module.lookup_function("main").reflection)
    assert PARAMETERS_KEY not in reflection
    signature = Signature.from_json(reflection[SIGNATURE_KEY])
    assert signature.inputs == (TensorSpec((3,), "float32", "x"),)
    loaded = kiln.load(vmfb)
    assert loaded.signature == signature.to_dict()
    np.testing.assert_array_equal(loaded(np.ones(3, np.float32)), np.full(3, 2, np.float32))
