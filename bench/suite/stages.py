"""The child stages, each run in a fresh process (`python -m bench.run_suite --child SPEC`):
reference, prepare, run, params, and prepare-cuda (see bench.run_suite's docstring)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import re
import time
from pathlib import Path

from bench.suite.config import (FAKE_CUDA, IREE_ELEMENT, KILN_SYSTEMS, TORCH_DTYPES, is_kiln,
                                kiln_variant_suffix, torch_device_for)
from bench.suite.load import GpuLock, lock_inductor_benchmarks, peak_rss_mb, time_calls
from bench.suite.results import cell_dir, check, load_inputs, save_inputs, to_numpy_f32


def _model_cache(spec):
    """GPU suite: the reference stage pickles the built model into the cell's folder, so the
    other stages of the cell skip the zoo's build (about 20 s for a 124M model there)."""
    if spec.get("device") != "cuda" or not spec.get("work"):
        return None
    return cell_dir(spec["work"], spec["model"], spec["batch"], spec["dtype"]) / "model.pt"


def _build(spec, use_cache: bool = True):
    import torch

    from kiln.examples import zoo

    dtype = getattr(torch, TORCH_DTYPES[spec["dtype"]])
    cache = _model_cache(spec) if use_cache else None
    if cache is not None and cache.exists():
        try:
            model = torch.load(cache, weights_only=False)
            return model, zoo.MODELS[spec["model"]][1](spec["batch"], dtype)
        except Exception as error:  # build it instead
            print(f"model cache {cache}: {type(error).__name__}: {error}", file=sys.stderr)
    return zoo.build(spec["model"], spec["batch"], dtype)


def stage_reference(spec) -> dict:
    """Eager forward once; saves inputs and output (float32) for every other cell."""
    import numpy as np
    import torch

    directory = cell_dir(spec["work"], spec["model"], spec["batch"], spec["dtype"])
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, inputs = _build(spec, use_cache=False)
    build_s = time.perf_counter() - start
    cache = _model_cache(spec)
    if cache is not None:
        try:
            torch.save(model, cache)
        except Exception as error:  # the other stages build it themselves
            print(f"model cache: {type(error).__name__}: {error}", file=sys.stderr)
    device = torch_device_for(spec["device"])
    with torch.no_grad(), GpuLock(spec, exclusive=False):
        output = model.to(device)(*[x.to(device) for x in inputs])
    np.save(directory / "reference.npy", to_numpy_f32(output))
    info = {"inputs": save_inputs(directory, inputs), "output_shape": list(output.shape),
            "parameters": sum(p.numel() for p in model.parameters()), "build_s": build_s}
    (directory / "reference.json").write_text(json.dumps(info))
    return info


def stage_prepare(spec) -> dict:
    """Ahead-of-time step: Kiln .vmfb (CPU) or ONNX export."""
    directory = cell_dir(spec["work"], spec["model"], spec["batch"], spec["dtype"])
    model, inputs = _build(spec)
    system = spec["system"]
    start = time.perf_counter()
    if system == "kiln":
        import kiln

        options = _kiln_options(spec.get("kiln_options", {}))
        compiled = kiln.compile_model(model, tuple(inputs), target="cpu", **options)
        compile_s = time.perf_counter() - start
        path = compiled.save(directory / spec.get("artifact", "kiln.vmfb"))
        return {"compile_s": compile_s, "artifact_mb": path.stat().st_size / 2**20,
                "compile_peak_rss_mb": peak_rss_mb(),
                "phases_s": {k: round(v, 2) for k, v in compiled.report.phase_seconds.items()}}
    if system == "onnxruntime":
        import torch

        path = directory / "model.onnx"
        exporter, errors = None, []
        for dynamo in (True, False):
            try:
                with torch.no_grad():
                    torch.onnx.export(model, tuple(inputs), str(path), dynamo=dynamo,
                                      input_names=[f"input{i}" for i in range(len(inputs))],
                                      output_names=["output"])
                exporter = "dynamo" if dynamo else "torchscript"
                break
            except Exception as error:  # the other exporter may work
                errors.append(f"dynamo={dynamo}: {type(error).__name__}: {error}"[:500])
        if exporter is None:
            raise RuntimeError("torch.onnx.export failed: " + " | ".join(errors))
        size = sum(p.stat().st_size for p in directory.glob("model.onnx*"))
        return {"compile_s": time.perf_counter() - start, "exporter": exporter,
                "artifact_mb": size / 2**20, "compile_peak_rss_mb": peak_rss_mb()}
    raise ValueError(f"{system} has no prepare stage")


def _kiln_options(options: dict, if_known: dict | None = None) -> dict:
    """Compile options for a benchmark compile: never the compile cache (compile time is
    measured), when this Kiln has the option; `if_known` only where this Kiln has them."""
    from dataclasses import fields

    from kiln.compiler import CompileOptions

    known = {f.name for f in fields(CompileOptions)}
    missing = sorted(set(options) - known)
    if missing:
        raise RuntimeError(f"this Kiln's CompileOptions has no {', '.join(missing)}")
    result = dict(options)
    result.update({k: v for k, v in (if_known or {}).items() if k in known})
    if "cache" in known:
        result["cache"] = False
    return result


