"""Kiln's own f32 GEMM for IREE's CPU backend: MLIR text IREE compiles like its own code.

IREE 3.13's data-tiled matmul runs its mmt4d microkernel (16×16×1 tile: a broadcast load per
FMA row); on the 2-core Intel Xeon that is 1.3–1.5× slower than this kernel, which keeps 8 rows ×
2 zmm of accumulators (2 vector loads + 8 broadcasts per 16 FMAs), or 8 × 3 where the columns
fill 48-column panels, with the reduction unrolled ×4, and prefetches the next weight panel
while it computes (bench/cpu_gemm_kernel.py, docs/decisions.md "CPU presets per host kind",
"CPU GEMM: the caller's wait, the 8 × 3 tile, prefetching the next panel").

Products of a few rows (decode: M ≤ GEMV_MAX_ROWS) of a weight stored [out, in] (torch's Linear)
go to a second kernel, a matrix-vector product that reads the weight as it is, row by row
(`gemv_executable_text`): no packed copy of the weight, which matters when the weight is also an
embedding table (GPT-2's tied `lm_head`: IREE's data tiling kept a second, 154 MB copy).

`kiln-select-cpu-kernels` (passes/lowering) replaces the dense product of a qualifying
`kiln.linear` by a call of a private declaration

    func.func private @kiln_cpu_gemm_128x768x2048(tensor<128x768xf32>, tensor<64x768x32xf32>)
        -> tensor<128x2048xf32> attributes {kiln.cpu_gemm = "128x768x2048"}

(with `kiln.cpu_lanes = 8` where the kernel is written for 8-float vectors: AVX2 hosts)

whose second operand is the weight packed in panels [N/W][K][W] of W = 32 or 48 columns
(`gemm_panel`; torch ops on the weight: a constant, so IREE packs it once).
`render_cpu_gemm_calls` turns each declaration into a `flow.dispatch` of one
`hal.executable.source` holding the kernel (one workgroup per panel and row block).

Both kernels can finish each result with the linear's bias and activation before storing it
(`Epilogue`; the declaration's `kiln.cpu_epilogue`, the bias its third operand): IREE cannot
fuse an elementwise op into a dispatch it did not form, so each is otherwise a dispatch of its
own. Measured slower on the prefill cells, so off by default (FOLD_EPILOGUES).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from kiln.cuda_kernels import add_executables
from kiln.dialects.kiln import ACTIVATIONS as LINEAR_ACTIVATIONS

GEMM_ATTR = "kiln.cpu_gemm"
GEMV_ATTR = "kiln.cpu_gemv"
CPU_KERNEL_TAKEN = "kiln CPU GEMM"  # the report's detail of a linear the kernel took
GEMM_PREFIX = "kiln_cpu_gemm_"
GEMV_PREFIX = "kiln_cpu_gemv_"
GEMV_MAX_ROWS = 4  # rows of the matrix-vector kernel: M × gemv_unroll accumulators
GEMV_ROWS_PER_GROUP = 64  # weight rows (outputs) per workgroup
LANES_ATTR = "kiln.cpu_lanes"  # the declaration's vector width, when it is not 16
EPILOGUE_ATTR = "kiln.cpu_epilogue"  # the declaration's epilogue ("bias", "bias,gelu_tanh", ...)
# Activations the kernels apply before storing: kiln.linear's, but SwiGLU (two products).
ACTIVATIONS = tuple(a for a in LINEAR_ACTIVATIONS if a != "swiglu")
# Whether kiln-select-cpu-kernels folds bias and activation into the kernels' stores (its option
# fold_epilogues; else they are torch ops, one IREE dispatch more per linear). None: by the
# host's kind (kiln.targets.HOST_CPU_EPILOGUES: on where measured faster, the Intel Xeon; off on
# the 2-core AMD EPYC Zen 3, where it was slower on the prefill cells); True / False: for every
# compile (benchmarks set it; docs/decisions.md "CPU kernels: bias and activation in the store").
FOLD_EPILOGUES: Optional[bool] = None


@dataclass(frozen=True)
class Epilogue:
    """What a kernel does to each result before it stores it: + bias[column], then an
    activation (ACTIVATIONS). The default does nothing."""

    bias: bool = False
    activation: str = "none"

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r}: the CPU kernels apply "
                             f"{', '.join(ACTIVATIONS)}")

    @property
    def parts(self) -> list[str]:
        return (["bias"] if self.bias else []) + \
            ([self.activation] if self.activation != "none" else [])

    @property
    def suffix(self) -> str:
        """The symbol names' suffix: "", "_bias", "_bias_gelu_tanh", ..."""
        return "".join(f"_{part}" for part in self.parts)

    @property
    def attribute(self) -> str:
        """The declaration's EPILOGUE_ATTR value ("" when there is nothing to do)."""
        return ",".join(self.parts)

    @classmethod
    def parse(cls, text: str) -> "Epilogue":
        parts = [part for part in text.split(",") if part]
        activations = [part for part in parts if part != "bias"]
        if len(activations) > 1:
            raise ValueError(f"epilogue {text!r}: more than one activation")
        return cls("bias" in parts, activations[0] if activations else "none")

    def lines(self, value: str, type_: str, name: str, bias: Optional[str] = None,
              indent: str = "          ") -> tuple[list[str], str]:
        """MLIR computing the epilogue of `value` (of `type_`, f32 or a vector of it; `bias`:
        the value added) into SSA names starting with `name`; returns (lines, result)."""
        lines: list[str] = []

        def op(text: str) -> str:
            result = f"%{name}_{len(lines)}"
            lines.append(f"{indent}{result} = {text}")
            return result

        def const(number: float) -> str:
            literal = repr(float(number))
            return op(f"arith.constant dense<{literal}> : {type_}" if type_.startswith("vector")
                      else f"arith.constant {literal} : {type_}")

        x = op(f"arith.addf {value}, {bias} : {type_}") if self.bias else value
        if self.activation == "relu":
            x = op(f"arith.maximumf {x}, {const(0.0)} : {type_}")
        elif self.activation == "silu":  # x / (1 + exp(-x))
            e = op(f"math.exp {op(f'arith.negf {x} : {type_}')} : {type_}")
            x = op(f"arith.divf {x}, {op(f'arith.addf {e}, {const(1.0)} : {type_}')} : {type_}")
        elif self.activation in ("gelu", "gelu_tanh"):  # x / 2 · (1 + erf(x / √2) or tanh(…))
            if self.activation == "gelu":
                scaled = op(f"arith.mulf {x}, {const(0.7071067811865476)} : {type_}")
                inner = op(f"math.erf {scaled} : {type_}")
            else:  # tanh(√(2/π) · (x + 0.044715 x³)), torch's approximate="tanh"
                cube = op(f"arith.mulf {op(f'arith.mulf {x}, {x} : {type_}')}, {x} : {type_}")
                poly = op(f"math.fma {cube}, {const(0.044715)}, {x} : {type_}")
                scaled = op(f"arith.mulf {poly}, {const(0.7978845608028654)} : {type_}")
                inner = op(f"math.tanh {scaled} : {type_}")
            half = op(f"arith.mulf {x}, {const(0.5)} : {type_}")
            x = op(f"math.fma {half}, {inner}, {half} : {type_}")
        return lines, x


