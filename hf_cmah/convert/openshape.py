"""OpenShape PPAT checkpoints → a `PreAlignedShapeModel` folder.

Layouts read (OpenShape's `src/models/ppat.py` and the released checkpoints):

- G/14 ``model.pt``: ``{"state_dict": {"module.ppat.…", "module.proj.…"}, "logit_scale":
  {"module.logit_scale"}, "optimizer": …, …}`` (DDP prefix; training state is left out);
- L/14: a flat dict ``{"pc_encoder.ppat.…", "pc_encoder.proj.…"}``;
- B/32: a flat dict ``{"pc_encoder.…"}`` (no projection: the CLS feature is CLIP B/32's space).

Licence: OpenShape's code is Apache-2.0; its authors state the released weights may be used
commercially. The CLIP image towers keep their own licences (OpenCLIP / OpenAI: MIT).
"""

from __future__ import annotations

import re
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
    squeeze_conv1d,
    target_config,
)

OPENSHAPE_VARIANTS = {
    "g14": "openshape-pointbert-vitg14",
    "l14": "openshape-pointbert-vitl14",
    "b32": "openshape-pointbert-vitb32",
}
# Entries of the G/14 training checkpoint that hold weights (the rest is optimizer/scheduler state).
_WEIGHT_ENTRIES = ("state_dict", "logit_scale", "text_proj", "image_proj")


def ppat_rules(encoder_prefix: str, projection_prefix: str | None) -> list[Rule]:
    """Explicit key rules of one PPAT (``encoder_prefix`` = where ``sa``, ``lift``, … live)."""
    p = re.escape(encoder_prefix)
    layer = rf"{p}transformer\.layers\.(?P<i>\d+)\."
    ours = "shape_model.encoder.layers.{i}."
    rules = [
        Rule(rf"{p}sa\.mlp_convs\.(?P<j>\d+)\.(?P<p>weight|bias)", "shape_model.set_abstraction.mlp_convs.{j}.{p}"),
        Rule(
            rf"{p}sa\.mlp_bns\.(?P<j>\d+)\.(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)",
            "shape_model.set_abstraction.mlp_bns.{j}.{p}",
        ),
        Rule(rf"{p}lift\.0\.weight", "shape_model.lift.weight", squeeze_conv1d),
        Rule(rf"{p}lift\.0\.bias", "shape_model.lift.bias"),
        Rule(rf"{p}lift\.2\.(?P<p>weight|bias)", "shape_model.lift_norm.{p}"),
        Rule(rf"{p}cls_token", "shape_model.cls_token"),
        Rule(layer + r"0\.norm\.(?P<p>weight|bias)", ours + "norm1.{p}"),
        Rule(layer + r"0\.fn\.to_qkv\.weight", ours + "attention", split_qkv),
        Rule(layer + r"0\.fn\.to_out\.0\.(?P<p>weight|bias)", ours + "attention.output.{p}"),
        Rule(layer + r"1\.norm\.(?P<p>weight|bias)", ours + "norm2.{p}"),
        Rule(layer + r"1\.fn\.net\.0\.(?P<p>weight|bias)", ours + "mlp.fc1.{p}"),
        Rule(layer + r"1\.fn\.net\.3\.(?P<p>weight|bias)", ours + "mlp.fc2.{p}"),
    ]
    if projection_prefix is not None:
        rules.append(Rule(rf"{re.escape(projection_prefix)}proj\.(?P<p>weight|bias)", "shape_projection.{p}"))
    return rules


def detect_openshape_variant(checkpoint: dict) -> str:
    """``g14`` for the DDP training checkpoint, ``l14`` / ``b32`` for flat dicts with / without a projection."""
    if "state_dict" in checkpoint:
        return "g14"
    if "pc_encoder.proj.weight" in checkpoint:
        return "l14"
    if any(isinstance(key, str) and key.startswith("pc_encoder.") for key in checkpoint):
        return "b32"
    raise CheckpointLayoutError(
        "not an OpenShape checkpoint: expected a 'state_dict' entry (G/14) or 'pc_encoder.' keys (L/14, B/32), "
        f"found {sorted(map(str, checkpoint))[:10]}"
    )


def convert_openshape(
    checkpoint_path: str | Path,
    out_dir: str | Path,
    clip: str | Path | None = None,
    variant: str | None = None,
    config: PreAlignedShapeConfig | None = None,
    code_bits: int | None = None,
    trust_pickle: bool = False,
) -> tuple[Path, ConversionReport]:
    """Convert an OpenShape checkpoint; ``clip`` (Hub id or folder) supplies the image tower.

    ``variant`` (``g14``, ``l14``, ``b32``) is detected from the layout when omitted; ``config``
    replaces the variant's preset (tests use tiny widths). ``clip`` defaults to the preset's CLIP.
    """
    checkpoint = load_checkpoint(checkpoint_path, trust_pickle)
    variant = variant or detect_openshape_variant(checkpoint)
    if variant not in OPENSHAPE_VARIANTS:
        raise CheckpointLayoutError(
            f"unknown OpenShape variant {variant!r}; choose one of {sorted(OPENSHAPE_VARIANTS)}"
        )
    source = f"OpenShape PPAT ({variant}) {Path(checkpoint_path).name}"
    config = target_config(config, OPENSHAPE_VARIANTS[variant], code_bits, source)
    report = ConversionReport(source=str(checkpoint_path))

    if variant == "g14":
        state_dict = checkpoint["state_dict"]
        rules = ppat_rules("module.ppat.", "module.")
        extra = {}
        scale = checkpoint.get("logit_scale")
        if isinstance(scale, dict):
            extra = apply_rules(scale, [Rule(r"(?:module\.)?logit_scale", "logit_scale", lambda t, k: {k: t})], report)
        if checkpoint.get("image_proj") is not None:
            raise CheckpointLayoutError(
                f"{checkpoint_path}: this checkpoint was trained with an image projection ('image_proj'), "
                "which the converter does not map"
            )
        if checkpoint.get("text_proj") is not None:
            report.dropped["text projection (the model has no text tower)"] = len(checkpoint["text_proj"])
        report.training_state = [str(key) for key in checkpoint if key not in _WEIGHT_ENTRIES]
    else:
        state_dict = checkpoint
        rules = ppat_rules("pc_encoder.ppat.", "pc_encoder.") if variant == "l14" else ppat_rules("pc_encoder.", None)
        extra = {}
    check_tensor_dict(state_dict, f"{checkpoint_path}: the weights")
    converted = apply_rules(state_dict, rules, report)
    if "logit_scale" in extra:
        converted["logit_scale"] = logit_scale_tensor(extra["logit_scale"])
    config = attach_image_tower(converted, config, clip or config.image_tower_checkpoint)
    card = model_card(
        title=f"OpenShape PointBERT ({variant.upper()}) + CLIP image tower",
        source=f"OpenShape ({config.shape_tower_source})",
        licence="apache-2.0",
        licence_note=(
            "OpenShape code: Apache-2.0 (https://github.com/Colin97/OpenShape_code); the OpenShape authors "
            "state that the released weights may be used commercially. The CLIP image tower keeps the licence "
            f"of `{config.image_tower_checkpoint}`."
        ),
        citation=(
            "Minghua Liu et al. *OpenShape: Scaling Up 3D Shape Representation Towards Open-World "
            "Understanding.* NeurIPS 2023."
        ),
        config=config,
        report=report,
    )
    return build_and_save(converted, config, out_dir, report, card), report


__all__ = ["OPENSHAPE_VARIANTS", "convert_openshape", "detect_openshape_variant", "ppat_rules"]
