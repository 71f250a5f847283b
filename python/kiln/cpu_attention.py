"""Kiln's own f32 attention for IREE's CPU backend: MLIR text IREE compiles like its own code.

The decomposed lowering of `kiln.attention` on the CPU (convert-kiln-to-torch) runs QKᵀ,
scale + mask + softmax and P·V as separate dispatches with the [Sq, Sk] scores in memory
(zoo Llama, 2-core Intel Xeon: ≈ 10 ms per call where torch's flash kernel takes 3.5 ms,
docs/decisions.md "CPU attention kernel (issue 13)"). This kernel is flash-style: each
workgroup takes one (batch, query head) and a block of query rows; per register tile of ROWS
query rows it walks the keys in blocks of 16·KEY_VECTORS, the scores of a block in vectors
(broadcast q[i, d] × a 16-key vector of Kᵀ[d, :], so K is handed over transposed), with an online
softmax (running max per row, running sum in vectors) and P·V accumulated in the head dim's
4 vectors per row; one division at the end. Causal masking is computed from the indices and the
key blocks wholly in the future of a tile are skipped; an additive f32 mask (BERT's padding) is
read with the broadcasts it carries (size-1 dims read at 0). Grouped kv heads: query head h reads
kv head h // (Hq / Hkv).

`kiln-select-cpu-kernels` (passes/lowering) replaces a `kiln.attention` the kernel takes
(`attention_problem`) by a call of a private declaration

    func.func private @kiln_cpu_attention_<hash>(q [B,Hq,Sq,D], kᵀ [B,Hkv,D,Sk], v [B,Hkv,Sk,D]
        [, mask [Mb,Mh,Mq,Sk]]) -> [B,Sq,Hq,D] attributes {kiln.cpu_attention = "<spec>"}

and `render_cpu_attention_calls` turns each declaration into a `flow.dispatch` of one
`hal.executable.source` holding the kernel.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Optional

from kiln.cpu_kernels import declaration_pattern, render_declared_kernels

ATTENTION_ATTR = "kiln.cpu_attention"
ATTENTION_PREFIX = "kiln_cpu_attention_"
CPU_ATTENTION_TAKEN = "kiln CPU attention"  # the report's detail of an attention the kernel took
HEAD_DIM = 64  # the head dims the kernel is written for: 4 vectors of 16 f32 per row
ROWS = 4  # query rows per register tile (ROWS × 4 accumulators of the output)
KEY_VECTORS = 2  # 16-key score vectors per row and key block
QUERY_BLOCK = 32  # query rows per workgroup (fewer when Sq is smaller)
# Whether kiln-select-cpu-kernels takes attention by default (cpu_kernels on, attention="auto"):
# on, from the zoo on the 2-core Intel Xeon (bench/cpu_attention_ab.py, medians of interleaved
# calls): llama 1.08-1.12x, gpt2-prefill 1.08-1.09x, bert 1.03-1.04x faster than decomposed
# (docs/decisions.md "CPU attention kernel (issue 13)").
ATTENTION_DEFAULT = True
# The compiler's `attention` option that asks for the kernel (cpu_kernels on, target cpu);
# attentions it refuses are decomposed.
ATTENTION_KERNEL = "cpu_kernel"
# The compiler's `attention` option: auto (measured per target) | decomposed | fused | the kernel
ATTENTION_CHOICES = ("auto", "decomposed", "fused", ATTENTION_KERNEL)


_SPEC_KEY = re.compile(r"b(?P<b>\d+)_h(?P<h>\d+)_kv(?P<kv>\d+)_q(?P<q>\d+)_k(?P<k>\d+)_d(?P<d>\d+)"
                       r"_c(?P<c>[01])_m(?P<mask>none|\d+x\d+x\d+x\d+)_s(?P<s>[-+.\deE]+)")


@dataclass(frozen=True)
class AttentionSpec:
    """One static attention problem: q [batch, heads, q_len, dim], k/v [batch, kv_heads,
    k_len, dim], mask (optional, additive f32) [mask_shape], the scores scaled by `scale`."""

    batch: int
    heads: int
    kv_heads: int
    q_len: int
    k_len: int
    dim: int
    scale: float
    causal: bool
    mask_shape: Optional[tuple[int, int, int, int]] = None

    def key(self) -> str:
        mask = "x".join(map(str, self.mask_shape)) if self.mask_shape else "none"
        return (f"b{self.batch}_h{self.heads}_kv{self.kv_heads}_q{self.q_len}_k{self.k_len}"
                f"_d{self.dim}_c{int(self.causal)}_m{mask}_s{self.scale!r}")

    @classmethod
    def parse(cls, key: str) -> "AttentionSpec":
        match = _SPEC_KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"not a CPU attention spec: {key!r}")
        mask = match.group("mask")
        return cls(*(int(match.group(g)) for g in ("b", "h", "kv", "q", "k", "d")),
                   scale=float(match.group("s")), causal=match.group("c") == "1",
                   mask_shape=None if mask == "none" else tuple(map(int, mask.split("x"))))

    def name(self) -> str:
        return ATTENTION_PREFIX + hashlib.sha1(self.key().encode()).hexdigest()[:12]

    def query_block(self) -> int:
        return min(QUERY_BLOCK, self.q_len)

    def key_block(self) -> int:
        return 16 * KEY_VECTORS


def attention_problem(spec: AttentionSpec) -> Optional[str]:
    """Why the kernel does not take `spec`, or None."""
    if spec.dim != HEAD_DIM:
        return f"head dim {spec.dim} (the kernel is written for {HEAD_DIM})"
    if spec.heads % spec.kv_heads:
        return f"{spec.kv_heads} kv heads do not divide {spec.heads} query heads"
    if spec.q_len % ROWS:
        return f"{spec.q_len} query rows are not a multiple of {ROWS}"
    if spec.k_len % spec.key_block():
        return f"{spec.k_len} keys are not a multiple of {spec.key_block()}"
    if spec.causal and spec.q_len != spec.k_len:
        return f"causal attention of {spec.q_len} queries over {spec.k_len} keys"
    if spec.mask_shape is not None:
        expected = (spec.batch, spec.heads, spec.q_len, spec.k_len)
        if spec.mask_shape[3] != spec.k_len or any(
                size not in (1, full) for size, full in zip(spec.mask_shape, expected)):
            return f"mask of shape {list(spec.mask_shape)} for scores {list(expected)}"
    return None


_LAYOUT4 = ("#hal.pipeline.layout<bindings = [#hal.pipeline.binding<storage_buffer, ReadOnly>,"
            " #hal.pipeline.binding<storage_buffer, ReadOnly>, "
            "#hal.pipeline.binding<storage_buffer, ReadOnly>, "
            "#hal.pipeline.binding<storage_buffer>]>")
_LAYOUT5 = ("#hal.pipeline.layout<bindings = [#hal.pipeline.binding<storage_buffer, ReadOnly>,"
            " #hal.pipeline.binding<storage_buffer, ReadOnly>, "
            "#hal.pipeline.binding<storage_buffer, ReadOnly>, "
            "#hal.pipeline.binding<storage_buffer, ReadOnly>, "
            "#hal.pipeline.binding<storage_buffer>]>")


def operand_shapes(spec: AttentionSpec) -> list[tuple[int, ...]]:
    """q, kᵀ, v[, mask] as the kernel reads them, then the output, written [B, Sq, Hq, D]: the
    layout the model's head merge (transpose(1, 2) + reshape) wants, so that the permute back
    to [B, Hq, Sq, D] after the call and the model's transpose cancel (no transpose dispatch;
    zoo Llama: 0.5 ms per call, docs/decisions.md)."""
    s = spec
    shapes = [(s.batch, s.heads, s.q_len, s.dim), (s.batch, s.kv_heads, s.dim, s.k_len),
              (s.batch, s.kv_heads, s.k_len, s.dim)]
    if s.mask_shape is not None:
        shapes.append(s.mask_shape)
    return shapes + [(s.batch, s.q_len, s.heads, s.dim)]


def _memref(shape) -> str:
    return "memref<" + "x".join(map(str, shape)) + "xf32>"


def _tensor(shape) -> str:
    return "tensor<" + "x".join(map(str, shape)) + "xf32>"


def entry_name(spec: AttentionSpec) -> str:
    return spec.name() + "_dispatch"


def executable_text(spec: AttentionSpec, name: Optional[str] = None, rows: int = ROWS,
                    key_vectors: int = KEY_VECTORS, query_block: Optional[int] = None,
                    unroll: int = 4) -> str:
    """The `hal.executable.source` computing softmax(scale·q·kᵀ [+ mask] [causal]) · v."""
    problem = attention_problem(spec)
    if problem:
        raise ValueError(f"CPU attention kernel: {problem}")
    s = spec
    group = s.heads // s.kv_heads
    qblock = query_block or s.query_block()
    if s.q_len % qblock or qblock % rows:
        raise ValueError(f"{s.q_len} query rows do not tile by {qblock} and {rows}")
    kblock = 16 * key_vectors
    dvecs = s.dim // 16
    name = name or spec.name() + "_exe"
    entry = entry_name(spec)
    layout = _LAYOUT5 if s.mask_shape else _LAYOUT4
    vec, ivec = "vector<16xf32>", "vector<16xi32>"
    shapes = operand_shapes(spec)
    types = [_memref(shape) for shape in shapes]
    q_t, kt_t, v_t = types[0], types[1], types[2]
    m_t = types[3] if s.mask_shape else None
    o_t = types[-1]
    L = ["  hal.executable.source private @" + name + " {",
         f"    hal.executable.export public @{entry} ordinal(0) layout({layout}) "
         "count(%device: !hal.device) -> (index, index, index) {",
         f"      %x = arith.constant {s.batch * s.heads} : index",
         f"      %y = arith.constant {s.q_len // qblock} : index",
         "      %one = arith.constant 1 : index",
         "      hal.return %x, %y, %one : index, index, index", "    }",
         "    builtin.module {", f"      func.func @{entry}() {{",
         "        %c0 = arith.constant 0 : index",
         "        %c1 = arith.constant 1 : index"]
    consts = dict(heads=s.heads, group=group, qblock=qblock, rows=rows, kblock=kblock,
                  klen=s.k_len, dim=s.dim, unroll=unroll)
    L += [f"        %{k} = arith.constant {v} : index" for k, v in consts.items()]
    L += [f"        %n{r} = arith.constant {r} : index" for r in range(max(rows, unroll))]
    L += [f"        %o{v} = arith.constant {16 * v} : index" for v in range(max(dvecs,
                                                                               key_vectors))]
    L += [f"        %zero = arith.constant dense<0.0> : {vec}",
          f"        %scale = arith.constant dense<{s.scale!r}> : {vec}",
          f"        %ninf = arith.constant dense<0xFF800000> : {vec}",
          "        %lowest = arith.constant -3.40282347E+38 : f32",
          "        %iota = arith.constant dense<[" + ", ".join(map(str, range(16))) +
          f"]> : {ivec}"]
    for index, (buffer, type_) in enumerate(zip(["Q", "KT", "V"] + (["M"] if m_t else []) +
                                                ["O"], types)):
        flags = "" if buffer == "O" else " flags(ReadOnly)"
        L.append(f"        %{buffer} = hal.interface.binding.subspan layout({layout}) "
                 f"binding({index}) alignment(64) offset(%c0){flags} : {type_}")
    L += ["        %P = memref.alloca() : " + _memref((rows, kblock)),
          "        %bh = hal.interface.workgroup.id[0] : index",
          "        %qb = hal.interface.workgroup.id[1] : index",
          "        %b = arith.divui %bh, %heads : index",
          "        %h = arith.remui %bh, %heads : index",
          "        %hk = arith.divui %h, %group : index",
          "        %row_begin = arith.muli %qb, %qblock : index",
          "        %row_end = arith.addi %row_begin, %qblock : index"]
    if m_t:
        mb = "%b" if s.mask_shape[0] > 1 else "%c0"
        mh = "%h" if s.mask_shape[1] > 1 else "%c0"
        mask_rows = s.mask_shape[2] > 1
    L.append("        scf.for %t0 = %row_begin to %row_end step %rows {")
    ind = "          "
    L += [f"{ind}%row{r} = arith.addi %t0, %n{r} : index" for r in range(rows)]
    if s.causal:  # key blocks up to the one holding the tile's last row
        L += [f"{ind}%last = arith.addi %t0, %rows : index",
              f"{ind}%last_blocks = arith.ceildivui %last, %kblock : index",
              f"{ind}%kend = arith.muli %last_blocks, %kblock : index"]
        L += [f"{ind}%row{r}_i32 = arith.index_cast %row{r} : index to i32" for r in range(rows)]
        L += [f"{ind}%rowv{r} = vector.broadcast %row{r}_i32 : i32 to {ivec}"
              for r in range(rows)]
        kend = "%kend"
    else:
        kend = "%klen"
    accs = [(r, v) for r in range(rows) for v in range(dvecs)]
    iter_names = ([f"%m{r}" for r in range(rows)] + [f"%l{r}" for r in range(rows)] +
                  [f"%a{r}_{v}" for r, v in accs])
    iter_types = ["f32"] * rows + [vec] * rows + [vec] * len(accs)
    inits = ["%lowest"] * rows + ["%zero"] * rows + ["%zero"] * len(accs)
    total = len(iter_names)
    L.append(f"{ind}%res:{total} = scf.for %kb = %c0 to {kend} step %kblock iter_args(" +
             ", ".join(f"{n} = {i}" for n, i in zip(iter_names, inits)) + ") -> (" +
             ", ".join(iter_types) + ") {")
    ind2 = ind + "  "
    # scores: S[r][kv] = Σ_d q[row r, d] · Kᵀ[d, j0 + 16·kv : +16]
    scores = [(r, w) for r in range(rows) for w in range(key_vectors)]
    L += [f"{ind2}%j{w} = arith.addi %kb, %o{w} : index" for w in range(key_vectors)]
    L.append(f"{ind2}%s:{len(scores)} = scf.for %dd = %c0 to %dim step %unroll iter_args(" +
             ", ".join(f"%t{r}_{w} = %zero" for r, w in scores) + ") -> (" +
             ", ".join([vec] * len(scores)) + ") {")
    ind3 = ind2 + "  "
    current = {rw: f"%t{rw[0]}_{rw[1]}" for rw in scores}
    for u in range(unroll):
        L.append(f"{ind3}%d{u} = arith.addi %dd, %n{u} : index")
        L += [f"{ind3}%k{u}_{w} = vector.load %KT[%b, %hk, %d{u}, %j{w}] : {kt_t}, {vec}"
              for w in range(key_vectors)]
        for r in range(rows):
            L += [f"{ind3}%q{u}_{r} = memref.load %Q[%b, %h, %row{r}, %d{u}] : {q_t}",
                  f"{ind3}%qb{u}_{r} = vector.broadcast %q{u}_{r} : f32 to {vec}"]
            for w in range(key_vectors):
                L.append(f"{ind3}%f{u}_{r}_{w} = vector.fma %qb{u}_{r}, %k{u}_{w}, "
                         f"{current[(r, w)]} : {vec}")
                current[(r, w)] = f"%f{u}_{r}_{w}"
    L.append(f"{ind3}scf.yield " + ", ".join(current[rw] for rw in scores) + " : " +
             ", ".join([vec] * len(scores)))
    L.append(f"{ind2}}}")
    if s.causal:
        L += [f"{ind2}%j{w}_i32 = arith.index_cast %j{w} : index to i32"
              for w in range(key_vectors)]
        L += [f"{ind2}%jv{w}_b = vector.broadcast %j{w}_i32 : i32 to {ivec}"
              for w in range(key_vectors)]
        L += [f"{ind2}%keys{w} = arith.addi %iota, %jv{w}_b : {ivec}"
              for w in range(key_vectors)]
    for idx, (r, w) in enumerate(scores):
        value = f"%sc{r}_{w}"
        L.append(f"{ind2}{value} = arith.mulf %s#{idx}, %scale : {vec}")
        if m_t:
            mi = f"%row{r}" if mask_rows else "%c0"
            L += [f"{ind2}%mk{r}_{w} = vector.load %M[{mb}, {mh}, {mi}, %j{w}] : {m_t}, {vec}",
                  f"{ind2}%sm{r}_{w} = arith.addf {value}, %mk{r}_{w} : {vec}"]
            value = f"%sm{r}_{w}"
        if s.causal:
            L += [f"{ind2}%future{r}_{w} = arith.cmpi sgt, %keys{w}, %rowv{r} : {ivec}",
                  f"{ind2}%sf{r}_{w} = arith.select %future{r}_{w}, %ninf, {value} : "
                  f"vector<16xi1>, {vec}"]
            value = f"%sf{r}_{w}"
        L.append(f"{ind2}%S{r}_{w} = arith.addf {value}, %zero : {vec}")
    # online softmax per row
    for r in range(rows):
        top = f"%S{r}_0"
        for w in range(1, key_vectors):
            L.append(f"{ind2}%mx{r}_{w} = arith.maximumf {top}, %S{r}_{w} : {vec}")
            top = f"%mx{r}_{w}"
        L += [f"{ind2}%bmax{r} = vector.reduction <maximumf>, {top} : {vec} into f32",
              f"{ind2}%mnew{r} = arith.maximumf %m{r}, %bmax{r} : f32",
              f"{ind2}%mold{r}_v = vector.broadcast %m{r} : f32 to {vec}",
              f"{ind2}%mnew{r}_v = vector.broadcast %mnew{r} : f32 to {vec}",
              f"{ind2}%dm{r} = arith.subf %mold{r}_v, %mnew{r}_v : {vec}",
              f"{ind2}%alpha{r} = math.exp %dm{r} : {vec}"]
        psum = None
        for w in range(key_vectors):
            L += [f"{ind2}%x{r}_{w} = arith.subf %S{r}_{w}, %mnew{r}_v : {vec}",
                  f"{ind2}%p{r}_{w} = math.exp %x{r}_{w} : {vec}",
                  f"{ind2}vector.store %p{r}_{w}, %P[%n{r}, %o{w}] : "
                  f"{_memref((rows, kblock))}, {vec}"]
            if psum is None:
                psum = f"%p{r}_{w}"
            else:
                L.append(f"{ind2}%ps{r}_{w} = arith.addf {psum}, %p{r}_{w} : {vec}")
                psum = f"%ps{r}_{w}"
        L.append(f"{ind2}%lnew{r} = vector.fma %l{r}, %alpha{r}, {psum} : {vec}")
        L += [f"{ind2}%as{r}_{v} = arith.mulf %a{r}_{v}, %alpha{r} : {vec}"
              for v in range(dvecs)]
    # P·V: acc[r][v] += P[r, jj] · V[j0 + jj, 16v : +16]
    L.append(f"{ind2}%pv:{len(accs)} = scf.for %jj = %c0 to %kblock step %unroll iter_args(" +
             ", ".join(f"%u{r}_{v} = %as{r}_{v}" for r, v in accs) + ") -> (" +
             ", ".join([vec] * len(accs)) + ") {")
    current = {rv: f"%u{rv[0]}_{rv[1]}" for rv in accs}
    for u in range(unroll):
        L += [f"{ind3}%jj{u} = arith.addi %jj, %n{u} : index",
              f"{ind3}%key{u} = arith.addi %kb, %jj{u} : index"]
        L += [f"{ind3}%v{u}_{v} = vector.load %V[%b, %hk, %key{u}, %o{v}] : {v_t}, {vec}"
              for v in range(dvecs)]
        for r in range(rows):
            L += [f"{ind3}%pp{u}_{r} = memref.load %P[%n{r}, %jj{u}] : "
                  f"{_memref((rows, kblock))}",
                  f"{ind3}%pb{u}_{r} = vector.broadcast %pp{u}_{r} : f32 to {vec}"]
            for v in range(dvecs):
                L.append(f"{ind3}%g{u}_{r}_{v} = vector.fma %pb{u}_{r}, %v{u}_{v}, "
                         f"{current[(r, v)]} : {vec}")
                current[(r, v)] = f"%g{u}_{r}_{v}"
    L.append(f"{ind3}scf.yield " + ", ".join(current[rv] for rv in accs) + " : " +
             ", ".join([vec] * len(accs)))
    L.append(f"{ind2}}}")
    L.append(f"{ind2}scf.yield " + ", ".join([f"%mnew{r}" for r in range(rows)] +
                                              [f"%lnew{r}" for r in range(rows)] +
                                              [f"%pv#{i}" for i in range(len(accs))]) +
             " : " + ", ".join(iter_types))
    L.append(f"{ind}}}")
    for r in range(rows):
        L += [f"{ind}%sum{r} = vector.reduction <add>, %res#{rows + r} : {vec} into f32",
              f"{ind}%sumv{r} = vector.broadcast %sum{r} : f32 to {vec}"]
        for v in range(dvecs):
            acc = f"%res#{2 * rows + r * dvecs + v}"
            L += [f"{ind}%out{r}_{v} = arith.divf {acc}, %sumv{r} : {vec}",
                  f"{ind}vector.store %out{r}_{v}, %O[%b, %row{r}, %h, %o{v}] : {o_t}, {vec}"]
    L += ["        }", "        return", "      }", "    }", "  }"]
    return "\n".join(L) + "\n"


_DECLARATION = declaration_pattern(ATTENTION_PREFIX, ATTENTION_ATTR)


def render_cpu_attention_calls(ir_text: str) -> str:
    """Replace each attention declaration by a function of one `flow.dispatch` and add the
    executables after the module's first line."""
    def kernel(key: str):
        spec = AttentionSpec.parse(key)
        exe = spec.name() + "_exe"
        shapes = [_tensor(shape) for shape in operand_shapes(spec)]
        return (exe, lambda: executable_text(spec, name=exe), entry_name(spec), shapes[:-1],
                shapes[-1])

    return render_declared_kernels(ir_text, _DECLARATION, kernel)
