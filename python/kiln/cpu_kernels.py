"""Kiln's own f32 GEMM for IREE's CPU backend: MLIR text IREE compiles like its own code.

IREE 3.13's data-tiled matmul runs its mmt4d microkernel (16×16×1 tile: a broadcast load per
FMA row); on the 2-core Intel Xeon that is 1.3–1.5× slower than this kernel, which keeps 8 rows ×
2 zmm of accumulators (2 vector loads + 8 broadcasts per 16 FMAs) with the reduction unrolled
×4 (bench/cpu_gemm_kernel.py, docs/decisions.md "CPU presets per host kind").

`kiln-select-cpu-kernels` (passes/lowering) replaces the dense product of a qualifying
`kiln.linear` by a call of a private declaration

    func.func private @kiln_cpu_gemm_128x768x2048(tensor<128x768xf32>, tensor<64x768x32xf32>)
        -> tensor<128x2048xf32> attributes {kiln.cpu_gemm = "128x768x2048"}

whose second operand is the weight packed in 32-column panels [N/32][K][32] (torch ops on the
weight: a constant, so IREE packs it once). `render_cpu_gemm_calls` turns each declaration into
a `flow.dispatch` of one `hal.executable.source` holding the kernel (one workgroup per panel).
"""

from __future__ import annotations

import re
from typing import Optional

from kiln.cuda_kernels import add_executables

GEMM_ATTR = "kiln.cpu_gemm"
CPU_KERNEL_TAKEN = "kiln CPU GEMM"  # the report's detail of a linear the kernel took
GEMM_PREFIX = "kiln_cpu_gemm_"
ROWS, VECTORS, UNROLL = 8, 2, 4  # register tile (measured: bench/cpu_gemm_kernel.py)
PANEL = 16 * VECTORS  # output columns per workgroup
# Smaller products stay with IREE: few panels to share between workers, little to gain
# (a guess at 4M multiply-adds, the GEMMs measured were 50-200M; the sweep is to come).
MIN_MACS = 1 << 22


def gemm_problem(m: int, k: int, n: int, min_macs: int = MIN_MACS) -> Optional[str]:
    """Why the kernel does not take an [m, k] × [k, n] f32 product, or None."""
    if m % ROWS:
        return f"{m} rows are not a multiple of {ROWS}"
    if n % PANEL:
        return f"{n} columns are not a multiple of {PANEL}"
    if k % UNROLL:
        return f"reduction of {k} is not a multiple of {UNROLL}"
    if m * k * n < min_macs:
        return f"{m}x{k}x{n} is below {min_macs} multiply-adds"
    return None


def shape_key(m: int, k: int, n: int) -> str:
    return f"{m}x{k}x{n}"


def entry_name(m: int, k: int, n: int) -> str:
    return f"kiln_cpu_gemm_{shape_key(m, k, n)}_dispatch"


