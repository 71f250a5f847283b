"""What kiln-select-cuda-kernels folds into its kernels (issue 14), checked without a GPU.

(a) The strided-layout arithmetic (`Layout`) against torch's own views, fuzzed.
(b) The rewrites on real transformers layers, run on the CPU: with `emulate=true` each kernel
    call becomes the kiln/torch ops its spec stands for (passes/lowering/
    cuda_kernel_emulation.py), so a wrong view of the QKV buffer, rotary table, folded norm,
    residual or SwiGLU operand, or output layout gives a wrong answer against eager PyTorch. The
    kernels' own numerics: Triton's interpreter (tests/test_kernels.py) and the GPU.
(c) What the real (non-emulated) compile selects: one kernel per linear and attention, folded
    norms and residual sums, q/k/v read in place.

Dispatch counts per layer: tests/test_cuda_dispatches.py.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

import kiln
from kiln import compiler
from kiln.passes.lowering.cuda_kernel_fusion import Layout
from test_cuda_dispatches import VOCAB, build


def test_layout_matches_torch_views():
    """Random chains of view / permute / slice: the layout the pass computes addresses the same
    elements as torch's views, and declines (None) exactly the views torch refuses."""
    rng = random.Random(0)
    for _ in range(400):
        shape = tuple(rng.choice([1, 2, 3, 4]) for _ in range(rng.randint(1, 4)))
        base = torch.arange(int(np.prod(shape))).reshape(shape)
        tensor, layout = base, Layout.contiguous(shape)
        for _ in range(3):
            choice = rng.random()
            if choice < 0.4:
                dims = list(range(tensor.dim()))
                rng.shuffle(dims)
                tensor, layout = tensor.permute(dims), layout.permute(dims)
            elif choice < 0.7 and tensor.dim():
                dim = rng.randrange(tensor.dim())
                start = rng.randrange(tensor.shape[dim] + 1)
                end = rng.randrange(start, tensor.shape[dim] + 1)
                tensor, layout = tensor[(slice(None),) * dim + (slice(start, end),)], \
                    layout.slice(dim, start, end, 1)
            else:
                new = [tensor.numel()] if rng.random() < 0.3 else \
                    [d for d in _factor(tensor.numel(), rng)]
                try:
                    viewed = tensor.view(new)
                except RuntimeError:
                    viewed = None
                stepped = layout.view(new)
                assert (viewed is None) == (stepped is None), (shape, new, layout)
                if viewed is None:
                    break
                tensor, layout = viewed, stepped
            flat = base.reshape(-1)
            assert torch.equal(flat.as_strided(layout.shape, layout.strides, layout.offset),
                               tensor)


def _factor(n: int, rng: random.Random) -> list[int]:
    dims = []
    while n > 1:
        factor = rng.choice([f for f in range(2, n + 1) if n % f == 0])
        dims.append(factor)
        n //= factor
    if rng.random() < 0.3:
        dims.insert(rng.randrange(len(dims) + 1), 1)
    return dims or [1]


@pytest.fixture
def emulated_kernels(monkeypatch):
    """Compiles take the kernel selection with `emulate=true`, whatever the target; the
    value: the selection passes that ran."""
    original_target, original_lower = compiler.CompileOptions.compile_target, \
        compiler.build_lower_pipeline

    def planned_with_kernels(options, target):
        # The compile is planned as one with kernels (external weights keep merged linears).
        return dataclasses.replace(original_target(options, target), cuda_kernels=True,
                                   cpu_kernels=False)

    selections = []  # the selection passes run, for their rewrite records

    def lower(target, **options):
        pipeline = original_lower(target, **options)
        select = pipeline.steps[0]
        assert select.name == "kiln-select-cuda-kernels"
        select.emulate = True
        selections.append(select)
        return pipeline

    monkeypatch.setattr(compiler.CompileOptions, "compile_target", planned_with_kernels)
    monkeypatch.setattr(compiler, "build_lower_pipeline", lower)
    return selections


@pytest.mark.parametrize("family,length,weights", [
    ("gpt2", 32, "inline"), ("llama", 32, "inline"), ("qwen2", 32, "external"),
    ("llama", 1, "inline")])
