"""A small real library for the service and the Blender add-on tests, and a real `hf-cmah serve` to query.

``build_sample_library`` writes nine meshes (procedural chairs, tables, … and a box, "box/crate"),
indexes them with their GLBs and Blender-rendered thumbnails, trains a smaller-than-tiny CMAH
model until every thumbnail's nearest shape code is its own shape, and indexes them again with
that model. ~1 minute on 2 cores, made once per test session.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

from hf_cmah import CMAHConfig, CMAHModel, CMAHProcessor, hamming_distance, pack_codes
from hf_cmah.data.builders.procedural import make_shape
from hf_cmah.geometry import load_points
from hf_cmah.index import build_index

CATEGORIES = ("chair", "table", "lamp", "mug", "bottle", "airplane", "car", "sofa")
BOX_ID = "box/crate"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SampleLibrary:
    root: Path
    library_dir: Path  # the mesh folder that was indexed
    model_dir: Path
    index_dir: Path
    query_image: Path  # the thumbnail of QUERY_ID: a render of a library shape
    query_id: str
    shape_ids: tuple[str, ...]


def mini_config(code_bits: int = 32) -> CMAHConfig:
    return CMAHConfig.from_preset(
        "cmah-tiny",
        code_bits=code_bits,
        image_size=32,
        num_points=256,
        num_groups=16,
        hidden_size=64,
        intermediate_size=128,
        image_num_hidden_layers=2,
        point_num_hidden_layers=2,
    )


def write_meshes(library_dir: Path) -> list[str]:
    """Procedural meshes (generated z-up, written y-up) under ``<category>/``, plus a box."""
    rotate = trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0])
    for category in CATEGORIES:
        mesh = make_shape(category, 0, seed=0)
        mesh.apply_transform(rotate)
        (library_dir / category).mkdir(parents=True, exist_ok=True)
        mesh.export(library_dir / category / f"{category}_0.obj")
    (library_dir / "box").mkdir(parents=True, exist_ok=True)
    trimesh.creation.box(extents=(1.0, 0.7, 0.8)).export(library_dir / f"{BOX_ID}.obj")
    return sorted([f"{category}/{category}_0" for category in CATEGORIES] + [BOX_ID])


def train_until_paired(
    model: CMAHModel, processor: CMAHProcessor, images: list, clouds: list, steps: int = 600
) -> None:
    """Fit ``model`` until every image's nearest shape code is its own shape's, twice in a row."""
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    points = processor(points=clouds, return_tensors="pt")["points"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    in_a_row = 0
    for step in range(1, steps + 1):
        model.train()
        loss = model(pixel_values, points).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                distances = hamming_distance(
                    pack_codes(model.get_image_codes(pixel_values)), pack_codes(model.get_shape_codes(points))
                )
            others = distances + np.eye(len(distances), dtype=np.int32) * (model.config.code_bits + 1)
            in_a_row = in_a_row + 1 if (distances.diagonal() < others.min(axis=1)).all() else 0
            if in_a_row == 2:
                return
    raise AssertionError(f"the sample model did not pair its {len(images)} thumbnails with their shapes")


def build_sample_library(root: Path, code_bits: int = 32) -> SampleLibrary:
    """The meshes, a model trained on their thumbnails, and its index with assets, under ``root``."""
    from PIL import Image

    library_dir, model_dir, index_dir = root / "meshes", root / "model", root / "index"
    shape_ids = write_meshes(library_dir)
    torch.manual_seed(0)
    model = CMAHModel(mini_config(code_bits)).eval()
    processor = CMAHProcessor.from_model_config(model.config)
    untrained, _ = build_index(model, library_dir, root / "untrained-index", with_assets=True, progress=False)
    thumbnails = {}
    for shape_id, meta in zip(untrained.shape_ids, untrained.metadata.to_pylist()):
        thumbnails[shape_id] = Image.open(untrained.asset_path(meta["thumbnail"])).convert("RGB")
    clouds = [
        load_points(library_dir / f"{shape_id}.obj", processor.num_points, seed=processor.seed)
        for shape_id in shape_ids
    ]
    train_until_paired(model, processor, [thumbnails[shape_id] for shape_id in shape_ids], clouds)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    index, failures = build_index(model.eval(), library_dir, index_dir, with_assets=True, progress=False)
    assert not failures and len(index) == len(shape_ids)
    query_id = "chair/chair_0"
    query_image = root / "query-chair.png"
    thumbnails[query_id].save(query_image)
    return SampleLibrary(root, library_dir, model_dir, index_dir, query_image, query_id, tuple(shape_ids))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServiceProcess:
    """`hf-cmah serve ARGS` on a free 127.0.0.1 port in a subprocess; ``url`` once /healthz answers."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, startup_timeout: float = 120.0):
        self.args = list(args)
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def __enter__(self) -> ServiceProcess:
        import tempfile

        self.log_path = Path(tempfile.mkstemp(prefix="hf-cmah-serve-", suffix=".log")[1])
        command = [sys.executable, "-m", "hf_cmah.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*command, *self.args], stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO_ROOT
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hf-cmah serve exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return self
            time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError(f"hf-cmah serve did not answer within {self.startup_timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


__all__ = ["BOX_ID", "SampleLibrary", "ServiceProcess", "build_sample_library", "free_port", "mini_config"]
