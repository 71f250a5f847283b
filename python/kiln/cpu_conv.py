"""Kiln's f32 convolution for IREE's CPU backend: an implicit GEMM over the padded NHWC input.

IREE 3.13 runs a CPU convolution either directly (channels-last: 2 GFLOP/s on ResNet's
512-channel layers on the 2-core AMD EPYC Zen 3) or as im2col + data-tiled matmul, where the
im2col gather alone took 12.5 of ResNet-18's 52 ms per call there (docs/decisions.md "CPU:
convolutions through im2col on AVX2 hosts"). This kernel computes the convolution as the GEMM
im2col would feed, without the gathered copy: the product's row for an output pixel is read
straight from the input, because in NHWC the receptive field's row `kh` — KW pixels × C
channels — is one contiguous run of KW·C floats (stride or not).

    out[pixel, f] = Σ_kh Σ_j  X[base(pixel) + kh·Wp·C + j] · Wt[kh·KW·C + j, f]

with X the input padded (spatially by the convolution's padding, channels to a multiple that
makes KW·C divide by the reduction's unroll) and flattened, base(pixel) the offset of the
pixel's receptive field, and Wt the weight [KH, KW, C, F] packed in panels [F/W][KH·KW·C][W]
as kiln.cpu_kernels packs a linear's. The register tile is `rows` output pixels × `vectors`
vectors of output channels (ConvTile); a tile's pixels are consecutive rows of the product,
wherever they fall in the image, each with its own base. The rows are padded to whole tiles
(the last pixels' bases repeat the last pixel's; their rows are sliced off by the caller).

`kiln-select-cpu-kernels` (option `convolutions`) replaces an f32 `torch.aten.convolution`
(2-D, groups 1, dilation 1, static shapes) by a call of a private declaration

    func.func private @kiln_cpu_conv_<key>(tensor<XLENxf32>, tensor<PxKxWxf32>)
        -> tensor<MPADxFPADxf32> attributes {kiln.cpu_conv = "<key>"}

(ConvSpec.key) and `render_cpu_conv_calls` turns it into a `flow.dispatch` of the kernel
(one workgroup per panel and row block).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from kiln.cpu_kernels import (_bindings, _header, _index_constants, declaration_pattern,
                              partial_sums, render_declared_kernels)

CONV_ATTR = "kiln.cpu_conv"
CONV_PREFIX = "kiln_cpu_conv_"
CPU_CONV_TAKEN = "kiln CPU convolution"  # the report's detail of a convolution the kernel took


@dataclass(frozen=True)
class ConvTile:
    """The convolution kernel's register tile for one vector width."""

    lanes: int  # f32 per vector register: 16 (AVX-512 zmm), 8 (AVX2 ymm)
    rows: int  # output pixels per register tile
    vectors: int  # accumulator vectors (of output channels) per pixel
    unroll: int  # reduction steps per loop iteration


# AVX2 (16 ymm): 6 pixels × 2 vectors = 12 accumulators, 2 weight loads and 6 broadcasts per
# 12 FMAs (the 6 × 16 shape of BLIS's Haswell sgemm kernel). AVX-512 (32 zmm): 8 × 2, as Kiln's
# GEMM. Swept with bench/cpu_conv_kernel.py (docs/decisions.md "CPU: Kiln's convolution kernel").
CONV_TILES = {16: ConvTile(16, rows=8, vectors=2, unroll=4),
              8: ConvTile(8, rows=6, vectors=2, unroll=4)}
# Workgroups a convolution aims for (row blocks per panel added until reached), as the GEMM's
# MIN_WORKGROUPS: enough for IREE's workers to share evenly.
MIN_WORKGROUPS = 32
# Smaller convolutions stay with IREE (as kiln.cpu_kernels.MIN_MACS for linears).
MIN_MACS = 1 << 22
# Weight panels above this size are walked one kernel row at a time across all row tiles
# (conv_kh_outer): on the 2-core Zen 3 (512 KiB L2 per core), ResNet's 512×7×7 3×3 convolution
# (a 288 KiB panel) 1.83 -> 1.48 ms; panels of 144 KiB and less ran the same either way
# (bench/cpu_conv_kernel.py --tiles kiln,kilnh).
KH_OUTER_PANEL_BYTES = 256 << 10


def conv_tile(lanes: int) -> ConvTile:
    if lanes not in CONV_TILES:
        raise ValueError(f"Kiln's CPU convolution has no register tile for {lanes}-float "
                         f"vectors (known: {sorted(CONV_TILES)})")
    return CONV_TILES[lanes]


