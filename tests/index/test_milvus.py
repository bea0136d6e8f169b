"""Export to an embedded Milvus (milvus-lite, temp .db file) and search through ShapeIndex.search."""

import numpy as np
import pytest

from hf_cmah.errors import IncompatibleIndexError
from hf_cmah.index import ShapeIndex
from hf_cmah.index.milvus import export_to_milvus


def test_milvus_round_trip_equals_exact(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (600, 2), dtype=np.uint8)  # 16 bits: many ties at every distance
    index = ShapeIndex.from_codes(codes, [f"shape-{number:03d}" for number in rng.permutation(600)])
    uri = str(tmp_path / "milvus.db")
    assert export_to_milvus(index, uri, "shapes") == 600
    with pytest.raises(FileExistsError, match="shapes"):
        export_to_milvus(index, uri, "shapes")
    queries = codes[:4] ^ np.uint8(1)
    exact = index.search(queries, k=25)
    index.use_backend("milvus", uri=uri, collection="shapes")
    assert index.search(queries, k=25) == exact
    with pytest.raises(IncompatibleIndexError, match="export it again"):
        index.add(codes[:1], ["new"])
    assert len(index) == 600
    smaller = ShapeIndex.from_codes(codes[:10], [f"s{number}" for number in range(10)])
    with pytest.raises(IncompatibleIndexError, match="10"):
        smaller.use_backend("milvus", uri=uri, collection="shapes")
