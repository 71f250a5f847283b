"""kiln-chain-cuda-kernels: run consecutive kernel calls that feed each other as one launch.

A decoder layer is five kernel launches after kiln-select-cuda-kernels (QKV GEMM, attention,
O GEMM, MLP-in GEMM, MLP-out GEMM). At decode sizes each is a few microseconds of GPU work and
each costs IREE a dispatch on the host; this pass puts up to `max_stages` of them into one
declaration whose plan is a single launch of ticketed stages (kiln.kernels.sequence: every
program takes a ticket as it starts; a stage's programs wait for the previous stage's to be
done, which hold lower tickets and so are already running).

Before:
    %qb = func.call @kiln_kernel_0(%xb, %w0b, ...) : (...) -> tensor<1x2304xf16>
    %q  = torch_c.from_builtin_tensor %qb ; %q2 = torch.aten.view %q, [...] ; %q2b = ...
    %ob:3 = func.call @kiln_kernel_1(%q2b, %kcache, %vcache, ...) : ...
After:
    %r:3 = func.call @kiln_kernel_2(%xb, %w0b, ..., %kcache, %vcache, ...)
    func.func private @kiln_kernel_2(...) attributes {kiln.kernel = "sequence(stages=(('linear',
        {...}), ('attention', {...})), sources=((0, 1, ...), (('stage', 0), 2, 3, ...)))"}

A chain is a run of calls in one block with only views and tensor conversions between them
(`TRANSPARENT_OPS`), each call after the first reading a result of an earlier one. Values a
member reads from outside the chain become the declaration's inputs (in first-use order); a
member's result that something outside the chain reads ends the chain there (the plan returns
one output, plus the inputs it updates in place: KV caches). Views between members are pure
reinterpretations of contiguous buffers, so the stages read each other's buffers as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.cuda_kernels import (KERNEL_ATTR, KERNEL_PREFIX, build_plan, decode_spec,
                               encode_spec, plan_problem)
from kiln.passes.base import KilnPass, PassError, erase_if_dead
from kiln.passes.lowering.kiln_select_cuda_kernels import declare_kernel

# Ops that may sit between two members of a chain: they compute nothing (views of contiguous
# tensors, conversions between torch and builtin tensors, their constant operands).
TRANSPARENT_OPS = ("torch.aten.view", "torch.aten.reshape", "torch.aten._unsafe_view",
                   "torch.aten.unsqueeze", "torch.aten.squeeze.dim", "torch.aten.squeeze",
                   "torch_c.to_builtin_tensor", "torch_c.from_builtin_tensor",
                   "torch.prim.ListConstruct", "torch.constant.int", "torch.constant.none",
                   "torch.constant.bool")


@dataclass
class Member:
    call: ir.Operation
    builder: str
    arguments: dict


@dataclass
class ChainCudaKernels(KilnPass):
    name = "kiln-chain-cuda-kernels"
    summary = ("Run consecutive library-kernel calls that feed each other as one launch of "
               "ticketed stages (up to max_stages calls)")
    max_stages: int = 5
    arch: str = "sm_90a"
    prefetch: bool = False  # later stages ask L2 for their weights before they wait

    def apply(self, module: ir.Operation) -> None:
        body = module.regions[0].blocks[0]
        self._body = body
        self._kernels = {}
        self._declared: dict[str, str] = {}
        # .operation: a func.func's OpView `name` is its symbol, not the op's name
        functions = [op.operation for op in body.operations
                     if op.operation.name == "func.func"]
        for op in functions:
            if KERNEL_ATTR in op.attributes:
                self._kernels[ir.StringAttr(op.attributes["sym_name"]).value] = \
                    ir.StringAttr(op.attributes[KERNEL_ATTR]).value
        self._next_index = len(self._kernels)
        for op in functions:
            if KERNEL_ATTR not in op.attributes:
                for block in op.regions[0].blocks:
                    for chain in self._chains(block):
                        self._fuse(chain)
        self._erase_unused_declarations(module)

    # -----------------------------------------------------------------------------------------

    def _member(self, op: ir.Operation) -> Optional[Member]:
        if op.name != "func.call":
            return None
        callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
        spec = self._kernels.get(callee)
        if spec is None:
            return None
        builder, arguments = decode_spec(spec)
        if builder == "sequence":
            return None
        return Member(op.operation, builder, arguments)

    def _chains(self, block: ir.Block) -> list[list[Member]]:
        """Runs of members, each after the first reading an earlier member's output, with
        nothing between them that reads what the run computed except transparent ops (pure
        ops that read none of it are moved above the run: `_hoist_independent`). Outputs read
        outside the run are `_fuse`'s to respect."""
        chains, current = [], []
        # values computed from the current run's results (Values hash as the SSA value)
        tainted: set = set()
        for op in block.operations:
            op = op.operation
            member = self._member(op)
            if member is not None:
                if current and len(current) < self.max_stages and \
                        self._reads_chain(member, current):
                    current.append(member)
                else:
                    chains.append(current)
                    current, tainted = [member], set()
                tainted.update(op.results)
            elif current:
                reads = any(operand in tainted for operand in op.operands)
                if op.name in TRANSPARENT_OPS or (not reads and _pure(op)) or _dead(op):
                    if reads:
                        tainted.update(op.results)
                else:
                    chains.append(current)
                    current, tainted = [], set()
        chains.append(current)
        return [chain for chain in chains if len(chain) > 1]

    def _reads_chain(self, member: Member, chain: list[Member]) -> bool:
        calls = [m.call for m in chain]
        return any(_contains(calls, _source_call(operand)) for operand in member.call.operands)

    # -----------------------------------------------------------------------------------------

    def _fuse(self, chain: list[Member]) -> None:
        """Fuse the longest window of `chain` whose members' outputs only later members read
        (but the last's) and whose composite the library builds (the earliest of that
        length), then the parts before and after it the same way."""
        problem = None
        for length in range(len(chain), 1, -1):
            for start in range(len(chain) - length + 1):
                window = chain[start:start + length]
                calls = [m.call for m in window]
                if any(_read_outside(m.call.results[0], calls) for m in window[:-1]):
                    continue
                built = self._composite(window)
                if isinstance(built, str):
                    problem = problem or built
                    continue
                self._rewrite(window, *built)
                if start > 1:
                    self._fuse(chain[:start])
                if len(chain) - start - length > 1:
                    self._fuse(chain[start + length:])
                return
        self.record("declined", f"{len(chain)} kernel calls stay separate: {problem}",
                    chain[0].call)

    def _composite(self, chain: list[Member]):
        """(plan, spec, inputs) of the sequence running `chain`, or why there is none."""
        calls = [m.call for m in chain]
        inputs: list[ir.Value] = []
        sources = []
        for member in chain:
            member_sources = []
            for operand in member.call.operands:
                producer, index = _source(operand)
                if _contains(calls, producer) and index > 0:
                    return "a kernel call reads a cache an earlier call of the chain updated"
                if _contains(calls, producer):
                    member_sources.append(("stage", calls.index(producer)))
                else:
                    if operand not in inputs:
                        inputs.append(operand)
                    member_sources.append(inputs.index(operand))
            sources.append(tuple(member_sources))
        arguments = {"stages": tuple((m.builder, m.arguments) for m in chain),
                     "sources": tuple(sources)}
        if self.prefetch:
            arguments["prefetch"] = True
        try:
            plan = build_plan("sequence", arguments)
            problem = plan_problem(plan, self.arch)
        except Exception as error:  # noqa: BLE001 - the library says why it declines
            problem = f"{type(error).__name__}: {error}"
        if problem:
            return problem
        return plan, encode_spec("sequence", arguments), inputs

    def _rewrite(self, chain: list[Member], plan, spec: str, inputs: list) -> None:
        calls = [m.call for m in chain]
        _hoist_independent(calls)
        name = self._declare(plan, spec)
        # The written inputs come back in the plan's order: each member's, in member order.
        written = [result for member in chain for result in list(member.call.results)[1:]]
        last = chain[-1].call
        with ir.InsertionPoint(last), last.location:
            fused = ir.Operation.create(
                "func.call", results=[last.results[0].type] + [r.type for r in written],
                operands=inputs, attributes={"callee": ir.FlatSymbolRefAttr.get(name)},
                loc=last.location)
        _move_readers_after(written, fused)
        last.results[0].replace_all_uses_with(fused.results[0])
        for old, new in zip(written, list(fused.results)[1:]):
            old.replace_all_uses_with(new)
        self.record("sequence", f"{len(chain)} kernel calls, one launch: " +
                    ", ".join(m.builder for m in chain), last)
        _erase_chain_leftovers(calls)

    def _declare(self, plan, spec: str) -> str:
        """The declaration for `spec`, declared the first time (equal chains share one)."""
        if spec not in self._declared:
            self._declared[spec] = declare_kernel(
                self._body, plan, spec, f"{KERNEL_PREFIX}{self._next_index}")
            self._next_index += 1
        return self._declared[spec]

    def _erase_unused_declarations(self, module: ir.Operation) -> None:
        used = set()

        def visit(op):
            if op.name == "func.call":
                used.add(ir.FlatSymbolRefAttr(op.attributes["callee"]).value)
            return ir.WalkResult.ADVANCE

        module.walk(visit)
        for op in [op.operation for op in self._body.operations]:
            if op.name == "func.func" and KERNEL_ATTR in op.attributes and \
                    ir.StringAttr(op.attributes["sym_name"]).value not in used:
                op.erase()