def test_fused_layers_match_eager(emulated_kernels, tmp_path, family, length, weights):
    """Two decoder layers, batch 2, f16, every linear and attention through the fused
    rewrites (emulated), compiled for the CPU: within f16 rounding of eager in f32. Qwen2 with
    external weights: its merged q/k/v (with biases) and gate/up are read part by part."""
    model = build(family, 2)
    tokens = torch.randint(0, VOCAB, (2, length), generator=torch.Generator().manual_seed(3))
    compiled = kiln.compile_model(model, (tokens,), target="cpu", cache=False, weights=weights)
    chosen = [r for r in compiled.report.rewrites
              if r.pass_name == "kiln-select-cuda-kernels" and r.detail.startswith("kernel")]
    assert len(chosen) == 10, [str(r) for r in chosen]  # 4 linears + 1 attention per layer
    if family != "gpt2":  # q/k/v and gate/up merged, read as parts
        assert sum("weight_parts=" in r.detail for r in chosen) == 4, [str(r) for r in chosen]
    run = kiln.load(compiled.save(tmp_path / "model.vmfb"))
    out = torch.as_tensor(np.asarray(run(tokens.numpy()))).double()
    with torch.no_grad():
        reference = model.float()(tokens).double()
    error = ((out - reference).abs().max() / reference.abs().max()).item()
    assert error < 4e-3, f"{family} T={length}: relative error {error:.2e}"


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_generator_decode_writes_the_cache_in_the_attention_kernel(emulated_kernels, family):
    """The generator's decode as compiled for CUDA (the cache written by a select, f16), with
    the kernel selection emulated on the CPU: each decode attention becomes the kernel that
    reads q and the new k/v rows in place (rotated), writes them into the caches at the slot
    and attends over them (`new_kv`), and the tokens are transformers' greedy tokens (batch 2,
    one prompt left-padded: the cache outputs of each step are the written caches)."""
    from test_generate import BATCH, CHUNKS, LAYERS, MAX_SEQ_LEN, build as build_tiny, \
        prompts, reference

    model = build_tiny(family)
    artifact = kiln.compile_generator(model, max_seq_len=MAX_SEQ_LEN, batch_size=BATCH,
                                      prefill_chunks=CHUNKS, dtype=torch.float16,
                                      decode_cache_write="select", cache=False)
    details = [r.detail for select in emulated_kernels for r in select.rewrites
               if r.detail.startswith("kernel") and "attention(" in r.detail]
    written = [d for d in details if "new_kv=" in d]
    assert len(written) == LAYERS and len(details) == 2 * LAYERS, details  # + prefill's
    rotated = family != "gpt2"
    assert all(("rope=(True, True," in d) == rotated for d in written), written
    generator = kiln.load_generator(artifact)
    ids, mask = prompts(seed=3)
    tokens = generator.generate(ids, max_new_tokens=12, attention_mask=mask)
    assert tokens.tolist() == reference(model.half(), ids, mask, max_new_tokens=12).tolist()


def test_fused_selection_on_llama():
    """The real compile (PTX, no emulation): what each call folds in."""
    pytest.importorskip("triton")
    tokens = torch.randint(0, VOCAB, (1, 32), generator=torch.Generator().manual_seed(0))
    report = kiln.compile_model(build("llama", 1), (tokens,), target="cuda",
                                compile_to="iree-input", cache=False).report
    details = [r.detail for r in report.rewrites if r.pass_name == "kiln-select-cuda-kernels"]
    linears = [d for d in details if d.startswith("kernel") and "linear(" in d]
    [attention] = [d for d in details if d.startswith("kernel") and "attention(" in d]
    # QKV (the three weights read as parts) with the input RMSNorm folded; O with the
    # residual; gate/up as one SwiGLU GEMM with the post-attention RMSNorm; down + residual
    assert len(linears) == 4, linears
    assert "norm='rms'" in linears[0] and "weight_parts=(512, 128, 128)" in linears[0]
    assert "has_residual=True" in linears[1]
    assert "activation='swiglu'" in linears[2] and "norm='rms'" in linears[2] and \
        "weight_parts=(1024, 1024)" in linears[2]
    assert "has_residual=True" in linears[3]
    assert "buffers=((32, 768),)" in attention and "rope=(True, True, (1, 32, 64), 'f16')" \
        in attention and "out_layout='bshd'" in attention
    assert sum("split: the residual add" in d for d in details) == 2  # + the final norm


def test_gpu_measurement_plan():
    """bench.gpu.issue14_measure (run on the GPU machine only): its kernel cases are valid
    specs, its cells are zoo models and its Kiln variants are run_suite systems."""
    from bench.gpu import issue14_measure
    from bench.suite.config import is_kiln
    from kiln.examples import zoo
    from kiln.kernels.attention import attention_spec
    from kiln.kernels.linear import linear_spec

    cases = issue14_measure.fused_cases()
    assert len(cases) >= 20
    for op, args in cases:
        (linear_spec if op == "linear" else attention_spec)(**args)
    for system, cells in issue14_measure.VARIANTS.items():
        assert is_kiln(system), system
        assert all(cell.split(":")[0] in zoo.MODELS for cell in cells)
    assert set(issue14_measure.PROFILE_CELLS) <= set(issue14_measure.VARIANTS[
        "kiln+kernels-unfused"])
