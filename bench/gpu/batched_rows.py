"""Where do CUDA generators of more than one row go wrong? (docs/decisions.md, "CUDA generators
of more than one row")

On an H100 the batch-8 generators gave row 0 transformers' tokens and wrong tokens on the other
rows from the first step, with and without Kiln's kernels; the same generators on the CPU are
right. This script narrows that down in one GPU call. Prepared here (IREE), for the tiny Llama
of bench/gpu/generate_variants.py at batch 8:

- generators (f16 and f32 without Kiln's kernels, f16 with them), each run there under several
  runtime options (IREE's caching allocator on or off, host uploads through torch or IREE):
  the prefill function's logits per row against the same step run by torch on the GPU, then
  the greedy tokens against transformers' generate;
- the prefill step as a plain function (the KV cache as inputs and outputs, no device state);
- the model's plain forward at [8, 16].

    python -m bench.gpu.batched_rows prepare --out .device/rows           # here
    python3 -m bench.gpu.batched_rows check --artifacts .device/rows       # there

`--device cpu` (both halves) runs the same on the CPU, the control: every row should agree.

Each (artifact, options) pair runs in its own process; each prints one JSON line.

`prepare-ops` / `check-ops` bisect the f32 prefill step without Kiln's kernels: the exported
step truncated after each op of `--ops` (indices into kiln.equivalence.candidate_ops; `--list`
prints them), each compiled for CUDA, with the CPU's eager value of that op and the inputs saved
beside it; there each runs and its rows are compared with that value.

    python -m bench.gpu.batched_rows prepare-ops --out .device/rowops --ops 16,21,...
    python3 -m bench.gpu.batched_rows check-ops --artifacts .device/rowops

What it found on an H100 (2026-12-07): IREE's CUDA gather from a strided slice (the v heads of
the merged QKV) in the prefill's cache write; docs/decisions.md "CUDA generators of more than one
row".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from bench.gpu.generate_variants import MAX_SEQ, NEW, VOCAB, build, run_isolated
from kiln.dispatches import RAISING_CONFIGS

BATCH, CHUNK = 8, 16

GENERATORS = {
    "gen-f16-nokernels": ("float16", {"cuda_kernels": "off"}),
    "gen-f32-nokernels": ("float32", {"cuda_kernels": "off"}),
    "gen-f16-kernels": ("float16", {"cuda_kernels": "on"}),
}
# plain functions: (what, dtype, options); what: "step" (every output), "step-logits" (the
# greedy token and logits only), "step-caches" (the caches only), "forward"
FUNCTIONS = {
    "step-f16-nokernels": ("step", "float16", {"cuda_kernels": "off"}),
    "step-f32-nokernels": ("step", "float32", {"cuda_kernels": "off"}),
    "forward-f16-nokernels": ("forward", "float16", {"cuda_kernels": "off"}),
    "step-f32-logits": ("step-logits", "float32", {"cuda_kernels": "off"}),
    "step-f32-caches": ("step-caches", "float32", {"cuda_kernels": "off"}),
    # the plain torch-mlir -> IREE path: every raising pass off
    "step-f32-plain": ("step", "float32", {**RAISING_CONFIGS["off"], "cuda_kernels": "off"}),
    "step-f32-nomultiuse": ("step", "float32", {
        "cuda_kernels": "off",
        "extra_iree_flags": ["--iree-dispatch-creation-fuse-multi-use=false"]}),
    "step-f32-O0": ("step", "float32", {"cuda_kernels": "off", "opt_level": "O0"}),
    "step-f32-cpu-nokernels": ("step", "float32", {"cpu_kernels": "off"}),  # the CPU control
}
# The plain path (no raising passes) was right on an H100 where Kiln's was wrong: one raising
# pass left out at a time.
SUSPECT_PASSES = ("kiln-hoist-head-split", "kiln-merge-linears", "kiln-raise-attention",
                  "kiln-fuse-residual-norms", "kiln-raise-swiglu", "kiln-raise-rope")
FUNCTIONS.update({f"step-f32-no-{name[len('kiln-'):]}": (
    "step", "float32", {"cuda_kernels": "off", "disable_passes": [name]})
    for name in SUSPECT_PASSES})
# runtime options per generator run: name -> RuntimeOptions fields
RUNTIMES = {
    "generator-default": None,  # kiln.generate.GENERATOR_RUNTIME
    "no-allocator": {},
    "iree-upload": {"cuda_allocators": ("caching",), "host_upload": "iree"},
    "iree-upload-no-allocator": {"host_upload": "iree", "host_transfer": "staging"},
}


def _step(model, dtype, device):
    from kiln.kv_cache import CacheGeometry, DecoderStep

    probed = CacheGeometry.probe(build("llama"), BATCH, MAX_SEQ)  # shapes only (CPU, f32)
    geometry = CacheGeometry(probed.key_shapes, probed.value_shapes, dtype)
    step = DecoderStep(model, geometry, MAX_SEQ, scatter_decode_writes=False,
                       gather_from_copy=True)
    inputs = list(step.example_inputs(BATCH, CHUNK))
    ids = torch.randint(0, VOCAB, (BATCH, CHUNK), generator=torch.Generator().manual_seed(1))
    inputs[0] = ids
    inputs[1] = torch.arange(CHUNK).repeat(BATCH, 1)
    return step, [t.to(device) for t in inputs]


class _Logits(torch.nn.Module):
    """The model's forward without a cache, its logits only (what torch.export can return)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, use_cache=False).logits