# Ops without side effects that may be moved above a chain when they read nothing it computes.
PURE_PREFIXES = ("torch.aten.", "torch.prim.", "torch.prims.", "torch.constant.",
                 "torch.vtensor.literal", "torch_c.", "arith.constant", "kiln.")


def _pure(op: ir.Operation) -> bool:
    return op.name.startswith(PURE_PREFIXES) and not op.name.startswith(
        ("torch.aten.copy_", "torch.aten.index_put_", "torch.prim.Print")) and \
        not op.name.endswith("_")


def _dead(op: ir.Operation) -> bool:
    """Pure, and everything reading it is dead too: what kernel selection left behind (the
    slices and RoPE an attention kernel now does itself), which canonicalize erases later."""
    if not _pure(op):
        return False
    return all(_dead(_operation(use.owner)) for result in op.results for use in result.uses)


def _hoist_independent(calls: list[ir.Operation]) -> None:
    """Move the ops between the chain's first and last call that read nothing the chain
    computed (through any op) above its first call, in order: the fused call takes the
    chain's place, and its inputs must be defined before it."""
    first, last = calls[0], calls[-1]
    tainted: set = set()
    span, inside = [], False
    for op in first.block.operations:
        op = op.operation
        if op == first:
            inside = True
        if not inside:
            continue
        if op == last:
            break
        if _contains(calls, op) or any(o in tainted for o in op.operands):
            tainted.update(op.results)
        else:
            span.append(op)
    for op in span:
        op.move_before(first)