def packed_weight_shape(k: int, n: int) -> tuple[int, int, int]:
    return (n // PANEL, k, PANEL)


def executable_text(m: int, k: int, n: int, rows: int = ROWS, vectors: int = VECTORS,
                    unroll: int = UNROLL, name: Optional[str] = None,
                    row_groups: int = 1) -> str:
    """The `hal.executable.source` computing C[m, n] = A[m, k] · B with B packed in panels of
    16·`vectors` columns, `rows` × `vectors` accumulator registers, unrolled `unroll` times;
    workgroups: one per panel and `row_groups` row blocks."""
    width = 16 * vectors
    panels = n // width
    if m % rows or n % width or k % unroll or m % (rows * row_groups):
        raise ValueError(f"{m}x{k}x{n} does not tile by rows {rows} x {row_groups} groups, "
                         f"width {width}, unroll {unroll}")
    group_rows = m // row_groups
    name = name or f"kiln_cpu_gemm_exe_{shape_key(m, k, n)}"
    entry = entry_name(m, k, n)  # unique: IREE links every CPU executable into one library
    layout = ("#hal.pipeline.layout<bindings = [#hal.pipeline.binding<storage_buffer, ReadOnly>,"
              " #hal.pipeline.binding<storage_buffer, ReadOnly>, "
              "#hal.pipeline.binding<storage_buffer>]>")
    vec = "vector<16xf32>"
    a_type, b_type, c_type = f"memref<{m}x{k}xf32>", f"memref<{panels}x{k}x{width}xf32>", \
        f"memref<{m}x{n}xf32>"
    lines = [f"  hal.executable.source private @{name} {{",
             f"    hal.executable.export public @{entry} ordinal(0) layout({layout}) "
             "count(%device: !hal.device) -> (index, index, index) {",
             f"      %x = arith.constant {panels} : index",
             f"      %y = arith.constant {row_groups} : index",
             "      %one = arith.constant 1 : index",
             "      hal.return %x, %y, %one : index, index, index", "    }",
             "    builtin.module {", f"      func.func @{entry}() {{",
             "        %c0 = arith.constant 0 : index",
             f"        %rows = arith.constant {rows} : index",
             f"        %k = arith.constant {k} : index",
             f"        %unroll = arith.constant {unroll} : index",
             f"        %width = arith.constant {width} : index",
             f"        %zero = arith.constant dense<0.0> : {vec}"]
    lines += [f"        %off{v} = arith.constant {16 * v} : index" for v in range(vectors)]
    for index, (buffer, type_, flags) in enumerate((("A", a_type, " flags(ReadOnly)"),
                                                    ("B", b_type, " flags(ReadOnly)"),
                                                    ("C", c_type, ""))):
        lines.append(f"        %{buffer} = hal.interface.binding.subspan layout({layout}) "
                     f"binding({index}) alignment(64) offset(%c0){flags} : {type_}")
    lines += ["        %p = hal.interface.workgroup.id[0] : index",
              "        %g = hal.interface.workgroup.id[1] : index",
              "        %n0 = arith.muli %p, %width : index",
              f"        %group_rows = arith.constant {group_rows} : index",
              "        %m_begin = arith.muli %g, %group_rows : index",
              "        %m_end = arith.addi %m_begin, %group_rows : index",
              "        scf.for %mt = %m_begin to %m_end step %rows {"]
    lines += [f"          %r{r} = affine.apply affine_map<(d0) -> (d0 + {r})>(%mt)"
              for r in range(rows)]
    accumulators = [(r, v) for r in range(rows) for v in range(vectors)]
    types = ", ".join([vec] * len(accumulators))
    inits = ", ".join(f"%a{r}_{v} = %zero" for r, v in accumulators)
    lines.append(f"          %acc:{len(accumulators)} = scf.for %kk = %c0 to %k step %unroll "
                 f"iter_args({inits}) -> ({types}) {{")
    current = {(r, v): f"%a{r}_{v}" for r, v in accumulators}
    for u in range(unroll):
        lines.append(f"            %k{u} = affine.apply affine_map<(d0) -> (d0 + {u})>(%kk)")
        lines += [f"            %b{u}_{v} = vector.load %B[%p, %k{u}, %off{v}] : {b_type}, "
                  f"{vec}" for v in range(vectors)]
        for r in range(rows):
            lines += [f"            %s{u}_{r} = memref.load %A[%r{r}, %k{u}] : {a_type}",
                      f"            %x{u}_{r} = vector.broadcast %s{u}_{r} : f32 to {vec}"]
            for v in range(vectors):
                lines.append(f"            %f{u}_{r}_{v} = vector.fma %x{u}_{r}, %b{u}_{v}, "
                             f"{current[(r, v)]} : {vec}")
                current[(r, v)] = f"%f{u}_{r}_{v}"
    lines.append("            scf.yield " + ", ".join(current[a] for a in accumulators) +
                 f" : {types}")
    lines.append("          }")
    for index, (r, v) in enumerate(accumulators):
        lines += [f"          %col{r}_{v} = arith.addi %n0, %off{v} : index",
                  f"          vector.store %acc#{index}, %C[%r{r}, %col{r}_{v}] : {c_type}, "
                  f"{vec}"]
    lines += ["        }", "        return", "      }", "    }", "  }"]
    return "\n".join(lines) + "\n"


_DECLARATION = re.compile(
    r"^(?P<indent>[ \t]*)func\.func private @(?P<name>" + GEMM_PREFIX + r"\w+)\([^\n]*\)"
    r"[^\n]*attributes \{[^\n]*" + re.escape(GEMM_ATTR) + r' = "(?P<shape>\d+x\d+x\d+)"'
    r"[^\n]*\}\n", re.M)


def render_cpu_gemm_calls(ir_text: str) -> str:
    """Replace each GEMM declaration by a function of one `flow.dispatch` and add the
    executables after the module's first line."""
    executables: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        name, indent = match.group("name"), match.group("indent")
        m, k, n = map(int, match.group("shape").split("x"))
        exe = f"kiln_cpu_gemm_exe_{shape_key(m, k, n)}"
        executables.setdefault(exe, executable_text(m, k, n, name=exe))
        panels, _, width = packed_weight_shape(k, n)
        a, b, c = (f"tensor<{m}x{k}xf32>", f"tensor<{panels}x{k}x{width}xf32>",
                   f"tensor<{m}x{n}xf32>")
        return (f"{indent}func.func private @{name}(%a: {a}, %b: {b}) -> {c} {{\n"
                f"{indent}  %c = flow.dispatch @{exe}::@{entry_name(m, k, n)}(%a, %b) : ({a}, {b}) -> {c}\n"
                f"{indent}  return %c : {c}\n{indent}}}\n")

    return add_executables(_DECLARATION.sub(replace, ir_text), executables.values())
