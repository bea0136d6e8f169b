"""ULIP-2 Point-BERT checkpoints → a `PreAlignedShapeModel` folder.

Layout read (ULIP's `models/ULIP_models.py` ``ULIP2_WITH_OPENCLIP`` and
`models/pointbert/point_encoder.py` ``PointTransformer_Colored``), e.g.
``ULIP-2-PointBERT-10k-colored-pc-pretrained.pt``: ``{"state_dict": {"module.point_encoder.…",
"module.pc_projection" [768, 1280], "module.logit_scale", "module.open_clip_model.…"}, …}``.
The frozen OpenCLIP towers inside are dropped (the image tower comes from the CLIP checkpoint).

Licence: ULIP's code is BSD-3-Clause (salesforce/ULIP).
"""

from __future__ import annotations

from pathlib import Path

from ..modeling.configuration_prealigned import PreAlignedShapeConfig
from .common import (
    CheckpointLayoutError,
    ConversionReport,
    Rule,
    apply_rules,
    attach_image_tower,
    build_and_save,
    check_tensor_dict,
    load_checkpoint,
    logit_scale_tensor,
    model_card,
    split_qkv,
    target_config,
    transpose,
)

ULIP2_PRESET = "ulip2-pointbert-vitg14"


def pointbert_rules() -> list[Rule]:
    """Explicit key rules of ULIP-2's colored Point-BERT, its projection and logit scale."""
    m = r"(?:module\.)?"
    e = m + r"point_encoder\."
    block = e + r"blocks\.blocks\.(?P<i>\d+)\."
    ours = "shape_model.encoder.layers.{i}."
    return [
        Rule(
            e + r"encoder\.(?P<conv>first_conv|second_conv)\.(?P<j>\d+)\."
            r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)",
            "shape_model.group_encoder.{conv}.{j}.{p}",
        ),
        Rule(e + r"reduce_dim\.(?P<p>weight|bias)", "shape_model.reduce_dim.{p}"),
        Rule(e + r"cls_token", "shape_model.cls_token"),
        Rule(e + r"cls_pos", "shape_model.cls_position"),
        Rule(e + r"pos_embed\.0\.(?P<p>weight|bias)", "shape_model.position_embeddings.fc1.{p}"),
        Rule(e + r"pos_embed\.2\.(?P<p>weight|bias)", "shape_model.position_embeddings.fc2.{p}"),
        Rule(block + r"norm1\.(?P<p>weight|bias)", ours + "norm1.{p}"),
        Rule(block + r"attn\.qkv\.weight", ours + "attention", split_qkv),
        Rule(block + r"attn\.proj\.(?P<p>weight|bias)", ours + "attention.output.{p}"),
        Rule(block + r"norm2\.(?P<p>weight|bias)", ours + "norm2.{p}"),
        Rule(block + r"mlp\.fc1\.(?P<p>weight|bias)", ours + "mlp.fc1.{p}"),
        Rule(block + r"mlp\.fc2\.(?P<p>weight|bias)", ours + "mlp.fc2.{p}"),
        Rule(e + r"norm\.(?P<p>weight|bias)", "shape_model.layernorm.{p}"),
        Rule(m + r"pc_projection", "shape_projection.weight", transpose),
        Rule(m + r"logit_scale", "logit_scale", lambda tensor, key: {key: logit_scale_tensor(tensor)}),
        Rule(
            m + r"open_clip_model\..+",
            None,
            reason="frozen OpenCLIP image/text towers (the image tower comes from the CLIP checkpoint)",
        ),
    ]


def convert_ulip2(
    checkpoint_path: str | Path,
    out_dir: str | Path,
    clip: str | Path | None = None,
    config: PreAlignedShapeConfig | None = None,
    code_bits: int | None = None,
    trust_pickle: bool = False,
) -> tuple[Path, ConversionReport]:
    """Convert a ULIP-2 Point-BERT checkpoint; ``clip`` (Hub id or folder) supplies the image tower."""
    checkpoint = load_checkpoint(checkpoint_path, trust_pickle)
    if "state_dict" not in checkpoint:
        raise CheckpointLayoutError(
            f"{checkpoint_path}: not a ULIP-2 checkpoint: expected a 'state_dict' entry, "
            f"found {sorted(map(str, checkpoint))[:10]}"
        )
    state_dict = checkpoint["state_dict"]
    check_tensor_dict(state_dict, f"{checkpoint_path}: 'state_dict'")
    config = target_config(config, ULIP2_PRESET, code_bits, f"ULIP-2 Point-BERT {Path(checkpoint_path).name}")
    report = ConversionReport(source=str(checkpoint_path))
    report.training_state = [str(key) for key in checkpoint if key != "state_dict"]
    converted = apply_rules(state_dict, pointbert_rules(), report)
    config = attach_image_tower(converted, config, clip or config.image_tower_checkpoint)
    card = model_card(
        title="ULIP-2 PointBERT (10k colored points) + CLIP image tower",
        source=f"ULIP-2 ({config.shape_tower_source})",
        licence="bsd-3-clause",
        licence_note=(
            "ULIP / ULIP-2 code: BSD-3-Clause (https://github.com/salesforce/ULIP). Check the terms under which "
            "Salesforce released the pre-trained weights before commercial use. The CLIP image tower keeps the "
            f"licence of `{config.image_tower_checkpoint}`."
        ),
        citation=("Le Xue et al. *ULIP-2: Towards Scalable Multimodal Pre-training for 3D Understanding.* CVPR 2024."),
        config=config,
        report=report,
    )
    return build_and_save(converted, config, out_dir, report, card), report


__all__ = ["ULIP2_PRESET", "convert_ulip2", "pointbert_rules"]
