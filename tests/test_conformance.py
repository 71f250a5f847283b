"""Op conformance in CI: a recorded subset of the OpInfo samples (tests/conformance/
ci_samples.json, picked from a full run among the samples the plain torch-mlir → IREE path
passes) runs through Kiln, in a worker process with a time limit per sample, and each must
reach its recorded outcome ("pass" for all but recorded known gaps). The full comparison of
both paths: `python -m tests.conformance.run --full` (docs/conformance.md)."""

from __future__ import annotations

import torch

from tests.conformance.run import ci_samples, run_samples
from tests.conformance.samples import SampleId, build, equal

# Kiln's outcomes from best to worst: a sample may do better than recorded, never worse.
RANK = {"pass": 0, "refused": 1, "wrong": 2, "runtime": 2, "import": 2, "export": 2,
        "compile": 2, "timeout": 3, "crash": 3}


def test_kiln_reaches_the_recorded_outcome_of_every_ci_sample():
    expected = ci_samples()
    assert 50 <= len(expected) <= 300
    records = run_samples(list(expected), paths=("kiln",), timeout=120)
    problems = []
    for record in records:
        want = expected[record["id"]]
        if record.get("skip"):
            problems.append(f"{record['id']}: eager could not run it: {record['skip']}")
            continue
        got = record["kiln"]
        if RANK[got["kind"]] > RANK[want]:
            problems.append(f"{record['id']}: {got['kind']} (recorded: {want}): "
                            f"{got['detail'][:300]}")
    assert not problems, f"{len(problems)} of {len(records)} samples regressed:\n" + \
        "\n".join(problems)


def test_comparison_is_dtype_aware():
    want = (torch.tensor([1.0, 2.0]), torch.tensor([3, 4]))
    assert equal((torch.tensor([1.00001, 2.0]), torch.tensor([3, 4])), want) is None
    assert "values differ" in equal((torch.tensor([1.0, 2.0]), torch.tensor([3, 5])), want)
    assert "dtype" in equal((torch.tensor([1.0, 2.0]).double(), torch.tensor([3, 4])), want)
    assert "structure" in equal([want[0], want[1]], want)


def test_samples_rebuild_identically_from_their_name():
    name = SampleId.parse("add|float32|0")
    first, second = build(name), build(name)
    assert str(name) == "add|float32|0" and len(first.inputs) >= 1
    assert all(torch.equal(a, b) for a, b in zip(first.inputs, second.inputs))
