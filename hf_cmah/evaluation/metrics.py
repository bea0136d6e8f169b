"""Retrieval metrics over a query × database distance matrix (NumPy only).

Ranking and ties
    Every query ranks the whole database by ascending distance (Hamming distance of codes,
    or 1 − cosine of embeddings). Equal distances keep database order: the sort is stable,
    so among items at the same distance the one earlier in the database ranks first. The
    evaluation builds its database sorted by shape id, so ties resolve by id, as the
    ShapeIndex does (ARCHITECTURE.md, contract 5). The result is deterministic but, for
    codes, depends on that order: a collapsed model whose codes are all equal scores whatever
    the id order happens to give. ``map@all_tie_aware`` (`tie_aware_average_precision`) is the
    AP expected over every ordering of tied items, which no tie rule can inflate; report it
    beside ``map@all``. ``precision_recall_by_radius`` needs no tie rule at all.

Class-level metrics (relevant = same label)
    AP@all = (1/R) Σ_i P@i · rel_i over the whole ranking (R = relevant items in the database).
    AP@k = (1/min(k, R)) Σ_{i≤k} P@i · rel_i, so a perfect top k scores 1 and AP@k = AP@all for k ≥ N.
    P@k = relevant items among the first k / k.
    Queries with no relevant item in the database (R = 0) have no defined AP; they are left out
    of every class-level mean, and their number is reported as ``queries_without_relevant``.

Instance-level metrics (relevant = the query's own paired item, same instance id)
    Acc@k = share of queries whose paired item is among the first k. Queries whose instance is
    not in the database are left out, and counted in ``queries_without_instance``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..codes import hamming_distance, pack_codes
from ..errors import InvalidInputError


def hamming_distances(query_codes, database_codes) -> np.ndarray:
    """±1 codes ``[Q, K]`` and ``[N, K]`` → ``int32 [Q, N]`` Hamming distances (through `hf_cmah.codes`)."""
    return hamming_distance(pack_codes(query_codes), pack_codes(database_codes))


def cosine_distances(query_embeds, database_embeds) -> np.ndarray:
    """L2-normalised embeddings ``[Q, D]`` and ``[N, D]`` → ``float64 [Q, N]`` of 1 − cosine."""
    queries = np.asarray(query_embeds, dtype=np.float64)
    database = np.asarray(database_embeds, dtype=np.float64)
    return 1.0 - queries @ database.T


def rank_database(distances: np.ndarray) -> np.ndarray:
    """``[Q, N]`` database indices of each query, nearest first; ties keep database order."""
    return np.argsort(np.asarray(distances), axis=1, kind="stable")


def _check(distances: np.ndarray, query_labels: np.ndarray, database_labels: np.ndarray) -> None:
    if distances.ndim != 2:
        raise InvalidInputError(f"distances must be a [queries, database] matrix, got shape {list(distances.shape)}")
    if distances.shape != (len(query_labels), len(database_labels)):
        raise InvalidInputError(
            f"distances has shape {list(distances.shape)} but there are {len(query_labels)} query labels "
            f"and {len(database_labels)} database labels"
        )
    if distances.shape[1] == 0:
        raise InvalidInputError("the database is empty")


def ranked_relevance(ranking: np.ndarray, query_labels, database_labels) -> np.ndarray:
    """``bool [Q, N]``: whether the item at each rank shares the query's label."""
    query_labels = np.asarray(query_labels)
    database_labels = np.asarray(database_labels)
    return database_labels[ranking] == query_labels[:, None]


