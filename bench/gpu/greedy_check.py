"""Does the greedy token (kiln.kv_cache.first_max_index) come out right on the GPU?

On an H100 the Llama-style and tiny GPT-2 generators fed -1 to their decode step (the index
guard stopped them: "index -1 is out of bounds"), while GPT-2 small ran. This compiles the
token's computation alone at vocabulary widths 256, 32000 and 50257, in the library's form and
in the earlier int32-index form, and compares each with torch.argmax on the GPU. The library's
form reduces per 1024-wide chunk, then over the chunks; "row" is its one-reduction form (the
one CUDA generators use until the chunked form has passed here).

    python -m bench.gpu.greedy_check prepare --out .device/greedy     # here (IREE)
    python3 -m bench.gpu.greedy_check check --artifacts .device/greedy  # there
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

SHAPES = [(1, 256), (1, 32000), (8, 32000), (1, 50257)]


def int32_index(logits):
    """The form used before 2026-12-06: the index reduced as int32."""
    best = logits.amax(-1, keepdim=True)
    index = torch.arange(logits.shape[-1], device=logits.device, dtype=torch.int32)
    return torch.where(logits == best, index, logits.shape[-1]).amin(-1).long()


def forms():
    from kiln.kv_cache import first_max_index

    return {"library": first_max_index, "row": lambda x: first_max_index(x, None),
            "int32": int32_index}


class Greedy(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def prepare(args) -> None:
    import kiln

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, fn in forms().items():
        for shape in SHAPES:
            example = torch.randn(*shape).half()
            path = out / f"{name}-{shape[0]}x{shape[1]}.vmfb"
            path.write_bytes(kiln.compile_to_vmfb(Greedy(fn), (example,), target="cuda",
                                                  cache=False))
            print("compiled", path, flush=True)


def check(args) -> None:
    import kiln

    failures = 0
    for path in sorted(Path(args.artifacts).glob("*.vmfb")):
        rows, vocab = (int(v) for v in path.stem.split("-")[1].split("x"))
        module = kiln.load(path, device="cuda")
        for seed in range(3):
            logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed))
            logits = logits.half()
            got = torch.as_tensor(module(logits.cuda(), outputs="numpy"))
            want = logits.argmax(-1)
            ok = torch.equal(got.reshape(-1), want)
            failures += not ok
            print(f"{path.stem} seed {seed}: {'ok' if ok else 'WRONG'} got {got.tolist()[:4]} "
                  f"want {want.tolist()[:4]}", flush=True)
    print(f"greedy_check: {failures} wrong", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare").add_argument("--out", required=True)
    sub.add_parser("check").add_argument("--artifacts", required=True)
    args = parser.parse_args(argv)
    (prepare if args.command == "prepare" else check)(args)


if __name__ == "__main__":
    sys.exit(main())