def padded_channels(channels: int, kernel_w: int, unroll: int) -> int:
    """Input channels padded (with zeros) so that a receptive-field row, KW·C floats, is a
    whole number of reduction steps."""
    c = channels
    while (kernel_w * c) % unroll:
        c += 1
    return c


@dataclass(frozen=True)
class ConvSpec:
    """One convolution as the kernel sees it: the input already padded (height, width: padded;
    channels: padded_channels), the output channels padded to whole panels."""

    batch: int
    channels: int
    height: int
    width: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    out_h: int
    out_w: int
    features: int
    lanes: int = 16
    rows: int = 0  # register tile (0: conv_tile(lanes)'s)
    vectors: int = 0
    row_groups: int = 0  # row blocks per panel (0: conv_row_groups)
    # the loop over kernel rows outside the row tiles (executable_text); None: conv_kh_outer
    kh_outer: Optional[bool] = None

    def __post_init__(self):
        tile = conv_tile(self.lanes)
        object.__setattr__(self, "rows", self.rows or tile.rows)
        object.__setattr__(self, "vectors", self.vectors or tile.vectors)
        if self.features % self.panel or (self.kernel_w * self.channels) % tile.unroll:
            raise ValueError(f"convolution {self.key()}: {self.features} output channels are "
                             f"not whole panels of {self.panel}, or a receptive-field row of "
                             f"{self.kernel_w * self.channels} floats is not a multiple of "
                             f"{tile.unroll}")
        if (self.height - self.kernel_h) // self.stride_h + 1 != self.out_h or \
                (self.width - self.kernel_w) // self.stride_w + 1 != self.out_w:
            raise ValueError(f"convolution {self.key()}: output {self.out_h}x{self.out_w} does "
                             f"not follow from the padded input {self.height}x{self.width}")
        if not self.row_groups:
            object.__setattr__(self, "row_groups", conv_row_groups(self))
        if self.kh_outer is None:
            object.__setattr__(self, "kh_outer", conv_kh_outer(self))

    @classmethod
    def of(cls, input_shape: tuple[int, int, int, int], weight_shape: tuple[int, int, int, int],
           stride: tuple[int, int], padding: tuple[int, int], lanes: int = 16, rows: int = 0,
           vectors: int = 0, row_groups: int = 0,
           kh_outer: Optional[bool] = None) -> "ConvSpec":
        """The spec of a convolution as torch states it: input [N, C, H, W], weight
        [F, C, KH, KW], stride and padding per spatial dim; the input padded (spatially, and in
        channels by padded_channels), the output channels to whole panels."""
        n, c, h, w = input_shape
        f, _, kh, kw = weight_shape
        tile = conv_tile(lanes)
        panel = lanes * (vectors or tile.vectors)
        height, width = h + 2 * padding[0], w + 2 * padding[1]
        return cls(n, padded_channels(c, kw, tile.unroll), height, width, kh, kw, stride[0],
                   stride[1], (height - kh) // stride[0] + 1, (width - kw) // stride[1] + 1,
                   -(-f // panel) * panel, lanes, rows, vectors, row_groups, kh_outer)

    @property
    def panel(self) -> int:
        return self.lanes * self.vectors

    @property
    def panels(self) -> int:
        return self.features // self.panel

    @property
    def pixels(self) -> int:
        """Rows of the product: output pixels of the whole batch."""
        return self.batch * self.out_h * self.out_w

    @property
    def padded_pixels(self) -> int:
        return -(-self.pixels // self.rows) * self.rows

    @property
    def reduction(self) -> int:
        return self.kernel_h * self.kernel_w * self.channels

    @property
    def input_length(self) -> int:
        return self.batch * self.height * self.width * self.channels

    @property
    def macs(self) -> int:
        return self.pixels * self.reduction * self.features

    def key(self) -> str:
        return (f"{self.batch}x{self.channels}x{self.height}x{self.width}_k{self.kernel_h}x"
                f"{self.kernel_w}_s{self.stride_h}x{self.stride_w}_o{self.out_h}x{self.out_w}_f"
                f"{self.features}_t{self.rows}x{self.vectors}x{self.row_groups}"
                f"{'h' if self.kh_outer else ''}_l{self.lanes}")

    _KEY = re.compile(r"(\d+)x(\d+)x(\d+)x(\d+)_k(\d+)x(\d+)_s(\d+)x(\d+)_o(\d+)x(\d+)_f(\d+)"
                      r"_t(\d+)x(\d+)x(\d+)(h?)_l(\d+)")

    @classmethod
    def parse(cls, key: str) -> "ConvSpec":
        match = cls._KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"not a convolution key: {key!r}")
        *numbers, kh_outer, lanes = match.groups()
        (batch, channels, height, width, kh, kw, sh, sw, oh, ow, features, rows, vectors,
         groups) = map(int, numbers)
        return cls(batch, channels, height, width, kh, kw, sh, sw, oh, ow, features, int(lanes),
                   rows, vectors, groups, kh_outer == "h")

    def name(self) -> str:
        return CONV_PREFIX + self.key()

    def entry(self) -> str:
        return self.name() + "_dispatch"

    def packed_weight_shape(self) -> tuple[int, int, int]:
        return (self.panels, self.reduction, self.panel)


def conv_row_groups(spec: ConvSpec, min_workgroups: int = MIN_WORKGROUPS) -> int:
    """Row blocks per panel: the fewest (a power of two, at most the row tiles) giving at least
    `min_workgroups` workgroups."""
    tiles, groups = spec.padded_pixels // spec.rows, 1
    while spec.panels * groups < min_workgroups and groups * 2 <= tiles:
        groups *= 2
    return groups


def conv_kh_outer(spec: ConvSpec) -> bool:
    """Whether the kernel rows loop outside the row tiles: where a workgroup's whole panel of
    weights is larger than KH_OUTER_PANEL_BYTES."""
    return spec.reduction * spec.panel * 4 > KH_OUTER_PANEL_BYTES


def executable_text(spec: ConvSpec, name: Optional[str] = None) -> str:
    """The `hal.executable.source` of one convolution (see the module docstring): workgroup
    (panel p, row block g) computes its panel's columns for the row block's pixels. With
    `spec.kh_outer` the loop over kernel rows is outside the row tiles, so that one kernel row
    of the panel's weights (KW·C·W floats) is reused by every tile while it is in the caches;
    C holds the partial sums between kernel rows."""
    kh_outer = spec.kh_outer
    tile = conv_tile(spec.lanes)
    rows, vectors, unroll, lanes = spec.rows, spec.vectors, tile.unroll, spec.lanes
    name = name or spec.name() + "_exe"
    vec = f"vector<{lanes}xf32>"
    x_type = f"memref<{spec.input_length}xf32>"
    b_type = f"memref<{spec.panels}x{spec.reduction}x{spec.panel}xf32>"
    c_type = f"memref<{spec.padded_pixels}x{spec.features}xf32>"
    row_run = spec.kernel_w * spec.channels  # floats of one receptive-field row
    image = spec.out_h * spec.out_w
    # offset of pixel d0's receptive field in the flattened padded input
    base_map = (f"affine_map<(d0) -> ((d0 floordiv {image}) * "
                f"{spec.height * spec.width * spec.channels} + ((d0 mod {image}) floordiv "
                f"{spec.out_w}) * {spec.stride_h * spec.width * spec.channels} + "
                f"(d0 mod {spec.out_w}) * {spec.stride_w * spec.channels})>")
    tiles_per_group = -(-(spec.padded_pixels // rows) // spec.row_groups)
    lines = _header(name, spec.entry(), (spec.panels, spec.row_groups))
    lines += _index_constants(c1=1, rows=rows, unroll=unroll, width=spec.panel,
                              kernel_h=spec.kernel_h, row_run=row_run,
                              group_rows=tiles_per_group * rows,
                              all_rows=spec.padded_pixels,
                              **{f"off{v}": lanes * v for v in range(vectors)})
    lines.append(f"        %zero = arith.constant dense<0.0> : {vec}")
    lines += _bindings((x_type, b_type, c_type))
    lines += ["        %p = hal.interface.workgroup.id[0] : index",
              "        %g = hal.interface.workgroup.id[1] : index",
              "        %n0 = arith.muli %p, %width : index",
              "        %m_begin = arith.muli %g, %group_rows : index",
              "        %m_full = arith.addi %m_begin, %group_rows : index",
              "        %m_end = arith.minsi %m_full, %all_rows : index",
              "        scf.for %mt = %m_begin to %m_end step %rows {"]
    if kh_outer:  # the kernel rows outermost: one kernel row's weights stay in L1 across tiles
        lines[-1:] = ["        scf.for %kh = %c0 to %kernel_h step %c1 {",
                      "        %first = arith.cmpi eq, %kh, %c0 : index",
                      "        scf.for %mt = %m_begin to %m_end step %rows {"]
    for r in range(rows):  # the pixel of row r (the last real one past the end) and its base
        lines += [f"          %pix{r} = affine.min affine_map<(d0) -> (d0 + {r}, "
                  f"{spec.pixels - 1})>(%mt)",
                  f"          %base{r} = affine.apply {base_map}(%pix{r})",
                  f"          %r{r} = affine.apply affine_map<(d0) -> (d0 + {r})>(%mt)"]
    accumulators = [(r, v) for r in range(rows) for v in range(vectors)]
    lines += [f"          %col{r}_{v} = arith.addi %n0, %off{v} : index"
              for r, v in accumulators]
    types = ", ".join([vec] * len(accumulators))
    if kh_outer:  # later kernel rows add to C's partial sums
        lines += partial_sums(accumulators, vec, c_type)
        starts = [f"%init#{i}" for i in range(len(accumulators))]
        indent = "          "
    else:
        zeros = ", ".join(f"%a{r}_{v} = %zero" for r, v in accumulators)
        lines.append(f"          %acc:{len(accumulators)} = scf.for %kh = %c0 to %kernel_h step "
                     f"%c1 iter_args({zeros}) -> ({types}) {{")
        starts = [f"%a{r}_{v}" for r, v in accumulators]
        indent = "            "
    lines.append(f"{indent}%kbase = affine.apply affine_map<(d0) -> (d0 * {row_run})>(%kh)")
    lines += [f"{indent}%row{r} = affine.apply affine_map<(d0, d1) -> "
              f"(d0 + d1 * {spec.width * spec.channels})>(%base{r}, %kh)" for r in range(rows)]
    inner = ", ".join(f"%i{r}_{v} = {start}" for (r, v), start in zip(accumulators, starts))
    lines.append(f"{indent}%part:{len(accumulators)} = scf.for %j = %c0 to %row_run step "
                 f"%unroll iter_args({inner}) -> ({types}) {{")
    current = {(r, v): f"%i{r}_{v}" for r, v in accumulators}
    body = indent + "  "
    for u in range(unroll):
        lines.append(f"{body}%k{u} = affine.apply affine_map<(d0, d1) -> "
                     f"(d0 + d1 + {u})>(%kbase, %j)")
        lines += [f"{body}%b{u}_{v} = vector.load %B[%p, %k{u}, %off{v}] : {b_type}, "
                  f"{vec}" for v in range(vectors)]
        for r in range(rows):
            lines += [f"{body}%e{u}_{r} = affine.apply affine_map<(d0, d1) -> "
                      f"(d0 + d1 + {u})>(%row{r}, %j)",
                      f"{body}%s{u}_{r} = memref.load %A[%e{u}_{r}] : {x_type}",
                      f"{body}%x{u}_{r} = vector.broadcast %s{u}_{r} : f32 to {vec}"]
            for v in range(vectors):
                lines.append(f"{body}%f{u}_{r}_{v} = vector.fma %x{u}_{r}, %b{u}_{v}, "
                             f"{current[(r, v)]} : {vec}")
                current[(r, v)] = f"%f{u}_{r}_{v}"
    lines.append(f"{body}scf.yield " + ", ".join(current[a] for a in accumulators) +
                 f" : {types}")
    lines.append(f"{indent}}}")
    if kh_outer:
        results = [f"%part#{i}" for i in range(len(accumulators))]
    else:
        lines.append("            scf.yield " + ", ".join(
            f"%part#{i}" for i in range(len(accumulators))) + f" : {types}")
        lines.append("          }")
        results = [f"%acc#{i}" for i in range(len(accumulators))]
    for result, (r, v) in zip(results, accumulators):
        lines.append(f"          vector.store {result}, %C[%r{r}, %col{r}_{v}] : {c_type}, {vec}")
    if kh_outer:
        lines.append("        }")
    lines += ["        }", "        return", "      }", "    }", "  }"]
    return "\n".join(lines) + "\n"


def operand_types(spec: ConvSpec) -> tuple[str, str, str]:
    """The declaration's tensor types: flattened padded input, packed weight, result."""
    return (f"tensor<{spec.input_length}xf32>",
            "tensor<{}x{}x{}xf32>".format(*spec.packed_weight_shape()),
            f"tensor<{spec.padded_pixels}x{spec.features}xf32>")


_DECLARATION = declaration_pattern(CONV_PREFIX, CONV_ATTR)


def render_cpu_conv_calls(ir_text: str) -> str:
    """Replace each convolution declaration by a function of one `flow.dispatch` and add the
    executables after the module's first line."""
    def kernel(key: str):
        spec = ConvSpec.parse(key)
        exe = spec.name() + "_exe"
        x, w, out = operand_types(spec)
        return exe, lambda: executable_text(spec, name=exe), spec.entry(), [x, w], out

    return render_declared_kernels(ir_text, _DECLARATION, kernel)
