"""Calibrate kiln.check's per-element tolerance: how much of |err| ≤ atol + rtol·|ref| the
compiled artifact and eager PyTorch (in the model's dtype) use against the float64 reference.

    python -m bench.check_tolerance [--target cpu] [--samples 3] [name ...]

For each model and output: max|err| (compiled, eager), the smallest atol that would pass at the
dtype's rtol ("needed atol": max over elements of |err| − rtol·|ref|, 0 when rtol covers every
element), and the fraction of the tolerance the worst element uses at the default atol
("used"; headroom = 1 / used). The models are the tests' (kiln.examples.tiny, test_check.py).
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

import kiln
from kiln.equivalence import (_EvalMode, _tensor_leaves, _to_float64, compare, make_samples,
                              model_dtype, tolerances)
from kiln.examples import tiny
from kiln.examples.tiny_gpt import TinyGPTConfig, build_tiny_gpt


class TwoHeads(nn.Module):
    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.mlp = tiny.mlp().to(dtype)

    def forward(self, x):
        y = self.mlp(x)
        return y, y.sum(-1)


class TanhHead(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(32, 64)
        self.down = nn.Linear(64, 16)

    def forward(self, x):
        return torch.softmax(self.down(torch.tanh(self.up(x)) * 2.0), dim=-1)


def _tiny_gpt_check():
    return build_tiny_gpt(TinyGPTConfig(vocab_size=100, n_layers=1, d_model=64, max_seq_len=32),
                          batch=1, seq_len=16)


MODELS = {
    "tiny-gpt-check": _tiny_gpt_check,  # test_check.py's TinyGPT
    "tiny-gpt": lambda: tiny.tiny_gpt(),
    "gpt2": lambda: (tiny.hf_model("gpt2"), (tiny.token_ids(),)),
    "llama": lambda: (tiny.hf_model("llama"), (tiny.token_ids(),)),
    "bert": lambda: (tiny.hf_model("bert"), (tiny.token_ids(),)),
    "mlp-two-heads": lambda: (TwoHeads(), (tiny.mlp_input(),)),
    "tanh-head": lambda: (TanhHead(), (torch.randn(4, 32, generator=torch.Generator()
                                                   .manual_seed(0)),)),
    "mlp-f16": lambda: (tiny.mlp().half(), (tiny.mlp_input(torch.float16),)),
    "mlp-two-heads-f16": lambda: (TwoHeads(torch.float16), (tiny.mlp_input(torch.float16),)),
    "tiny-gpt-f16": lambda: (tiny.tiny_gpt()[0].half(), (tiny.token_ids(),)),
    "llama-f16": lambda: (tiny.hf_model("llama").half(), (tiny.token_ids(),)),
    "tiny-gpt-bf16": lambda: (tiny.tiny_gpt()[0].to(torch.bfloat16), (tiny.token_ids(),)),
    "mlp-bf16": lambda: (tiny.mlp().to(torch.bfloat16), (tiny.mlp_input(torch.bfloat16),)),
}


def needed_atol(got, ref, rtol: float) -> float:
    error = (got.to(torch.float64) - ref.to(torch.float64)).abs()
    return float((error - rtol * ref.to(torch.float64).abs()).clamp(min=0).max())


def measure(name: str, target: str, samples: int) -> list[dict]:
    model, args = MODELS[name]()
    dtype = model_dtype(model, args)
    rtol, atol = tolerances(dtype)
    run = kiln.load(kiln.compile_model(model, args, target=target).vmfb,
                    device="cuda" if target == "cuda" else "cpu")
    reference_model = copy.deepcopy(model).double()
    rows: dict[int, dict] = {}
    for sample in make_samples(args, samples, seed=0):
        with _EvalMode(model), _EvalMode(reference_model):
            eager = _tensor_leaves(model(*sample))
            reference = _tensor_leaves(reference_model(*_to_float64(sample)))
        got = run(*_tensor_leaves(sample))
        got = list(got) if isinstance(got, tuple) else [got]
        for index, (g, e, r) in enumerate(zip(got, eager, reference)):
            if not e.is_floating_point():
                continue
            g = torch.as_tensor(g).cpu()
            row = rows.setdefault(index, dict(model=name, output=index, dtype=str(dtype)[6:],
                                              rtol=rtol, atol=atol, max_ref=0.0, err=0.0,
                                              eager_err=0.0, need=0.0, eager_need=0.0,
                                              used=0.0, eager_used=0.0))
            row["max_ref"] = max(row["max_ref"], float(r.abs().max()))
            for prefix, value in (("", g), ("eager_", e)):
                comparison = compare(value, r, rtol, atol)
                row[prefix + "err"] = max(row[prefix + "err"], comparison.abs_error)
                row[prefix + "need"] = max(row[prefix + "need"], needed_atol(value, r, rtol))
                row[prefix + "used"] = max(row[prefix + "used"], comparison.tolerance_used)
    return list(rows.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(MODELS))
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    header = ("model", "out", "dtype", "rtol", "atol", "max|ref|", "err", "eager err",
              "need atol", "eager need", "used", "eager used", "headroom")
    print(f"{header[0]:<18}" + "  ".join(f"{h:>10}" for h in header[1:]))
    for name in args.names:
        for r in measure(name, args.target, args.samples):
            print(f"{r['model']:<18}" + "  ".join(f"{v:>10}" for v in (
                r["output"], r["dtype"], f"{r['rtol']:.0e}", f"{r['atol']:.0e}",
                f"{r['max_ref']:.3g}", f"{r['err']:.2e}", f"{r['eager_err']:.2e}",
                f"{r['need']:.2e}", f"{r['eager_need']:.2e}", f"{r['used']:.3g}",
                f"{r['eager_used']:.3g}", f"{1 / max(r['used'], 1e-30):.3g}")), flush=True)


if __name__ == "__main__":
    main()
