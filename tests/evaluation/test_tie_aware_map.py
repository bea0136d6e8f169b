"""Tie-aware AP: the AP expected over every ordering of tied distances, checked against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hf_cmah.evaluation.metrics import (
    average_precision,
    rank_database,
    ranked_relevance,
    retrieval_metrics,
    tie_aware_average_precision,
)


def _brute_force(distances: np.ndarray, query_labels, database_labels) -> np.ndarray:
    """Mean AP over every ordering that sorts by distance (ties in every possible order)."""
    results = []
    for row, label in zip(distances, query_labels):
        aps = []
        for permutation in itertools.permutations(range(len(row))):
            order = sorted(permutation, key=lambda index: row[index])  # stable: ties in permutation order
            relevance = (np.asarray(database_labels)[order] == label)[None, :]
            aps.append(average_precision(relevance)[0])
        results.append(np.mean(aps))
    return np.array(results)


@pytest.mark.parametrize("seed", range(4))
def test_equals_the_mean_over_all_orderings_of_ties(seed):
    rng = np.random.default_rng(seed)
    distances = rng.integers(0, 3, size=(3, 7))  # few distinct values: many ties
    query_labels = rng.integers(0, 2, size=3)
    database_labels = rng.integers(0, 2, size=7)
    database_labels[:2] = query_labels[0], 1 - query_labels[0]
    expected = _brute_force(distances, query_labels, database_labels)
    got = tie_aware_average_precision(distances, query_labels, database_labels)
    valid = ~np.isnan(got)
    assert np.array_equal(valid, ~np.isnan(expected))
    assert np.allclose(got[valid], expected[valid], atol=1e-12)


def test_without_ties_it_is_the_ordinary_ap():
    rng = np.random.default_rng(7)
    distances = rng.random((20, 50))
    query_labels, database_labels = rng.integers(0, 4, 20), rng.integers(0, 4, 50)
    ordinary = average_precision(ranked_relevance(rank_database(distances), query_labels, database_labels))
    assert np.allclose(tie_aware_average_precision(distances, query_labels, database_labels), ordinary)


def test_a_collapsed_model_cannot_score_by_id_order():
    # Every code equal: every distance ties. The database is sorted so that the query's class comes first,
    # which the stable tie rule turns into a perfect score; the tie-aware AP is the random-ranking level.
    database_labels = np.array([0] * 5 + [1] * 45)
    query_labels = np.zeros(10, dtype=int)
    distances = np.zeros((10, 50), dtype=np.int32)
    metrics = retrieval_metrics(distances, query_labels, database_labels)
    assert metrics["map@all"] == pytest.approx(1.0)
    harmonic = sum(1 / i for i in range(1, 51))  # one tie group of 50 items, 5 relevant
    assert metrics["map@all_tie_aware"] == pytest.approx((harmonic + 4 / 49 * (50 - harmonic)) / 50)
    assert 0.1 < metrics["map@all_tie_aware"] < 0.2, "near the share of relevant items, as a random ranking"
    no_relevant = tie_aware_average_precision(distances[:1], np.array([2]), database_labels)
    assert np.isnan(no_relevant).all()