class _Outputs(torch.nn.Module):
    """The step returning a subset of its outputs: "logits" (greedy token, logits) or "caches"."""

    def __init__(self, step, which: str):
        super().__init__()
        self.step, self.which = step, which

    def forward(self, *inputs):
        results = self.step(*inputs)
        return tuple(results[:2]) if self.which == "logits" else tuple(results[2:])


def _wrapped(what: str, step):
    return step if what == "step" else _Outputs(step, what.split("-")[1])


def _compile_options(options: dict, device: str) -> dict:
    """The compile options; Kiln's CUDA kernel choice does not apply to the CPU control."""
    return options if device == "cuda" else {k: v for k, v in options.items()
                                             if k != "cuda_kernels"}


def _model(dtype_name: str, folder: Path, device: str = "cpu"):
    model = build("llama")
    model.load_state_dict(torch.load(folder / "llama.pt"))
    return model.to(device, getattr(torch, dtype_name)).eval()


def prepare(args) -> None:
    import kiln
    import kiln.generate

    kiln.generate.CUDA_BATCHED_GENERATION = True  # the refused form, compiled to examine it
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(build("llama").state_dict(), out / "llama.pt")
    for name, (dtype, options) in GENERATORS.items():
        if args.only and name not in args.only:
            continue
        kiln.compile_generator(_model(dtype, out), max_seq_len=MAX_SEQ, batch_size=BATCH,
                               target=args.device, prefill_chunks=(CHUNK,),
                               output=out / f"{name}.vmfb", cache=False,
                               **_compile_options(options, args.device))
        print("compiled", name, flush=True)
    for name, (what, dtype, options) in FUNCTIONS.items():
        if args.only and name not in args.only:
            continue
        model = _model(dtype, out)
        if what.startswith("step"):
            step, inputs = _step(model, getattr(torch, dtype), "cpu")
            module = _wrapped(what, step)
        else:
            module, inputs = _Logits(model), [_step(model, getattr(torch, dtype), "cpu")[1][0]]
        kiln.compile_to_vmfb(module, tuple(inputs), target=args.device,
                             output=out / f"{name}.vmfb", cache=False,
                             **_compile_options(options, args.device))
        print("compiled", name, flush=True)


def _rows(got, want) -> list[float]:
    """Max |got - want| per row (first dimension)."""
    got = torch.as_tensor(got).float().cpu()
    want = want.float().cpu()
    if got.shape != want.shape:
        return [float("inf")]
    return [round(float((g - w).abs().max()), 4) for g, w in zip(got, want)]


