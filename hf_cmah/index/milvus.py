"""The Milvus backend: the same ShapeIndex.search over a collection beyond one machine.

A collection holds one entity per index row: ``row`` (INT64 primary key, the row in the
index's id order), ``shape_id`` and ``code`` (BINARY_VECTOR, the packed bytes as they are,
indexed BIN_FLAT with the HAMMING metric). Milvus orders equal distances arbitrarily and cuts
the top k among them, so the search runs twice: the top k gives the k-th distance, a range
search then returns every row at or below it, and the result is sorted by (distance, row)
here, which makes it equal to the exact backend's (up to 16,384 rows tied at the boundary,
Milvus's largest limit).
"""

from __future__ import annotations

import numpy as np

from ..errors import IncompatibleIndexError, InvalidInputError

MAX_LIMIT = 16384  # Milvus's largest topk / limit


def _client(uri: str):
    from pymilvus import MilvusClient

    return MilvusClient(uri)


def export_to_milvus(index, uri: str, collection: str, overwrite: bool = False, batch_size: int = 10000) -> int:
    """Create ``collection`` at ``uri`` (a server URL or a milvus-lite ``.db`` file) from a ShapeIndex."""
    from pymilvus import DataType

    client = _client(uri)
    if client.has_collection(collection):
        if not overwrite:
            raise FileExistsError(f"{uri}: collection {collection!r} exists (pass overwrite=True / --overwrite)")
        client.drop_collection(collection)
    schema = client.create_schema(auto_id=False, description=f"hf-cmah ShapeIndex, {index.code_bits}-bit codes")
    schema.add_field("row", DataType.INT64, is_primary=True)
    schema.add_field("shape_id", DataType.VARCHAR, max_length=1024)
    schema.add_field("code", DataType.BINARY_VECTOR, dim=index.code_bits)
    index_params = client.prepare_index_params()
    index_params.add_index(field_name="code", index_type="BIN_FLAT", metric_type="HAMMING")
    client.create_collection(collection, schema=schema, index_params=index_params)
    shape_ids = index.shape_ids
    for start in range(0, len(index), batch_size):
        stop = min(start + batch_size, len(index))
        rows = [
            {"row": row, "shape_id": shape_ids[row], "code": index.codes[row].tobytes()} for row in range(start, stop)
        ]
        client.insert(collection, rows)
    client.flush(collection)
    return len(index)


class MilvusBackend:
    """Exact top-k through a Milvus collection exported by :func:`export_to_milvus`."""

    name = "milvus"

    def __init__(self, code_bits: int, count: int, uri: str, collection: str):
        self.client = _client(uri)
        if not self.client.has_collection(collection):
            raise InvalidInputError(f"{uri}: no collection {collection!r}; run `hf-cmah index export-milvus` first")
        fields = {field["name"]: field for field in self.client.describe_collection(collection)["fields"]}
        dim = fields.get("code", {}).get("params", {}).get("dim")
        if dim is not None and int(dim) != code_bits:
            raise IncompatibleIndexError(
                f"{uri}: collection {collection!r} holds {dim}-bit codes, the index {code_bits}"
            )
        entities = self.client.get_collection_stats(collection)["row_count"]
        if int(entities) != count:
            raise IncompatibleIndexError(
                f"{uri}: collection {collection!r} has {entities} shapes, the index {count}; export it again"
            )
        self.client.load_collection(collection)
        self.collection = collection
        self.code_bits = code_bits
        self.count = count

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, distances)`` sorted by (distance, row), like the exact backend."""
        k = min(k, self.count, MAX_LIMIT)
        data = [query.tobytes() for query in queries]
        first = self._search(data, k, {})
        rows = np.empty((len(data), k), np.int64)
        distances = np.empty((len(data), k), np.int32)
        for number, (query, hits) in enumerate(zip(data, first)):
            kth = int(max(hit["distance"] for hit in hits))
            # radius is exclusive for HAMMING: every row at distance ≤ kth
            (ties,) = self._search([query], MAX_LIMIT, {"radius": kth + 1})
            found = np.array([(int(hit["distance"]), int(hit["id"])) for hit in ties], np.int64).reshape(-1, 2)
            order = np.lexsort((found[:, 1], found[:, 0]))[:k]
            rows[number], distances[number] = found[order, 1], found[order, 0]
        return rows, distances

    def _search(self, data: list[bytes], limit: int, params: dict):
        return self.client.search(
            self.collection,
            data=data,
            limit=limit,
            anns_field="code",
            search_params={"metric_type": "HAMMING", "params": params},
        )


__all__ = ["MAX_LIMIT", "MilvusBackend", "export_to_milvus"]