@dataclass(frozen=True)
class RegisterTiles:
    """The register tiles of Kiln's CPU kernels for one vector width, measured on the hosts of
    that width (bench/cpu_gemm_kernel.py, bench/cpu_gemm_ab.py)."""

    lanes: int  # f32 per vector register: 16 (AVX-512 zmm), 8 (AVX2 ymm)
    rows: int  # GEMM: rows of A per register tile
    vectors: int  # GEMM: accumulator vectors per row
    # The wider tile, for products whose columns fill panels of lanes · wide_vectors
    wide_vectors: int
    unroll: int  # GEMM: reduction steps per loop iteration
    gemv_unroll: int  # matrix-vector kernel: vectors of the reduction per step (FMA chains)


# f32 vectors of 16 (AVX-512, the 2-core Intel Xeon): 8 rows × 2 zmm (16 accumulators; 2 vector
# loads + 8 broadcasts per 16 FMAs); 8 × 3 (24 accumulators; 3 loads + 8 broadcasts per 24 FMAs)
# where the columns fill 48-column panels: about 1.1x faster than 8 × 2 on GPT-2's and BERT's
# prefill GEMMs (docs/decisions.md "CPU GEMM: the caller's wait, the 8 × 3 tile, prefetching the
# next panel", for this and the next two constants).
# f32 vectors of 8 (AVX2: 16 ymm registers, the 2-core AMD EPYC Zen 3): docs/decisions.md
# "CPU kernels on AVX2 hosts".
REGISTER_TILES = {16: RegisterTiles(16, rows=8, vectors=2, wide_vectors=3, unroll=4,
                                    gemv_unroll=4),
                  8: RegisterTiles(8, rows=4, vectors=2, wide_vectors=3, unroll=4,
                                   gemv_unroll=4)}