def run_generator(args) -> dict:
    import numpy as np
    import kiln.generate
    from kiln.runtime.device import RuntimeOptions

    kiln.generate.CUDA_BATCHED_GENERATION = True
    folder = Path(args.artifacts)
    dtype, _ = GENERATORS[args.name]
    fields = RUNTIMES[args.runtime]
    options = None if fields is None else RuntimeOptions(**fields)
    generator = kiln.load_generator(folder / f"{args.name}.vmfb", device=args.device,
                                    options=options)
    model = _model(dtype, folder, args.device)
    step, inputs = _step(model, getattr(torch, dtype), args.device)
    with torch.no_grad():
        want_greedy, want_logits, *_ = step(*inputs)
    ids, positions = inputs[0].cpu().numpy(), inputs[1].cpu().numpy()
    mask = np.ones((BATCH, MAX_SEQ), np.int64)
    prefill = generator._chunks[CHUNK]
    greedy, logits = prefill(ids, positions, np.array([0], np.int64),
                             generator.module.to_device(mask), outputs="numpy")
    result = {"prefill_logits_err_by_row": _rows(logits, want_logits),
              "prefill_greedy_same_by_row": (np.asarray(greedy) ==
                                             want_greedy.cpu().numpy()).tolist()}
    # a second identical call: deterministic?
    again = prefill(ids, positions, np.array([0], np.int64), generator.module.to_device(mask),
                    outputs="numpy")[1]
    result["prefill_repeat_equal"] = bool(np.array_equal(np.asarray(again), np.asarray(logits)))
    # the whole generation against transformers on the GPU, same dtype
    prompt = torch.randint(0, VOCAB, (BATCH, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.generate(prompt.to(args.device), max_new_tokens=NEW, do_sample=False,
                                  pad_token_id=0).cpu()
    got = generator.generate(prompt, max_new_tokens=NEW)
    result["generate_same_tokens_by_row"] = (got[:, 12:] == expected[:, 12:]).sum(1).tolist()
    return result


def run_function(args) -> dict:
    import kiln

    folder = Path(args.artifacts)
    what, dtype, _ = FUNCTIONS[args.name]
    model = _model(dtype, folder, args.device)
    step, inputs = _step(model, getattr(torch, dtype), args.device)
    module = kiln.load(folder / f"{args.name}.vmfb", device=args.device)
    with torch.no_grad():
        if what.startswith("step"):
            want = _wrapped(what, step)(*inputs)
            got = module(*[t.cpu() for t in inputs], outputs="numpy")
        else:
            want = (_Logits(model)(inputs[0]),)
            got = module(inputs[0].cpu(), outputs="numpy")
            got = got if isinstance(got, (list, tuple)) else (got,)
    names = {"step": ["greedy", "logits"] + [f"cache_{i}" for i in range(len(want) - 2)],
             "step-logits": ["greedy", "logits"],
             "step-caches": [f"cache_{i}" for i in range(len(want))]}.get(what, ["logits"])
    result = {name: _rows(g, w) for name, g, w in zip(names, got, want)}
    result["patterns"] = {name: _pattern(g, w) for name, g, w in zip(names, got, want)
                          if name.startswith("cache")}
    if what.startswith("step") and args.device == "cuda":
        # the same call with the inputs already on the GPU (DLPack imports, no host upload)
        again = module(*[t.contiguous() for t in inputs], outputs="numpy")
        result["device_inputs"] = {name: _rows(g, w) for name, g, w in zip(names, again, want)}
    return result


def _pattern(got, want) -> str:
    """What the rows after the first hold where they are wrong: zeros, row 0's values, or
    another row's expected values."""
    got = torch.as_tensor(got).float().cpu()
    want = want.float().cpu()
    notes = []
    for row in range(1, got.shape[0]):
        if torch.allclose(got[row], want[row], atol=1e-3, rtol=1e-3):
            continue
        if not got[row].any():
            notes.append(f"{row}:zeros")
        elif torch.equal(got[row], got[0]):
            notes.append(f"{row}:row0")
        else:
            same = [r for r in range(got.shape[0])
                    if torch.allclose(got[row], want[r], atol=1e-3, rtol=1e-3)]
            notes.append(f"{row}:=want{same}" if same else f"{row}:other")
    return " ".join(notes) or "right"


def _step_graph(folder: Path):
    """The exported f32 step (its GraphModule), its candidate ops and its flat inputs."""
    from kiln.equivalence import candidate_ops
    from kiln.frontend import export_model

    model = _model("float32", folder)
    step, inputs = _step(model, torch.float32, "cpu")
    gm = export_model(step, tuple(inputs)).module()
    return gm, candidate_ops(gm.graph), inputs


def prepare_ops(args) -> None:
    import kiln
    from kiln.equivalence import truncate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(build("llama").state_dict(), out / "llama.pt")
    gm, ops, inputs = _step_graph(out)
    if args.list:
        for index, node in enumerate(ops):
            print(index, node.name, node.target, tuple(node.meta["val"].shape))
        return
    torch.save(inputs, out / "inputs.pt")
    for index in (int(i) for i in args.ops.split(",")):
        node = ops[index]
        truncated = truncate(gm, node)
        with torch.no_grad():
            expected = truncated(*inputs)
        name = f"op-{index:03d}-{node.name}"
        torch.save(expected, out / f"{name}.pt")
        options = RAISING_CONFIGS["off"] if args.plain else {}
        kiln.compile_to_vmfb(truncated, tuple(inputs), target="cuda", cuda_kernels="off",
                             output=out / f"{name}.vmfb", cache=False, **options)
        print("compiled", name, flush=True)


def check_ops(args) -> None:
    import kiln

    folder = Path(args.artifacts)
    inputs = torch.load(folder / "inputs.pt")
    for path in sorted(folder.glob("op-*.vmfb")):
        expected = torch.load(path.with_suffix(".pt"))
        try:
            got = kiln.load(path, device="cuda")(*inputs, outputs="numpy")
            got = got[0] if isinstance(got, (list, tuple)) else got
            rows = _rows(got, expected) if expected.dim() and expected.shape[0] == BATCH \
                else [round(float((torch.as_tensor(got).float() - expected.float()).abs()
                                  .max()), 4)]
            print(json.dumps({"op": path.stem, "shape": list(expected.shape),
                              "err_by_row": rows}), flush=True)
        except Exception as error:  # noqa: BLE001 - each op reported
            print(json.dumps({"op": path.stem, "error": f"{type(error).__name__}: {error}"[:300]}),
                  flush=True)


def check(args) -> None:
    folder = Path(args.artifacts)
    jobs = [("function", name, "-") for name in FUNCTIONS] + \
        [("generator", name, runtime) for name in GENERATORS for runtime in RUNTIMES]
    for kind, name, runtime in jobs:
        if not (folder / f"{name}.vmfb").exists():
            print(json.dumps({"name": name, "error": "not compiled"}), flush=True)
            continue
        result = run_isolated("bench.gpu.batched_rows",
                              ["one", "--kind", kind, "--name", name, "--runtime", runtime,
                               "--artifacts", str(folder), "--device", args.device],
                              {"name": name, "runtime": runtime})
        print(json.dumps(result), flush=True)


def one(args) -> None:
    result = run_function(args) if args.kind == "function" else run_generator(args)
    print(json.dumps({"name": args.name, "runtime": args.runtime, **result}), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    po = sub.add_parser("prepare-ops")
    po.add_argument("--out", required=True)
    po.add_argument("--ops", default="", help="comma-separated candidate op indices")
    po.add_argument("--list", action="store_true", help="print the candidate ops and stop")
    po.add_argument("--plain", action="store_true", help="without Kiln's raising passes")
    sub.add_parser("check-ops").add_argument("--artifacts", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", required=True)
    p.add_argument("--only", nargs="*", help="artifacts to compile (default: all)")
    c = sub.add_parser("check")
    c.add_argument("--artifacts", required=True)
    o = sub.add_parser("one")
    for flag in ("--kind", "--name", "--runtime", "--artifacts"):
        o.add_argument(flag, required=True)
    for command in (p, c, o):
        command.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = parser.parse_args(argv)
    {"prepare": prepare, "check": check, "one": one, "prepare-ops": prepare_ops,
     "check-ops": check_ops}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