def average_precision(relevance: np.ndarray, k: int | None = None) -> np.ndarray:
    """AP@k (``k=None``: AP@all) of each row of ranked relevance; NaN where a row has no relevant item."""
    relevance = np.asarray(relevance, dtype=bool)
    total_relevant = relevance.sum(axis=1)
    top = relevance if k is None else relevance[:, :k]
    hits = np.cumsum(top, axis=1)
    precision_at_rank = hits / np.arange(1, top.shape[1] + 1)
    denominator = total_relevant if k is None else np.minimum(total_relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (precision_at_rank * top).sum(axis=1) / denominator
    return np.where(total_relevant > 0, ap, np.nan)


def tie_aware_average_precision(distances: np.ndarray, query_labels, database_labels) -> np.ndarray:
    """AP@all of each query expected over all orderings of tied distances; NaN where no item is relevant.

    McSherry & Najork (ECIR 2008): a tie group of ``n`` items, ``r`` of them relevant, after ``N_b``
    items of which ``R_b`` relevant, adds ``(r/n) Σ_{i=N_b+1}^{N_b+n} (R_b + 1 + (i−N_b−1)(r−1)/(n−1)) / i``
    to Σ P@i·rel_i — each rank ``i`` of the group holds a relevant item with probability r/n, and then
    the group's ranks before it hold (r−1)/(n−1) relevant items each on average. Exact, no sampling.
    """
    distances = np.asarray(distances)
    query_labels, database_labels = np.asarray(query_labels), np.asarray(database_labels)
    _check(distances, query_labels, database_labels)
    queries, size = distances.shape
    order = np.argsort(distances, axis=1, kind="stable")
    ranked = np.take_along_axis(distances, order, axis=1)
    relevant = (database_labels[order] == query_labels[:, None]).astype(np.float64)
    starts = np.ones((queries, size), dtype=bool)
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    group = np.cumsum(starts, axis=1) - 1 + (np.arange(queries) * size)[:, None]  # (Q, N) flat group ids
    count = np.bincount(group.ravel(), minlength=queries * size).astype(np.float64)
    hits = np.bincount(group.ravel(), weights=relevant.ravel(), minlength=queries * size)
    before = np.zeros(queries * size)  # items ranked before each group
    before[group[starts]] = np.nonzero(starts.ravel())[0] % size
    relevant_before = np.zeros(queries * size)
    relevant_before[group[starts]] = (np.cumsum(relevant, axis=1) - relevant)[starts]
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, size + 1))])
    used = count > 0
    n, r, n_b, r_b = count[used], hits[used], before[used], relevant_before[used]
    spread = harmonic[(n_b + n).astype(int)] - harmonic[n_b.astype(int)]  # Σ 1/i over the group's ranks
    within = np.divide(r - 1.0, n - 1.0, out=np.zeros_like(n), where=n > 1)
    contribution = (r / n) * ((r_b + 1.0) * spread + within * (n - (n_b + 1.0) * spread))
    owner = np.nonzero(used)[0] // size
    total = np.bincount(owner, weights=contribution, minlength=queries)
    relevant_count = relevant.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(relevant_count > 0, total / relevant_count, np.nan)


def precision_at_k(relevance: np.ndarray, k_values: Sequence[int]) -> np.ndarray:
    """``[Q, len(k_values)]`` precision among the first k (k larger than the database: divided by k all the same)."""
    hits = np.cumsum(np.asarray(relevance, dtype=bool), axis=1)
    columns = [hits[:, min(k, hits.shape[1]) - 1] / k for k in k_values]
    return np.stack(columns, axis=1).astype(np.float64)


def precision_recall_by_radius(distances: np.ndarray, query_labels, database_labels, code_bits: int) -> dict:
    """Hashing's precision–recall curve: retrieve everything within Hamming radius r, for r = 0..K.

    Precision averages over queries that retrieve at least one item at that radius; recall over
    queries with at least one relevant item. No tie rule is involved.
    """
    distances = np.asarray(distances)
    relevant = np.asarray(database_labels)[None, :] == np.asarray(query_labels)[:, None]  # (Q, N)
    keep = relevant.any(axis=1)
    distances, relevant = distances[keep], relevant[keep]
    radii = np.arange(code_bits + 1)
    # (Q, K+1) counts of items (and of relevant items) at each exact distance, then cumulated over r.
    offsets = (np.arange(len(distances)) * (code_bits + 1))[:, None]
    size = len(distances) * (code_bits + 1)
    retrieved = np.bincount((distances + offsets).ravel(), minlength=size).reshape(-1, code_bits + 1).cumsum(axis=1)
    hits = np.bincount((distances + offsets)[relevant], minlength=size).reshape(-1, code_bits + 1).cumsum(axis=1)
    answered = retrieved > 0  # (Q, K+1): queries that retrieve something at radius r
    per_query = np.divide(hits, retrieved, out=np.zeros(hits.shape), where=answered)
    precision = per_query.sum(axis=0) / np.maximum(answered.sum(axis=0), 1)  # 0 where no query retrieves anything
    recall = (hits / relevant.sum(axis=1, keepdims=True)).mean(axis=0)
    return {"radius": radii.tolist(), "precision": precision.tolist(), "recall": recall.tolist()}


