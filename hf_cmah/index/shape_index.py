"""ShapeIndex: a shape library's packed codes, optional embeddings and metadata, searchable by Hamming distance.

Rows are kept sorted by shape id, so "ties broken by row" (what every backend does) is
"ties broken by shape id" (ARCHITECTURE.md, contract 5): results are sorted by Hamming
distance, then by shape id, in ascending string order.
"""

from __future__ import annotations

import itertools
import numbers
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codes import pack_codes
from ..errors import IncompatibleIndexError, InvalidInputError
from .assets import asset_file
from .exact import ExactBackend
from .storage import FORMAT_NAME, FORMAT_VERSION, METADATA_COLUMNS, ModelFingerprint, read_folder, write_folder


@dataclass
class SearchResult:
    """Per query, best first: shape ids, Hamming distances, cosine scores after re-ranking, and with
    ``with_metadata=True`` each shape's stored ``{"label", "source", "thumbnail", "mesh", "asset_note"}`` (None
    where unknown; thumbnail and mesh name assets of the index folder, see :meth:`ShapeIndex.asset_path`, or are
    plain paths; asset_note says why a shape's assets are less than its mesh and a render of it)."""

    ids: list[list[str]]
    distances: list[list[int]]
    scores: list[list[float]] | None = None
    metadata: list[list[dict]] | None = None


