"""What the OpenShape and ULIP-2 converters share: reading a checkpoint, explicit key mapping,
attaching a CLIP image tower, and writing a `save_pretrained` folder with a model card.

Every source key is either mapped to exactly one model key (with an explicit transform),
or dropped by an explicit, documented rule; anything else is an error that lists the keys.
The converted state dict must then cover every model key: no ``strict=False`` anywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InvalidInputError
from ..modeling.configuration_prealigned import PreAlignedShapeConfig
from ..processing_cmah import CMAHProcessor

# OpenAI CLIP's image normalisation, used by every CLIP tower these checkpoints pair with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CheckpointLayoutError(InvalidInputError):
    """A checkpoint's keys or tensor shapes do not match the layout the converter reads."""


@dataclass
class Rule:
    """One source-key pattern (a regex with named groups) → one or more model keys."""

    pattern: str
    target: str | None  # `str.format` template over the pattern's groups; None = a documented drop
    transform: Callable[[torch.Tensor, str], dict[str, torch.Tensor]] | None = None
    reason: str = ""


def split_qkv(tensor: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """A fused ``[3·inner, width]`` qkv weight → ``prefix.{query,key,value}.weight`` (chunk order q, k, v)."""
    if tensor.shape[0] % 3:
        raise CheckpointLayoutError(f"fused qkv weight has {tensor.shape[0]} rows, not a multiple of 3")
    query, key, value = tensor.chunk(3, dim=0)
    return {f"{prefix}.query.weight": query, f"{prefix}.key.weight": key, f"{prefix}.value.weight": value}


def squeeze_conv1d(tensor: torch.Tensor, key: str) -> dict[str, torch.Tensor]:
    """A 1×1 Conv1d weight ``[out, in, 1]`` → the Linear weight ``[out, in]``."""
    return {key: tensor.squeeze(-1)}


def transpose(tensor: torch.Tensor, key: str) -> dict[str, torch.Tensor]:
    """A ``x @ P`` matrix ``[in, out]`` → the Linear weight ``[out, in]``."""
    return {key: tensor.T.contiguous()}


@dataclass
class ConversionReport:
    """What a conversion read, wrote and dropped (printed by the CLI, summarised in the model card)."""

    source: str
    mapped: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    training_state: list[str] = field(default_factory=list)
    initialised: dict[str, int] = field(default_factory=dict)  # model prefix → tensors drawn at random

    def summary(self) -> str:
        lines = [f"{self.mapped} tensors mapped from {self.source}"]
        lines += [f"{count} tensors dropped: {reason}" for reason, count in sorted(self.dropped.items())]
        lines += [
            f"{count} tensors initialised at random, to be trained: {prefix}"
            for prefix, count in sorted(self.initialised.items())
        ]
        if self.training_state:
            lines.append("training state left out: " + ", ".join(sorted(self.training_state)))
        return "\n".join(lines)


def load_checkpoint(path: str | Path, trust_pickle: bool = False) -> dict:
    """``torch.load`` on the CPU, restricted to tensors and plain containers unless ``trust_pickle``."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError … on bad files
        hint = "" if trust_pickle else " (if you trust the file, retry with --trust-pickle)"
        raise InvalidInputError(f"{path}: cannot read the checkpoint: {type(error).__name__}: {error}{hint}") from error
    if not isinstance(checkpoint, dict):
        raise CheckpointLayoutError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    return checkpoint


def apply_rules(
    state_dict: dict[str, torch.Tensor], rules: list[Rule], report: ConversionReport
) -> dict[str, torch.Tensor]:
    """Map every source key by the first rule that matches it; unmatched keys are an error listing them."""
    compiled = [(re.compile(rule.pattern), rule) for rule in rules]
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state_dict.items():
        for regex, rule in compiled:
            match = regex.fullmatch(key)
            if match is None:
                continue
            if rule.target is None:
                report.dropped[rule.reason] = report.dropped.get(rule.reason, 0) + 1
            else:
                target = rule.target.format(**match.groupdict())
                outputs = rule.transform(tensor, target) if rule.transform else {target: tensor}
                for new_key, value in outputs.items():
                    if new_key in converted:
                        raise CheckpointLayoutError(f"two source keys map to {new_key} (second: {key})")
                    converted[new_key] = value
                report.mapped += 1
            break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointLayoutError(
            f"{report.source}: {len(unknown)} keys the converter does not know (a different model or "
            f"version?): {', '.join(sorted(unknown)[:40])}{' …' if len(unknown) > 40 else ''}"
        )
    return converted


def attach_image_tower(
    converted: dict[str, torch.Tensor], config: PreAlignedShapeConfig, clip: str | Path
) -> PreAlignedShapeConfig:
    """Add a CLIP checkpoint's vision tower and visual projection; its vision config becomes ours."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    try:
        # A CLIPModel folder keeps projection_dim at its top level: take it from our config, so that a
        # CLIP model of another width fails loudly on the projection's shape instead of loading.
        vision_config = CLIPVisionConfig.from_pretrained(str(clip))
        vision_config.projection_dim = config.projection_dim
        vision = CLIPVisionModelWithProjection.from_pretrained(str(clip), config=vision_config)
    except (OSError, ValueError, RuntimeError) as error:
        raise InvalidInputError(
            f"cannot load the CLIP image tower {clip!s} with a {config.projection_dim}-d projection "
            f"(pick the CLIP model the shape tower was aligned with): {error}"
        ) from error
    for key, tensor in vision.state_dict().items():
        if key.startswith(("vision_model.", "visual_projection.")):
            converted[key] = tensor
    config.vision_config = vision.config
    config.image_tower_checkpoint = str(clip)
    return config


def check_tensor_dict(state_dict, where: str) -> None:
    """Refuse weights that are not a ``{name: tensor}`` dict, naming where they came from."""
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointLayoutError(f"{where} is not a dict of tensors")


def target_config(
    config: PreAlignedShapeConfig | None, preset: str, code_bits: int | None, source: str
) -> PreAlignedShapeConfig:
    """The config a conversion fills: ``config`` or the ``preset``, with ``code_bits`` and the shape tower's source."""
    config = config if config is not None else PreAlignedShapeConfig.from_preset(preset)
    if code_bits is not None:
        config.code_bits = code_bits
    config.shape_tower_source = source
    return config


def logit_scale_tensor(value: torch.Tensor | float) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=torch.float32).reshape(())
    if not math.isfinite(float(tensor)):
        raise CheckpointLayoutError(f"logit_scale is not finite: {float(tensor)}")
    return tensor


