"""f16 accuracy of Kiln's CUDA artifacts: ResNet-18 and BERT-base, whole and in pieces.

The GPU suite (bench/results/suite-cuda-nvidia-h200.json) found Kiln's CUDA artifacts wrong in
f16 for `resnet` (0.455 of the output scale, b1 and b8) and `bert` b8 (0.086), while the same
models compiled for CPU pass (1.5e-3, 2.5e-3) and so does Kiln's CUDA text compiled for llvm-cpu
(see docs/decisions.md, "f16 on CUDA"). This script localizes it on the GPU.

Two halves (the GPU machine has no IREE compiler):
  python -m bench.gpu.f16_accuracy prepare --out .device/f16acc                  # here
  python3 -m bench.gpu.f16_accuracy check --artifacts .device/f16acc --out $OUT  # there

prepare compiles each case for target cuda (cuda_kernels off, as the suite's `kiln` cell) in a
few variants (IREE codegen switches, see VARIANTS) and stores the f16 inputs and an f32
reference computed here on the CPU from the same f16 weights (the module cast to f32).
Cases:
- small synthetic reproducers with inline random weights (conv3x3+BN+ReLU, the 7x7/2 stem with
  max pool, a 1x1/2 downsample, ReLU+avgpool+fc);
- the zoo models themselves (kiln.examples.zoo: resnet b1/b8, bert b8) and their stages (ResNet stem,
  layer1..4, head; BERT embeddings and one encoder layer), each stage fed the f16 cast of the
  previous stages' f32 reference. These use weights="external" so the artifacts hold code only;
  `check` rebuilds the weight archive from zoo.uniform (numpy only, the recipes of
  zoo.deterministic_init recorded here) and verifies every array's sha256.
check loads each artifact with kiln.load(device="cuda"), prints error vs reference per case and
variant, and writes $OUT/f16_accuracy.json.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# Max |error| / max(1, max |reference|): the GPU suite's f16 tolerance.
TOLERANCE = 5e-2
# name → extra iree-compile flags. base is what Kiln does today.
VARIANTS = {
    "base": [],
    # Convolutions without the implicit-GEMM (im2col) TileAndFuse path.
    "no-igemm": ["--iree-codegen-llvmgpu-use-igemm=false"],
    # Matmuls on the VectorDistribute pipeline instead of TileAndFuse.
    "no-tf-matmul": ["--iree-codegen-llvmgpu-use-tile-and-fuse-matmul=false"],
}
RESNET_VARIANTS = ("base", "no-igemm")
BERT_VARIANTS = ("base", "no-tf-matmul")


# ---------------------------------------------------------------------------------------------
# Cases (built here only)


def _torch():
    import torch

    return torch


def _synthetic_cases():
    """(name, module f16, inputs f16, variants): random weights, inline."""
    torch = _torch()
    nn = torch.nn
    gen = torch.Generator().manual_seed(0)

    def randomize_bn(module):
        for bn in [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]:
            c = bn.num_features
            bn.running_mean.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
            bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            bn.weight.data.copy_(torch.rand(c, generator=gen) * 0.2 + 0.9)
            bn.bias.data.copy_(torch.rand(c, generator=gen) * 0.04 - 0.02)
        return module

    class ConvBNReLU(nn.Module):
        def __init__(self, cin, cout, k, stride, pool=False):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.pool = nn.MaxPool2d(3, 2, 1) if pool else nn.Identity()

        def forward(self, x):
            return self.pool(self.relu(self.bn(self.conv(x))))

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            return self.fc(torch.flatten(self.avgpool(torch.relu(x)), 1))

    def x(*shape):
        return torch.rand(*shape, generator=gen) * 2 - 1

    torch.manual_seed(0)
    cases = [
        ("conv3x3-bn-relu", ConvBNReLU(64, 64, 3, 1), (x(1, 64, 56, 56),)),
        ("stem7x7s2-maxpool", ConvBNReLU(3, 64, 7, 2, pool=True), (x(1, 3, 224, 224),)),
        ("down1x1s2-bn", ConvBNReLU(64, 128, 1, 2), (x(1, 64, 56, 56),)),
        ("relu-avgpool-fc", Head(), (x(1, 512, 7, 7) * 4,)),
    ]
    return [(name, randomize_bn(m).eval().half(), tuple(i.half() for i in inputs),
             RESNET_VARIANTS) for name, m, inputs in cases]


class _Seq(_torch().nn.Module):
    """Named zoo submodules run in order (their state_dict names keep the zoo's prefixes)."""

    def __init__(self, parts: dict, flatten_before: str | None = None):
        super().__init__()
        self.names = list(parts)
        for name, module in parts.items():
            self.add_module(name, module)
        self.flatten_before = flatten_before

    def forward(self, x):
        torch = _torch()
        for name in self.names:
            if name == self.flatten_before:
                x = torch.flatten(x, 1)
            x = getattr(self, name)(x)
        return x


class _FirstOutput(_torch().nn.Module):
    def __init__(self, module):
        super().__init__()
        self.inner = module

    def forward(self, x):
        out = self.inner(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def _zoo_cases():
    """(name, module f16, inputs f16, variants, zoo model name, prefix of state names in the zoo
    model) — stages are fed the f16 cast of the previous stages' f32 reference."""
    torch = _torch()
    from kiln.examples import zoo

    cases = []
    resnet, (image,) = zoo.build("resnet", 1, torch.float16)
    cases.append(("resnet-b1", resnet, (image,), RESNET_VARIANTS, "resnet", ""))
    _, (image8,) = zoo.build("resnet", 8, torch.float16)
    cases.append(("resnet-b8", resnet, (image8,), ("base",), "resnet", ""))
    stages = [
        ("resnet-stem", {"conv1": resnet.conv1, "bn1": resnet.bn1, "relu": resnet.relu,
                         "maxpool": resnet.maxpool}, None),
        ("resnet-layer1", {"layer1": resnet.layer1}, None),
        ("resnet-layer2", {"layer2": resnet.layer2}, None),
        ("resnet-layer3", {"layer3": resnet.layer3}, None),
        ("resnet-layer4", {"layer4": resnet.layer4}, None),
        ("resnet-head", {"avgpool": resnet.avgpool, "fc": resnet.fc}, "fc"),
    ]
    x, stage_inputs = image, {}
    for name, parts, flatten_before in stages:
        module = _Seq(parts, flatten_before).eval()
        cases.append((name, module, (x,), RESNET_VARIANTS, "resnet", ""))
        stage_inputs[name] = x
        with torch.no_grad():
            x = _reference(module, (x,)).to(torch.float16)
    # layer4 with the head: the last block's BN + residual + ReLU fuse into the f16 avgpool
    # reduction (one dispatch) only when they are compiled together.
    module = _Seq({"layer4": resnet.layer4, "avgpool": resnet.avgpool, "fc": resnet.fc},
                  "fc").eval()
    cases.append(("resnet-layer4-head", module, (stage_inputs["resnet-layer4"],),
                  RESNET_VARIANTS, "resnet", ""))

    bert, (ids,) = zoo.build("bert", 8, torch.float16)
    cases.append(("bert-b8", bert, (ids,), BERT_VARIANTS, "bert", ""))
    encoder = bert.encoder  # LastHiddenState(BertModel)
    embeddings = _FirstOutput(encoder.embeddings).eval()
    cases.append(("bert-embeddings", embeddings, (ids,), BERT_VARIANTS, "bert",
                  "encoder.embeddings."))
    with torch.no_grad():
        hidden = _reference(embeddings, (ids,)).to(torch.float16)
    layer = _FirstOutput(encoder.encoder.layer[0]).eval()
    cases.append(("bert-layer0", layer, (hidden,), BERT_VARIANTS, "bert",
                  "encoder.encoder.layer.0."))
    return cases


def _reference(module, inputs):
    """f32 forward on the CPU of the module's f16 weights (deep copy cast to f32)."""
    torch = _torch()
    ref = copy.deepcopy(module).float()
    args = [a.float() if a.is_floating_point() else a for a in inputs]
    with torch.no_grad():
        return ref(*args)


def _recipes(model) -> dict:
    """state name → (hash key, shape, low, high) as zoo.deterministic_init fills it."""
    torch = _torch()
    nn = torch.nn
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    recipes = {}
    for name, param in model.named_parameters():
        if param.ndim >= 2:
            if id(param) in embeddings:
                std = 0.02
            else:
                std = (np.sqrt(2.0) if param.ndim == 4 else 1.0) / np.sqrt(
                    int(np.prod(param.shape[1:])))
            low, high = -std * np.sqrt(3.0), std * np.sqrt(3.0)
        elif name.endswith("weight"):
            low, high = 0.9, 1.1
        else:
            low, high = -0.02 * np.sqrt(3.0), 0.02 * np.sqrt(3.0)
        recipes[name] = (name, list(param.shape), float(low), float(high))
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = list(module.running_mean.shape)
            recipes[f"{name}.running_mean"] = (name + ".mean", shape, -0.1, 0.1)
            recipes[f"{name}.running_var"] = (name + ".var", shape, 0.5, 1.5)
    return recipes


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def prepare(out: Path, only: list[str] | None) -> None:
    import torch

    import kiln

    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.setdefault("cases", {})
    manifest["tolerance"] = TOLERANCE
    manifest["variants"] = VARIANTS
    from kiln.examples import zoo

    recipe_cache = {}
    cases = [(n, m, i, v, None, None) for n, m, i, v in _synthetic_cases()] + _zoo_cases()
    for name, module, inputs, variants, zoo_name, prefix in cases:
        if only and not any(name.startswith(o) for o in only):
            continue
        print(f"== {name}", flush=True)
        entry = {"inputs": [], "variants": {}, "zoo": zoo_name}
        for i, x in enumerate(inputs):
            np.save(out / f"{name}.in{i}.npy", x.numpy())
            entry["inputs"].append(f"{name}.in{i}.npy")
        reference = _reference(module, inputs).numpy().astype(np.float32)
        np.save(out / f"{name}.ref.npy", reference)
        entry["ref_max_abs"] = float(np.abs(reference).max())
        with torch.no_grad():
            eager = module(*inputs).float().numpy()  # eager f16 on this CPU, for scale
        entry["eager_f16_cpu_rel"] = _error(eager, reference)[1]
        weights = "external" if zoo_name else "inline"
        for variant in variants:
            start = time.perf_counter()
            try:
                compiled = kiln.compile_model(module, inputs, target="cuda", cuda_kernels="off",
                                              weights=weights, cache=False,
                                              extra_iree_flags=VARIANTS[variant])
            except Exception as error:  # a failing compile is a result too
                entry["variants"][variant] = {"error": f"{type(error).__name__}: "
                                                       f"{str(error)[:500]}"}
                print(f"   {variant}: compile failed: {error}", flush=True)
                continue
            vmfb = out / f"{name}.{variant}.vmfb"
            vmfb.write_bytes(compiled.vmfb)
            info = {"vmfb": vmfb.name, "compile_s": round(time.perf_counter() - start, 1),
                    "vmfb_bytes": len(compiled.vmfb)}
            if compiled.parameters:
                if zoo_name not in recipe_cache:
                    recipe_cache[zoo_name] = _recipes(zoo.build(zoo_name, 1, torch.float32)[0])
                recipes = recipe_cache[zoo_name]
                params, extra = [], {}
                for key, array in compiled.parameters.items():
                    array = np.asarray(array)
                    item = {"key": key, "sha256": _sha(array), "dtype": str(array.dtype)}
                    zoo_key = prefix + (key[len("inner."):] if key.startswith("inner.") else key)
                    if zoo_key in recipes:
                        item["recipe"] = recipes[zoo_key]
                    else:  # not a zoo weight (a folded constant): stored as is
                        extra[key] = array
                    params.append(item)
                if extra:
                    np.savez(out / f"{name}.{variant}.extra.npz", **extra)
                    info["extra"] = f"{name}.{variant}.extra.npz"
                info["parameters"] = params
            entry["variants"][variant] = info
            print(f"   {variant}: {info['vmfb_bytes'] / 1e6:.2f} MB, {info['compile_s']} s",
                  flush=True)
        manifest["cases"][name] = entry
        manifest_path.write_text(json.dumps(manifest, indent=1))
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"artifacts in {out}: {total / 2**20:.1f} MiB")


# ---------------------------------------------------------------------------------------------
# GPU side


def _error(actual, reference):
    actual = np.asarray(actual, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if actual.shape != reference.shape or not np.all(np.isfinite(actual)):
        return math.inf, math.inf
    error = float(np.max(np.abs(actual - reference)))
    return error, error / max(1.0, float(np.max(np.abs(reference))))


def _archive(artifacts: Path, info: dict) -> dict:
    from kiln.examples import zoo

    extra = np.load(artifacts / info["extra"]) if info.get("extra") else {}
    arrays, bad = {}, []
    for item in info["parameters"]:
        if "recipe" in item:
            hash_key, shape, low, high = item["recipe"]
            array = zoo.uniform(hash_key, tuple(shape), low, high).astype(item["dtype"])
        else:
            array = extra[item["key"]]
        if _sha(array) != item["sha256"]:
            bad.append(item["key"])
        arrays[item["key"]] = array
    if bad:
        raise RuntimeError(f"{len(bad)} rebuilt weight(s) differ from the compiled ones: "
                           f"{bad[:3]}")
    return arrays


def check(artifacts: Path, out: Path) -> None:
    import kiln
    from kiln.runtime import parameters_path, write_parameter_archive

    manifest = json.loads((artifacts / "manifest.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    work = out / "params"
    rows = []
    print(f"{'case':<22}{'variant':<14}{'max abs':>10}{'rel':>10}  {'verdict':<8} "
          f"(eager f16 on CPU rel, ref scale)")
    for name, entry in manifest["cases"].items():
        inputs = [np.load(artifacts / f) for f in entry["inputs"]]
        reference = np.load(artifacts / f"{name}.ref.npy")
        for variant, info in entry["variants"].items():
            row = {"case": name, "variant": variant, "ref_max_abs": entry["ref_max_abs"],
                   "eager_f16_cpu_rel": entry["eager_f16_cpu_rel"]}
            try:
                if "error" in info:
                    raise RuntimeError("compile: " + info["error"])
                vmfb = artifacts / info["vmfb"]
                params = None
                if info.get("parameters"):
                    params = parameters_path(work / info["vmfb"])
                    write_parameter_archive(params, _archive(artifacts, info))
                module = kiln.load(vmfb, device="cuda", parameters=params)
                actual = np.asarray(module(*inputs)).astype(np.float32)
                row["max_abs"], row["rel"] = _error(actual, reference)
                bad = np.abs(actual.astype(np.float64) - reference) > TOLERANCE * max(
                    1.0, entry["ref_max_abs"])
                row["frac_bad"] = float(bad.mean())
                row["ok"] = row["rel"] <= TOLERANCE
                np.save(out / f"{name}.{variant}.out.npy", actual)
            except Exception as error:  # one broken artifact must not hide the others
                row["error"] = f"{type(error).__name__}: {str(error)[:400]}"
                row["rel"], row["ok"] = math.inf, False
            rows.append(row)
            verdict = "ok" if row["ok"] else "FAIL"
            print(f"{name:<22}{variant:<14}{row.get('max_abs', math.inf):>10.3g}"
                  f"{row['rel']:>10.3g}  {verdict:<8} ({row['eager_f16_cpu_rel']:.2g}, "
                  f"{row['ref_max_abs']:.3g}) {row.get('error', '')}", flush=True)
    (out / "f16_accuracy.json").write_text(json.dumps({"rows": rows, "tolerance": TOLERANCE,
                                                        "variants": manifest["variants"]},
                                                       indent=1))
    for p in work.glob("*.irpa"):
        p.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", default=".device/f16acc")
    p.add_argument("--only", nargs="*", help="case name prefixes")
    c = sub.add_parser("check")
    c.add_argument("--artifacts", default=".device/f16acc")
    c.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(Path(args.out), args.only)
    else:
        check(Path(args.artifacts), Path(args.out))


if __name__ == "__main__":
    main()
