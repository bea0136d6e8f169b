"""The exact kernel's hot loops as explicit LLVM vectors: find the next group of codes with one closer than a
bound (`first_hit`), then mark which codes of that group are (`mask_below`).

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

Each step of `first_hit` reads two or four registers' worth of codes and XORs them with one or two
queries (two queries a load halve a batch's reads), like the C probe
`benchmarks/ceiling/popcount_scan.c` that measures the ceiling. A step keeps only the lane-wise
minimum distance (XOR, popcount, min: no compare in the loop), and a group's verdict is one
compare of that minimum with the bound, so the scan stops only at a group with a hit. There
`mask_below` writes the group's hits as a bit mask, and the caller visits just those codes:
a hit costs one more pass over 256 codes and the hits themselves, not a distance per code
read back one by one (which had held the kernel at 0.6 of the probe on a Zen 5 EPYC).

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


def _distances(builder, loaded, query, register_bits, interleaved):
    """Each lane's distance: the popcount of the XOR, summed over planes.

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
    return distance


def _umin(builder: ir.IRBuilder, first: ir.Value, second: ir.Value) -> ir.Value:
    """The lane-wise unsigned minimum of two distances (LLVM ``umin``).

    64-bit lanes are taken as 32-bit pairs: a distance lies in the low half and the high half
    is 0, so the pairwise minimum is the same number, and AVX2 has ``vpminud`` but no 64-bit
    minimum (``vpminuq`` is AVX-512).
    """
    kind = first.type
    if isinstance(kind, ir.VectorType) and kind.element.width == 64:
        halves = ir.VectorType(I32, 2 * kind.count)
        smaller = _umin(builder, builder.bitcast(first, halves), builder.bitcast(second, halves))
        return builder.bitcast(smaller, kind)
    suffix = f"v{kind.count}i{kind.element.width}" if isinstance(kind, ir.VectorType) else f"i{kind.width}"
    umin = cgutils.get_or_insert_function(builder.module, ir.FunctionType(kind, [kind, kind]), f"llvm.umin.{suffix}")
    return builder.call(umin, [first, second])


def _pair_pattern(builder, first: ir.Value, second: ir.Value, lanes: int) -> ir.Value:
    """``first, second, first, second, …`` over ``2 * lanes`` lanes: a query against interleaved word pairs."""
    pair_type = ir.VectorType(first.type, 2)
    pair = builder.insert_element(ir.Constant(pair_type, ir.Undefined), first, ir.Constant(I32, 0))
    pair = builder.insert_element(pair, second, ir.Constant(I32, 1))
    mask = ir.Constant(ir.VectorType(I32, 2 * lanes), [0, 1] * lanes)
    return builder.shuffle_vector(pair, pair, mask)


def _any(builder, lanes: ir.Value) -> ir.Value:
    """Whether any lane of an ``i1`` mask is set: its bits as one integer, compared with 0 (``kortest``/``vptest``)."""
    if not isinstance(lanes.type, ir.VectorType):
        return lanes
    bits = builder.bitcast(lanes, ir.IntType(lanes.type.count))
    return builder.icmp_unsigned("!=", bits, ir.Constant(bits.type, 0))


def _operands(builder, args, element, lanes, planes, interleaved):
    """The code bases, the queries as lanes and the bounds as lanes for a loop of ``lanes`` codes a step.

    ``args`` are the loops' shared arguments: ``(first_address, second_address, start, stop, q0a,
    q0b, q1a, q1b, bound0, bound1)``. Returns ``(bases, query_lanes, limits, lane_type, wide)``,
    ``wide`` when one load holds interleaved word pairs.
    """
    lane_type = ir.VectorType(element, lanes) if lanes > 1 else element
    bases = [builder.inttoptr(address, ir.PointerType()) for address in args[:planes]]
    query_words = [[_resize(builder, word, element) for word in words[:planes]]
                   for words in ([args[4], args[5]], [args[6], args[7]])]  # fmt: skip
    wide = interleaved and lanes > 1  # one load of 2 × lanes words; scalar pairs are two plain loads
    if interleaved:
        bases = [bases[0]] if wide else [bases[0], builder.gep(bases[0], [ir.Constant(I64, 1)], source_etype=element)]
    if wide:
        query_lanes = [[_pair_pattern(builder, first, second, lanes)] for first, second in query_words]
    else:
        query_lanes = [[_broadcast(builder, word, lane_type) for word in words] for words in query_words]
    limits = [_broadcast(builder, _resize(builder, bound, element), lane_type) for bound in args[8:10]]
    return bases, query_lanes, limits, lane_type, wide


