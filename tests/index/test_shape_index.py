"""ShapeIndex: search order and ties, add/remove, save/load, atomic save, refusals, corruption."""

import json
import os

import numpy as np
import pytest
import torch

from hf_cmah.codes import hamming_distance, pack_codes
from hf_cmah.errors import CorruptIndexError, IncompatibleIndexError, InvalidInputError
from hf_cmah.index import ModelFingerprint, ShapeIndex, storage
from hf_cmah.modeling import CMAHConfig, CMAHModel


def random_index(count=300, code_bits=32, seed=0, embeddings=True):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (count, code_bits // 8), dtype=np.uint8)
    shape_ids = [f"shape-{number:04d}" for number in rng.permutation(count)]  # not in id order
    embeds = rng.normal(size=(count, 8)).astype(np.float32) if embeddings else None
    return ShapeIndex.from_codes(codes, shape_ids, labels=["chair"] * count, embeddings=embeds), codes, shape_ids


def expected_ids(codes, shape_ids, queries, k):
    distances = hamming_distance(queries, codes)
    results = []
    for row in distances:
        pairs = sorted(zip(row.tolist(), shape_ids))[:k]
        results.append(([shape_id for _, shape_id in pairs], [distance for distance, _ in pairs]))
    return results


def test_search_sorts_by_distance_then_shape_id():
    index, codes, shape_ids = random_index(code_bits=16)
    queries = codes[:5]
    result = index.search(queries, k=20)
    for ids, distances, (want_ids, want_distances) in zip(
        result.ids, result.distances, expected_ids(codes, shape_ids, queries, 20)
    ):
        assert ids == want_ids
        assert distances == want_distances


def test_search_accepts_plus_minus_one_codes():
    index, codes, _ = random_index()
    signs = np.where(np.unpackbits(codes[:2], axis=1) > 0, 1, -1).astype(np.int8)
    assert index.search(torch.from_numpy(signs), k=3).ids == index.search(codes[:2], k=3).ids


def test_add_and_remove():
    index, _, shape_ids = random_index(count=50)
    extra = np.random.default_rng(1).integers(0, 256, (3, 4), dtype=np.uint8)
    index.add(extra, ["new-a", "new-b", "new-c"], embeddings=np.ones((3, 8)))
    assert len(index) == 53
    assert index.search(extra[1], k=1).ids == [["new-b"]]
    assert index.shape_ids == sorted(index.shape_ids)
    with pytest.raises(InvalidInputError, match="already in the index"):
        index.add(extra[:1], ["new-a"], embeddings=np.ones((1, 8)))
    index.remove(["new-b", shape_ids[0]])
    assert len(index) == 51 and "new-b" not in index.shape_ids
    with pytest.raises(InvalidInputError, match="not in the index"):
        index.remove(["missing"])
    with pytest.raises(InvalidInputError, match="pass them"):
        index.add(extra[:1], ["x"])


def test_ids_sort_as_python_sorts_them_and_repeats_within_a_batch_are_refused():
    ids = ["b", "a", "\u00e9", "Z", "\u00e4", "10", "9", "\u4e2d", "a b", "\U0001f600"]
    codes = np.random.default_rng(2).integers(0, 256, (len(ids), 4), dtype=np.uint8)
    index = ShapeIndex.from_codes(codes, ids)
    assert index.shape_ids == sorted(ids)
    assert index.search(codes[2], k=1).ids == [["\u00e9"]]
    with pytest.raises(InvalidInputError, match=r"repeated, e\.g\. 'x'"):
        index.add(codes[:2], ["x", "x"])
    assert len(index) == len(ids)


def test_remove_with_an_unknown_id_removes_nothing():
    index, _, shape_ids = random_index(count=20)
    with pytest.raises(InvalidInputError, match="'missing'"):
        index.remove([shape_ids[0], "missing"])
    assert len(index) == 20 and shape_ids[0] in index.shape_ids


def test_search_looks_up_only_the_ids_it_returns(tmp_path, monkeypatch):
    """A search costs O(k) id lookups, not O(index): listing every id took 130 ms a query at 1M shapes."""
    index, codes, _ = random_index(count=500)
    index.save(tmp_path / "lib")
    loaded = ShapeIndex.load(tmp_path / "lib")
    want = index.search(codes[:3], k=4)

    def every_id(self):
        raise AssertionError("search listed every shape id")

    monkeypatch.setattr(ShapeIndex, "shape_ids", property(every_id))
    for searched in (index, loaded):
        assert searched.search(codes[:3], k=4) == want
        assert searched.range_search(codes[:1], radius=2).ids[0][0] == want.ids[0][0]
    assert loaded.metadata.column("shape_id").num_chunks == 1
    offset = ShapeIndex(index.codes[7:], index.metadata.slice(7), 32)  # Arrow arrays that start past their buffers
    kept_ids = index.metadata.column("shape_id")[7:].to_pylist()
    want_offset = expected_ids(index.codes[7:], kept_ids, codes[:3], 4)
    assert offset.search(codes[:3], k=4).ids == [ids for ids, _ in want_offset]


def test_results_carry_each_hits_metadata_on_request():
    """Every search path can return what a front end shows: label, source file and thumbnail of each hit."""
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (40, 4), dtype=np.uint8)
    ids = [f"shape-{number:02d}" for number in range(40)]
    index = ShapeIndex.from_codes(
        codes,
        ids,
        labels=[["chair", "table"][number % 2] for number in range(40)],
        sources=[f"/library/{shape_id}.obj" for shape_id in ids],
        thumbnails=[None if number % 3 else f"/thumbs/{number}.png" for number in range(40)],
        embeddings=rng.normal(size=(40, 8)),
    )

    def expected(shape_id):
        number = int(shape_id.split("-")[1])
        thumbnail = None if number % 3 else f"/thumbs/{number}.png"
        label = ["chair", "table"][number % 2]
        return {
            "label": label,
            "source": f"/library/{shape_id}.obj",
            "thumbnail": thumbnail,
            "mesh": None,
            "asset_note": None,
        }

    results = [
        index.search(codes[:3], k=5, with_metadata=True),
        index.search(codes[:3], k=5, rerank=20, query_embeddings=index.embeddings[:3], with_metadata=True),
        index.range_search(codes[:3], radius=12, with_metadata=True),
    ]
    index.use_backend("approximate", nprobe=1)
    results.append(index.search(codes[:3], k=5, with_metadata=True))
    for result in results:
        assert len(result.metadata) == 3 and sum(map(len, result.ids)) > 3
        for ids_of_query, metadata_of_query in zip(result.ids, result.metadata):
            assert metadata_of_query == [expected(shape_id) for shape_id in ids_of_query]
    assert index.search(codes[:3], k=5).metadata is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"k": "5"}, "k: must be an integer ≥ 1, got '5'"),
        ({"k": 0}, "k: must be an integer ≥ 1, got 0"),
        ({"k": True}, "k: must be an integer"),
        ({"k": 5, "rerank": 3}, "rerank: must be at least k=5 candidates, got 3"),
        ({"k": 2, "rerank": 10, "query_embeddings": np.ones((1, 7))}, r"query_embeddings: expected shape \[2, 8\]"),
        ({"radius": -1}, r"radius: must be an integer in 0\.\.32, got -1"),
        ({"radius": 33}, r"radius: must be an integer in 0\.\.32, got 33"),
    ],
)
def test_bad_search_arguments_are_refused_by_name(arguments, message):
    index, codes, _ = random_index(count=20)
    search = index.range_search if "radius" in arguments else index.search
    with pytest.raises(InvalidInputError, match=message):
        search(codes[:2], **arguments)


