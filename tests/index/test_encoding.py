"""Building an index from a mesh folder: labels, bad files, resume after a kill, the CLI."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from hf_cmah.cli import index as index_commands
from hf_cmah.data import collect_source
from hf_cmah.data.builders.meshfolder import collect
from hf_cmah.data.records import ShapeRecord
from hf_cmah.errors import InvalidInputError, MeshLoadError
from hf_cmah.index import ShapeIndex, build_index, list_mesh_folder, simd
from hf_cmah.index import ShapeRecord as OldShapeRecord
from hf_cmah.index.encoding import ShapeEncoder


def test_the_old_names_warn_and_give_the_one_record_type(library):
    with pytest.warns(FutureWarning, match="meshfolder.collect"):
        records = list_mesh_folder(library)
    assert records == collect(library).records
    assert [record.shape_id for record in records][:2] == ["chair/box", "chair/tall"]
    assert {record.label for record in records} == {"chair", "lamp", "table"}
    with pytest.warns(FutureWarning, match="hf_cmah.data.records.ShapeRecord"):
        old = OldShapeRecord("lamp/ball", str(library / "lamp" / "ball.obj"), "lamp")
    assert isinstance(old, ShapeRecord) and old.mesh_path == library / "lamp" / "ball.obj"
    assert old.source == str(library / "lamp" / "ball.obj")


def test_records_of_any_builder_index_with_the_one_loader(model, tmp_path):
    records = collect_source("procedural", None, per_category=1).records[:3]  # meshes made in memory
    index, failures = build_index(model, records, tmp_path / "index", progress=False)
    assert not failures and index.shape_ids == sorted(record.shape_id for record in records)
    points = records[0].load_points(index.encoder.processor.num_points, seed=index.encoder.processor.seed)
    assert index.search(shapes=[points], k=1).ids[0] == [records[0].shape_id]


def test_build_skips_bad_files_and_finds_each_shape(model, library, tmp_path):
    index, failures = build_index(model, library, tmp_path / "index", batch_size=2, progress=False)
    assert [shape_id for shape_id, _ in failures] == ["table/broken"]
    assert len(index) == 5 and not (tmp_path / ".index.partial").exists()
    loaded = ShapeIndex.load(tmp_path / "index", model=model)
    result = loaded.search(shapes=[trimesh.load(library / "lamp" / "cone.obj")], k=1)
    assert result.distances[0] == [0]
    assert loaded.metadata.column("label").to_pylist() == ["chair", "chair", "lamp", "lamp", "table"]
    with pytest.raises(MeshLoadError, match="broken"):
        build_index(model, library, tmp_path / "strict", batch_size=2, strict=True, progress=False)


def build_killed_at_batch(monkeypatch, killed_batch: int, build) -> list:
    """Run ``build`` with the encoder killed on batch number ``killed_batch`` (1-based), then count the batches
    the next run encodes: returns the list that the encoder appends to from then on."""
    calls = []
    encode_shapes = ShapeEncoder.encode_shapes

    def dies(self, shapes):
        calls.append(len(shapes))
        if len(calls) == killed_batch:
            raise KeyboardInterrupt("killed")
        return encode_shapes(self, shapes)

    monkeypatch.setattr(ShapeEncoder, "encode_shapes", dies)
    with pytest.raises(KeyboardInterrupt):
        build()
    counted = []
    monkeypatch.setattr(
        ShapeEncoder, "encode_shapes", lambda self, shapes: counted.append(1) or encode_shapes(self, shapes)
    )
    return counted


def test_killed_build_resumes_from_finished_batches(model, library, tmp_path, monkeypatch):
    def build():
        return build_index(model, library, tmp_path / "index", batch_size=2, progress=False)

    calls = build_killed_at_batch(monkeypatch, 3, build)
    assert sorted(path.name for path in (tmp_path / ".index.partial").glob("batch-*.npz")) == [
        "batch-000000.npz",
        "batch-000001.npz",
    ]
    resumed, _ = build()
    assert len(calls) == 1  # only the unfinished last batch was encoded again
    fresh, _ = build_index(model, library, tmp_path / "fresh", batch_size=2, progress=False)
    np.testing.assert_array_equal(resumed.codes, fresh.codes)


def run_cli(argv):
    parser = argparse.ArgumentParser()
    index_commands.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_build_info_and_search(model, library, tmp_path, capsys):
    model.save_pretrained(tmp_path / "model")
    assert (
        run_cli(["index", "build", str(library), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "ix")])
        == 1
    )
    assert "skipped table/broken" in capsys.readouterr().out
    assert run_cli(["index", "info", str(tmp_path / "ix")]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["count"] == 5
    assert printed.err.startswith(f"search kernel {simd.KERNEL} (")
    code = ShapeIndex.load(tmp_path / "ix").codes[2].tobytes().hex()
    assert run_cli(["search", str(tmp_path / "ix"), "--code", code, "-k", "2", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found[0]["shape_id"] == "lamp/ball" and found[0]["distance"] == 0
    assert found[0]["label"] == "lamp" and found[0]["source"] == str(library / "lamp" / "ball.obj")
    approximate = ["search", str(tmp_path / "ix"), "--code", code, "--backend", "approximate", "--nprobe", "1"]
    assert run_cli([*approximate, "--json"]) == 0  # 5 codes: one inverted-file cell, so the search is exhaustive
    assert '"shape_id": "lamp/ball", "distance": 0' in capsys.readouterr().out
    assert run_cli([*approximate[:-2], "--method", "hnsw", "--ef-search", "8", "--json"]) == 0  # 5 nodes: all seen
    assert '"shape_id": "lamp/ball", "distance": 0' in capsys.readouterr().out
    shape = str(library / "lamp" / "cone.obj")
    assert run_cli(["search", str(tmp_path / "ix"), "--shape", shape, "--model", str(tmp_path / "model")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("1\tlamp/cone\t0")


def test_build_from_a_built_dataset_resumes_and_encodes_its_points(model, built_dataset, tmp_path, monkeypatch):
    def build():
        return build_index(model, built_dataset, tmp_path / "index", batch_size=2, progress=False)

    calls = build_killed_at_batch(monkeypatch, 2, build)
    index, failures = build()
    assert len(calls) == 2 and not failures  # batches 2 and 3 of 3; batch 1 was kept
    assert index.shape_ids == ["s0", "s1", "s2", "s3", "s4"]  # one entry per shape, not per view
    assert index.metadata.column("label").to_pylist() == ["lamp", "chair", None, "lamp", "chair"]
    assert index.metadata.column("source").to_pylist() == [f"meshes/s{number}.off" for number in range(5)]
    first_rows = [built_dataset["shape_id"].index(shape_id) for shape_id in index.shape_ids]
    clouds = [np.asarray(built_dataset[row]["points"], np.float32) for row in first_rows]
    np.testing.assert_array_equal(index.codes, index.encoder.encode_shapes(clouds)[0])
    assert index.search(shapes=clouds[3:4], k=1).ids == [["s3"]]


def test_a_dataset_library_needs_one_split_and_a_points_column(model, built_dataset, tmp_path):
    import datasets

    with pytest.raises(InvalidInputError, match=r"DatasetDict of splits \['test'\]; pass one split"):
        build_index(model, datasets.DatasetDict({"test": built_dataset}), tmp_path / "index", progress=False)
    with pytest.raises(InvalidInputError, match=r"no \['points'\] column"):
        build_index(model, built_dataset.remove_columns("points"), tmp_path / "index", progress=False)


def test_cli_builds_an_index_from_a_built_dataset_folder(model, built_dataset, tmp_path, capsys):
    folder = tmp_path / "built"
    built_dataset.to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    built_dataset.select(range(2)).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    (folder / "build_info.json").write_text("{}")
    model.save_pretrained(tmp_path / "model")
    build = ["index", "build", str(folder), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "ix")]
    assert run_cli([*build, "--split", "test", "--assets"]) == 0
    assert "indexed 5 shapes" in capsys.readouterr().out
    assert len(list((tmp_path / "ix" / "assets").glob("*.glb"))) == 5  # each shape's cloud (no images here)
    with pytest.raises(InvalidInputError, match="has no split 'val'"):
        run_cli([*build, "--split", "val"])
    assert run_cli(build) == 0  # every split: train's shape s3 is test's s3, indexed once
    assert ShapeIndex.load(tmp_path / "ix").shape_ids == ["s0", "s1", "s2", "s3", "s4"]


def test_assets_hold_each_shapes_mesh_and_thumbnail_and_follow_the_index(model, library, built_dataset, tmp_path):
    """A folder build stores each mesh as GLB; a dataset build its cloud and first image; save keeps only those named."""
    import datasets
    from PIL import Image

    from hf_cmah.errors import CorruptIndexError

    index, _ = build_index(
        model, library, tmp_path / "meshes", batch_size=2, with_assets=True, with_thumbnails=False, progress=False
    )
    cone = index.metadata.column("mesh").to_pylist()[index.shape_ids.index("lamp/cone")]
    glb = trimesh.load(ShapeIndex.load(tmp_path / "meshes").asset_path(cone), force="mesh")
    assert len(glb.faces) == len(trimesh.load(library / "lamp" / "cone.obj").faces)
    assert index.metadata.column("thumbnail").to_pylist() == [None] * 5  # no images, none rendered
    assert index.metadata.column("asset_note").to_pylist() == [None] * 5  # not asked for: nothing to say

    images = [Image.new("RGB", (8, 8), (20 * (row // 2),) * 3) for row in range(len(built_dataset))]
    image_column = datasets.Dataset.from_dict(
        {"image": images}, features=datasets.Features({"image": datasets.Image()})
    )
    rendered = datasets.concatenate_datasets([built_dataset, image_column], axis=1)
    index, _ = build_index(model, rendered, tmp_path / "shapes", batch_size=2, with_assets=True, progress=False)
    result = ShapeIndex.load(tmp_path / "shapes").search(index.codes[1], k=1, with_metadata=True)
    hit = result.metadata[0][0]  # s1: the second shape of the dataset, rows 2 and 3
    assert result.ids == [["s1"]] and Image.open(index.asset_path(hit["thumbnail"])).getpixel((0, 0)) == (20, 20, 20)
    (cloud,) = trimesh.load(index.asset_path(hit["mesh"])).geometry.values()
    assert isinstance(cloud, trimesh.PointCloud) and len(cloud.vertices) == 256  # the shape's point cloud

    index.remove(["s1"])
    index.save(tmp_path / "shapes")
    stored = {path.name for path in (tmp_path / "shapes" / "assets").iterdir()}
    named = {Path(name).name for column in ("thumbnail", "mesh") for name in index.metadata.column(column).to_pylist()}
    assert stored == named and Path(hit["thumbnail"]).name not in stored
    with pytest.raises(InvalidInputError, match="not an asset name"):
        index.asset_path("assets/../../manifest.json")
    mesh = index.asset_path(index.metadata.column("mesh")[0].as_py())
    mesh.chmod(0o644)
    mesh.write_bytes(b"edited")
    with pytest.raises(CorruptIndexError, match="do not match its name"):
        ShapeIndex.load(tmp_path / "shapes").asset_path(index.metadata.column("mesh")[0].as_py())


def test_an_index_of_a_fitted_model_finds_each_image_s_shape_and_random_codes_do_not(fitted_retriever, tmp_path):
    model, processor, dataset = fitted_retriever.model, fitted_retriever.processor, fitted_retriever.dataset
    index, failures = build_index(model, dataset, tmp_path / "ix", processor=processor, batch_size=5, progress=False)
    assert not failures and index.shape_ids == sorted(fitted_retriever.shape_ids)
    found = index.search(images=fitted_retriever.images, k=1).ids
    assert [ids[0] for ids in found] == fitted_retriever.shape_ids

    codes = np.random.default_rng(0).integers(0, 256, index.codes.shape, dtype=np.uint8)
    chance = ShapeIndex.from_codes(codes, index.shape_ids, index.code_bits)
    queries = index.encoder.encode_images(fitted_retriever.images)[0]
    hits = sum(ids[0] == own for ids, own in zip(chance.search(queries, k=1).ids, fitted_retriever.shape_ids))
    assert hits <= len(fitted_retriever.shape_ids) // 3
