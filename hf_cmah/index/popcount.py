"""The exact kernel's hot loop as explicit LLVM vectors: find the next group of codes with one closer than a bound.

Why explicit, not left to LLVM's loop vectoriser (docs/BENCHMARKS.md, issue 21): the
vectoriser's width, unrolling and popcount sequence depend on the CPU model it guesses, and
on an AVX-512 VPOPCNTDQ Xeon it left the kernel at 25 % of a plain C scan. Here the register
width is the caller's choice (`hf_cmah.index.simd`), and the same source gives:

- ``register_bits=512``: 512-bit vectors, ``vpopcntq`` on AVX-512 VPOPCNTDQ, even on CPUs
  tuned to prefer 256-bit vectors (Intel server parts): that preference binds only the loop
  vectoriser (a test compiles this loop for Sapphire Rapids and looks).
- ``register_bits=256``: 256-bit vectors, the ``vpshufb`` nibble-table popcount on AVX2.
- ``register_bits=0``: the ``popcnt`` instruction as inline assembly on x86-64, four codes a
  step, which no vectoriser can widen (LLVM ``ctpop`` elsewhere).

Each step reads two registers' worth of codes and XORs them with one or two queries (two
queries a load halve a batch's reads), like the C probe `benchmarks/ceiling/popcount_scan.c`
that measures the ceiling. The scan stops only at a group with a hit, so a group costs one
test of its ORed compare masks, not a reduction and a call.

Numba caches the kernel keyed on `kernels.py`'s timestamp, not this file's: after editing
only this file, touch `kernels.py`.
"""

from __future__ import annotations

import functools
import platform

from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

I1 = ir.IntType(1)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
X86_64 = platform.machine().lower() in {"x86_64", "amd64"}
# The scalar loop's step: this many codes, each its own ``popcnt``, so they overlap in the pipeline.
SCALAR_CODES_A_STEP = 4
if X86_64:
    binding.initialize_native_asmparser()  # numba sets up no assembly parser, which inline ``popcnt`` needs


def _splat(builder: ir.IRBuilder, value: ir.Value, vector: ir.VectorType) -> ir.Value:
    """``value`` in every lane of ``vector`` (insertelement + shufflevector, what LLVM turns into a broadcast)."""
    undefined = ir.Constant(vector, ir.Undefined)
    first = builder.insert_element(undefined, value, ir.Constant(I32, 0))
    mask = ir.Constant(ir.VectorType(I32, vector.count), [0] * vector.count)
    return builder.shuffle_vector(first, undefined, mask)


def _resize(builder: ir.IRBuilder, value: ir.Value, target: ir.IntType) -> ir.Value:
    """An integer (or each lane of a vector of them) truncated or zero-extended to ``target``."""
    vector = isinstance(value.type, ir.VectorType)
    source = value.type.element if vector else value.type
    wanted = ir.VectorType(target, value.type.count) if vector else target
    if source.width > target.width:
        return builder.trunc(value, wanted)
    if source.width < target.width:
        return builder.zext(value, wanted)
    return value


def _popcount(builder: ir.IRBuilder, value: ir.Value, register_bits: int) -> ir.Value:
    """Popcount of every lane: LLVM ``ctpop`` for vectors, the ``popcnt`` instruction for the scalar loop."""
    if register_bits == 0 and X86_64:
        wide = _resize(builder, value, I64)
        count = builder.asm(ir.FunctionType(I64, [I64]), "popcntq $1, $0", "=r,r", [wide], side_effect=False)
        return _resize(builder, count, value.type)
    suffix = (
        f"v{value.type.count}i{value.type.element.width}"
        if isinstance(value.type, ir.VectorType)
        else (f"i{value.type.width}")
    )
    ctpop = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(value.type, [value.type]), f"llvm.ctpop.{suffix}"
    )
    return builder.call(ctpop, [value])


