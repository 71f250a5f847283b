"""kiln-opt: an mlir-opt-style driver over torch + kiln IR.

    kiln-opt in.mlir -p 'kiln-raise-attention,canonicalize,convert-kiln-to-torch{target=cuda}'
    kiln-opt --list-passes

Pipeline elements are Kiln pass names (with `{key=value ...}` options), Kiln pipeline names
(`kiln-raise-pipeline`, `kiln-lower-pipeline`), or any upstream / torch-mlir pass text
(`canonicalize`, `cse`, `func.func(torch-...)`), mixed freely.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kiln.bindings import ir
from kiln.dialects import make_context
from kiln.errors import KilnCompileError
from kiln.ir_text import split_top_level
from kiln.passes import PASS_REGISTRY, PassError, create_pass, get_pass_class
from kiln.pipelines import NAMED_PIPELINES, Pipeline, Step

SPLIT_MARKER = "// -----"


def parse_options(text: str) -> dict[str, str]:
    options = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep:
            raise PassError(f"pass option '{item}' is not key=value")
        options[key] = value
    return options


def parse_pipeline(text: str) -> list[Step]:
    steps: list[Step] = []
    body = text.strip()
    if body.startswith("builtin.module(") and body.endswith(")"):
        body = body[len("builtin.module("):-1]
    for element in split_top_level(body):
        name, _, rest = element.partition("{")
        name = name.strip()
        options = parse_options(rest.rstrip("}")) if rest else {}
        if name in PASS_REGISTRY:
            steps.append(create_pass(name, options))
        elif name in NAMED_PIPELINES:
            kwargs = {k: _pipeline_option(v) for k, v in options.items()}
            steps.extend(NAMED_PIPELINES[name](**kwargs).steps)
        elif name.startswith("kiln-"):
            raise PassError(f"unknown kiln pass '{name}'; run kiln-opt --list-passes")
        else:
            steps.append(element)
    return steps


def _pipeline_option(value: str):
    return {"true": True, "false": False}.get(value.lower(), value)


def list_passes() -> str:
    lines = ["Kiln passes:"]
    for name in PASS_REGISTRY:
        cls = get_pass_class(name)
        options = ", ".join(f"{f.name}={f.default}" for f in cls.option_fields())
        lines.append(f"  {name:<26} {cls.summary}" + (f" [{options}]" if options else ""))
    lines.append("Kiln pipelines:")
    for name, builder in NAMED_PIPELINES.items():
        lines.append(f"  {name:<26} {(builder.__doc__ or '').strip().splitlines()[0]}")
    lines.append("Any upstream MLIR or torch-mlir pass (canonicalize, cse, torch-...) also works.")
    return "\n".join(lines)


def process_chunk(source: str, steps_text: str, args, chunk_name: str) -> str:
    context = make_context()
    with context, ir.Location.unknown():
        try:
            module = ir.Module.parse(source)
        except ir.MLIRError as error:
            raise KilnCompileError(f"{chunk_name}: could not parse input: {error}") from None
        steps = parse_pipeline(steps_text) if steps_text else []
        pipeline = Pipeline("kiln-opt", steps)
        if steps:
            pipeline.run(module, print_ir_after_all=args.print_ir_after_all)
        return module.operation.get_asm(large_elements_limit=args.elide_large_elements,
                                        enable_debug_info=args.mlir_print_debuginfo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiln-opt", description="Run Kiln and MLIR passes over torch/kiln-dialect IR.")
    parser.add_argument("input", nargs="?", default="-", help="input .mlir file, or - for stdin")
    parser.add_argument("-p", "--pass-pipeline", default="",
                        help="comma-separated passes: kiln passes (name{key=value}), kiln "
                             "pipelines, upstream passes")
    parser.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    parser.add_argument("--split-input-file", action="store_true",
                        help=f"process each chunk separated by '{SPLIT_MARKER}' on its own")
    parser.add_argument("--list-passes", action="store_true", help="list passes and exit")
    parser.add_argument("--print-ir-after-all", action="store_true",
                        help="print the IR after every pass (to stderr)")
    parser.add_argument("--mlir-print-debuginfo", action="store_true",
                        help="print source locations")
    parser.add_argument("--elide-large-elements", type=int, default=None, metavar="N",
                        help="elide constants with more than N elements")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_passes:
        print(list_passes())
        return 0
    try:
        text = sys.stdin.read() if args.input == "-" else Path(args.input).read_text()
    except OSError as error:
        sys.stderr.write(f"error: cannot read {args.input}: {error.strerror or error}\n")
        return 1
    chunks = text.split(SPLIT_MARKER) if args.split_input_file else [text]
    outputs, failed = [], False
    for index, chunk in enumerate(chunks):
        name = f"{args.input}:chunk {index}" if args.split_input_file else args.input
        try:
            outputs.append(process_chunk(chunk, args.pass_pipeline, args, name))
        except (KilnCompileError, PassError) as error:
            failed = True
            sys.stderr.write(f"error: {error}\n")
            if args.split_input_file:
                sys.stderr.write(f"{SPLIT_MARKER}\n")
    result = f"\n{SPLIT_MARKER}\n".join(outputs)
    if args.output == "-":
        sys.stdout.write(result)
    elif failed:  # a file keeps its previous contents: a build never sees half a result
        sys.stderr.write(f"error: {args.output} not written\n")
    else:
        try:
            write_atomically(Path(args.output), result)
        except OSError as error:
            sys.stderr.write(f"error: cannot write {args.output}: {error.strerror or error}\n")
            return 1
    return 1 if failed else 0


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: readers see
    the old file or the whole new one, never an empty or partial one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_EXCL: never write through someone else's file; mode 0o666 less the umask, as open() does.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
