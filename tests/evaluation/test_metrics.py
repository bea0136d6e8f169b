"""Retrieval metrics against cases worked out by hand (ties, queries with nothing relevant)."""

from __future__ import annotations

import numpy as np
import pytest

from hf_cmah.errors import InvalidInputError
from hf_cmah.evaluation.metrics import (
    average_precision,
    hamming_distances,
    instance_accuracy,
    precision_at_k,
    precision_recall_by_radius,
    rank_database,
    retrieval_metrics,
)


def test_average_precision_by_hand():
    # relevant at ranks 1, 3, 4 of 5: AP = (1/1 + 2/3 + 3/4) / 3
    relevance = np.array([[1, 0, 1, 1, 0]], dtype=bool)
    assert average_precision(relevance)[0] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    # AP@2 divides by min(k, R) = 2: (1/1) / 2
    assert average_precision(relevance, k=2)[0] == pytest.approx(0.5)
    # k beyond the database is AP@all
    assert average_precision(relevance, k=50)[0] == pytest.approx(average_precision(relevance)[0])


def test_query_without_relevant_item_is_nan_and_left_out():
    assert np.isnan(average_precision(np.zeros((1, 4), dtype=bool))[0])
    distances = np.array([[0, 1, 2], [0, 1, 2]])
    results = retrieval_metrics(distances, query_labels=[7, 0], database_labels=[0, 1, 0], precision_k=(1, 2))
    # only the second query is scored: relevant at ranks 1 and 3 → AP = (1 + 2/3) / 2
    assert results["queries_without_relevant"] == 1
    assert results["map@all"] == pytest.approx((1 + 2 / 3) / 2)
    assert results["p@1"] == pytest.approx(1.0)
    assert results["p@2"] == pytest.approx(0.5)


def test_ties_keep_database_order():
    # all three at distance 1: the ranking is the database order, whatever the labels
    distances = np.array([[1, 1, 1, 0]])
    assert rank_database(distances).tolist() == [[3, 0, 1, 2]]
    results = retrieval_metrics(distances, query_labels=[1], database_labels=[0, 1, 0, 0], map_k=(2,))
    # ranking: item 3 (label 0), item 0 (0), item 1 (1), item 2 (0) → one relevant item at rank 3
    assert results["map@all"] == pytest.approx(1 / 3)
    assert results["map@2"] == pytest.approx(0.0)


def test_precision_at_k_divides_by_k_beyond_the_database():
    relevance = np.array([[1, 1, 0]], dtype=bool)
    assert precision_at_k(relevance, (1, 3, 6)).tolist() == [[1.0, 2 / 3, 2 / 6]]


def test_instance_accuracy_and_missing_instances():
    ranking = np.array([[2, 0, 1], [0, 1, 2], [1, 2, 0]])
    accuracy, missing = instance_accuracy(ranking, ["a", "b", "zz"], ["a", "b", "c"], (1, 2))
    # query "a": its item (index 0) at rank 2; query "b": item 1 at rank 2; "zz" is not in the database
    assert missing == 1
    assert accuracy == {"acc@1": 0.0, "acc@2": 1.0}


def test_hamming_distances_use_the_project_bit_order():
    queries = np.array([[1, 1, 1, 1, 1, 1, 1, 1]], dtype=np.int8)
    database = np.array([[1, 1, 1, 1, 1, 1, 1, 1], [-1, 1, 1, 1, 1, 1, 1, -1], [-1] * 8], dtype=np.int8)
    assert hamming_distances(queries, database).tolist() == [[0, 2, 8]]


def test_precision_recall_by_radius_by_hand():
    # one query (label 0); database labels 0, 1, 0 at Hamming distances 0, 1, 2 with K = 2
    curve = precision_recall_by_radius(np.array([[0, 1, 2]]), [0], [0, 1, 0], code_bits=2)
    assert curve["radius"] == [0, 1, 2]
    assert curve["precision"] == pytest.approx([1.0, 0.5, 2 / 3])
    assert curve["recall"] == pytest.approx([0.5, 0.5, 1.0])


def test_full_result_keys_and_shape_errors():
    rng = np.random.default_rng(0)
    codes = np.where(rng.random((6, 16)) < 0.5, -1, 1)
    distances = hamming_distances(codes, codes)
    labels = [0, 0, 1, 1, 2, 2]
    ids = ["a", "b", "c", "d", "e", "f"]
    results = retrieval_metrics(distances, labels, labels, ids, ids, code_bits=16)
    # every query finds itself at distance 0, first among ties unless an earlier item is identical
    assert results["acc@1"] == 1.0
    assert len(results["pr_curve"]["radius"]) == 17
    assert results["precision_curve"]["k"][:3] == [1, 2, 3]
    with pytest.raises(InvalidInputError, match="query labels"):
        retrieval_metrics(distances, labels[:5], labels)