# Panels ahead each GEMM workgroup prefetches into L2 while it computes (its own panel is in L2
# after the first row tile; the next one comes from memory): a model's weights are not in the
# caches when its GEMM runs: gpt2-prefill 98 -> 85 ms per call; 2 panels ahead: 91 ms.
PREFETCH_PANELS = 1
CACHE_LINE_FLOATS = 16  # f32 per 64-byte cache line (the prefetch's unit)
# Smaller products stay with IREE: few panels to share between workers, little to gain
# (a guess at 4M multiply-adds, the GEMMs measured were 50-200M; the sweep is to come).
MIN_MACS = 1 << 22
# Workgroups a GEMM aims for (row blocks are added to GEMMs of few panels): 2-core Intel Xeon,
# 128x768x768 (16 panels of 48 columns) ran faster in 2 row blocks than in 1 or 4, 128x768x2304
# (48 panels) in 1 (bench/cpu_gemm_kernel.py).
MIN_WORKGROUPS = 32
# Decode-row products (M < rows: the matrix-vector kernel, or the GEMM with an M-row tile) of
# fewer weights stay with IREE, which fuses their bias and activation: the decode products
# measured (GPT-2 small: 768x768 and up) are all above (docs/decisions.md, "CPU kernels for
# decode rows"); the bound is the CUDA kernels' selection threshold, not a CPU sweep.
MIN_GEMV_WEIGHTS = 1 << 18


def register_tiles(lanes: int) -> RegisterTiles:
    if lanes not in REGISTER_TILES:
        raise ValueError(f"Kiln's CPU kernels have no register tiles for {lanes}-float vectors "
                         f"(known: {sorted(REGISTER_TILES)})")
    return REGISTER_TILES[lanes]


def gemm_rows(m: int, lanes: int = 16) -> int:
    """Rows of the GEMM's register tile for an M-row product: the tile's, or M itself below."""
    rows = register_tiles(lanes).rows
    return m if m < rows else rows


def gemm_vectors(m: int, n: int, lanes: int = 16) -> int:
    """Accumulator vectors per row of the GEMM's register tile for an [m, k] × [k, n] product:
    the wide tile's where the columns fill its panels (no padding), else the narrow one's;
    decode rows (fewer than the tile's rows: weight-bound) keep the narrow one, as measured."""
    tiles = register_tiles(lanes)
    wide = m >= tiles.rows and n % (lanes * tiles.wide_vectors) == 0
    return tiles.wide_vectors if wide else tiles.vectors


def gemm_panel(m: int, n: int, lanes: int = 16) -> int:
    """Columns per packed weight panel (and per workgroup) of an [m, k] × [k, n] product."""
    return lanes * gemm_vectors(m, n, lanes)