def _below(builder, loaded, query, limit, register_bits, interleaved):
    """Lanes whose distance (popcount of the XOR, summed over planes) is below ``limit``: an ``i1`` per code.

    ``interleaved``: one load holds word pairs (first, second, first, …), XORed with the query's
    pair pattern; the two popcounts of each code are then added lane by lane.
    """
    distance = _popcount(builder, builder.xor(loaded[0], query[0]), register_bits)
    if interleaved:
        lanes = distance.type.count // 2
        evens = ir.Constant(ir.VectorType(I32, lanes), list(range(0, 2 * lanes, 2)))
        odds = ir.Constant(ir.VectorType(I32, lanes), list(range(1, 2 * lanes, 2)))
        distance = builder.add(
            builder.shuffle_vector(distance, distance, evens), builder.shuffle_vector(distance, distance, odds)
        )
    for plane in range(1, len(loaded)):
        distance = builder.add(distance, _popcount(builder, builder.xor(loaded[plane], query[plane]), register_bits))
    return builder.icmp_signed("<", distance, limit)


def _pair_pattern(builder, first: ir.Value, second: ir.Value, lanes: int) -> ir.Value:
    """``first, second, first, second, …`` over ``2 * lanes`` lanes: a query against interleaved word pairs."""
    pair_type = ir.VectorType(first.type, 2)
    pair = builder.insert_element(ir.Constant(pair_type, ir.Undefined), first, ir.Constant(I32, 0))
    pair = builder.insert_element(pair, second, ir.Constant(I32, 1))
    mask = ir.Constant(ir.VectorType(I32, 2 * lanes), [0, 1] * lanes)
    return builder.shuffle_vector(pair, pair, mask)


def _any(builder, lanes: ir.Value) -> ir.Value:
    """Whether any lane of a mask is set (one ``vptest``/``kortest``); a mask is all ones or zero per lane."""
    if not isinstance(lanes.type, ir.VectorType):
        return lanes
    element = lanes.type.element
    reduce = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(element, [lanes.type]),
        f"llvm.vector.reduce.or.v{lanes.type.count}i{element.width}",
    )
    return builder.icmp_unsigned("!=", builder.call(reduce, [lanes]), ir.Constant(element, 0))