def test_nan_query_codes_are_refused():
    index, _, _ = random_index(count=20)
    signs = np.ones((1, 32))
    signs[0, 5] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        index.search(signs)


def test_range_search_and_rerank():
    index, codes, shape_ids = random_index(code_bits=16)
    result = index.range_search(codes[0], radius=3)
    distances = hamming_distance(codes[:1], codes)[0]
    assert sorted(result.ids[0]) == sorted(np.array(shape_ids)[distances <= 3].tolist())
    assert result.distances[0] == sorted(result.distances[0])
    query_embeddings = index.embeddings[:1].astype(np.float32)
    reranked = index.search(index.codes[0], k=5, rerank=50, query_embeddings=query_embeddings)
    assert reranked.ids[0][0] == index.shape_ids[0]
    assert reranked.scores[0] == sorted(reranked.scores[0], reverse=True)
    with pytest.raises(InvalidInputError, match="query_embeddings"):
        index.search(index.codes[0], k=5, rerank=50)


def test_save_load_round_trip(tmp_path):
    index, codes, _ = random_index()
    index.save(tmp_path / "lib")
    loaded = ShapeIndex.load(tmp_path / "lib")
    assert loaded.shape_ids == index.shape_ids
    np.testing.assert_array_equal(loaded.codes, index.codes)
    np.testing.assert_array_equal(loaded.embeddings, index.embeddings)
    assert loaded.search(codes[:4], k=7) == index.search(codes[:4], k=7)
    manifest = json.loads((tmp_path / "lib" / "manifest.json").read_text())
    assert (
        manifest["count"] == 300
        and manifest["code_bits"] == 32
        and set(manifest["files"])
        == {
            "codes.u8",
            "embeds.f16.npy",
            "metadata.parquet",
        }
    )


