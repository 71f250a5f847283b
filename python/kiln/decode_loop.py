"""The decode loop on the device: n greedy steps of a decoder in one call of the artifact.

A generator's `decode` (kiln.generate) takes one token per row, its position and cache slot,
and returns the greedy next token. Called from Python once per token, every step pays the
host's share: uploading three small inputs, invoking the function, recording and submitting
its GPU work, and reading the token back (a synchronization). `add_decode_loop` adds a function
that runs the steps itself, the token of each step fed to the next without leaving the device:

    func.func @decode_loop(%input_ids [B, 1], %position_ids [B, 1], %cache_position [1],
                           %attention_mask [B, S], %steps [1]) -> (tokens [B, S], guards)
      n = clamp(steps[0], 0, S)
      scf.for i in [0, n), carrying (token, position, slot, tokens, guards):
        next, _, step_guards = func.call @decode(token, position, slot, attention_mask)
        tokens[:, i] = next; guards = max(guards, step_guards)
        token, position, slot = next, position + 1, slot + 1

The step is the public `decode` itself (its KV-cache globals are loaded and stored inside the
loop body, so every step updates the cache in place as a single call does); IREE inlines it and
drops the logits the loop does not return. Columns of `tokens` past n are zero. Index guards
(kiln.guards: rows of [the largest out-of-bounds index, the size]) are combined by an
elementwise max over the steps, so a bad index in any step is reported as in a single call.

The loop's only host read is its trip count (one int64 per call); the per-step token never
crosses the host. (IREE's CUDA HAL still blocks the host in each step's queue allocations;
kiln.queue_waits releases those waits for CUDA-only artifacts, compile option
pipeline_loops.) Only greedy decoding runs here: sampling needs the logits on the host.
"""

from __future__ import annotations

import dataclasses

from kiln.artifact import NONE_OUT_OF_BOUNDS, SIGNATURE_KEY, TensorSpec
from kiln.device_state import function_headers, module_end
from kiln.errors import KilnCompileError
from kiln.ir_text import mlir_string

LOOP_SUFFIX = "_loop"
STEPS_INPUT = "steps"
TOKENS_OUTPUT_DTYPE = "int64"