def processor_for(config: PreAlignedShapeConfig) -> CMAHProcessor:
    """The processor a converted model reads with: its image tower's normalisation (CLIP's unless the
    tower config names one), the shape tower's point count, colour channels and gravity axis."""
    shape, vision = config.shape_config, config.vision_config
    return CMAHProcessor(
        image_size=vision.image_size,
        image_mean=getattr(vision, "image_mean", CLIP_MEAN),
        image_std=getattr(vision, "image_std", CLIP_STD),
        num_points=shape.num_points,
        model_up_axis=shape.up_axis,
        with_colors=shape.in_channels == 6,
    )


def build_and_save(
    converted: dict[str, torch.Tensor],
    config: PreAlignedShapeConfig,
    out_dir: str | Path,
    report: ConversionReport,
    model_card: str,
    initialise: tuple[str, ...] = (),
) -> Path:
    """Load ``converted`` into a fresh model, checking both key sets exactly, then save safetensors + card.

    Keys under the ``initialise`` prefixes (towers no checkpoint holds, trained afterwards) keep the
    fresh model's seeded initialisation and are counted in ``report.initialised``.
    """
    from ..modeling.modeling_prealigned import PreAlignedShapeModel

    if "logit_scale" not in converted:
        converted["logit_scale"] = logit_scale_tensor(config.logit_scale_init_value)
    torch.manual_seed(0)  # the optional binarisation head is the one part drawn at random
    model = PreAlignedShapeModel(config)
    expected = model.state_dict()
    if model.code_projection is not None:
        converted.setdefault("code_projection.weight", expected["code_projection.weight"])
    for prefix in initialise:
        fresh = [key for key in expected if key.startswith(prefix) and key not in converted]
        converted.update({key: expected[key] for key in fresh})
        report.initialised[prefix] = len(fresh)
    # Buffers that CLIP rebuilds from its config are not weights of either checkpoint.
    for key in expected:
        if key.endswith("position_ids") and key not in converted:
            converted[key] = expected[key]
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise CheckpointLayoutError(
            f"{report.source}: converted weights do not fit the model: missing {missing[:40]}, "
            f"unexpected {unexpected[:40]}"
        )
    wrong_shapes = [
        f"{key}: checkpoint {tuple(converted[key].shape)} vs model {tuple(value.shape)}"
        for key, value in expected.items()
        if tuple(converted[key].shape) != tuple(value.shape)
    ]
    if wrong_shapes:
        raise CheckpointLayoutError(
            f"{report.source}: tensor shapes differ from the config (wrong variant or sizes?): "
            + "; ".join(wrong_shapes[:20])
        )
    model.load_state_dict(converted, strict=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor_for(config).save_pretrained(out_dir)
    (out_dir / "README.md").write_text(model_card, encoding="utf-8")
    return out_dir


def model_card(
    *,
    title: str,
    source: str,
    licence: str,
    licence_note: str,
    citation: str,
    config: PreAlignedShapeConfig,
    report: ConversionReport,
) -> str:
    """A Hub model card: front matter, source, licence, input conventions, conversion report."""
    shape = config.shape_config
    return f"""---
license: {licence}
library_name: transformers
tags: [hf-cmah, 3d, point-cloud, retrieval, clip]
---

# {title}

Converted with `hf-cmah convert` from **{source}**.

- Shape tower: {shape.architecture} (width {shape.hidden_size}, depth {shape.num_hidden_layers},
  {shape.num_groups} groups of {shape.group_size}), projection `{config.shape_projection}` to
  {config.projection_dim} dimensions.
- Image tower: {config.vision_config.model_type} weights from `{config.image_tower_checkpoint}`.
- Input clouds: {shape.in_channels} channels ({"xyz + rgb in 0..1" if shape.in_channels == 6 else "xyz"}),
  {shape.num_points} points, centred and scaled into the unit ball, **{shape.up_axis}-up**; clouds
  without colour get grey {shape.default_color}.

## Licence

{licence_note}

## Conversion

```
{report.summary()}
```

## Citation

{citation}
"""


__all__ = [
    "CheckpointLayoutError",
    "ConversionReport",
    "Rule",
    "apply_rules",
    "attach_image_tower",
    "build_and_save",
    "load_checkpoint",
    "logit_scale_tensor",
    "model_card",
    "split_qkv",
    "squeeze_conv1d",
    "transpose",
]