def test_a_folder_from_before_the_mesh_and_asset_note_columns_loads_and_takes_new_shapes(tmp_path):
    index, codes, _ = random_index(count=10)
    manifest = {"format": storage.FORMAT_NAME, "format_version": 1, "code_bits": 32, "count": 10}
    old_metadata = index.metadata.drop_columns(["mesh", "asset_note"])
    storage.write_folder(tmp_path / "old", index.codes, old_metadata, None, manifest)
    loaded = ShapeIndex.load(tmp_path / "old")
    assert loaded.metadata.column_names == list(storage.METADATA_COLUMNS)
    assert loaded.metadata.column("mesh").to_pylist() == [None] * 10
    hit = loaded.search(codes[:2], k=3, with_metadata=True).metadata[0][0]
    assert hit["mesh"] is None and hit["asset_note"] is None
    loaded.add(codes[:1] ^ 0xFF, ["zz-new"], asset_notes=["no thumbnail: render failed"])
    assert loaded.metadata.column("asset_note").to_pylist()[-1] == "no thumbnail: render failed"


def test_crash_mid_save_leaves_the_old_index_loadable(tmp_path, monkeypatch):
    old, _, _ = random_index(seed=1)
    old.save(tmp_path / "lib")
    new, _, _ = random_index(seed=2)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(storage, "_swap_into_place", crash)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "lib")
    assert ShapeIndex.load(tmp_path / "lib").shape_ids == old.shape_ids
    assert [path.name for path in tmp_path.iterdir()] == ["lib"]  # the half-written folder is gone


def test_a_save_killed_between_its_renames_loads_the_previous_index(tmp_path, monkeypatch):
    old, _, _ = random_index(seed=1)
    old.save(tmp_path / "lib")
    new, _, _ = random_index(seed=2)
    renames, rename = [], os.rename

    def rename_then_die(source, target):
        renames.append((source, target))
        if len(renames) == 2:  # the old folder is aside, the new one not yet in place: SIGKILL here
            raise KeyboardInterrupt("killed between the renames")
        rename(source, target)

    monkeypatch.setattr(storage.os, "rename", rename_then_die)
    with pytest.raises(KeyboardInterrupt):
        new.save(tmp_path / "lib")
    monkeypatch.undo()
    assert not (tmp_path / "lib").exists()
    assert ShapeIndex.load(tmp_path / "lib").shape_ids == old.shape_ids


@pytest.mark.parametrize("victim", ["codes.u8", "metadata.parquet", "embeds.f16.npy"])
def test_corrupt_file_is_detected(tmp_path, victim):
    index, _, _ = random_index()
    index.save(tmp_path / "lib")
    path = tmp_path / "lib" / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptIndexError, match=victim):
        ShapeIndex.load(tmp_path / "lib")


def test_missing_file_and_bad_manifest_are_detected(tmp_path):
    index, _, _ = random_index()
    index.save(tmp_path / "lib")
    (tmp_path / "lib" / "codes.u8").unlink()
    with pytest.raises(CorruptIndexError, match="missing"):
        ShapeIndex.load(tmp_path / "lib")
    (tmp_path / "lib" / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptIndexError, match="not valid JSON"):
        ShapeIndex.load(tmp_path / "lib")


def tiny_model(code_bits=32, seed=0, **overrides):
    torch.manual_seed(seed)
    return CMAHModel(CMAHConfig.from_preset("cmah-tiny", code_bits=code_bits, **overrides))


def test_model_mismatch_is_refused_with_the_reason(tmp_path):
    model = tiny_model(code_bits=32)
    index, _, _ = random_index(code_bits=32)
    index.fingerprint = ModelFingerprint.of(model)
    index.save(tmp_path / "lib")
    ShapeIndex.load(tmp_path / "lib", model=model)  # the same model loads
    with pytest.raises(IncompatibleIndexError, match="64-bit codes, the index holds 32-bit"):
        ShapeIndex.load(tmp_path / "lib", model=tiny_model(code_bits=64))
    other = tiny_model(code_bits=32, image_mask_ratio=0.5)
    with pytest.raises(IncompatibleIndexError, match="config hash"):
        ShapeIndex.load(tmp_path / "lib", model=other)
    with pytest.raises(IncompatibleIndexError, match="16-bit codes"):
        index.search(np.zeros((1, 2), np.uint8))