def _contains(ops: list[ir.Operation], op: Optional[ir.Operation]) -> bool:
    """`op in ops` (an Operation does not compare with None)."""
    return op is not None and op in ops


def _operation(owner) -> Optional[ir.Operation]:
    """The operation behind a value's owner (None for a block argument)."""
    if isinstance(owner, ir.Block):
        return None
    return owner.operation


def _source(value: ir.Value) -> tuple[Optional[ir.Operation], int]:
    """(the call, result index) that `value` is, through transparent ops; (None, -1) when it
    comes from anything else."""
    while True:
        owner = _operation(value.owner)
        if owner is None:
            return None, -1
        if owner.name == "func.call":
            return owner, list(owner.results).index(value)
        if owner.name not in TRANSPARENT_OPS or not list(owner.operands):
            return None, -1
        value = owner.operands[0]


def _source_call(value: ir.Value) -> Optional[ir.Operation]:
    """The call whose output (first result) `value` is, through transparent ops; else None."""
    call, index = _source(value)
    return call if index == 0 else None


def _read_outside(value: ir.Value, members: list[ir.Operation]) -> bool:
    """Whether anything but `members` reads `value` (through transparent ops)."""
    for use in value.uses:
        user = _operation(use.owner)
        if _contains(members, user) or _dead(user):
            continue  # a member, or a dead op (canonicalize erases it)
        if user.name in TRANSPARENT_OPS and user.name != "torch.prim.ListConstruct":
            if any(_read_outside(result, members) for result in user.results):
                return True
            continue
        return True
    return False


def _move_readers_after(values: list[ir.Value], anchor: ir.Operation) -> None:
    """Move the transparent ops that read `values` (a cache an earlier member updated, viewed
    right after its call) and those reading them in turn to just after `anchor`, in order: the
    values are about to come from `anchor`. Only transparent ops sit between members."""
    readers: list[ir.Operation] = []
    pending = list(values)
    while pending:
        value = pending.pop(0)
        for use in value.uses:
            user = _operation(use.owner)
            if user.name in TRANSPARENT_OPS and not _contains(readers, user):
                readers.append(user)
                pending.extend(user.results)
    before = []
    for op in anchor.block.operations:
        op = op.operation
        if op == anchor:
            break
        if _contains(readers, op):
            before.append(op)
    position = anchor
    for op in before:
        op.move_after(position)
        position = op


def _erase_dead_readers(op: ir.Operation) -> None:
    """Erase the dead ops reading `op`'s results, readers of readers first."""
    for result in op.results:
        for use in list(result.uses):
            reader = _operation(use.owner)
            if _dead(reader):
                _erase_dead_readers(reader)
                reader.erase()


def _erase_chain_leftovers(calls: list[ir.Operation]) -> None:
    """Erase the member calls, last first, each after the dead ops reading it (canonicalize
    keeps calls: the views leading to an erased later member, the slices kernel selection left
    behind), then the transparent ops that fed them and are unused now."""
    # Views of values from outside the chain that fed its calls (those of the calls' own
    # results go with the calls, as dead readers).
    feeders = []
    for call in calls:
        for operand in call.operands:
            run, owner = [], _operation(operand.owner)
            while owner is not None and owner.name in TRANSPARENT_OPS:
                run.append(owner)
                owner = _operation(owner.operands[0].owner) if list(owner.operands) else None
            if not _contains(calls, owner):
                feeders += [op for op in run if not _contains(feeders, op)]
    for call in reversed(calls):
        _erase_dead_readers(call)
        if any(list(result.uses) for result in call.results):
            raise PassError(f"kiln-chain-cuda-kernels: a chained kernel call is still read "
                            f"after fusion ({call.name} at {call.location})")
        call.erase()
    erase_if_dead(feeders)
