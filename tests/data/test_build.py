"""The shared build pipeline without Blender (views=0): features, caching, bad files, Parquet, pairing, push."""

from __future__ import annotations

import argparse

import datasets
import numpy as np
import pytest
import trimesh

import hf_cmah.data.records as records_module
from hf_cmah.cli.data import add_commands
from hf_cmah.data import (
    BuildSettings,
    build_dataset,
    build_to_folder,
    collect_source,
    load_built_dataset,
    push_dataset,
    select_views,
)
from hf_cmah.data.records import ImageRecord, ShapeRecord, ShapeSource
from hf_cmah.errors import InvalidInputError, MeshLoadError
from hf_cmah.render.launcher import RenderSettings

NO_RENDER = BuildSettings(num_points=64, render=RenderSettings(num_views=0), progress=False)


def _folder_with_bad_files(root):
    for name in ("chair/a.obj", "chair/b.obj", "table/c.off"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        trimesh.creation.box().export(root / name)
    (root / "table" / "truncated.off").write_text("OFF\n8 12 0\n0 0 0\n")
    (root / "table" / "empty.obj").write_text("")
    (root / "chair" / "binary.stl").write_bytes(b"\x00\x01 not an stl")
    return root


def test_build_skips_bad_files_and_reports_them(tmp_path):
    source = collect_source("meshfolder", _folder_with_bad_files(tmp_path / "meshes"), test_fraction=0.0)
    result = build_dataset(source, NO_RENDER)
    train = result.dataset["train"]
    assert sorted(train["shape_id"]) == ["chair/a", "chair/b", "table/c"]
    assert sorted(f.shape_id for f in result.failures) == ["chair/binary", "table/empty", "table/truncated"]
    messages = {f.shape_id: f.error for f in result.failures}
    assert "truncated.off" in messages["table/truncated"] and "cannot parse as OFF" in messages["table/truncated"]
    assert "no faces" in messages["table/empty"]
    features = train.features
    assert features["label"].names == ["chair", "table"]
    assert features["points"] == datasets.Array2D(shape=(64, 3), dtype="float32")
    row = train.with_format("numpy")[0]
    assert row["points"].shape == (64, 3) and row["points"].dtype == np.float32
    assert train[0]["view"]["kind"] == "none" and train[0]["image"] is None


def test_strict_stops_at_the_first_bad_file(tmp_path):
    source = collect_source("meshfolder", _folder_with_bad_files(tmp_path / "meshes"))
    with pytest.raises(MeshLoadError, match="--strict"):
        build_dataset(
            source, BuildSettings(num_points=8, render=RenderSettings(num_views=0), strict=True, progress=False)
        )


def test_second_build_reuses_cached_samples(tmp_path, monkeypatch):
    source = collect_source("procedural", None, per_category=1)
    first = build_dataset(source, NO_RENDER)

    def no_sampling(*args, **kwargs):
        raise AssertionError("a cached shape was sampled again")

    monkeypatch.setattr(records_module, "sample_points", no_sampling)  # what ShapeRecord.load_points samples with
    second = build_dataset(source, NO_RENDER)
    assert first.dataset["train"]["points"] == second.dataset["train"]["points"]
    changed = BuildSettings(num_points=32, render=RenderSettings(num_views=0), progress=False)
    with pytest.raises(MeshLoadError):  # new settings → new cache key → sampling again (here: the stub)
        build_dataset(source, BuildSettings(**{**changed.__dict__, "strict": True}))


def test_parquet_round_trip_preserves_features(tmp_path):
    source = collect_source("procedural", None, per_category=5)
    folder, result = build_to_folder(source, NO_RENDER, out=tmp_path / "built")
    loaded = load_built_dataset(folder)
    assert set(loaded) == {"train", "test"}
    for split in loaded:
        assert loaded[split].features == result.dataset[split].features
        assert loaded[split]["shape_id"] == result.dataset[split]["shape_id"]
        assert np.allclose(
            loaded[split].with_format("numpy")["points"], result.dataset[split].with_format("numpy")["points"]
        )
    card = (folder / "README.md").read_text()
    assert "license: cc0-1.0" in card and "data/train-*" in card


def _paired_dataset(tmp_path) -> datasets.Dataset:
    from PIL import Image

    images = []
    for index in range(3):
        path = tmp_path / f"{index}.png"
        Image.new("RGB", (4, 4), (index * 80, 0, 0)).save(path)
        images.append(ImageRecord(path, "photo"))
    mesh = tmp_path / "box.obj"
    trimesh.creation.box().export(mesh)
    records = [
        ShapeRecord(f"s{shape}", "train", "box", mesh_path=mesh, images=tuple(images[: shape + 1]))
        for shape in range(3)
    ]
    source = ShapeSource("test", records, ["box"], licence="cc0-1.0")
    return build_dataset(source, NO_RENDER).dataset["train"]


def _reds(rows: datasets.Dataset) -> list[int]:
    """Which view each row shows: the fixture's images differ in their red value."""
    return [image.getpixel((0, 0))[0] for image in rows["image"]]


def test_select_views_one_random_view_per_shape_per_epoch(tmp_path):
    train = _paired_dataset(tmp_path)
    assert len(train) == 1 + 2 + 3
    epoch0 = select_views(train, epoch=0, seed=0)
    assert sorted(epoch0["shape_id"]) == ["s0", "s1", "s2"]
    assert _reds(epoch0) == _reds(select_views(train, epoch=0, seed=0))
    picks = {_reds(select_views(train, epoch=epoch))[2] for epoch in range(8)}
    assert len(picks) > 1  # the shape with three views does not always show the same one
    assert len(select_views(train, epoch=0, views_per_shape=2)) == 1 + 2 + 2
    with pytest.raises(InvalidInputError):
        select_views(train, epoch=0, views_per_shape=0)


class _FakeHub:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return "https://hub.invalid/commit/1"


def test_push_uploads_publishable_builds_and_refuses_psb(tmp_path):
    folder, _ = build_to_folder(collect_source("procedural", None, per_category=1), NO_RENDER, out=tmp_path / "proc")
    hub = _FakeHub()
    assert push_dataset(folder, "user/shapes", api=hub) == "https://hub.invalid/commit/1"
    upload = hub.calls[1][2]
    assert upload["repo_type"] == "dataset" and "data/*.parquet" in upload["allow_patterns"]

    (tmp_path / "psb" / "benchmark" / "db" / "0" / "m5").mkdir(parents=True)
    trimesh.creation.box().export(tmp_path / "psb" / "benchmark" / "db" / "0" / "m5" / "m5.off")
    base = tmp_path / "psb" / "benchmark" / "classification" / "v1" / "base"
    base.mkdir(parents=True)
    (base / "train.cla").write_text("PSB 1\n1 1\nbee 0 1\n5\n")
    (base / "test.cla").write_text("PSB 1\n0 0\n")
    psb_folder, _ = build_to_folder(collect_source("psb", tmp_path / "psb"), NO_RENDER, out=tmp_path / "psb_built")
    hub = _FakeHub()
    with pytest.raises(InvalidInputError, match="refusing to push a psb dataset"):
        push_dataset(psb_folder, "user/psb", api=hub)
    assert hub.calls == []


def test_cli_build_writes_a_loadable_folder(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(
        [
            "data",
            "build",
            "procedural",
            "--per-category",
            "1",
            "--views",
            "0",
            "--points",
            "32",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert args.handler(args) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert len(load_built_dataset(out)["train"]) == 10


def test_out_folder_that_is_not_a_build_is_never_replaced(tmp_path):
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    source = collect_source("procedural", None, per_category=1)
    with pytest.raises(InvalidInputError, match="not an earlier build"):
        build_to_folder(source, NO_RENDER, out=precious)
    assert (precious / "thesis.tex").read_text() == "years of work"
    build_to_folder(source, NO_RENDER, out=tmp_path / "built")
    build_to_folder(source, NO_RENDER, out=tmp_path / "built")  # an earlier build is replaced
