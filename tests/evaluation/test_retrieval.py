"""Encoding and scoring a split end to end, through hf_cmah.evaluation's public names."""

from __future__ import annotations

import pytest

from hf_cmah.errors import InvalidInputError
from hf_cmah.evaluation import encode_images, encode_shapes, random_codes, score_retrieval, summarize
from hf_cmah.evaluation.encoding import encode_batches
from tests.fitted import CODE_BITS, NUM_SHAPES


def test_a_model_fitted_to_its_own_data_beats_random_codes(fitted_retriever):
    model, processor, dataset = fitted_retriever.model, fitted_retriever.processor, fitted_retriever.dataset
    images = encode_images(model, processor, dataset, batch_size=5, progress=False)  # 3 batches, the last ragged
    shapes = encode_shapes(model, processor, dataset, batch_size=5, progress=False)
    assert images.codes.shape == (NUM_SHAPES, CODE_BITS) and shapes.embeds.shape[0] == NUM_SHAPES
    assert list(shapes.shape_ids) == sorted(fitted_retriever.shape_ids)  # the database is sorted by id

    trained = summarize(score_retrieval(images, shapes))
    chance = summarize(score_retrieval(random_codes(images, CODE_BITS, 0), random_codes(shapes, CODE_BITS, 1)))
    # The fit puts each image's own shape (its only relevant item) first by Hamming distance.
    assert trained["image_to_shape/map@all"] == 1.0 and trained["image_to_shape/acc@1"] == 1.0
    assert chance["image_to_shape/map@all"] < 0.5 and chance["image_to_shape/acc@1"] < 0.5
    assert trained["shape_to_image/map@all"] > chance["shape_to_image/map@all"] + 0.3
    assert trained["image_to_shape_cosine/map@all"] > chance["image_to_shape/map@all"] + 0.3


def test_nothing_to_encode_is_a_clear_error(fitted_retriever):
    with pytest.raises(InvalidInputError, match="nothing to encode"):
        encode_batches(fitted_retriever.model, fitted_retriever.processor, "shape", [], 0, "encode shapes", False)