def add_decode_loop(ir_text: str, step: str = "decode") -> str:
    """Append `<step>_loop` to the module text: `step` run on the device as a loop of greedy
    steps (see the module docstring). `step` must be a public function with a Kiln signature
    (after kiln.device_state.bind_state) taking (input_ids [B, 1], position_ids [B, 1],
    cache_position [1], attention_mask [B, S]) and returning the next token [B] first and its
    index guards, if any, last."""
    headers = {h.name: h for h in function_headers(ir_text)}
    header = headers.get(step)
    if header is None:
        raise KilnCompileError(f"decode loop: the module has no public function @{step} with a "
                               f"Kiln signature (it has: {', '.join(headers) or 'none'})")
    signature = header.signature
    shapes = [tuple(i.shape) for i in signature.inputs]
    dtypes = [i.dtype for i in signature.inputs]
    if len(shapes) != 4 or dtypes != ["int64"] * 4 or len(shapes[0]) != 2 or \
            shapes[0][1] != 1 or shapes[1] != shapes[0] or shapes[2] != (1,) or \
            len(shapes[3]) != 2 or shapes[3][0] != shapes[0][0]:
        raise KilnCompileError(
            f"decode loop: @{step} must take int64 (input_ids [B, 1], position_ids [B, 1], "
            f"cache_position [1], attention_mask [B, S]); it takes "
            f"{[(i.name, list(i.shape), i.dtype) for i in signature.inputs]}")
    batch, slots = shapes[3]
    first = signature.outputs[0] if signature.outputs else None
    if first is None or tuple(first.shape) != (batch,) or first.dtype != "int64":
        raise KilnCompileError(f"decode loop: @{step}'s first output must be the next token, "
                               f"int64 [{batch}]")
    guard_outputs = sorted({g.output for g in signature.guards or ()})
    if len(guard_outputs) > 1 or (guard_outputs and
                                  guard_outputs[0] != len(signature.outputs) - 1):
        raise KilnCompileError(f"decode loop: @{step}'s index guards must be one stacked "
                               f"result, its last")
    guards_type = header.results[-1] if guard_outputs else None

    indent = header.indent
    body = indent + "  "
    column = f"tensor<{batch}x1xi64>"
    tokens = f"tensor<{batch}x{slots}xi64>"
    vt_column = f"!torch.vtensor<[{batch},1],si64>"
    vt_slot = "!torch.vtensor<[1],si64>"
    vt_tokens = f"!torch.vtensor<[{batch},{slots}],si64>"
    vt_token = header.results[0]
    results = len(header.results)
    call_results = "%step" + (f":{results}" if results > 1 else "")
    step_result = (lambda i: f"%step#{i}") if results > 1 else (lambda i: "%step")
    carried = [("%token", column), ("%position", column), ("%slot", "tensor<1xi64>"),
               ("%tokens", tokens)]
    lines = [
        "%c0 = arith.constant 0 : index",
        "%c1 = arith.constant 1 : index",
        f"%c_slots = arith.constant {slots} : index",
        f"%steps_b = torch_c.to_builtin_tensor %steps : {vt_slot} -> tensor<1xi64>",
        "%steps_i64 = tensor.extract %steps_b[%c0] : tensor<1xi64>",
        "%steps_index = arith.index_cast %steps_i64 : i64 to index",
        "%steps_low = arith.maxsi %steps_index, %c0 : index",
        "%trips = arith.minsi %steps_low, %c_slots : index",
        f"%token0 = torch_c.to_builtin_tensor %input_ids : {vt_column} -> {column}",
        f"%position0 = torch_c.to_builtin_tensor %position_ids : {vt_column} -> {column}",
        f"%slot0 = torch_c.to_builtin_tensor %cache_position : {vt_slot} -> tensor<1xi64>",
        f"%ones_column = arith.constant dense<1> : {column}",
        "%ones_slot = arith.constant dense<1> : tensor<1xi64>",
        "%zero = arith.constant 0 : i64",
        f"%tokens_empty = tensor.empty() : {tokens}",
        f"%tokens0 = linalg.fill ins(%zero : i64) outs(%tokens_empty : {tokens}) -> {tokens}",
    ]
    initial = ["%token0", "%position0", "%slot0", "%tokens0"]
    if guards_type is not None:
        guards_builtin = _builtin_i64(guards_type)
        lines.append(f"%guards0 = arith.constant dense<{NONE_OUT_OF_BOUNDS}> : {guards_builtin}")
        carried.append(("%guards", guards_builtin))
        initial.append("%guards0")
    types = ", ".join(t for _, t in carried)
    loop_results = f"%loop:{len(carried)}"
    lines.append(f"{loop_results} = scf.for %i = %c0 to %trips step %c1 iter_args(" +
                 ", ".join(f"{name} = {value}" for (name, _), value in zip(carried, initial)) +
                 f") -> ({types}) {{")
    loop = [
        f"%token_t = torch_c.from_builtin_tensor %token : {column} -> {vt_column}",
        f"%position_t = torch_c.from_builtin_tensor %position : {column} -> {vt_column}",
        f"%slot_t = torch_c.from_builtin_tensor %slot : tensor<1xi64> -> {vt_slot}",
        f"{call_results} = func.call @{step}(%token_t, %position_t, %slot_t, %attention_mask) "
        f": ({vt_column}, {vt_column}, {vt_slot}, {header.arguments[3][1]})" +
        (f" -> ({', '.join(header.results)})" if results > 1 else f" -> {vt_token}"),
        f"%next = torch_c.to_builtin_tensor {step_result(0)} : {vt_token} -> "
        f"tensor<{batch}xi64>",
        f"%next_column = tensor.expand_shape %next [[0, 1]] output_shape [{batch}, 1] : "
        f"tensor<{batch}xi64> into {column}",
        f"%tokens_next = tensor.insert_slice %next_column into %tokens[0, %i] [{batch}, 1] "
        f"[1, 1] : {column} into {tokens}",
        f"%position_next = arith.addi %position, %ones_column : {column}",
        "%slot_next = arith.addi %slot, %ones_slot : tensor<1xi64>",
    ]
    yielded = ["%next_column", "%position_next", "%slot_next", "%tokens_next"]
    if guards_type is not None:
        loop += [f"%step_guards = torch_c.to_builtin_tensor {step_result(results - 1)} : "
                 f"{guards_type} -> {guards_builtin}",
                 f"%guards_next = arith.maxsi %guards, %step_guards : {guards_builtin}"]
        yielded.append("%guards_next")
    loop.append(f"scf.yield {', '.join(yielded)} : {types}")
    lines += ["  " + line for line in loop]  # the loop's body, one level deeper
    lines.append("}")
    lines.append(f"%tokens_t = torch_c.from_builtin_tensor %loop#3 : {tokens} -> {vt_tokens}")
    returned, returned_types = ["%tokens_t"], [vt_tokens]
    if guards_type is not None:
        lines.append(f"%guards_t = torch_c.from_builtin_tensor %loop#4 : {guards_builtin} -> "
                     f"{guards_type}")
        returned.append("%guards_t")
        returned_types.append(guards_type)
    lines.append(f"return {', '.join(returned)} : {', '.join(returned_types)}")

    loop_signature = dataclasses.replace(
        signature,
        inputs=signature.inputs + (TensorSpec((1,), "int64", STEPS_INPUT),),
        outputs=(TensorSpec((batch, slots), TOKENS_OUTPUT_DTYPE),) +
        ((signature.outputs[-1],) if guards_type is not None else ()),
        guards=None if guards_type is None else
        tuple(dataclasses.replace(g, output=1) for g in signature.guards),
        mutated_inputs=[], written_inputs=None if signature.written_inputs is None else [],
        output_tree=None)
    arguments = ", ".join(f"%{name}: {t}" for name, t in zip(
        ("input_ids", "position_ids", "cache_position", "attention_mask", STEPS_INPUT),
        (vt_column, vt_column, vt_slot, header.arguments[3][1], vt_slot)))
    function = (f"{indent}func.func @{step}{LOOP_SUFFIX}({arguments}) -> "
                f"({', '.join(returned_types)}) attributes {{iree.reflection = {{"
                f"{SIGNATURE_KEY} = {mlir_string(loop_signature.to_json())}}}}} {{\n" +
                "".join(f"{body}{line}\n" for line in lines) + f"{indent}}}\n")
    end = module_end(ir_text)
    return ir_text[:end] + function + ir_text[end:]


def _builtin_i64(torch_type: str) -> str:
    """tensor<AxBxi64> of a static !torch.vtensor<[A,B],si64>."""
    prefix, suffix = "!torch.vtensor<[", "],si64>"
    if not (torch_type.startswith(prefix) and torch_type.endswith(suffix)):
        raise KilnCompileError(f"decode loop: expected an int64 tensor, got {torch_type}")
    dims = [d.strip() for d in torch_type[len(prefix):-len(suffix)].split(",")]
    if not all(d.isdigit() for d in dims):
        raise KilnCompileError(f"decode loop: expected a static shape, got {torch_type}")
    return "tensor<" + "".join(f"{d}x" for d in dims) + "i64>"