def gemm_row_groups(m: int, n: int, min_workgroups: Optional[int] = None,
                    vectors: Optional[int] = None, lanes: int = 16) -> int:
    """Row blocks per panel: the fewest (a power of two that tiles m) giving at least
    `min_workgroups` (default MIN_WORKGROUPS) workgroups, so that IREE's workers share a GEMM
    of few panels evenly (docs/decisions.md, "CPU GEMM: workgroups per product")."""
    target = MIN_WORKGROUPS if min_workgroups is None else min_workgroups
    vectors = vectors or register_tiles(lanes).vectors
    rows, panels, groups = gemm_rows(m, lanes), -(-n // (lanes * vectors)), 1
    while panels * groups < target and m % (rows * groups * 2) == 0:
        groups *= 2
    return groups


def gemm_problem(m: int, k: int, n: int, min_macs: int = MIN_MACS,
                 min_weights: int = MIN_GEMV_WEIGHTS, lanes: int = 16) -> Optional[str]:
    """Why the kernel does not take an [m, k] × [k, n] f32 product, or None (any n: the pass
    pads the weight to whole panels)."""
    tiles = register_tiles(lanes)
    if m % gemm_rows(m, lanes):
        return f"{m} rows are not a multiple of {tiles.rows}"
    if k % tiles.unroll:
        return f"reduction of {k} is not a multiple of {tiles.unroll}"
    if m >= tiles.rows and m * k * n < min_macs:
        return f"{m}x{k}x{n} is below {min_macs} multiply-adds"
    if m < tiles.rows and k * n < min_weights:  # decode rows: weight-bound
        return f"{k}x{n} weights are below {min_weights}"
    return None


def gemv_problem(m: int, k: int, n: int, min_weights: int = MIN_GEMV_WEIGHTS,
                 lanes: int = 16) -> Optional[str]:
    """Why the matrix-vector kernel does not take an [m, k] × [n, k]ᵀ f32 product, or None."""
    step = lanes * register_tiles(lanes).gemv_unroll
    if m > GEMV_MAX_ROWS:
        return f"{m} rows are more than {GEMV_MAX_ROWS}"
    if k % step:
        return f"reduction of {k} is not a multiple of {step}"
    if k * n < min_weights:
        return f"{k}x{n} weights are below {min_weights}"
    return None


def shape_key(m: int, k: int, n: int) -> str:
    return f"{m}x{k}x{n}"


def entry_name(m: int, k: int, n: int, prefix: str = GEMM_PREFIX,
               epilogue: Epilogue = Epilogue()) -> str:
    return f"{prefix}{shape_key(m, k, n)}{epilogue.suffix}_dispatch"


def _layout(reads: int) -> str:
    """The pipeline layout of `reads` read-only bindings and one written."""
    read = "#hal.pipeline.binding<storage_buffer, ReadOnly>, "
    return ("#hal.pipeline.layout<bindings = [" + read * reads +
            "#hal.pipeline.binding<storage_buffer>]>")


def _header(name: str, entry: str, groups: tuple[int, int], reads: int = 2) -> list[str]:
    """An executable's opening lines up to its function's body: one export of `groups`
    workgroups (x, y) over `reads` read bindings (A, B[, bias]) and one written (C)."""
    return [f"  hal.executable.source private @{name} {{",
            f"    hal.executable.export public @{entry} ordinal(0) layout({_layout(reads)}) "
            "count(%device: !hal.device) -> (index, index, index) {",
            f"      %x = arith.constant {groups[0]} : index",
            f"      %y = arith.constant {groups[1]} : index",
            "      %one = arith.constant 1 : index",
            "      hal.return %x, %y, %one : index, index, index", "    }",
            "    builtin.module {", f"      func.func @{entry}() {{",
            "        %c0 = arith.constant 0 : index"]


def _index_constants(**values: int) -> list[str]:
    return [f"        %{name} = arith.constant {value} : index" for name, value in values.items()]


def _bindings(types: tuple[str, ...]) -> list[str]:
    """Subspans of the bindings: A, B[, BIAS] read, C written (the last of `types`)."""
    names = ["A", "B", "BIAS"][:len(types) - 1] + ["C"]
    layout = _layout(len(types) - 1)
    return [f"        %{buffer} = hal.interface.binding.subspan layout({layout}) "
            f"binding({index}) alignment(64) offset(%c0)"
            f"{'' if buffer == 'C' else ' flags(ReadOnly)'} : {type_}"
            for index, (buffer, type_) in enumerate(zip(names, types))]


def gemv_executable_text(m: int, k: int, n: int, name: Optional[str] = None,
                         rows_per_group: int = GEMV_ROWS_PER_GROUP,
                         unroll: Optional[int] = None, lanes: int = 16,
                         epilogue: Epilogue = Epilogue()) -> str:
    """The `hal.executable.source` computing C[m, n] = A[m, k] · W[n, k]ᵀ with W as torch
    stores a Linear's weight: each workgroup takes `rows_per_group` rows of W (the last one
    fewer) and reduces each row against the m rows of A with m × `unroll` vector accumulators
    (default: the register tiles' for `lanes`); each result goes through `epilogue` (bias[n]
    from a third binding)."""
    unroll = unroll or register_tiles(lanes).gemv_unroll
    if m > GEMV_MAX_ROWS or k % (lanes * unroll):
        raise ValueError(f"{m}x{k}x{n}: at most {GEMV_MAX_ROWS} rows and a reduction that is "
                         f"a multiple of {lanes * unroll}")
    groups = -(-n // rows_per_group)
    name = name or f"kiln_cpu_gemv_exe_{shape_key(m, k, n)}{epilogue.suffix}"
    entry = entry_name(m, k, n, GEMV_PREFIX, epilogue)
    vec = f"vector<{lanes}xf32>"
    a_type, w_type, c_type = f"memref<{m}x{k}xf32>", f"memref<{n}x{k}xf32>", \
        f"memref<{m}x{n}xf32>"
    bias_types = (f"memref<{n}xf32>",) if epilogue.bias else ()
    lines = _header(name, entry, (groups, 1), reads=2 + len(bias_types))
    lines += _index_constants(c1=1, k=k, n=n, per_group=rows_per_group, step=lanes * unroll,
                              **{f"m{i}": i for i in range(m)})
    lines.append(f"        %zero = arith.constant dense<0.0> : {vec}")
    lines += _bindings((a_type, w_type, *bias_types, c_type))
    lines += ["        %g = hal.interface.workgroup.id[0] : index",
              "        %r_begin = arith.muli %g, %per_group : index",
              "        %r_full = arith.addi %r_begin, %per_group : index",
              "        %r_end = arith.minsi %r_full, %n : index",
              "        scf.for %r = %r_begin to %r_end step %c1 {"]
    accumulators = [(i, u) for i in range(m) for u in range(unroll)]
    types = ", ".join([vec] * len(accumulators))
    inits = ", ".join(f"%a{i}_{u} = %zero" for i, u in accumulators)
    lines.append(f"          %acc:{len(accumulators)} = scf.for %kk = %c0 to %k step %step "
                 f"iter_args({inits}) -> ({types}) {{")
    for u in range(unroll):
        lines += [f"            %k{u} = affine.apply affine_map<(d0) -> (d0 + {lanes * u})>(%kk)",
                  f"            %w{u} = vector.load %B[%r, %k{u}] : {w_type}, {vec}"]
        for i in range(m):
            lines += [f"            %x{i}_{u} = vector.load %A[%m{i}, %k{u}] : {a_type}, {vec}",
                      f"            %f{i}_{u} = vector.fma %x{i}_{u}, %w{u}, %a{i}_{u} : {vec}"]
    lines.append("            scf.yield " + ", ".join(f"%f{i}_{u}" for i, u in accumulators) +
                 f" : {types}")
    lines.append("          }")
    if epilogue.bias:
        lines.append(f"          %bias = memref.load %BIAS[%r] : {bias_types[0]}")
    for i in range(m):
        total = f"%acc#{i * unroll}"
        for u in range(1, unroll):
            lines.append(f"          %t{i}_{u} = arith.addf {total}, %acc#{i * unroll + u} : "
                         f"{vec}")
            total = f"%t{i}_{u}"
        lines.append(f"          %s{i} = vector.reduction <add>, {total} : {vec} into f32")
        after, result = epilogue.lines(f"%s{i}", "f32", f"e{i}", "%bias")
        lines += after + [f"          memref.store {result}, %C[%m{i}, %r] : {c_type}"]
    lines += ["        }", "        return", "      }", "    }", "  }"]
    return "\n".join(lines) + "\n"


def partial_sums(accumulators: list[tuple[int, int]], vec: str, c_type: str) -> list[str]:
    """`%init:N`, the register tile's starting values: zeros where `%first`, else the partial
    sums in C (`%C[%r<row>, %col<row>_<vector>]`), for kernels that loop over a reduction in
    parts outside their row tiles."""
    types = ", ".join([vec] * len(accumulators))
    return ([f"          %init:{len(accumulators)} = scf.if %first -> ({types}) {{",
             "            scf.yield " + ", ".join(["%zero"] * len(accumulators)) + f" : {types}",
             "          } else {"] +
            [f"            %c{r}_{v} = vector.load %C[%r{r}, %col{r}_{v}] : {c_type}, {vec}"
             for r, v in accumulators] +
            ["            scf.yield " + ", ".join(f"%c{r}_{v}" for r, v in accumulators) +
             f" : {types}", "          }"])


def packed_weight_shape(k: int, n: int, width: int) -> tuple[int, int, int]:
    """[panels, k, width]: the weight's columns in panels of `width` (n a multiple of it)."""
    return (n // width, k, width)


def executable_text(m: int, k: int, n: int, rows: Optional[int] = None,
                    vectors: Optional[int] = None,
                    unroll: Optional[int] = None, name: Optional[str] = None,
                    row_groups: Optional[int] = None, k_block: Optional[int] = None,
                    prefetch_panels: Optional[int] = None, lanes: int = 16,
                    epilogue: Epilogue = Epilogue()) -> str:
    """The `hal.executable.source` computing C[m, n] = A[m, k] · B with B packed in panels of
    `lanes`·`vectors` columns (`lanes` f32 per vector: 16 for AVX-512, 8 for AVX2), `rows` ×
    `vectors` accumulator registers, unrolled `unroll` times;
    workgroups: one per panel and `row_groups` row blocks (default gemm_row_groups). `rows`
    defaults to gemm_rows(m), `vectors` to gemm_vectors(m, n), `unroll` to the register
    tiles' for `lanes`.
    `k_block` (a divisor of k): the reduction in blocks, outermost, so that a block of the
    workgroup's panel stays in L1 across its row tiles (C is read back between blocks).
    `prefetch_panels` (d > 0; default PREFETCH_PANELS where a workgroup has several row tiles,
    else 0): while it computes, each workgroup prefetches (into L2) the panel d further on, a
    few cache lines per step of the reduction loop, so that the weights a later workgroup reads
    from memory arrive while this one computes from its own L2.
    Each result goes through `epilogue` before it is stored (bias[n] from a third binding)."""
    rows = rows or gemm_rows(m, lanes)
    vectors = vectors or gemm_vectors(m, n, lanes)
    unroll = unroll or register_tiles(lanes).unroll
    row_groups = row_groups or gemm_row_groups(m, n, vectors=vectors, lanes=lanes)
    blocked = k_block is not None and k_block < k
    if blocked and epilogue.parts:
        raise ValueError("an epilogue and k_block do not combine (C holds partial sums)")
    if blocked and (k % k_block or k_block % unroll):
        raise ValueError(f"k block {k_block} must divide {k} and be a multiple of {unroll}")
    width = lanes * vectors
    panels = n // width
    if m % rows or n % width or k % unroll or m % (rows * row_groups):
        raise ValueError(f"{m}x{k}x{n} does not tile by rows {rows} x {row_groups} groups, "
                         f"width {width}, unroll {unroll}")
    group_rows = m // row_groups
    if prefetch_panels is None:  # one row tile (decode rows): nothing to overlap with
        prefetch_panels = PREFETCH_PANELS if group_rows >= 2 * rows and not blocked else 0
    name = name or f"kiln_cpu_gemm_exe_{shape_key(m, k, n)}{epilogue.suffix}"
    # unique: IREE links every CPU executable into one library
    entry = entry_name(m, k, n, GEMM_PREFIX, epilogue)
    vec = f"vector<{lanes}xf32>"
    a_type, b_type, c_type = f"memref<{m}x{k}xf32>", f"memref<{panels}x{k}x{width}xf32>", \
        f"memref<{m}x{n}xf32>"
    bias_types = (f"memref<{n}xf32>",) if epilogue.bias else ()
    lines = _header(name, entry, (panels, row_groups), reads=2 + len(bias_types))
    lines += _index_constants(rows=rows, k=k, unroll=unroll, width=width,
                              **{f"off{v}": lanes * v for v in range(vectors)})
    lines.append(f"        %zero = arith.constant dense<0.0> : {vec}")
    lines += _bindings((a_type, b_type, *bias_types, c_type))
    lines += ["        %p = hal.interface.workgroup.id[0] : index",
              "        %g = hal.interface.workgroup.id[1] : index",
              "        %n0 = arith.muli %p, %width : index"]
    if epilogue.bias:  # the panel's bias, loaded once
        lines += [line for v in range(vectors) for line in (
            f"        %bias_col{v} = arith.addi %n0, %off{v} : index",
            f"        %bias{v} = vector.load %BIAS[%bias_col{v}] : {bias_types[0]}, {vec}")]
    lines += [f"        %group_rows = arith.constant {group_rows} : index",
              "        %m_begin = arith.muli %g, %group_rows : index",
              "        %m_end = arith.addi %m_begin, %group_rows : index",
              "        scf.for %mt = %m_begin to %m_end step %rows {"]
    if blocked:  # the block loop outside the row tiles: re-indent the row-tile loop under it
        lines[-1:] = [f"        %k_block = arith.constant {k_block} : index",
                      "        scf.for %kb = %c0 to %k step %k_block {",
                      "        %first = arith.cmpi eq, %kb, %c0 : index",
                      "        %kb_end = arith.addi %kb, %k_block : index",
                      "        scf.for %mt = %m_begin to %m_end step %rows {"]
    lines += [f"          %r{r} = affine.apply affine_map<(d0) -> (d0 + {r})>(%mt)"
              for r in range(rows)]
    accumulators = [(r, v) for r in range(rows) for v in range(vectors)]
    types = ", ".join([vec] * len(accumulators))
    lines += [f"          %col{r}_{v} = arith.addi %n0, %off{v} : index"
              for r, v in accumulators]
    if blocked:  # later blocks start from C's partial sums
        lines += partial_sums(accumulators, vec, c_type)
        inits = ", ".join(f"%a{r}_{v} = %init#{i}" for i, (r, v) in enumerate(accumulators))
        bounds = "%kb to %kb_end"
    else:
        inits = ", ".join(f"%a{r}_{v} = %zero" for r, v in accumulators)
        bounds = "%c0 to %k"
    if prefetch_panels:  # the panel ahead, spread over this workgroup's row tiles
        if blocked:
            raise ValueError("prefetch_panels and k_block do not combine")
        tiles = group_rows // rows
        line = CACHE_LINE_FLOATS
        per_step = -(-width * unroll // (line * tiles))  # lines prefetched per reduction step
        lines += [f"          %pf_panel = affine.min affine_map<(d0) -> (d0 + {prefetch_panels},"
                  f" {panels - 1})>(%p)",
                  f"          %pf_start = affine.apply affine_map<(d0, d1) -> "
                  f"((d0 - d1) floordiv {rows} * {line * per_step * k // unroll})>(%mt, %m_begin)"]
    lines.append(f"          %acc:{len(accumulators)} = scf.for %kk = {bounds} step %unroll "
                 f"iter_args({inits}) -> ({types}) {{")
    if prefetch_panels:  # `per_step` cache lines, clamped to the panel's last line
        for j in range(per_step):
            lines += [f"            %pf_e{j} = affine.min affine_map<(d0, d1) -> "
                      f"(d0 + d1 floordiv {unroll} * {line * per_step} + {line * j}, "
                      f"{k * width - line})>(%pf_start, %kk)",
                      f"            %pf_r{j} = affine.apply affine_map<(d0) -> "
                      f"(d0 floordiv {width})>(%pf_e{j})",
                      f"            %pf_c{j} = affine.apply affine_map<(d0) -> (d0 mod {width})>"
                      f"(%pf_e{j})",
                      f"            memref.prefetch %B[%pf_panel, %pf_r{j}, %pf_c{j}], read, "
                      f"locality<2>, data : {b_type}"]
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
        after, result = epilogue.lines(f"%acc#{index}", vec, f"e{r}_{v}", f"%bias{v}")
        lines += after + [f"          vector.store {result}, %C[%r{r}, %col{r}_{v}] : {c_type}, "
                          f"{vec}"]
    lines += ["        }"] + (["        }"] if blocked else []) + \
        ["        return", "      }", "    }", "  }"]
    return "\n".join(lines) + "\n"


def declaration_pattern(prefix: str, attribute: str) -> re.Pattern:
    """A kernel's private declaration as kiln-select-cpu-kernels writes it, one line:
    `func.func private @<prefix>…(…) -> … attributes {… <attribute> = "<key>" …}`; groups
    indent, name and key."""
    return re.compile(r"^(?P<indent>[ \t]*)func\.func private @(?P<name>" + prefix +
                      r"\w+)\([^\n]*\)[^\n]*attributes \{[^\n]*" + re.escape(attribute) +
                      r' = "(?P<key>[^"]+)"[^\n]*\}\n', re.M)


def render_declared_kernels(ir_text: str, pattern: re.Pattern, kernel) -> str:
    """Replace each declaration `pattern` (declaration_pattern) matches by a function of one
    `flow.dispatch` and add the executables after the module's first line. `kernel(key)` gives
    (executable name, a function returning its text, entry, input tensor types, result type)."""
    executables: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        exe, text, entry, inputs, out = kernel(match.group("key"))
        if exe not in executables:
            executables[exe] = text()
        indent = match.group("indent")
        params = ", ".join(f"%a{i}: {t}" for i, t in enumerate(inputs))
        args = ", ".join(f"%a{i}" for i in range(len(inputs)))
        return (f"{indent}func.func private @{match.group('name')}({params}) -> {out} {{\n"
                f"{indent}  %o = flow.dispatch @{exe}::@{entry}({args}) : "
                f"({', '.join(inputs)}) -> {out}\n"
                f"{indent}  return %o : {out}\n{indent}}}\n")

    return add_executables(pattern.sub(replace, ir_text), executables.values())


_DECLARATION = re.compile(
    r"^(?P<indent>[ \t]*)func\.func private @(?P<name>(?:" + GEMM_PREFIX + "|" + GEMV_PREFIX +
    r")\w+)\((?P<args>[^\n]*)\)[^\n]*attributes \{[^\n]*(?P<attr>" + re.escape(GEMM_ATTR) + "|" +
    re.escape(GEMV_ATTR) + r')' + r' = "(?P<shape>\d+x\d+x\d+)"[^\n]*\}\n', re.M)

_PACKED = re.compile(r"tensor<\d+x\d+x(\d+)xf32>")
_LANES = re.compile(re.escape(LANES_ATTR) + r" = (\d+)")
_EPILOGUE = re.compile(re.escape(EPILOGUE_ATTR) + r' = "([\w,]*)"')


def render_cpu_gemm_calls(ir_text: str) -> str:
    """Replace each GEMM and GEMV declaration by a function of one `flow.dispatch` and add
    the executables after the module's first line."""
    executables: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        name, indent = match.group("name"), match.group("indent")
        m, k, n = map(int, match.group("shape").split("x"))
        lanes_attr = _LANES.search(match.group(0))
        lanes = int(lanes_attr.group(1)) if lanes_attr else 16
        epilogue_attr = _EPILOGUE.search(match.group(0))
        epilogue = Epilogue.parse(epilogue_attr.group(1) if epilogue_attr else "")
        if match.group("attr") == GEMV_ATTR:
            exe = f"kiln_cpu_gemv_exe_{shape_key(m, k, n)}{epilogue.suffix}"
            entry = entry_name(m, k, n, GEMV_PREFIX, epilogue)
            executables.setdefault(exe, gemv_executable_text(m, k, n, name=exe, lanes=lanes,
                                                             epilogue=epilogue))
            b = f"tensor<{n}x{k}xf32>"
        else:  # the panel width is the declared packed weight's: [panels, k, width]
            packed = _PACKED.search(match.group("args"))
            if packed is None:
                raise ValueError(f"@{name}: no packed weight tensor<PxKxWxf32> in its "
                                 f"declaration ({match.group('args')})")
            width = int(packed.group(1))
            exe = f"kiln_cpu_gemm_exe_{shape_key(m, k, n)}{epilogue.suffix}"
            entry = entry_name(m, k, n, GEMM_PREFIX, epilogue)
            executables.setdefault(exe, executable_text(m, k, n, vectors=width // lanes,
                                                        name=exe, lanes=lanes,
                                                        epilogue=epilogue))
            b = packed.group(0)
        a, c = f"tensor<{m}x{k}xf32>", f"tensor<{m}x{n}xf32>"
        operands = [("%a", a), ("%b", b)] + ([("%bias", f"tensor<{n}xf32>")]
                                             if epilogue.bias else [])
        arguments = ", ".join(f"{value}: {type_}" for value, type_ in operands)
        values = ", ".join(value for value, _ in operands)
        types = ", ".join(type_ for _, type_ in operands)
        return (f"{indent}func.func private @{name}({arguments}) -> {c} {{\n"
                f"{indent}  %c = flow.dispatch @{exe}::@{entry}({values}) : ({types}) -> {c}\n"
                f"{indent}  return %c : {c}\n{indent}}}\n")

    return add_executables(_DECLARATION.sub(replace, ir_text), executables.values())
