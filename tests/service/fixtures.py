"""A small real library for the service and the Blender add-on tests, and a real `hf-cmah serve` to query.

``build_sample_library`` writes nine meshes (procedural chairs, tables, … and a box, "box/crate"),
indexes them with their GLBs and Blender-rendered thumbnails, fits the hash heads of a
smaller-than-tiny CMAH model until every thumbnail's nearest shape code is its own shape's, and
indexes them again with that model. Made once per test session.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

from hf_cmah import CMAHModel, CMAHProcessor, hamming_distance, pack_codes
from hf_cmah.data.builders.procedural import make_shape
from hf_cmah.geometry import load_points
from hf_cmah.index import build_index
from hf_cmah.service.process import ServiceProcess
from tests.conftest import mini_config

CATEGORIES = ("chair", "table", "lamp", "mug", "bottle", "airplane", "car", "sofa")
BOX_ID = "box/crate"
SAMPLING_SEEDS = tuple(range(6))  # the processor samples with seed 0; the others stand for other samplings


@dataclass(frozen=True)
class SampleLibrary:
    root: Path
    library_dir: Path  # the mesh folder that was indexed
    model_dir: Path
    index_dir: Path
    query_image: Path  # the thumbnail of QUERY_ID: a render of a library shape
    query_id: str
    shape_ids: tuple[str, ...]


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


def fit_hash_heads(
    model: CMAHModel, processor: CMAHProcessor, images: list, clouds: list[list], steps: int = 2000
) -> None:
    """Fit the two hash heads on frozen encoder features until every image's nearest shape code (Hamming) is its
    own shape's, for every resampling in ``clouds[shape]``: the codes then hold for another sampling of the same
    surface (an upload of the mesh, its faces in another order). The encoders run once, so this takes seconds."""
    from hf_cmah.losses import info_nce_loss

    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    samplings = [processor(points=list(draw), return_tensors="pt")["points"] for draw in zip(*clouds)]
    with torch.no_grad():
        image_hidden = model.image_encoder(model.image_embeddings(pixel_values)[0])
        point_hidden = []
        for points in samplings:
            neighbourhoods, centres = model.point_embeddings.grouper(points)
            point_hidden.append(model.point_encoder(model.point_embeddings(neighbourhoods, centres)[0]))
    heads = [*model.image_hash_head.parameters(), *model.point_hash_head.parameters()]
    optimizer = torch.optim.AdamW(heads, lr=3e-3)

    def relaxed(logits: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.tanh(logits), dim=-1)

    for step in range(steps):
        image_embeds = relaxed(model.image_hash_head(image_hidden))
        loss = sum(info_nce_loss(image_embeds, relaxed(model.point_hash_head(hidden)), 0.1) for hidden in point_hidden)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 49 and _paired_by_a_margin(model, pixel_values, samplings):
            return
    raise AssertionError(f"the sample model did not pair its {len(images)} thumbnails with their shapes")


def _paired_by_a_margin(model: CMAHModel, pixel_values: torch.Tensor, samplings: list[torch.Tensor]) -> bool:
    """Each image's own shape is nearest by at least 2 bits, in every sampling."""
    with torch.no_grad():
        image_codes = pack_codes(model.get_image_codes(pixel_values))
        for points in samplings:
            distances = hamming_distance(image_codes, pack_codes(model.get_shape_codes(points)))
            others = distances + np.eye(len(distances), dtype=np.int32) * (model.config.code_bits + 1)
            if not (distances.diagonal() + 2 <= others.min(axis=1)).all():
                return False
    return True


def build_sample_library(root: Path, code_bits: int = 32) -> SampleLibrary:
    """The meshes, a model trained on their thumbnails, and its index with assets, under ``root``."""
    from PIL import Image

    library_dir, model_dir, index_dir = root / "meshes", root / "model", root / "index"
    shape_ids = write_meshes(library_dir)
    torch.manual_seed(0)
    # Dense clouds in many groups: the codes of two samplings of one surface differ far less than two shapes'.
    model = CMAHModel(mini_config(code_bits, num_points=2048, num_groups=128)).eval()
    processor = CMAHProcessor.from_model_config(model.config)
    untrained, _ = build_index(model, library_dir, root / "untrained-index", with_assets=True, progress=False)
    thumbnails = {}
    for shape_id, meta in zip(untrained.shape_ids, untrained.metadata.to_pylist()):
        thumbnails[shape_id] = Image.open(untrained.asset_path(meta["thumbnail"])).convert("RGB")
    clouds = [
        [load_points(library_dir / f"{shape_id}.obj", processor.num_points, seed=seed) for seed in SAMPLING_SEEDS]
        for shape_id in shape_ids
    ]
    fit_hash_heads(model, processor, [thumbnails[shape_id] for shape_id in shape_ids], clouds)
    model.save_pretrained(model_dir)
    processor.save_pretrained(model_dir)
    index, failures = build_index(model.eval(), library_dir, index_dir, with_assets=True, progress=False)
    assert not failures and len(index) == len(shape_ids)
    query_id = "chair/chair_0"
    query_image = root / "query-chair.png"
    thumbnails[query_id].save(query_image)
    return SampleLibrary(root, library_dir, model_dir, index_dir, query_image, query_id, tuple(shape_ids))


__all__ = ["BOX_ID", "SampleLibrary", "ServiceProcess", "build_sample_library"]