def stage_run(spec) -> dict:
    import numpy as np

    directory = cell_dir(spec["work"], spec["model"], spec["batch"], spec["dtype"])
    expected = np.load(directory / "reference.npy")
    system = spec["system"]
    device = spec["device"]
    torch_device = torch_device_for(device)
    plan = tuple(spec["plan"])
    result = {}
    sync = lambda: None  # noqa: E731

    if system in ("eager",) or system.startswith("torch.compile"):
        import torch

        model, _ = _build(spec)
        inputs = [x.to(torch_device) for x in load_inputs(directory, as_torch=True)]
        model = model.to(torch_device)
        if torch_device == "cuda":
            sync = torch.cuda.synchronize
            torch.cuda.reset_peak_memory_stats()
        if system == "eager":
            fn = model
        else:
            mode = system.split(":", 1)[1] if ":" in system else None
            fn = torch.compile(model, mode=mode)
            result["benchmark_lock"] = lock_inductor_benchmarks(spec)
        torch.set_grad_enabled(False)
        # The compile (first call) holds no lock: its kernel benchmarks take it one by one.
        start = time.perf_counter()
        # clone: reduce-overhead's CUDA graphs overwrite their outputs on the next replay
        output = fn(*inputs).clone()
        sync()
        first_s = time.perf_counter() - start
        if system != "eager":
            result["compile_s"] = first_s
            start = time.perf_counter()
            fn(*inputs)
            sync()
            first_s = time.perf_counter() - start
        call = lambda: fn(*inputs)  # noqa: E731
        result["threads"] = torch.get_num_threads()
    elif system == "onnxruntime":
        import onnxruntime as ort

        start = time.perf_counter()
        session = ort.InferenceSession(str(directory / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        result["session_s"] = time.perf_counter() - start
        feeds = {i.name: x for i, x in zip(session.get_inputs(), load_inputs(directory))}
        start = time.perf_counter()
        output = session.run(None, feeds)[0]
        first_s = time.perf_counter() - start
        call = lambda: session.run(None, feeds)  # noqa: E731
        result["threads"] = session.get_session_options().intra_op_num_threads or os.cpu_count()
    elif is_kiln(system):
        import kiln.runtime  # from KILN_PYTHON: first on the child's PYTHONPATH

        if device == "cuda":
            vmfb = Path(spec["artifacts"]) / spec["artifact"]
            params = directory / spec.get("params_file", "kiln.irpa")
        else:
            vmfb, params = directory / spec.get("artifact", "kiln.vmfb"), None
        if spec.get("runtime_flags"):
            import iree.runtime

            iree.runtime.flags.parse_flags(*spec["runtime_flags"])
        with GpuLock(spec, exclusive=False):
            start = time.perf_counter()
            module = kiln.runtime.load(vmfb, device=torch_device,
                                       parameters=params if params and params.exists() else None)
            result["load_s"] = time.perf_counter() - start
            if torch_device == "cuda":
                # Like the torch systems: inputs live on the GPU and results stay there
                # (zero-copy DLPack in and out, kiln.runtime); the host copies of numpy in/out
                # cost 0.6-3 ms per call (docs/gpu.md).
                import torch

                inputs = [x.to("cuda") for x in load_inputs(directory, as_torch=True)]
                sync = torch.cuda.synchronize
                result["io"] = "torch-cuda"
            else:
                inputs = load_inputs(directory)
            start = time.perf_counter()
            output = module(*inputs)
            first_s = time.perf_counter() - start
        call = lambda: module(*inputs)  # noqa: E731
    else:
        raise ValueError(f"unknown system {system}")

    result["first_call_s"] = first_s
    result.update(check(to_numpy_f32(output), expected, spec["dtype"]))
    if result["check"] != "ok":
        result["peak_rss_mb"] = peak_rss_mb()
        return result
    with GpuLock(spec, exclusive=True):
        result.update(time_calls(call, sync, plan, first_s, spec.get("quiet_wait", 0.0),
                                 spec.get("attempts", 1), spec.get("timing_cpus")))
        if torch_device == "cuda" and is_kiln(system):
            result["device_ms"] = _iree_device_ms(vmfb, params, module)
    result["peak_rss_mb"] = peak_rss_mb()
    if torch_device == "cuda":
        result["gpu_process_mb"] = _nvidia_smi_process_mb()
        if not is_kiln(system):
            import torch

            result["gpu_peak_alloc_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _nvidia_smi_process_mb():
    try:
        text = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=30).stdout
    except Exception:
        return None
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(os.getpid()):
            return float(parts[1])
    return None


def _iree_device_ms(vmfb: Path, params, module):
    """Kiln's time with no Python: iree-benchmark-module, splat inputs of the signature."""
    tool = shutil.which("iree-benchmark-module") or shutil.which(
        "iree-benchmark-module", path=str(Path(sys.executable).parent))
    if tool is None or module.signature is None:
        return None
    command = [tool, f"--module={vmfb}", "--device=cuda", "--function=main",
               "--benchmark_repetitions=5", "--benchmark_min_time=0.2s",
               "--cuda_use_streams=false", "--cuda_tracing=0"]
    if params is not None:
        command.append(f"--parameters=model={params}")
    for spec in module.signature["inputs"]:
        shape = "x".join(str(d) for d in spec["shape"])
        command.append(f"--input={shape}x{IREE_ELEMENT[spec['dtype']]}=1")
    try:
        text = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
    except Exception:
        return None
    medians = re.findall(r"_median\s+([\d.]+) ms", text) or re.findall(r"\s([\d.]+) ms", text)
    return float(medians[0]) if medians else None


def stage_params(spec) -> dict:
    """On the GPU machine: rebuild the .irpa a Kiln CUDA artifact needs from the zoo's
    deterministic weights (verified against the digests recorded at compile time)."""
    import numpy as np
    import torch

    from kiln.runtime import write_parameter_archive

    artifacts = Path(spec["artifacts"])
    manifest = json.loads((artifacts / spec["params_manifest"]).read_text())
    model, _ = _build(spec)
    state = dict(model.state_dict())
    state.update(dict(model.named_buffers()))
    consts = np.load(artifacts / manifest["consts"]) if manifest.get("consts") else {}
    arrays, mismatched = {}, []
    for entry in manifest["parameters"]:
        key = entry["key"]
        if key in state:
            array = _kiln_bytes(state[key])
        else:
            array = consts[key]
        if hashlib.sha256(array.tobytes()).hexdigest() != entry["sha256"]:
            mismatched.append(key)
        arrays[key] = array
    if mismatched:
        raise RuntimeError(f"{len(mismatched)} rebuilt weight(s) differ from the compiled ones "
                           f"(first: {mismatched[:3]})")
    directory = cell_dir(spec["work"], spec["model"], spec["batch"], spec["dtype"])
    write_parameter_archive(directory / spec.get("params_file", "kiln.irpa"), arrays)
    return {"params": len(arrays), "params_mb": sum(a.nbytes for a in arrays.values()) / 2**20}


def _kiln_bytes(tensor):
    """A state tensor as Kiln stores it in a parameter archive (bf16 as int16 bits)."""
    import torch

    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy()
    return tensor.numpy()


def stage_prepare_cuda(spec) -> dict:
    import numpy as np

    import kiln

    model, inputs = _build(spec)
    out = Path(spec["out"])
    system = spec.get("system", "kiln")
    stem = f"{spec['model']}-b{spec['batch']}-{spec['dtype']}{kiln_variant_suffix(system)}"
    variant = KILN_SYSTEMS[system]
    options = _kiln_options(dict(variant.get("options", {}), weights=spec["weights"]),
                            variant.get("if_known"))
    start = time.perf_counter()
    compiled = kiln.compile_model(model, tuple(inputs),
                                  target=spec.get("target", "cpu" if FAKE_CUDA else "cuda"),
                                  **options)
    compile_s = time.perf_counter() - start
    file = f"{stem}.vmfb"
    (out / file).write_bytes(compiled.vmfb)
    entry = {"file": file, "model": spec["model"], "batch": spec["batch"],
             "dtype": spec["dtype"], "system": system, "compile_s": compile_s,
             "options": {k: v for k, v in options.items() if k != "cache"},
             "phases_s": {k: round(v, 2) for k, v in compiled.report.phase_seconds.items()},
             "compile_peak_rss_mb": peak_rss_mb(),
             "artifact_mb": (out / file).stat().st_size / 2**20}
    if compiled.parameters:
        state = dict(model.state_dict())
        state.update(dict(model.named_buffers()))
        params, consts = [], {}
        for key, array in compiled.parameters.items():
            array = np.ascontiguousarray(array)
            if key not in state or _kiln_bytes(state[key]).tobytes() != array.tobytes():
                consts[key] = array
            params.append({"key": key, "shape": list(array.shape), "dtype": str(array.dtype),
                           "sha256": hashlib.sha256(array.tobytes()).hexdigest()})
        manifest = {"parameters": params}
        if consts:
            np.savez(out / f"{stem}-consts.npz", **consts)
            manifest["consts"] = f"{stem}-consts.npz"
            entry["consts_mb"] = (out / manifest["consts"]).stat().st_size / 2**20
        (out / f"{stem}-params.json").write_text(json.dumps(manifest))
        entry["params_manifest"] = f"{stem}-params.json"
        entry["params_mb"] = sum(a.nbytes for a in compiled.parameters.values()) / 2**20
    return entry


def child_main(spec: dict) -> None:
    if spec.get("compile_cpus"):  # GPU lanes: everything but the timed loop off the timing CPUs
        os.sched_setaffinity(0, spec["compile_cpus"])
    result = {"reference": stage_reference, "prepare": stage_prepare, "run": stage_run,
              "params": stage_params}[spec["stage"]](spec)
    print("RESULT " + json.dumps(result), flush=True)
