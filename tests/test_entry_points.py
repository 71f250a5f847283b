"""Several entry points in one artifact: prefill and KV-cache decode of the bundled TinyGPT."""

import pytest
import torch
from torch.export import Dim

import kiln
from kiln.examples.tiny_gpt import TinyGPTConfig, TinyGPTDecode, TinyGPTPrefill, build_tiny_gpt

from compare import assert_close


CONFIG = TinyGPTConfig(n_layers=2, d_model=64, n_heads=4, max_seq_len=64, vocab_size=128)


@pytest.fixture(scope="module")
def decoder():
    model, (prompt,) = build_tiny_gpt(CONFIG, batch=1, seq_len=8)
    with torch.no_grad():
        _, keys, values = model.prefill(prompt)
    past = Dim("past", min=1, max=56)
    vmfb = kiln.compile_entry_points({
        "prefill": (TinyGPTPrefill(model), (prompt,)),
        "decode": (TinyGPTDecode(model), (prompt[:, :1], keys, values),
                   ({}, {3: past}, {3: past})),
    })
    return model, prompt, kiln.load(vmfb)


def test_entry_points_are_exposed_by_name(decoder):
    _, _, run = decoder
    assert run.entry_points == ["prefill", "decode"]
    assert run["decode"].signature["inputs"][1]["bounds"][3] == [1, 56]
    with pytest.raises(ValueError, match="several entry points"):
        run(torch.zeros(1, 8, dtype=torch.int64))
    with pytest.raises(KeyError, match="no entry point 'generate'"):
        run["generate"]


def test_prefill_then_greedy_decode_matches_eager(decoder):
    model, prompt, run = decoder
    logits, keys, values = run.prefill(prompt)
    with torch.no_grad():
        expected = model(prompt)
    assert_close(logits, expected, what="prefill logits")
    tokens = prompt
    for step in range(4):
        token = logits[:, -1:].argmax(-1)
        tokens = torch.cat([tokens, token], dim=1)
        logits, keys, values = run.decode(token, keys, values)
        assert keys.shape[3] == tokens.shape[1]
        with torch.no_grad():
            expected = model(tokens)[:, -1:]
        assert_close(logits, expected, what=f"decode step {step}")


def test_shared_weights_are_stored_once():
    model, (prompt,) = build_tiny_gpt(CONFIG, batch=1, seq_len=8)
    with torch.no_grad():
        _, keys, values = model.prefill(prompt)
    both = kiln.compile_entry_points({"prefill": (TinyGPTPrefill(model), (prompt,)),
                                      "decode": (TinyGPTDecode(model),
                                                 (prompt[:, :1], keys, values))})
    one = kiln.compile_to_vmfb(TinyGPTPrefill(model), (prompt,), cache=False)
    # Two functions, one copy of the weights: far less than twice the single-function size.
    assert len(both) < 1.5 * len(one)