def _load_codes(builder, bases, code_index, element, lanes, interleaved, wide):
    """The words of ``lanes`` codes from ``code_index``, one load per base."""
    word_index = builder.mul(code_index, ir.Constant(I64, 2)) if interleaved else code_index
    load_type = ir.VectorType(element, 2 * lanes) if wide else (ir.VectorType(element, lanes) if lanes > 1 else element)
    return [builder.load(builder.gep(base, [word_index], source_etype=element), typ=load_type,
                         align=element.width // 8) for base in bases]  # fmt: skip


def _registers_a_step(element: ir.IntType, register_bits: int) -> int:
    """Registers of codes a `first_hit` step reads: four of AVX-512's 32 for 32- and 64-bit words, else two.

    Four cut the loop's own instructions per code (1M × 64 bits on a Zen 5 EPYC: 1.04–1.15×,
    1 and 2 threads, A/B in one process). With AVX2's 16 registers they cost 0.88× (the
    nibble table's constants and two queries' minima no longer fit), and with 8- and 16-bit
    words a step of four would hold half a group or more (0.84–0.92×).
    """
    return 4 if register_bits == 512 and element.width >= 32 else 2


def _emit_find(builder, args, element, register_bits, queries, planes, group, interleaved) -> list[ir.Value]:
    """Emit `first_hit`'s loop at the builder for ``args`` (its ten arguments); returns ``[position, hit0, hit1]``."""
    lanes = _registers_a_step(element, register_bits) * register_bits // element.width if register_bits else 1
    assert group % max(lanes, SCALAR_CODES_A_STEP) == 0, "a group is whole steps"
    bases, query_lanes, limits, lane_type, wide = _operands(builder, args, element, lanes, planes, interleaved)
    query_lanes, limits = query_lanes[:queries], limits[:queries]
    # The scalar loop keeps one minimum per code of a step, so its popcnts do not wait on each other's ``min``.
    minima_a_query = 1 if lanes > 1 else SCALAR_CODES_A_STEP
    farthest = ir.Constant(lane_type, -1)
    begin, stop = _resize(builder, args[2], I64), _resize(builder, args[3], I64)
    size = ir.Constant(I64, group)
    full_end = builder.add(begin, builder.mul(builder.sdiv(builder.sub(stop, begin), size), size))

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
    minima = [[builder.phi(lane_type) for _ in range(minima_a_query)] for _ in query_lanes]
    updated = [list(phis) for phis in minima]
    for code in range(1 if lanes > 1 else SCALAR_CODES_A_STEP):  # the scalar loop: independent popcnts
        loaded = _load_codes(builder, bases, builder.add(index, ir.Constant(I64, code)), element, lanes,
                             interleaved, wide)  # fmt: skip
        for smallest, query in zip(updated, query_lanes, strict=True):
            slot = code % minima_a_query
            smallest[slot] = _umin(builder, smallest[slot], _distances(builder, loaded, query, register_bits, wide))
    following = builder.add(index, ir.Constant(I64, lanes if lanes > 1 else SCALAR_CODES_A_STEP))
    index.add_incoming(group_start, group_head)
    index.add_incoming(following, step)
    for phis, news in zip(minima, updated, strict=True):
        for phi, new in zip(phis, news, strict=True):
            phi.add_incoming(farthest, group_head)
            phi.add_incoming(new, step)
    builder.cbranch(builder.icmp_signed("<", following, builder.add(group_start, size)), step, group_end)

    builder.position_at_end(group_end)
    hits = []
    for smallest, limit in zip(updated, limits, strict=True):
        nearest = functools.reduce(functools.partial(_umin, builder), smallest)
        hits.append(_any(builder, builder.icmp_unsigned("<", nearest, limit)))
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


def _emit_mask(builder, args, out_address, element, register_bits, planes, group, interleaved) -> ir.Value:
    """Emit `mask_below`'s loop: bit ``i`` of the ``group // 64`` words at ``out_address`` says whether code
    ``start + i`` is closer than ``bound0`` to query 0 (``args`` as in `_emit_find`); returns the words ORed."""
    lanes = min(register_bits // element.width, 64) if register_bits else 1  # one register a step, ≤ one word
    bases, query_lanes, limits, _, wide = _operands(builder, args, element, lanes, planes, interleaved)
    out = builder.inttoptr(out_address, ir.PointerType())
    begin = _resize(builder, args[2], I64)
    entry = builder.block
    word_head = builder.append_basic_block("mask.word")
    done = builder.append_basic_block("mask.done")
    builder.branch(word_head)
    builder.position_at_end(word_head)
    word = builder.phi(I64)
    seen = builder.phi(I64)
    bits = ir.Constant(I64, 0)
    for step in range(64 // lanes):  # one 64-code word, unrolled
        code_index = builder.add(
            begin, builder.add(builder.mul(word, ir.Constant(I64, 64)), ir.Constant(I64, step * lanes))
        )
        loaded = _load_codes(builder, bases, code_index, element, lanes, interleaved, wide)
        below = builder.icmp_unsigned("<", _distances(builder, loaded, query_lanes[0], register_bits, wide), limits[0])
        below = builder.bitcast(below, ir.IntType(lanes)) if lanes > 1 else below
        bits = builder.or_(bits, builder.shl(_resize(builder, below, I64), ir.Constant(I64, step * lanes)))
    builder.store(bits, builder.gep(out, [word], source_etype=I64), align=8)
    next_word = builder.add(word, ir.Constant(I64, 1))
    seen_now = builder.or_(seen, bits)
    word.add_incoming(ir.Constant(I64, 0), entry)
    word.add_incoming(next_word, word_head)
    seen.add_incoming(ir.Constant(I64, 0), entry)
    seen.add_incoming(seen_now, word_head)
    builder.cbranch(builder.icmp_signed("<", next_word, ir.Constant(I64, group // 64)), word_head, done)
    builder.position_at_end(done)
    return seen_now


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
    counting. A step keeps each lane's minimum distance; a group's verdict is one compare of
    those minima with the bound, so a group costs no reduction and no call.
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


def _switch(builder: ir.IRBuilder, selector: ir.Value, cases: dict[int, object], results: int) -> list[ir.Value]:
    """An IR ``switch`` on ``selector`` over ``cases`` (value → a function emitting a case, returning its results).

    A branch the CPU predicts: the selector never changes within a scan. Returns the merged results.
    """
    merge = builder.append_basic_block("switch.merge")
    unknown = builder.append_basic_block("switch.unknown")
    switch = builder.switch(selector, unknown)
    emitted = []
    for value, emit in cases.items():
        case = builder.append_basic_block("switch.case")
        switch.add_case(ir.Constant(I64, value), case)
        builder.position_at_end(case)
        emitted.append((emit(), builder.block))
        builder.branch(merge)
    builder.position_at_end(unknown)
    builder.unreachable()  # the kernel passes only the codes above
    builder.position_at_end(merge)
    merged = [builder.phi(I64) for _ in range(results)]
    for values, block in emitted:
        for phi, value in zip(merged, values, strict=True):
            phi.add_incoming(value, block)
    return merged


def _selector(builder: ir.IRBuilder, *codes: tuple[ir.Value, int]) -> ir.Value:
    """One case number from ``(value, how many values it takes)`` pairs, most significant first."""
    selector = ir.Constant(I64, 0)
    for value, count in codes:
        selector = builder.add(builder.mul(selector, ir.Constant(I64, count)), _resize(builder, value, I64))
    return selector


@functools.cache
def find_first_hit(group: int, register_bits: tuple[int, ...]):
    """One intrinsic for every `first_hit`: ``(variant, pair, layout, *first_hit's ten arguments)``.

    ``variant`` indexes ``register_bits``, ``pair`` says two queries, ``layout`` is one of
    `LAYOUTS`. The choice is an IR ``switch`` over the loops of every combination, so the
    kernel has one call site and one compiled scan serves every variant, which is how the
    tests run them all.
    """

    @intrinsic
    def find(typingctx, variant, pair, layout, first_address, second_address, start, stop, q0a, q0b, q1a, q1b,
             bound0, bound1):  # fmt: skip
        arguments = (variant, pair, layout, first_address, second_address, start, stop, q0a, q0b, q1a, q1b,
                     bound0, bound1)  # fmt: skip
        signature = types.UniTuple(types.int64, 3)(*arguments)

        def codegen(context, builder, sig, args):
            element = ir.IntType(sig.args[7].bitwidth)
            selector = _selector(builder, (args[0], len(register_bits)), (args[2], len(LAYOUTS)), (args[1], 2))
            cases = {
                (code * len(LAYOUTS) + layout) * 2 + queries - 1: functools.partial(
                    _emit_find, builder, args[3:], element, bits, queries, planes, group, interleaved
                )
                for code, bits in enumerate(register_bits)
                for layout, (planes, interleaved) in LAYOUTS.items()
                for queries in (1, 2)
            }
            return context.make_tuple(builder, sig.return_type, _switch(builder, selector, cases, 3))

        return signature, codegen

    return find


@functools.cache
def mask_below(group: int, register_bits: tuple[int, ...]):
    """An intrinsic ``(variant, layout, first_address, second_address, start, qa, qb, bound, out_address) -> any``.

    Writes ``group // 64`` uint64 words at ``out_address``: bit ``i`` of word ``w`` set when code
    ``start + 64 w + i`` is closer than ``bound`` to the query ``(qa, qb)`` (addresses, layouts
    and word types as in `first_hit`); returns the words ORed (nonzero when any code is).
    Every variant and layout behind one ``switch``, as in `find_first_hit`.
    """

    @intrinsic
    def mask(typingctx, variant, layout, first_address, second_address, start, qa, qb, bound, out_address):
        arguments = (variant, layout, first_address, second_address, start, qa, qb, bound, out_address)
        signature = types.int64(*arguments)

        def codegen(context, builder, sig, args):
            element = ir.IntType(sig.args[5].bitwidth)
            variant_code, layout_code, first, second, begin, query_a, query_b, limit, out = args
            shared = (first, second, begin, begin, query_a, query_b, query_a, query_b, limit, limit)
            cases = {
                code * len(LAYOUTS) + layout: lambda bits=bits, planes=planes, interleaved=interleaved: [
                    _emit_mask(builder, shared, out, element, bits, planes, group, interleaved)
                ]
                for code, bits in enumerate(register_bits)
                for layout, (planes, interleaved) in LAYOUTS.items()
            }
            selector = _selector(builder, (variant_code, len(register_bits)), (layout_code, len(LAYOUTS)))
            return _switch(builder, selector, cases, 1)[0]

        return signature, codegen

    return mask


def _broadcast(builder: ir.IRBuilder, value: ir.Value, lane_type: ir.Type) -> ir.Value:
    return _splat(builder, value, lane_type) if isinstance(lane_type, ir.VectorType) else value
