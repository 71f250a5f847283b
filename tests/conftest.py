"""Shared fixtures: offline Hugging Face, compiled artifacts cached per session (each compile
costs seconds on a 2-core CPU). pyproject's `pythonpath` makes tests/ and the repository root
importable."""

from __future__ import annotations

import os

# Never download anything: models are built from configs with random weights.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The compile cache lives in a per-run folder: a user's ~/.cache/kiln is neither read nor
# filled by the tests (tests that exercise the cache point KILN_CACHE_DIR elsewhere).
if "KILN_TEST_KEEP_CACHE" not in os.environ:
    import tempfile

    os.environ["KILN_CACHE_DIR"] = tempfile.mkdtemp(prefix="kiln-test-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402

from kiln.examples import tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_gpt_eager():
    """(model, (tokens,)) of the bundled example, explicit matmul-softmax-matmul attention."""
    return tiny.tiny_gpt("eager")


@pytest.fixture(scope="session")
def tiny_gpt_compiled(tiny_gpt_eager):
    """compile_model(...) of tiny_gpt (eager attention) for the CPU: vmfb and report."""
    import kiln

    model, args = tiny_gpt_eager
    return kiln.compile_model(model, args, target="cpu")


@pytest.fixture(scope="session")
def tiny_gpt_vmfb(tiny_gpt_compiled) -> bytes:
    assert isinstance(tiny_gpt_compiled.vmfb, bytes) and tiny_gpt_compiled.vmfb
    return tiny_gpt_compiled.vmfb


@pytest.fixture(scope="session")
def tiny_gpt_module(tiny_gpt_vmfb):
    import kiln

    return kiln.load(tiny_gpt_vmfb, device="cpu")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
