"""Numerical checks of every kernel family against torch at small, ragged sizes.

    TRITON_INTERPRET=1 python -m kiln.kernels.selfcheck [--quick]   # CPU, Triton's interpreter
    python -m kiln.kernels.selfcheck --device cuda --mode aot        # GPU: the shipped PTX

Prints one JSON line per case: {"case", "error", "tolerance", "ok", "launches"}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from kiln.kernels.configs import DecodeConfig, GemmConfig, PrefillConfig

LINEAR_CASES = [
    # (m, n, k, dtype, layout, bias, activation, residual, config or None[, extra arguments])
    (5, 24, 40, "f16", "out_in", True, "gelu", False, GemmConfig(16, 16, 16, 2, 1, 4, 2)),
    (33, 20, 50, "f16", "in_out", True, "gelu_tanh", True, GemmConfig(16, 16, 16, 2, 1, 4, 2)),
    (3, 40, 64, "f16", "out_in", False, "silu", True, GemmConfig(16, 32, 16, 1, 3, 4, 2)),
    (17, 32, 72, "f16", "in_out", True, "relu", False, GemmConfig(16, 16, 32, 1, 2, 4, 2)),
    (16, 32, 64, "bf16", "out_in", True, "none", False, GemmConfig(16, 16, 32, 1, 1, 4, 2)),
    (37, 40, 56, "f16", "in_out", True, "gelu", True, GemmConfig(16, 16, 32, 2, 1, 4, 2)),
    # norms in the prologue (LayerNorm inputs get a mean of 30: no cancellation), SwiGLU with
    # two accumulators, with and without split-K
    (19, 24, 72, "f16", "out_in", False, "none", False, GemmConfig(16, 16, 32, 2, 1, 4, 2),
     dict(norm="rms", norm_eps=1e-6, has_norm_weight=True, norm_dtype="f32")),
    (21, 40, 50, "f16", "in_out", True, "gelu_tanh", False, GemmConfig(16, 16, 16, 2, 1, 4, 2),
     dict(norm="layer", has_norm_weight=True, has_norm_bias=True)),
    (2, 32, 96, "f16", "in_out", True, "none", True, GemmConfig(16, 16, 32, 1, 3, 4, 2),
     dict(norm="layer", has_norm_weight=True, has_norm_bias=True)),
    (18, 24, 40, "f16", "out_in", False, "swiglu", True, GemmConfig(16, 16, 16, 2, 1, 4, 2)),
    (3, 40, 64, "f16", "in_out", True, "swiglu", False, GemmConfig(16, 16, 16, 1, 2, 4, 2),
     dict(norm="rms", has_norm_weight=True)),
    (33, 24, 56, "f16", "out_in", True, "swiglu", False, GemmConfig(16, 16, 32, 2, 1, 4, 2),
     dict(norm="rms", norm_eps=1e-5, has_norm_weight=True)),
    # the weight (and bias) as separate parts: q/k/v projections, gate and up
    (19, 64, 40, "f16", "out_in", True, "none", False, GemmConfig(16, 32, 16, 2, 1, 4, 2),
     dict(weight_parts=(32, 16, 16), bias_parts=(32, 16, 16), norm="rms",
          has_norm_weight=True)),
    (5, 48, 64, "f16", "out_in", True, "none", True, GemmConfig(16, 16, 16, 1, 2, 4, 2),
     dict(weight_parts=(16, 32), bias_parts=(16, 32))),
    (3, 56, 64, "f16", "out_in", True, "none", False, GemmConfig(16, 16, 16, 1, 2, 4, 2),
     dict(weight_parts=(16, 16, 24), bias_parts=(16, 16, 24))),
    (20, 24, 40, "f16", "out_in", True, "swiglu", True, GemmConfig(16, 16, 16, 2, 1, 4, 2),
     dict(weight_parts=(24, 24), bias_parts=(24, 24), norm="rms", has_norm_weight=True)),
    (2, 32, 64, "f16", "out_in", True, "swiglu", False, GemmConfig(16, 16, 16, 1, 2, 4, 2),
     dict(weight_parts=(32, 32), bias_parts=(32, 32))),
]
ATTENTION_CASES = [
    # (b, hq, hkv, sq, sk, d, dtype, scale, causal, mask_shape, mask_kind, mask_dtype, config)
    (1, 2, 2, 20, 20, 16, "f16", 0.25, True, None, None, None, PrefillConfig(16, 16, 4, 1)),
    (2, 4, 2, 19, 37, 24, "f16", 0.2, False, (2, 1, 19, 37), "bool", "i8",
     PrefillConfig(16, 16, 4, 1)),
    (1, 2, 1, 23, 9, 16, "f16", 0.3, True, (1, 2, 23, 9), "additive", "f32",
     PrefillConfig(16, 16, 4, 1)),
    (1, 2, 2, 9, 30, 16, "f16", 0.3, True, (1, 1, 1, 30), "additive", "f16",
     PrefillConfig(16, 16, 4, 1)),
    (2, 4, 1, 1, 45, 16, "f16", 0.25, False, None, None, None, DecodeConfig(16, 12, 4, 1)),
    (1, 6, 2, 1, 50, 24, "f16", 0.25, False, (1, 6, 1, 50), "bool", "i8",
     DecodeConfig(16, 8, 4, 1)),
    (1, 2, 2, 1, 37, 16, "f16", 0.25, False, (1, 1, 1, 37), "additive", "f16",
     DecodeConfig(16, 1, 4, 1)),
    (1, 2, 2, 1, 20, 16, "f16", 0.25, True, None, None, None, DecodeConfig(16, 8, 4, 1)),
    (1, 2, 1, 12, 12, 16, "bf16", 0.25, True, None, None, None, PrefillConfig(16, 16, 4, 1)),
    # q, k, v read in place from a fused QKV output [b, s, (hq + 2·hkv)·d], rotary embedding
    # in the prologue, output written [b, s, hq, d]
    (2, 4, 2, 19, 19, 16, "f16", 0.25, True, None, None, None, PrefillConfig(16, 16, 4, 1),
     dict(buffers=((2, 19, 128),), q_view=(0, 0, 19 * 128, 16, 128),
          k_view=(0, 64, 19 * 128, 16, 128), v_view=(0, 96, 19 * 128, 16, 128),
          rope=(True, True, (1, 19, 16), "f16"), out_layout="bshd")),
    (1, 2, 2, 20, 20, 24, "f16", 0.2, False, (1, 1, 20, 20), "bool", "i8",
     PrefillConfig(16, 16, 4, 1),
     dict(buffers=((1, 20, 144),), q_view=(0, 0, 20 * 144, 24, 144),
          k_view=(0, 48, 20 * 144, 24, 144), v_view=(0, 96, 20 * 144, 24, 144),
          rope=(True, False, (1, 20, 24), "f32"), out_layout="bshd")),
    (2, 4, 2, 1, 30, 16, "f16", 0.25, False, None, None, None, DecodeConfig(16, 8, 4, 1),
     dict(buffers=((2, 1, 128), (2, 30, 64)), q_view=(0, 0, 128, 16, 128),
          k_view=(1, 0, 1920, 16, 64), v_view=(1, 32, 1920, 16, 64),
          rope=(False, True, (2, 30, 16), "f16"), out_layout="bshd")),
    # decode: the query from a QKV output (rotated), keys and values from their own buffers
    (2, 4, 2, 1, 40, 16, "f16", 0.25, False, (2, 1, 1, 40), "additive", "f16",
     DecodeConfig(16, 12, 4, 1),
     dict(buffers=((2, 1, 128), (2, 2, 40, 16), (2, 2, 40, 16)),
          q_view=(0, 0, 128, 16, 128), k_view=(1, 0, 1280, 640, 16),
          v_view=(2, 0, 1280, 640, 16), rope=(True, False, (1, 1, 16), "f16"),
          out_layout="bshd")),
    # decode of a KV cache in place: q and the new k/v rows from a QKV output [b, 1, 128]
    # (q and the new key rotated), the rows written into the caches at a slot inside the third
    # of four splits, attention over the caches; `position` is the slot input's value
    (2, 4, 2, 1, 40, 16, "f16", 0.25, False, (2, 1, 1, 40), "additive", "f16",
     DecodeConfig(16, 12, 4, 1),
     dict(buffers=((2, 1, 128), (2, 2, 40, 16), (2, 2, 40, 16)),
          q_view=(0, 0, 128, 16, 128), k_view=(1, 0, 1280, 640, 16),
          v_view=(2, 0, 1280, 640, 16), rope=(True, True, (1, 1, 16), "f16"),
          new_kv=((0, 64, 128, 16, 128), (0, 96, 128, 16, 128)), out_layout="bshd",
          position=27)),
    # one split, slot 0, head dim 24 (masked lanes), GQA 3/1, a bool mask, no rope
    (1, 3, 1, 1, 21, 24, "f16", 0.3, False, (1, 1, 1, 21), "bool", "i8",
     DecodeConfig(32, 1, 4, 1),
     dict(buffers=((1, 1, 120), (1, 1, 21, 24), (1, 1, 21, 24)),
          q_view=(0, 0, 120, 24, 120), k_view=(1, 0, 504, 504, 24),
          v_view=(2, 0, 504, 504, 24), new_kv=((0, 72, 120, 24, 120), (0, 96, 120, 24, 120)),
          position=0)),
    # a slot past the cache (pos = sk): nothing is written, as the select it replaces
    (1, 2, 2, 1, 20, 16, "f16", 0.25, False, None, None, None, DecodeConfig(16, 8, 4, 1),
     dict(buffers=((1, 1, 96), (1, 2, 20, 16), (1, 2, 20, 16)),
          q_view=(0, 0, 96, 16, 96), k_view=(1, 0, 640, 320, 16),
          v_view=(2, 0, 640, 320, 16), rope=(True, True, (1, 1, 16), "f16"),
          new_kv=((0, 32, 96, 16, 96), (0, 64, 96, 16, 96)), position=20)),
]


def _cases(quick: bool):
    linear = LINEAR_CASES[:3] + LINEAR_CASES[5:8] + LINEAR_CASES[9:10] + \
        LINEAR_CASES[12:13] + LINEAR_CASES[15:16] if quick else LINEAR_CASES
    attention = ATTENTION_CASES[:2] + ATTENTION_CASES[4:6] + ATTENTION_CASES[9:10] + \
        ATTENTION_CASES[12:14] if quick else ATTENTION_CASES
    for c in linear:
        yield "linear", dict(m=c[0], n=c[1], k=c[2], dtype=c[3], weight_layout=c[4],
                             has_bias=c[5], activation=c[6], has_residual=c[7], config=c[8],
                             **(c[9] if len(c) > 9 else {}))
    for c in attention:
        yield "attention", dict(b=c[0], hq=c[1], hkv=c[2], sq=c[3], sk=c[4], d=c[5], dtype=c[6],
                                scale=c[7], causal=c[8], mask_shape=c[9], mask_kind=c[10],
                                mask_dtype=c[11], config=c[12], **(c[13] if len(c) > 13 else {}))


def patch_interpreter() -> None:
    """Triton 3.6's interpreter holds scalars as 1-element arrays and turns them into loop
    bounds with int(array), which NumPy 2 rejects (a loop bound that depends on the program id
    fails); read the one element instead."""
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        return
    from triton.runtime import interpreter

    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched


def check(op: str, args: dict, device: str = "cpu", mode: str = "jit", seed: int = 0) -> dict:
    import torch

    from kiln.kernels import execute, reference
    from kiln.kernels.attention import attention_spec
    from kiln.kernels.linear import linear_spec

    # Split kernels in the form that reduces in the kernel (whatever the default), compared
    # with the two-launch form below.
    if op == "linear":
        spec = linear_spec(**args, reduce_in_kernel=True)
        inputs = reference.random_inputs(spec, None, device, seed)
        if args.get("norm") == "layer":  # a large mean: the statistics must not cancel
            inputs[0] = (inputs[0].float() + 30).to(inputs[0].dtype)
        ref = reference.linear(inputs, args["weight_layout"], args["has_bias"],
                               args["activation"], args.get("has_residual", False), args.get("norm"),
                               args.get("norm_eps", 1e-5), args.get("has_norm_weight", False),
                               args.get("has_norm_bias", False), args.get("weight_parts"),
                               args.get("bias_parts"))
    else:
        args = dict(args)
        position = args.pop("position", None)
        spec = attention_spec(**args, merge_in_kernel=True)
        inputs = reference.random_inputs(spec, args["mask_kind"], device, seed)
        if position is not None:  # the cache slot of a decode with new_kv
            inputs[-1] = torch.tensor([position], dtype=torch.int64, device=device)
        ref = reference.attention(inputs, args["scale"], args["causal"], args["mask_kind"],
                                  args)
        if args.get("new_kv"):  # before the kernel writes the caches in place
            caches = reference.written_caches(inputs, args)
    buffers = execute.allocate(spec, inputs)
    run = execute.launcher(spec, buffers, mode)
    run()
    out = buffers["out"]
    error = reference.relative_error(out, ref)
    if spec.semaphores:
        # Splits reduced (GEMM) or merged (decode attention) in the kernel: every semaphore
        # back at zero, a second run on the same buffers gives the same bits (a decode's cache
        # write is the same row again), and the form with a second launch agrees.
        first = out.clone()
        run()
        if any(bool(buffers[name].any()) for name, _, _ in spec.semaphores) or \
                not torch.equal(first, out):
            error = float("inf")
        two = linear_spec(**args, reduce_in_kernel=False) if op == "linear" else \
            attention_spec(**args, merge_in_kernel=False)
        error = max(error, reference.relative_error(out, execute.run_spec(
            two, inputs, mode=mode).double()))
    if op == "attention" and args.get("new_kv"):
        # The caches are updated in place: the written rows as rounded from f64, every other
        # slot bit for bit (a write at the wrong slot or head, or a missing one, fails).
        for view, expected in zip((args["k_view"], args["v_view"]), caches):
            written = inputs[view[0]].double()
            rounded = expected.to(inputs[view[0]].dtype).double()
            slot = position if 0 <= position < args["sk"] else None
            others = torch.ones(args["sk"], dtype=torch.bool)
            if slot is not None:
                others[slot] = False
                error = max(error, reference.relative_error(written[:, :, slot],
                                                            expected[:, :, slot]))
            if not torch.equal(written[:, :, others], rounded[:, :, others]):
                error = float("inf")
        name_position = f", position={position}"
    else:
        name_position = ""
    tolerance = reference.TOLERANCE[args["dtype"]]
    name = op + "(" + ", ".join(f"{k}={v}" for k, v in args.items() if k != "config") + \
        name_position + ")"
    return {"case": name, "config": args.get("config").label() if args.get("config") else None,
            "launches": [launch.tag for launch in spec.launches], "error": error,
            "tolerance": tolerance, "ok": error <= tolerance}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default="jit", choices=("jit", "aot"))
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args(argv)
    patch_interpreter()
    failed = 0
    interpreted = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    for op, args in _cases(options.quick):
        if interpreted and args["dtype"] == "bf16":
            # Triton 3.6's interpreter multiplies bf16 dot operands as raw 16-bit integers.
            print(json.dumps({"case": f"{op}{args}", "ok": True, "skipped": "bf16 dot in the "
                              "interpreter"}), flush=True)
            continue
        start = time.time()
        try:
            result = check(op, args, options.device, options.mode)
        except Exception as error:  # report and go on: one line per case
            result = {"case": f"{op}{args}", "ok": False, "error": None,
                      "exception": f"{type(error).__name__}: {error}"}
        result["seconds"] = round(time.time() - start, 2)
        failed += not result["ok"]
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
