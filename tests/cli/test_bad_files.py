"""One scanner and one loader: `hf-cmah data build meshfolder` and `hf-cmah index build` on the same folders.

The folder a new user brings: a good OBJ beside an empty OBJ, a truncated OFF and a `.ply` of random
bytes. Both commands skip and name every bad file, `--strict` stops at the first one (naming it, writing
nothing), and a library whose class folders are symbolic links is read through the links.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from hf_cmah import CMAHModel, CMAHProcessor
from hf_cmah.cli import main
from hf_cmah.data import load_built_dataset
from hf_cmah.index import ShapeIndex
from tests.conftest import mini_config

BAD_FILES = ("chair/empty.obj", "lamp/noise.ply", "table/truncated.off")  # sorted: chair/empty.obj comes first


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_CMAH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config = mini_config(16)
    CMAHModel(config).save_pretrained(folder)
    CMAHProcessor.from_model_config(config).save_pretrained(folder)
    return folder


@pytest.fixture
def bad_folder(tmp_path):
    root = tmp_path / "library"
    for folder in ("chair", "lamp", "table"):
        (root / folder).mkdir(parents=True)
    trimesh.creation.box().export(root / "chair" / "good.obj")
    (root / "chair" / "empty.obj").write_text("")
    off = trimesh.creation.box().export(file_type="off")
    (root / "table" / "truncated.off").write_text(off[: len(off) // 2])
    (root / "lamp" / "noise.ply").write_bytes(np.random.default_rng(0).bytes(2048))
    return root


@pytest.fixture
def linked_folder(tmp_path):
    """Class folders that are symbolic links to folders elsewhere, as libraries on shared disks often are."""
    elsewhere, root = tmp_path / "elsewhere", tmp_path / "linked"
    trimesh.creation.box().export(_parent(elsewhere / "chairs" / "a.obj"))
    trimesh.creation.icosphere(subdivisions=1).export(_parent(elsewhere / "lamps" / "b.obj"))
    root.mkdir()
    (root / "chair").symlink_to(elsewhere / "chairs", target_is_directory=True)
    (root / "lamp").symlink_to(elsewhere / "lamps", target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a link back up is walked once, not forever
    return root


def _parent(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def data_build(library, out, *extra):
    return main(["data", "build", "meshfolder", str(library), "--out", str(out), "--views", "0", "--points", "64",
                 "--test-fraction", "0", "--no-progress", *extra])  # fmt: skip


def index_build(library, model_dir, out, *extra):
    return main(["index", "build", str(library), "--model", str(model_dir), "--out", str(out), *extra])


def test_data_build_skips_and_names_every_bad_file(bad_folder, tmp_path, capsys):
    assert data_build(bad_folder, tmp_path / "built") == 0
    err = capsys.readouterr().err
    assert "3 shape(s) skipped:" in err
    for name in BAD_FILES:
        assert f"({name}): {bad_folder / name}: " in err  # the shape's path in the folder, then the file's error
    assert "Not a ply file!" in err and "holds no faces" in err
    assert load_built_dataset(tmp_path / "built")["train"]["shape_id"] == ["chair/good"]


def test_index_build_skips_and_names_every_bad_file_and_indexes_the_good_one(bad_folder, model_dir, tmp_path, capsys):
    assert index_build(bad_folder, model_dir, tmp_path / "ix") == 1  # 1: some files were skipped
    out = capsys.readouterr().out
    for name in BAD_FILES:
        assert f"skipped {name.rsplit('.', 1)[0]}: {bad_folder / name}: " in out
    assert "Not a ply file!" in out
    assert ShapeIndex.load(tmp_path / "ix").shape_ids == ["chair/good"]


@pytest.mark.parametrize("command", ["data", "index"])
def test_strict_stops_at_the_first_bad_file_naming_it_and_writes_nothing(
    command, bad_folder, model_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    if command == "data":
        assert data_build(bad_folder, out, "--strict") == 2
    else:
        assert index_build(bad_folder, model_dir, out, "--strict") == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after the progress bars
    assert error.startswith(f"hf-cmah {command}: error: --strict: chair/empty")
    assert str(bad_folder / "chair" / "empty.obj") in error
    assert "noise" not in error and "truncated" not in error
    assert not out.exists()


def test_both_commands_read_linked_class_folders(linked_folder, model_dir, tmp_path, capsys):
    assert data_build(linked_folder, tmp_path / "built") == 0
    train = load_built_dataset(tmp_path / "built")["train"]
    assert train["shape_id"] == ["chair/a", "lamp/b"]
    assert [train.features["label"].int2str(label) for label in train["label"]] == ["chair", "lamp"]
    assert index_build(linked_folder, model_dir, tmp_path / "ix") == 0
    index = ShapeIndex.load(tmp_path / "ix")
    assert index.shape_ids == ["chair/a", "lamp/b"]
    assert index.metadata.column("label").to_pylist() == ["chair", "lamp"]