class ShapeIndex:
    """Packed codes ``uint8 [N, K/8]`` with their shape ids, metadata and optional float16 embeddings.

    Build one with :meth:`from_codes` or :func:`hf_cmah.index.build_index`, persist it with
    :meth:`save` / :meth:`load`, and query it with :meth:`search` (codes, images or shapes).
    """

    def __init__(
        self,
        codes: np.ndarray,
        metadata,
        code_bits: int,
        embeddings: np.ndarray | None = None,
        fingerprint: ModelFingerprint | None = None,
    ):
        self.code_bits = code_bits
        self.codes = codes
        self.metadata = metadata
        self.embeddings = embeddings
        self.fingerprint = fingerprint or ModelFingerprint()
        self.encoder = None
        self.backend = ExactBackend(codes, code_bits)
        self.backend_options: dict = {}
        self.asset_root: Path | None = None  # the folder whose assets/ holds the thumbnails and meshes named

    # ------------------------------------------------------------------ building
    @classmethod
    def from_codes(
        cls,
        codes,
        shape_ids: Sequence[str],
        code_bits: int | None = None,
        *,
        labels: Sequence[str | None] | None = None,
        sources: Sequence[str | None] | None = None,
        thumbnails: Sequence[str | None] | None = None,
        meshes: Sequence[str | None] | None = None,
        asset_notes: Sequence[str | None] | None = None,
        embeddings: np.ndarray | None = None,
        fingerprint: ModelFingerprint | None = None,
    ) -> ShapeIndex:
        """An index of ``codes`` (packed uint8 ``[N, K/8]`` or ±1 ``[N, K]``) named by unique ``shape_ids``."""
        packed = _as_packed(codes, code_bits, "codes")
        code_bits = packed.shape[1] * 8
        empty = cls(np.zeros((0, code_bits // 8), np.uint8), _metadata_table([]), code_bits, None, fingerprint)
        empty.add(
            packed,
            shape_ids,
            labels=labels,
            sources=sources,
            thumbnails=thumbnails,
            meshes=meshes,
            asset_notes=asset_notes,
            embeddings=embeddings,
        )
        return empty

    def __len__(self) -> int:
        return self.codes.shape[0]

    @property
    def shape_ids(self) -> list[str]:
        return self.metadata.column("shape_id").to_pylist()

    def add(
        self,
        codes,
        shape_ids: Sequence[str],
        *,
        labels: Sequence[str | None] | None = None,
        sources: Sequence[str | None] | None = None,
        thumbnails: Sequence[str | None] | None = None,
        meshes: Sequence[str | None] | None = None,
        asset_notes: Sequence[str | None] | None = None,
        embeddings: np.ndarray | None = None,
    ) -> None:
        """Add shapes; their ids must be new. Embeddings are needed when the index keeps them.

        ``thumbnails`` / ``meshes`` are paths kept as metadata, or names of assets already in
        ``asset_root`` (``assets/<sha256>.png|glb``, as :func:`build_index` writes them); ``asset_notes``
        say why a shape has less (no thumbnail, a point cloud for a mesh).
        """
        import pyarrow as pa

        self._check_local_backend()
        packed = _as_packed(codes, self.code_bits, "codes")
        count = packed.shape[0]
        shape_ids = [str(shape_id) for shape_id in shape_ids]
        if len(shape_ids) != count:
            raise InvalidInputError(f"shape_ids: {len(shape_ids)} ids for {count} codes")
        embeddings = self._checked_embeddings(embeddings, count)
        table = _metadata_table(shape_ids, labels, sources, thumbnails, meshes, asset_notes)
        metadata = pa.concat_tables([self.metadata, table]).combine_chunks()
        order = _sorted_unique_order(metadata.column("shape_id"))
        self.codes = np.concatenate([self.codes, packed])[order]
        self.metadata = metadata.take(pa.array(order))
        if embeddings is not None:
            stacked = embeddings if self.embeddings is None else np.concatenate([self.embeddings, embeddings])
            self.embeddings = stacked[order]
        self._codes_changed()

    def remove(self, shape_ids: Sequence[str]) -> None:
        """Remove shapes by id; unknown ids raise InvalidInputError and remove nothing."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self._check_local_backend()
        wanted = {str(shape_id) for shape_id in shape_ids}
        column = self.metadata.column("shape_id")
        present = pc.is_in(column, value_set=pa.array(sorted(wanted), pa.string()))
        missing = wanted - set(column.filter(present).to_pylist())
        if missing:
            raise InvalidInputError(f"shape_ids: {len(missing)} not in the index, e.g. {sorted(missing)[0]!r}")
        keep = np.flatnonzero(~present.to_numpy(zero_copy_only=False))
        self.codes = self.codes[keep]
        self.metadata = self.metadata.take(pa.array(keep))
        if self.embeddings is not None:
            self.embeddings = self.embeddings[keep]
        self._codes_changed()

    def _checked_embeddings(self, embeddings, count: int) -> np.ndarray | None:
        keeps_embeddings = self.embeddings is not None or len(self) == 0
        if embeddings is None:
            if self.embeddings is not None:
                raise InvalidInputError(
                    "embeddings: this index keeps embeddings for re-ranking; pass them for new shapes"
                )
            return None
        if not keeps_embeddings:
            raise InvalidInputError("embeddings: this index was built without embeddings; add codes only")
        embeddings = np.asarray(embeddings, dtype=np.float16)
        if embeddings.ndim != 2 or embeddings.shape[0] != count:
            raise InvalidInputError(f"embeddings: expected [{count}, D], got {list(embeddings.shape)}")
        if self.embeddings is not None and len(self) and embeddings.shape[1] != self.embeddings.shape[1]:
            raise InvalidInputError(
                f"embeddings: dimension {embeddings.shape[1]}, the index has {self.embeddings.shape[1]}"
            )
        return embeddings

    def _check_local_backend(self) -> None:
        """A Milvus collection is a copy keyed by row: changing rows here would silently desynchronise it."""
        if self.backend.name == "milvus":
            raise IncompatibleIndexError(
                "this index searches a Milvus collection: use_backend('exact'), add/remove, then export it again"
            )

    def _codes_changed(self) -> None:
        """Rows moved: rebuild the in-memory backend with its options."""
        self.use_backend(self.backend.name, **self.backend_options)

    # ------------------------------------------------------------------ backends and models
    def use_backend(self, backend: str | object = "exact", **options) -> None:
        """Search with ``"exact"`` (default), ``"approximate"`` (``method="ivf"``: ``nlist``, ``nprobe``;
        ``method="hnsw"``: ``m``, ``ef_search``, ``ef_construction``; ``method="mih"``: ``num_tables``,
        ``num_flips``), ``"milvus"`` (``uri``, ``collection``) or a backend object with ``search(queries, k)``."""
        if backend == "exact":
            backend = ExactBackend(self.codes, self.code_bits)
        elif backend == "approximate":
            from .approximate import ApproximateBackend

            backend = ApproximateBackend(self.codes, self.code_bits, **options)
        elif backend == "milvus":
            from .milvus import MilvusBackend

            backend = MilvusBackend(code_bits=self.code_bits, count=len(self), **options)
        elif isinstance(backend, str):
            raise InvalidInputError(f"backend: {backend!r} is not one of 'exact', 'approximate', 'milvus'")
        self.backend = backend
        self.backend_options = options

    def set_model(self, model, processor=None, device: str | None = None, batch_size: int = 32) -> None:
        """Attach the retriever that encodes image/shape queries; refuse one whose bits or fingerprint differ."""
        from .encoding import ShapeEncoder

        code_bits = getattr(model.config, "code_bits", None)
        if code_bits != self.code_bits:
            raise IncompatibleIndexError(
                f"model: emits {code_bits}-bit codes, the index holds {self.code_bits}-bit codes"
            )
        self.fingerprint.check_matches(ModelFingerprint.of(model), "model", model)
        self.encoder = ShapeEncoder(model, processor, device=device, batch_size=batch_size)

    # ------------------------------------------------------------------ searching
    def search(
        self,
        codes=None,
        *,
        images: Sequence | None = None,
        shapes: Sequence | None = None,
        k: int = 10,
        rerank: int = 0,
        query_embeddings: np.ndarray | None = None,
        with_metadata: bool = False,
    ) -> SearchResult:
        """The ``k`` nearest shapes of each query, by Hamming distance then shape id.

        Give exactly one of ``codes`` (packed or ±1), ``images`` or ``shapes`` (the last two need
        :meth:`set_model`). With ``rerank > k`` and stored embeddings, the ``rerank`` nearest by
        Hamming distance are re-ordered by float cosine similarity (ties by shape id).
        ``with_metadata`` adds each hit's label, source path, thumbnail and mesh (what a front end shows).
        """
        k = _checked_int("k", k, 1)
        rerank = _checked_int("rerank", rerank, 0)
        if rerank and rerank < k:
            raise InvalidInputError(f"rerank: must be at least k={k} candidates, got {rerank}")
        queries, query_embeddings = self._queries(codes, images, shapes, query_embeddings)
        if not rerank:
            rows, distances = self.backend.search(queries, k)
            return self._result(rows, distances, with_metadata)
        return self._reranked(queries, query_embeddings, k, rerank, with_metadata)

    def range_search(
        self, codes=None, *, images=None, shapes=None, radius: int = 0, with_metadata: bool = False
    ) -> SearchResult:
        """Every shape within ``radius`` bits of each query (exact, over the local codes)."""
        radius = _checked_int("radius", radius, 0, self.code_bits)
        queries, _ = self._queries(codes, images, shapes, None)
        matches = ExactBackend(self.codes, self.code_bits).range_search(queries, radius)
        return self._result_of_rows(
            [rows for rows, _ in matches], [distances.tolist() for _, distances in matches], with_metadata
        )

    def _queries(self, codes, images, shapes, query_embeddings) -> tuple[np.ndarray, np.ndarray | None]:
        given = [
            name for name, value in (("codes", codes), ("images", images), ("shapes", shapes)) if value is not None
        ]
        if len(given) != 1:
            raise InvalidInputError(f"search: give exactly one of codes, images, shapes (got {given or 'none'})")
        if codes is not None:
            return np.atleast_2d(_as_packed(codes, self.code_bits, "query codes")), query_embeddings
        if self.encoder is None:
            raise InvalidInputError(f"search: {given[0]} queries need a model; call set_model(model) first")
        encode = self.encoder.encode_images if images is not None else self.encoder.encode_shapes
        return encode(images if images is not None else shapes)

    def _reranked(self, queries, query_embeddings, k: int, rerank: int, with_metadata: bool) -> SearchResult:
        if self.embeddings is None:
            raise InvalidInputError("rerank: this index has no embeddings (build it with embeddings to re-rank)")
        if query_embeddings is None:
            raise InvalidInputError(
                "rerank: pass query_embeddings with code queries (image/shape queries bring their own)"
            )
        query_embeddings = np.asarray(query_embeddings, dtype=np.float32)
        if query_embeddings.shape != (len(queries), self.embeddings.shape[1]):
            raise InvalidInputError(
                f"query_embeddings: expected shape [{len(queries)}, {self.embeddings.shape[1]}] (one per query), "
                f"got {list(query_embeddings.shape)}"
            )
        rows, distances = self.backend.search(queries, rerank)
        candidates = self.embeddings[np.maximum(rows, 0)].astype(np.float32)  # [Q, R, D]
        scores = np.einsum("qd,qrd->qr", query_embeddings, candidates)
        scores /= np.linalg.norm(candidates, axis=-1) * np.linalg.norm(query_embeddings, axis=-1, keepdims=True) + 1e-12
        scores = np.where(rows < 0, -np.inf, scores)
        order = np.lexsort((rows, -scores), axis=-1)[:, :k]  # rows sort like shape ids
        result = self._result(
            np.take_along_axis(rows, order, -1), np.take_along_axis(distances, order, -1), with_metadata
        )
        kept = np.take_along_axis(scores, order, -1)
        result.scores = [row[np.isfinite(row)].tolist() for row in kept]
        return result

    def _result(self, rows: np.ndarray, distances: np.ndarray, with_metadata: bool) -> SearchResult:
        """The result of ``[Q, k]`` rows and distances; a row of -1 is a miss (an approximate backend may find < k)."""
        found = rows >= 0
        if found.all():
            return self._result_of_rows(list(rows), distances.tolist(), with_metadata)
        return self._result_of_rows(
            [row[mask] for row, mask in zip(rows, found)],
            [dist[mask].tolist() for dist, mask in zip(distances, found)],
            with_metadata,
        )

    def _result_of_rows(self, rows_per_query: list[np.ndarray], distances: list, with_metadata: bool) -> SearchResult:
        """Look up the ids (and metadata) of each query's rows: for the rows found only, O(k) and not O(index)."""
        flat = np.concatenate(rows_per_query) if rows_per_query else np.empty(0, np.int64)
        bounds = list(itertools.accumulate((len(rows) for rows in rows_per_query), initial=0))

        def per_query(values: list) -> list[list]:
            return [values[start:stop] for start, stop in itertools.pairwise(bounds)]

        metadata = None
        if with_metadata:
            metadata = per_query(self.metadata.select(list(METADATA_COLUMNS[1:])).take(flat).to_pylist())
        return SearchResult(per_query(self._ids_at(flat)), distances, metadata=metadata)

    def _ids_at(self, rows: np.ndarray) -> list[str]:
        """The shape ids of ``rows``, looked up for those rows only: O(k) a search, not O(index).

        A search's few rows are sliced straight out of the Arrow string buffers (~0.3 µs each);
        an Arrow ``take`` costs ~15 µs a call whatever its size, so it serves large lookups.
        """
        import pyarrow as pa

        column = self.metadata.column("shape_id")
        if len(rows) > 1024 or column.num_chunks != 1 or not pa.types.is_string(column.type):
            return column.take(rows).to_pylist()
        strings = column.chunk(0)
        _, offsets, data = strings.buffers()
        offsets, data, first = memoryview(offsets).cast("i"), memoryview(data), strings.offset
        return [str(data[offsets[first + row] : offsets[first + row + 1]], "utf-8") for row in rows.tolist()]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the index folder atomically (a crash mid-save leaves a previous index at ``path`` intact)."""
        write_folder(Path(path), self.codes, self.metadata, self.embeddings, self._manifest(), self.asset_root)
        self.asset_root = Path(path)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool = False,
        token: str | None = None,
        model_id: str | None = None,
        license: str | None = None,
        commit_message: str = "Upload shape index (hf-cmah index push)",
        api=None,
    ) -> str:
        """Upload the index as a Hub *dataset* repo with a card, in one commit; return the commit URL.

        The repo then holds this index and nothing else (files an earlier push left are deleted), so
        :meth:`from_pretrained` gets exactly what was saved. ``model_id`` (the card's; default: the
        manifest's when it is a Hub id) and ``license`` (of the meshes and thumbnails) go into the card.
        ``api`` defaults to ``HfApi(token=token)`` (``HF_ENDPOINT`` and the saved token decide where and as whom).
        """
        from .hub import index_card, push_folder

        card = index_card(self, repo_id, model_id, license)
        with tempfile.TemporaryDirectory(prefix="hf-cmah-push-") as temp:
            folder = Path(temp) / "index"
            write_folder(folder, self.codes, self.metadata, self.embeddings, self._manifest(), self.asset_root)
            (folder / "README.md").write_text(card, encoding="utf-8")
            return push_folder(folder, repo_id, private=private, token=token, commit_message=commit_message, api=api)

    def _manifest(self) -> dict:
        """The manifest of this index, less the checksums (written with the files)."""
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "model": {
                "id": self.fingerprint.model_id,
                "revision": self.fingerprint.revision,
                "config_hash": self.fingerprint.config_hash,
                "weights_hash": self.fingerprint.weights_hash,
            },
            "code_bits": self.code_bits,
            "embedding_dim": None if self.embeddings is None else int(self.embeddings.shape[1]),
            "count": len(self),
        }

    def asset_path(self, name: str) -> Path:
        """The file behind an asset name of the metadata (``thumbnail`` / ``mesh`` of a search hit), checked
        against its sha256; anything but ``assets/<sha256>.png|glb`` is refused, so no path leaves the folder."""
        if self.asset_root is None:
            raise InvalidInputError(f"asset: {name!r}: this index has no asset folder yet (save or load it)")
        return asset_file(self.asset_root, name)

    @classmethod
    def load(cls, path: str | Path, model=None, processor=None, device: str | None = None) -> ShapeIndex:
        """Load and verify an index folder; with ``model``, also check it made the codes (bits, fingerprint)."""
        manifest, codes, metadata, embeddings = read_folder(Path(path))
        model_info = manifest.get("model", {})
        fingerprint = ModelFingerprint(
            model_info.get("id"),
            model_info.get("revision"),
            model_info.get("config_hash"),
            model_info.get("weights_hash"),
        )
        index = cls(codes, metadata, int(manifest["code_bits"]), embeddings, fingerprint)
        index.asset_root = Path(path)
        if model is not None:
            index.set_model(model, processor, device=device)
        return index

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_dir: str | Path,
        model=None,
        processor=None,
        device: str | None = None,
        revision: str | None = None,
        token: str | None = None,
    ) -> ShapeIndex:
        """Load an index folder, or a Hub dataset repo pushed by :meth:`push_to_hub` (downloaded into the Hub
        cache, or read from it with ``HF_HUB_OFFLINE=1``); verified and checked against ``model`` as :meth:`load`."""
        from .hub import index_snapshot

        path = Path(repo_id_or_dir)
        if path.is_dir():
            if revision is not None:
                raise InvalidInputError(f"revision: {path} is a local folder, it has no revisions")
            return cls.load(path, model, processor, device)
        return cls.load(index_snapshot(str(repo_id_or_dir), revision, token), model, processor, device)


def _checked_int(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``low..high``, or an InvalidInputError naming the argument (a form may send "10")."""
    out_of_range = isinstance(value, numbers.Integral) and (value < low or (high is not None and value > high))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or out_of_range:
        allowed = f"in {low}..{high}" if high is not None else f"≥ {low}"
        raise InvalidInputError(f"{name}: must be an integer {allowed}, got {value!r}")
    return int(value)


def _as_packed(codes, code_bits: int | None, where: str) -> np.ndarray:
    """Packed uint8 codes from packed bytes or ±1 / bool codes, checked against ``code_bits``."""
    array = codes.detach().cpu().numpy() if hasattr(codes, "detach") else np.asarray(codes)
    if array.ndim not in (1, 2):
        raise InvalidInputError(f"{where}: expected [N, K/8] packed or [N, K] ±1 codes, got shape {list(array.shape)}")
    array = np.atleast_2d(array)
    if array.dtype != np.uint8:
        array = pack_codes(array)
    if code_bits is not None and array.shape[1] * 8 != code_bits:
        raise IncompatibleIndexError(f"{where}: {array.shape[1] * 8}-bit codes, the index holds {code_bits}-bit codes")
    return np.ascontiguousarray(array)


def _sorted_unique_order(shape_ids) -> np.ndarray:
    """The row order that sorts ``shape_ids`` (an Arrow string column, sorted in C++); raise on a repeated id."""
    import pyarrow.compute as pc

    order = pc.array_sort_indices(shape_ids)  # a stable sort, by UTF-8 bytes = by code point, as Python sorts str
    in_order = shape_ids.take(order)
    duplicates = in_order[1:].filter(pc.equal(in_order[1:], in_order[:-1]))
    if len(duplicates):
        raise InvalidInputError(
            f"shape_ids: {len(duplicates)} already in the index or repeated, e.g. {duplicates[0].as_py()!r}"
        )
    return order.to_numpy()


def _metadata_table(shape_ids, *columns):
    """The metadata of ``shape_ids``: one string column per name of METADATA_COLUMNS, None where not given."""
    import pyarrow as pa

    columns = [list(values) if values is not None else [None] * len(shape_ids) for values in columns]
    columns += [[None] * len(shape_ids)] * (len(METADATA_COLUMNS) - 1 - len(columns))
    return pa.table(
        {name: pa.array(values, pa.string()) for name, values in zip(METADATA_COLUMNS, [shape_ids, *columns])}
    )


__all__ = ["SearchResult", "ShapeIndex"]