def _emit_find(builder, args, element, register_bits, queries, planes, group, interleaved) -> list[ir.Value]:
    """Emit `first_hit`'s loop at the builder for ``args`` (its ten arguments); returns ``[position, hit0, hit1]``."""
    lanes = 2 * register_bits // element.width if register_bits else 1  # two registers a step
    assert group % max(lanes, SCALAR_CODES_A_STEP) == 0, "a group is whole steps"
    lane_type = ir.VectorType(element, lanes) if lanes > 1 else element
    # Compare masks are ORed as full-width lanes: ORing them as ``i1`` vectors costs LLVM a pack per step.
    mask_type = lane_type if lanes > 1 else I1
    bases = [builder.inttoptr(address, ir.PointerType()) for address in args[:planes]]
    query_words = [[_resize(builder, word, element) for word in words[:planes]]
                   for words in ([args[4], args[5]], [args[6], args[7]])[:queries]]  # fmt: skip
    wide = interleaved and lanes > 1  # one load of 2 × lanes words; scalar pairs are two plain loads
    if interleaved:
        bases = [bases[0]] if wide else [bases[0], builder.gep(bases[0], [ir.Constant(I64, 1)], source_etype=element)]
    if wide:
        query_lanes = [[_pair_pattern(builder, first, second, lanes)] for first, second in query_words]
    else:
        query_lanes = [[_broadcast(builder, word, lane_type) for word in words] for words in query_words]
    limits = [_broadcast(builder, _resize(builder, bound, element), lane_type) for bound in args[8 : 8 + queries]]
    begin, stop = _resize(builder, args[2], I64), _resize(builder, args[3], I64)
    size = ir.Constant(I64, group)
    full_end = builder.add(begin, builder.mul(builder.sdiv(builder.sub(stop, begin), size), size))
    no_mask = ir.Constant(mask_type, [0] * lanes if lanes > 1 else 0)

    entry = builder.block
    group_head = builder.append_basic_block("find.group")
    step = builder.append_basic_block("find.step")
    group_end = builder.append_basic_block("find.group_end")
    latch = builder.append_basic_block("find.next_group")
    done = builder.append_basic_block("find.done")
    builder.cbranch(builder.icmp_signed("<", begin, full_end), group_head, done)

    builder.position_at_end(group_head)
    group_start = builder.phi(I64)
    builder.branch(step)
    builder.position_at_end(step)
    index = builder.phi(I64)
    masks = [builder.phi(mask_type) for _ in query_lanes]
    load_type = ir.VectorType(element, 2 * lanes) if wide else lane_type
    updated = list(masks)
    for code in range(1 if lanes > 1 else SCALAR_CODES_A_STEP):  # the scalar loop: independent popcnts
        code_index = builder.add(index, ir.Constant(I64, code))
        word_index = builder.mul(code_index, ir.Constant(I64, 2)) if interleaved else code_index
        loaded = [builder.load(builder.gep(base, [word_index], source_etype=element), typ=load_type,
                               align=element.width // 8) for base in bases]  # fmt: skip
        updated = [
            builder.or_(mask, builder.sext(_below(builder, loaded, query, limit, register_bits, wide), mask_type))
            for mask, query, limit in zip(updated, query_lanes, limits, strict=True)
        ]
    following = builder.add(index, ir.Constant(I64, lanes if lanes > 1 else SCALAR_CODES_A_STEP))
    index.add_incoming(group_start, group_head)
    index.add_incoming(following, step)
    for mask, new in zip(masks, updated, strict=True):
        mask.add_incoming(no_mask, group_head)
        mask.add_incoming(new, step)
    builder.cbranch(builder.icmp_signed("<", following, builder.add(group_start, size)), step, group_end)

    builder.position_at_end(group_end)
    hits = [_any(builder, mask) for mask in updated]
    found = hits[0] if queries == 1 else builder.or_(hits[0], hits[1])
    builder.cbranch(found, done, latch)
    builder.position_at_end(latch)
    next_group = builder.add(group_start, size)
    group_start.add_incoming(begin, entry)
    group_start.add_incoming(next_group, latch)
    builder.cbranch(builder.icmp_signed("<", next_group, full_end), group_head, done)

    builder.position_at_end(done)
    position = builder.phi(I64)
    position.add_incoming(full_end, entry)
    position.add_incoming(group_start, group_end)
    position.add_incoming(full_end, latch)
    flags = []
    for hit in hits:  # every phi first, then the extensions
        flag = builder.phi(I1)
        flag.add_incoming(ir.Constant(I1, 0), entry)
        flag.add_incoming(hit, group_end)
        flag.add_incoming(ir.Constant(I1, 0), latch)
        flags.append(flag)
    flags = [builder.zext(flag, I64) for flag in flags] + [ir.Constant(I64, 0)] * (2 - queries)
    return [position, *flags]


@functools.cache
def first_hit(register_bits: int, queries: int, planes: int, group: int, interleaved: bool = False):
    """An intrinsic ``(first_address, second_address, start, stop, q0a, q0b, q1a, q1b, bound0, bound1)
    -> (position, hit0, hit1)``: the first group of ``group`` codes from ``start`` holding a code
    closer than its query's bound.

    Scans whole groups ``start, start + group, …`` up to ``stop`` and returns at the first one
    where some code's distance to query 0 is below ``bound0`` (or, with ``queries=2``, to query
    1 below ``bound1``): its start, and for each query whether it has a hit there. With no hit
    it returns the end of the last whole group and ``(0, 0)``; the caller looks at what is left
    (fewer than ``group`` codes) itself. A code's distance is ``popcount(firsts[i] ^ qXa)``
    plus, with ``planes=2``, ``popcount(seconds[i] ^ qXb)``, where ``firsts``/``seconds`` are
    the words at the two addresses (``array.ctypes.data``) and the word type is the queries'
    (uint8 … uint64); ``interleaved`` (with ``planes=2``) reads both words of code ``i`` at
    ``2 i`` and ``2 i + 1`` of the first address instead, as 128-bit codes lie in an index.
    Addresses, not arrays: every array a numba loop handles costs atomic reference
    counting. Each step reads two registers; a group's verdict is one test of the OR of its
    compare masks, so a group costs no reduction and no call.
    """

    @intrinsic
    def find(typingctx, first_address, second_address, start, stop, q0a, q0b, q1a, q1b, bound0, bound1):
        arguments = (first_address, second_address, start, stop, q0a, q0b, q1a, q1b, bound0, bound1)
        signature = types.UniTuple(types.int64, 3)(*arguments)

        def codegen(context, builder, sig, args):
            element = ir.IntType(sig.args[4].bitwidth)
            values = _emit_find(builder, args, element, register_bits, queries, planes, group, interleaved)
            return context.make_tuple(builder, sig.return_type, values)

        return signature, codegen

    return find


# How the kernel's codes lie: one word each (8–64 bits), 128-bit blocks split into two planes, or 128-bit
# word pairs as they lie in an index; each as (planes, interleaved) for `first_hit`.
WORDS, PLANES, PAIRS = 0, 1, 2
LAYOUTS = {WORDS: (1, False), PLANES: (2, False), PAIRS: (2, True)}


@functools.cache
def find_first_hit(group: int, register_bits: tuple[int, ...]):
    """One intrinsic for every `first_hit`: ``(variant, pair, layout, *first_hit's ten arguments)``.

    ``variant`` indexes ``register_bits``, ``pair`` says two queries, ``layout`` is one of
    `LAYOUTS`. The choice is an IR ``switch`` over the loops of every combination (a branch
    the CPU predicts: it never changes within a scan), so the kernel has one call site and
    one compiled scan serves every variant, which is how the tests run them all.
    """

    @intrinsic
    def find(typingctx, variant, pair, layout, first_address, second_address, start, stop, q0a, q0b, q1a, q1b,
             bound0, bound1):  # fmt: skip
        arguments = (
            variant,
            pair,
            layout,
            first_address,
            second_address,
            start,
            stop,
            q0a,
            q0b,
            q1a,
            q1b,
            bound0,
            bound1,
        )
        signature = types.UniTuple(types.int64, 3)(*arguments)

        def codegen(context, builder, sig, args):
            element = ir.IntType(sig.args[7].bitwidth)
            variant_code, pair_code, layout_code = (_resize(builder, value, I64) for value in args[:3])
            selector = builder.add(builder.mul(variant_code, ir.Constant(I64, 2 * len(LAYOUTS))),
                                   builder.add(builder.mul(layout_code, ir.Constant(I64, 2)), pair_code))  # fmt: skip
            merge = builder.append_basic_block("find.merge")
            unknown = builder.append_basic_block("find.unknown")
            switch = builder.switch(selector, unknown)
            results = []
            for code, bits in enumerate(register_bits):
                for layout, (planes, interleaved) in LAYOUTS.items():
                    for queries in (1, 2):
                        case = builder.append_basic_block("find.case")
                        switch.add_case(ir.Constant(I64, code * 2 * len(LAYOUTS) + layout * 2 + queries - 1), case)
                        builder.position_at_end(case)
                        values = _emit_find(builder, args[3:], element, bits, queries, planes, group, interleaved)
                        results.append((values, builder.block))
                        builder.branch(merge)
            builder.position_at_end(unknown)
            builder.unreachable()  # the kernel passes only the codes above
            builder.position_at_end(merge)
            merged = [builder.phi(I64) for _ in range(3)]
            for values, block in results:
                for phi, value in zip(merged, values, strict=True):
                    phi.add_incoming(value, block)
            return context.make_tuple(builder, sig.return_type, merged)

        return signature, codegen

    return find


def _broadcast(builder: ir.IRBuilder, value: ir.Value, lane_type: ir.Type) -> ir.Value:
    return _splat(builder, value, lane_type) if isinstance(lane_type, ir.VectorType) else value
