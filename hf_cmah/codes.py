"""Binary codes: ±1 codes ⇄ packed bytes, and Hamming distance.

THE bit order of the project (ARCHITECTURE.md, contract 4): bit ``1`` means ``+1``,
packed with ``numpy.packbits(..., axis=-1, bitorder="big")``, so code element ``j``
is bit ``7 - j % 8`` of byte ``j // 8``. K bits → K/8 bytes, K a multiple of 8.
This module is the one place that packs, unpacks and counts differing bits.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidInputError

# popcount of every byte value: the reference path of every Hamming kernel.
POPCOUNT_TABLE = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)


def _as_numpy(codes) -> np.ndarray:
    if hasattr(codes, "detach"):  # a torch tensor, without importing torch here
        codes = codes.detach().cpu().numpy()
    return np.asarray(codes)


def pack_codes(codes) -> np.ndarray:
    """Pack ±1 (or 0/1 bool) codes ``[..., K]`` into ``uint8 [..., K/8]``.

    Values > 0 become bit 1; everything else bit 0; NaN has no sign and is refused. Accepts numpy
    arrays and torch tensors.
    """
    array = _as_numpy(codes)
    if array.ndim == 0:
        raise InvalidInputError("codes: expected an array of shape [..., K], got a scalar")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise InvalidInputError("codes: contain NaN, which is neither +1 nor -1")
    bits = array.shape[-1]
    if bits == 0 or bits % 8:
        raise InvalidInputError(f"codes: the last dimension K={bits} must be a positive multiple of 8")
    return np.packbits(array > 0, axis=-1, bitorder="big")


def unpack_codes(packed, code_bits: int | None = None) -> np.ndarray:
    """Unpack ``uint8 [..., K/8]`` into ±1 ``int8 [..., K]`` codes (inverse of :func:`pack_codes`)."""
    array = _as_numpy(packed)
    if array.dtype != np.uint8:
        raise InvalidInputError(f"packed codes: expected dtype uint8, got {array.dtype}")
    if code_bits is not None and code_bits != array.shape[-1] * 8:
        raise InvalidInputError(
            f"packed codes: {array.shape[-1]} bytes per code hold {array.shape[-1] * 8} bits, not code_bits={code_bits}"
        )
    bits = np.unpackbits(array, axis=-1, bitorder="big").astype(np.int8)
    return bits * 2 - 1


def hamming_distance(queries, database) -> np.ndarray:
    """All-pairs Hamming distance of packed codes: ``[Q, B] × [N, B]`` → ``int32 [Q, N]``.

    The plain NumPy XOR + popcount-table reference; the index kernels are tested against it.
    """
    queries = np.atleast_2d(_as_numpy(queries))
    database = np.atleast_2d(_as_numpy(database))
    if queries.dtype != np.uint8 or database.dtype != np.uint8:
        raise InvalidInputError("hamming_distance: packed codes must be uint8")
    if queries.shape[-1] != database.shape[-1]:
        raise InvalidInputError(
            f"hamming_distance: query codes have {queries.shape[-1]} bytes, database codes {database.shape[-1]}"
        )
    xor = np.bitwise_xor(queries[:, None, :], database[None, :, :])
    return POPCOUNT_TABLE[xor].sum(axis=-1, dtype=np.int32)


__all__ = ["POPCOUNT_TABLE", "hamming_distance", "pack_codes", "unpack_codes"]