def test_another_checkpoint_of_the_same_config_is_refused(tmp_path):
    """Same architecture, other weights (a retrained or fine-tuned model) make other codes: refused, naming weights."""
    model = tiny_model(code_bits=32, seed=0)
    index, _, _ = random_index(code_bits=32)
    index.fingerprint = ModelFingerprint.of(model)
    index.save(tmp_path / "lib")
    assert json.loads((tmp_path / "lib" / "manifest.json").read_text())["model"]["weights_hash"].startswith("float32:")
    ShapeIndex.load(tmp_path / "lib", model=tiny_model(code_bits=32, seed=0))  # same seed: same weights
    with pytest.raises(IncompatibleIndexError, match=r"same config, but .* weights"):
        ShapeIndex.load(tmp_path / "lib", model=tiny_model(code_bits=32, seed=1))
    with pytest.warns(UserWarning, match="float32 weights, this model holds float16"):
        ShapeIndex.load(tmp_path / "lib", model=tiny_model(code_bits=32, seed=1).half())


def test_image_and_shape_queries_through_the_model():
    model = tiny_model(code_bits=32)
    rng = np.random.default_rng(0)
    clouds = [rng.normal(size=(300, 3)).astype(np.float32) for _ in range(6)]
    index = ShapeIndex.from_codes(np.zeros((1, 4), np.uint8), ["placeholder"])
    index.fingerprint = ModelFingerprint.of(model)
    index.set_model(model)
    codes, embeds = index.encoder.encode_shapes(clouds)
    index.add(codes, [f"cloud-{number}" for number in range(6)])
    result = index.search(shapes=[clouds[3]], k=1)
    assert result.distances[0] == [0]
    image = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    assert len(index.search(images=[image], k=3).ids[0]) == 3
    assert embeds.shape == (6, 32)
    np.testing.assert_array_equal(
        codes, pack_codes(model.get_shape_codes(index.encoder.processor(points=clouds)["points"]))
    )


def clustered_index(count: int, seed: int):
    """An index of codes in 100 clusters (3% of bits flipped), 100 queries 5% off cluster members, exact top-10."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (100, 64), dtype=np.uint8)
    members = centres[rng.integers(0, 100, count)]
    codes = np.packbits(members ^ (rng.random(members.shape) < 0.03), axis=1)
    index = ShapeIndex.from_codes(codes, [f"{number:05d}" for number in range(len(codes))])
    queries = np.packbits(members[:100] ^ (rng.random((100, 64)) < 0.05), axis=1)
    return index, codes, queries, index.search(queries, k=10)


def assert_recall_and_order(approximate, exact):
    """recall@10 ≥ 0.95 by distance (ties make ids ambiguous), and results sorted by (distance, id)."""
    found = [np.sort(a) <= e[-1] for a, e in zip(approximate.distances, exact.distances)]
    assert np.mean(found) >= 0.95
    for ids, distances in zip(approximate.ids, approximate.distances):
        assert list(zip(distances, ids)) == sorted(zip(distances, ids))


def test_inverted_file_backend_is_the_default_approximate_search():
    index, _, queries, exact = clustered_index(20_000, seed=1)
    index.use_backend("approximate", nprobe=8)
    assert index.backend.method == "ivf" and index.backend.index.nlist == 141  # √20,000 cells
    assert_recall_and_order(index.search(queries, k=10), exact)
    index.remove(["00000"])  # the backend is rebuilt with its options
    assert index.backend.method == "ivf" and index.backend.index.nprobe == 8
    with pytest.raises(InvalidInputError, match="method: 'lsh'"):
        index.use_backend("approximate", method="lsh")
    with pytest.raises(
        InvalidInputError, match=r"ef_search: not an option of method 'ivf' \(its options: nlist, nprobe"
    ):
        index.use_backend("approximate", method="ivf", ef_search=8)


def test_hnsw_backend_finds_the_exact_neighbours_of_clustered_codes():
    index, codes, queries, exact = clustered_index(5_000, seed=2)
    index.use_backend("approximate", method="hnsw", m=16, ef_search=64)
    assert_recall_and_order(index.search(queries, k=10), exact)
    index.add(codes[:1] ^ 1, ["extra"])  # the graph is rebuilt with its options
    assert index.backend.method == "hnsw" and index.backend.index.hnsw.efSearch == 64
    assert index.search(codes[:1] ^ 1, k=1).ids == [["extra"]]


def test_approximate_backend_finds_near_neighbours():
    """Clustered codes (like a trained model's): multi-index hashing must find the planted neighbours."""
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 2, (200, 64), dtype=np.uint8)
    members = centres[rng.integers(0, 200, 5000)]
    flips = rng.random(members.shape) < 0.03
    codes = np.packbits(members ^ flips, axis=1)
    index = ShapeIndex.from_codes(codes, [f"{number:05d}" for number in range(5000)])
    queries = codes[:50]
    exact = index.search(queries, k=10)
    index.use_backend("approximate", method="mih", num_tables=4, num_flips=1)
    approximate = index.search(queries, k=10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approximate.ids, exact.ids)])
    assert recall >= 0.9
    index.add(codes[:1], ["extra"])  # the backend is rebuilt with its options
    assert index.backend.name == "approximate" and index.backend.index.nflip == 1