def instance_accuracy(ranking: np.ndarray, query_ids, database_ids, k_values: Sequence[int]) -> tuple[dict, int]:
    """Acc@k: share of queries whose own instance (same id) is among the first k; and how many were left out."""
    query_ids = np.asarray(query_ids)
    database_ids = np.asarray(database_ids)
    matches = database_ids[ranking] == query_ids[:, None]  # (Q, N)
    has_instance = matches.any(axis=1)
    first_rank = np.argmax(matches, axis=1)[has_instance]
    results = {f"acc@{k}": float((first_rank < k).mean()) if len(first_rank) else float("nan") for k in k_values}
    return results, int((~has_instance).sum())


def retrieval_metrics(
    distances: np.ndarray,
    query_labels,
    database_labels,
    query_ids=None,
    database_ids=None,
    map_k: Sequence[int] = (10, 100),
    precision_k: Sequence[int] = (1, 5, 10, 20, 50, 100),
    accuracy_k: Sequence[int] = (1, 10),
    code_bits: int | None = None,
) -> dict:
    """Every metric of one retrieval direction.

    Returns ``map@all``, ``map@k``, ``p@k`` (floats), ``precision_curve`` (``{"k": [...],
    "precision": [...]}``), ``acc@k`` when instance ids are given, ``pr_curve`` when ``code_bits``
    is given (distances are then Hamming), and the counts ``num_queries``, ``num_database``,
    ``queries_without_relevant``, ``queries_without_instance``.
    """
    distances = np.asarray(distances)
    query_labels = np.asarray(query_labels)
    database_labels = np.asarray(database_labels)
    _check(distances, query_labels, database_labels)
    ranking = rank_database(distances)
    relevance = ranked_relevance(ranking, query_labels, database_labels)
    has_relevant = relevance.any(axis=1)
    scored = relevance[has_relevant]
    results: dict = {
        "num_queries": len(query_labels),
        "num_database": len(database_labels),
        "queries_without_relevant": int((~has_relevant).sum()),
    }

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if len(values) else float("nan")

    results["map@all"] = mean(average_precision(scored))
    results["map@all_tie_aware"] = mean(
        tie_aware_average_precision(distances[has_relevant], query_labels[has_relevant], database_labels)
    )
    for k in map_k:
        results[f"map@{k}"] = mean(average_precision(scored, k))
    curve_k = sorted(set(precision_k) | set(range(1, min(100, distances.shape[1]) + 1)))
    curve = precision_at_k(scored, curve_k).mean(axis=0) if len(scored) else np.full(len(curve_k), np.nan)
    for k in precision_k:
        results[f"p@{k}"] = float(curve[curve_k.index(k)])
    results["precision_curve"] = {"k": curve_k, "precision": curve.tolist()}
    if query_ids is not None and database_ids is not None:
        accuracy, without_instance = instance_accuracy(ranking, query_ids, database_ids, accuracy_k)
        results.update(accuracy)
        results["queries_without_instance"] = without_instance
    if code_bits is not None:
        results["pr_curve"] = precision_recall_by_radius(distances, query_labels, database_labels, code_bits)
    return results


__all__ = [
    "average_precision",
    "cosine_distances",
    "hamming_distances",
    "instance_accuracy",
    "precision_at_k",
    "precision_recall_by_radius",
    "rank_database",
    "ranked_relevance",
    "retrieval_metrics",
    "tie_aware_average_precision",
]
