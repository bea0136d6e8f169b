"""The typed training configuration: one YAML file → a config of its model family, every value checked.

A file has four sections (``model``, ``data``, ``training``, ``output``); every key is a field
below with its type, default and allowed range. ``model.family`` picks the schema:
``cmah`` (the default, `TrainingConfig`) or ``prealigned`` (`PreAlignedTrainingConfig`), and
with it the trainer that ``hf-cmah train`` runs. A file may start from another with
``extends: other.yaml`` (path relative to the file); its sections are merged key by key.
``overrides`` (``["model.code_bits=32", ...]``, values parsed as YAML) apply last, so one recipe
serves every code length. Any bad value raises `ConfigError` naming the file, the key and the
problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import inspect
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import yaml

from ..data.augmentation import ImageAugmentation
from ..errors import ConfigError
from ..losses import LOSSES
from ..modeling import CMAH_PRESETS, PREALIGNED_PRESETS, CMAHConfig, PreAlignedShapeConfig


def _positive(value) -> bool:
    return value > 0


def _non_negative(value) -> bool:
    return value >= 0


def _check(test, requirement: str) -> dict:
    return {"check": test, "requirement": requirement}


@dataclass(frozen=True)
class ModelSection:
    """Which CMAH model to train."""

    family: str = field(default="cmah", metadata=_check(lambda v: v == "cmah", "be cmah in a CMAH config"))
    preset: str = field(
        default="cmah-tiny", metadata=_check(lambda v: v in CMAH_PRESETS, f"be one of {sorted(CMAH_PRESETS)}")
    )
    code_bits: int = field(default=64, metadata=_check(lambda v: v > 0 and v % 8 == 0, "be a positive multiple of 8"))
    # A trained CMAH to fine-tune (a run's final/ or any save_pretrained folder): its weights and config,
    # which must be of `preset` and `code_bits`; the overrides still apply on top.
    pretrained: str | None = None
    # Any other CMAHConfig argument, e.g. {masked_contrastive_weight: 0} for the contrastive-only ablation.
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    """The paired data: a folder from `hf-cmah data build` (or a Hub dataset id); columns in docs/TRAINING.md."""

    path: str = "~/.cache/hf-cmah/datasets/psb_v1_mini"
    train_split: str = "train"
    eval_split: str = "test"
    # The images paired with shapes (training and eval queries): a `view.kind` (render, photo, …),
    # or `thumbnail` for the thumbnail column.
    image_kind: str = "render"
    num_workers: int = field(default=0, metadata=_check(_non_negative, "be >= 0"))
    # The train split's processed tensors (pixel_values, points) are made once and kept in memory
    # when they fit in this many GiB, so no batch waits on PNG decoding; 0 decodes every batch.
    cache_gib: float = field(default=2.0, metadata=_check(_non_negative, "be >= 0"))
    # More built datasets to train on, {path: image_kind}; their train_split joins data.path's, and
    # evaluation stays on data.path's eval_split (held-out data only).
    extra_train: dict = field(
        default_factory=dict,
        metadata=_check(
            lambda v: all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
            "map dataset paths to image kinds, e.g. {~/data/pix3d: mask}",
        ),
    )
    # Train-time image augmentation (hf_cmah.data.augmentation.ImageAugmentation): off unless true;
    # `augmentation` overrides its defaults, e.g. {background_p: 0.5, crop_scale: [0.5, 1.0]}.
    augment: bool = False
    augmentation: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSection:
    """Optimisation: AdamW, linear warm-up then cosine decay to zero, gradient clipping."""

    seed: int = 0
    batch_size: int = field(default=32, metadata=_check(lambda v: v >= 2, "be >= 2 (InfoNCE needs negatives)"))
    gradient_accumulation_steps: int = field(default=1, metadata=_check(_positive, "be >= 1"))
    learning_rate: float = field(default=5.0e-4, metadata=_check(_positive, "be > 0"))
    weight_decay: float = field(default=0.05, metadata=_check(_non_negative, "be >= 0"))
    adam_beta1: float = field(default=0.9, metadata=_check(lambda v: 0 <= v < 1, "lie in [0, 1)"))
    adam_beta2: float = field(default=0.95, metadata=_check(lambda v: 0 <= v < 1, "lie in [0, 1)"))
    warmup_steps: int = field(default=20, metadata=_check(_non_negative, "be >= 0"))
    max_steps: int = field(default=300, metadata=_check(_positive, "be >= 1"))
    max_grad_norm: float = field(default=1.0, metadata=_check(_positive, "be > 0"))
    # auto: bf16 on a GPU that has it, fp16 on other GPUs, fp32 on CPU.
    mixed_precision: str = field(
        default="auto", metadata=_check(lambda v: v in ("auto", "no", "bf16", "fp16"), "be auto, no, bf16 or fp16")
    )
    # The contrastive loss (hf_cmah.losses): InfoNCE, the hard contrastive loss with hardness β and
    # false-negative share τ⁺, or supcon, whose positives are every same-class pair of the batch (supervised:
    # it reads the train rows' labels). For CMAH it replaces InfoNCE in every term of L_c, at the model's temperature.
    loss: str = field(default="infonce", metadata=_check(lambda v: v in LOSSES, "be infonce, hcl or supcon"))
    hcl_beta: float = field(default=1.0, metadata=_check(_non_negative, "be >= 0"))
    hcl_tau_plus: float = field(default=0.0, metadata=_check(lambda v: 0 <= v < 1, "lie in [0, 1)"))


@dataclass(frozen=True)
class OutputSection:
    """Where and how often the run writes checkpoints, evaluations and logs."""

    dir: str = "runs/cmah"
    checkpoint_every: int = field(default=50, metadata=_check(_positive, "be >= 1"))
    keep_checkpoints: int = field(default=2, metadata=_check(_positive, "be >= 1"))
    # Evaluate on the eval split every N steps and at the end, keeping the best model in best/; 0 = never.
    eval_every: int = field(default=0, metadata=_check(_non_negative, "be >= 0"))
    eval_batch_size: int = field(default=64, metadata=_check(_positive, "be >= 1"))
    log_every: int = field(default=10, metadata=_check(_positive, "be >= 1"))
    report_to: str = field(
        default="tensorboard",
        metadata=_check(lambda v: v in ("tensorboard", "none"), "be tensorboard or none"),
    )


@dataclass(frozen=True)
class PreAlignedModelSection:
    """Which dual encoder: a preset trained from scratch, or a ``save_pretrained`` folder (``hf-cmah convert``)."""

    family: str = field(default="prealigned", metadata=_check(lambda v: v == "prealigned", "be prealigned"))
    preset: str | None = field(
        default=None,
        metadata=_check(lambda v: v is None or v in PREALIGNED_PRESETS, f"be one of {sorted(PREALIGNED_PRESETS)}"),
    )
    pretrained: str | None = None
    # Any other top-level PreAlignedShapeConfig argument, e.g. {code_bits: 64} for a binarisation head.
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PreAlignedTrainingSection(TrainingSection):
    """CMAH's optimisation and loss options plus the dual encoder's batches, frozen towers and augmentation."""

    # 0 trains nothing: the model (e.g. a converted one, zero-shot) is only evaluated and saved.
    max_steps: int = field(default=390, metadata=_check(_non_negative, "be >= 0 (0: evaluate only)"))
    # Batches of seed shapes and their nearest neighbours under the shape embeddings of the epoch before.
    hard_neighbour_batches: bool = False
    seeds_per_batch: int = field(default=4, metadata=_check(_positive, "be >= 1"))
    freeze_image_tower: bool = False
    freeze_shape_tower: bool = False
    projections_only: bool = False  # both towers frozen (BatchNorm in eval mode), projections trained
    # Augmentation: each step draws the model's num_points of `point_pool` processed points per shape
    # (0: no subset) and adds Gaussian jitter of this standard deviation.
    point_pool: int = field(default=0, metadata=_check(_non_negative, "be >= 0"))
    point_jitter: float = field(default=0.0, metadata=_check(_non_negative, "be >= 0"))


@dataclass(frozen=True)
class TrainingConfig:
    """A CMAH run (``model.family: cmah``)."""

    family: ClassVar[str] = "cmah"
    # The eval number that picks best/: Hamming ranking of codes, the index CMAH serves.
    selection_metric: ClassVar[str] = "image_to_shape/map@all"

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    output: OutputSection = field(default_factory=OutputSection)
    source: str = "<defaults>"

    def model_config(self) -> CMAHConfig:
        """The `CMAHConfig` this run trains (preset + code_bits + overrides)."""
        return build_model_config(self.model, self.source)

    def image_augmentation(self) -> ImageAugmentation | None:
        """The train-time image augmentation of ``data.augment`` / ``data.augmentation``, or None when off."""
        return build_augmentation(self.data, self.source)

    def to_dict(self) -> dict:
        """Plain values of the four sections (logged as hyper-parameters and saved beside the model)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in sections_of(type(self))}

    @property
    def dataset_path(self) -> str:
        """``data.path`` with ``~`` and ``$VARS`` expanded (a Hub id passes through unchanged)."""
        return expand_path(self.data.path)


@dataclass(frozen=True)
class PreAlignedTrainingConfig(TrainingConfig):
    """A pre-aligned dual-encoder run (``model.family: prealigned``); data and output as for CMAH."""

    family: ClassVar[str] = "prealigned"
    # Cosine ranking of the float embeddings, which every dual encoder has (codes only with code_bits).
    selection_metric: ClassVar[str] = "image_to_shape_cosine/map@all"

    model: PreAlignedModelSection = field(default_factory=PreAlignedModelSection)
    training: PreAlignedTrainingSection = field(default_factory=PreAlignedTrainingSection)

    def model_config(self) -> PreAlignedShapeConfig:
        """The `PreAlignedShapeConfig` of the preset, or of the pretrained folder, with the overrides."""
        return build_prealigned_model_config(self.model, self.source)


def expand_path(path: str) -> str:
    """A config's path with ``~`` and ``$VARS`` expanded."""
    return os.path.expandvars(os.path.expanduser(path))


FAMILIES: dict[str, type[TrainingConfig]] = {"cmah": TrainingConfig, "prealigned": PreAlignedTrainingConfig}
SECTIONS = ("model", "data", "training", "output")
_NUMBER_TYPES = {int: (int,), float: (int, float), str: (str,), bool: (bool,), dict: (dict,)}


def sections_of(config_class: type[TrainingConfig]) -> dict[str, type]:
    """``{section name: section dataclass}`` of one family's config."""
    hints = typing.get_type_hints(config_class)
    return {name: hints[name] for name in SECTIONS}


def _allowed_types(expected) -> tuple[tuple[type, ...], bool]:
    """The Python types a YAML value may have for a field annotated ``expected``, and whether null is allowed."""
    if isinstance(expected, types.UnionType) or typing.get_origin(expected) is typing.Union:
        members = [t for t in typing.get_args(expected) if t is not type(None)]
        return tuple(t for m in members for t in _NUMBER_TYPES[m]), True
    return _NUMBER_TYPES[expected], False


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def _unknown_key(source: str, where: str, key: str, known) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(sorted(known))}"
    return ConfigError(f"{source}: unknown key {where}{key!r}{hint}")


def _yaml_float(text: str):
    """PyYAML reads ``3e-4`` (no dot) as a string (YAML 1.1); take it as the number it means."""
    try:
        return float(text)
    except ValueError:
        return text


def _build_section(cls: type, values: dict, name: str, source: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: section {name!r} must be a mapping, got {type(values).__name__}")
    values = dict(values)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in fields:
            raise _unknown_key(source, f"{name}.", key, fields)
        expected = hints[key]
        if expected is float and isinstance(value, str):
            value = values[key] = _yaml_float(value)
        allowed, nullable = _allowed_types(expected)
        if value is None and nullable:
            continue
        # bool is an int subclass in Python; a YAML `true` is never a valid count.
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            type_name = getattr(expected, "__name__", str(expected))
            raise ConfigError(
                f"{source}: {name}.{key} must be of type {type_name}, got {value!r} ({type(value).__name__})"
            )
        check = fields[key].metadata.get("check")
        if check is not None and not check(value):
            raise ConfigError(f"{source}: {name}.{key} must {fields[key].metadata['requirement']}, got {value!r}")
    return cls(**{key: float(v) if hints[key] is float else v for key, v in values.items()})


def build_augmentation(data: DataSection, source: str) -> ImageAugmentation | None:
    """``data.augmentation``'s keys checked against `ImageAugmentation` (lists become its range tuples)."""
    if data.augmentation and not data.augment:
        raise ConfigError(f"{source}: data.augmentation is set but data.augment is false; set data.augment: true")
    if not data.augment:
        return None
    fields = {item.name: item for item in dataclasses.fields(ImageAugmentation)}
    values = {}
    for key, value in data.augmentation.items():
        if key not in fields:
            raise _unknown_key(source, "data.augmentation.", key, fields)
        values[key] = tuple(value) if isinstance(value, list) else value
    try:
        return ImageAugmentation(**values)
    except (ConfigError, TypeError) as error:
        raise ConfigError(f"{source}: data.{error}") from error


def build_model_config(model: ModelSection, source: str) -> CMAHConfig:
    """The preset's `CMAHConfig`, or the pretrained folder's after checking it is that preset at ``code_bits``."""
    allowed = set(inspect.signature(CMAHConfig.__init__).parameters) - {"self", "kwargs", "code_bits"}
    for key in model.overrides:
        if key not in allowed:
            raise _unknown_key(source, "model.overrides.", key, allowed)
    try:
        preset = CMAHConfig.from_preset(model.preset, code_bits=model.code_bits, **model.overrides)
    except ValueError as error:
        raise ConfigError(f"{source}: model: {error}") from error
    if model.pretrained is None:
        return preset
    folder, pretrained = _pretrained_config(CMAHConfig, model.pretrained, model.overrides, source)
    architecture = sorted(set().union(*CMAH_PRESETS.values()))  # the keys in which presets differ
    for key in ("code_bits", *architecture):
        if getattr(pretrained, key) != getattr(preset, key):
            raise ConfigError(
                f"{source}: model.pretrained: {folder} has {key} = {getattr(pretrained, key)!r}, but "
                f"model.preset {model.preset!r} at model.code_bits {model.code_bits} has {getattr(preset, key)!r}; "
                "set model.preset / model.code_bits to the trained model's"
            )
    return pretrained


def build_prealigned_model_config(model: PreAlignedModelSection, source: str) -> PreAlignedShapeConfig:
    """Exactly one of ``model.preset`` / ``model.pretrained``, with the overrides checked against the config."""
    if (model.preset is None) == (model.pretrained is None):
        given = "both" if model.preset else "neither"
        raise ConfigError(
            f"{source}: model: give exactly one of model.preset and model.pretrained, got {given} "
            "(e.g. --set model.preset=null --set model.pretrained=FOLDER)"
        )
    allowed = set(inspect.signature(PreAlignedShapeConfig.__init__).parameters) - {"self", "kwargs"}
    for key in model.overrides:
        if key not in allowed:
            raise _unknown_key(source, "model.overrides.", key, allowed)
    if model.preset is not None:
        try:
            return PreAlignedShapeConfig.from_preset(model.preset, **model.overrides)
        except ValueError as error:
            raise ConfigError(f"{source}: model: {error}") from error
    return _pretrained_config(PreAlignedShapeConfig, model.pretrained, model.overrides, source)[1]


def _pretrained_config(config_class, pretrained: str, overrides: dict, source: str):
    """``(folder, config)`` of a ``model.pretrained`` folder, with the overrides; a `ConfigError` naming the key."""
    folder = Path(expand_path(pretrained))
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{source}: model.pretrained: {folder} is not a save_pretrained folder (no config.json)")
    try:
        return folder, config_class.from_pretrained(folder, **overrides)
    except (OSError, ValueError) as error:
        raise ConfigError(f"{source}: model.pretrained: {folder}: {error}") from error


def _one_line(error: yaml.YAMLError) -> str:
    """PyYAML's message (problem, then where) without its multi-line snippet of the file."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return " ".join(str(error).split())
    return f"{getattr(error, 'problem', None) or error} (line {mark.line + 1}, column {mark.column + 1})"


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    if path in chain:
        raise ConfigError(f"{path}: `extends` loops back to this file")
    if not path.is_file():
        raise ConfigError(f"{chain[-1] if chain else path}: config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(error)}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends must be a file name, got {parent!r}")
    return _merge(_read_yaml((path.parent / parent).resolve(), (*chain, path)), data)


def _apply_override(data: dict, override: str, source: str) -> dict:
    key, separator, raw = override.partition("=")
    parts = key.strip().split(".")
    if not separator or len(parts) < 2 or not all(parts):
        raise ConfigError(f"{source}: override {override!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: override {override!r}: value is not valid YAML: {_one_line(error)}") from error
    for part in reversed(parts):
        value = {part: value}
    return _merge(data, value)


def family_of(data: dict, source: str) -> type[TrainingConfig]:
    """The config class named by ``model.family`` (``cmah`` when absent)."""
    model = data.get("model")
    family = model.get("family", "cmah") if isinstance(model, dict) else "cmah"
    if family not in FAMILIES:
        raise ConfigError(f"{source}: model.family must be one of {', '.join(FAMILIES)}, got {family!r}")
    return FAMILIES[family]


def config_from_dict(data: dict, source: str = "<dict>") -> TrainingConfig:
    """Check and build the config of ``model.family`` from nested plain values (the parsed YAML)."""
    for name in data:
        if name not in SECTIONS:
            raise _unknown_key(source, "", name, SECTIONS)
    config_class = family_of(data, source)
    sections = {
        name: _build_section(cls, data.get(name, {}), name, source) for name, cls in sections_of(config_class).items()
    }
    config = config_class(**sections, source=source)
    config.model_config()  # the model section is only valid if the model's config class accepts it
    config.image_augmentation()
    return config


def bundled_configs() -> dict[str, Path]:
    """The configs the package ships (``hf_cmah/training/configs/*.yaml``), by name without ``.yaml``."""
    folder = Path(str(importlib.resources.files("hf_cmah.training") / "configs"))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """A config file as given, else the bundled config of that name (``tiny-cpu``), so a wheel install trains too."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    bundled = bundled_configs()
    if path.name.removesuffix(".yaml") in bundled and len(path.parts) == 1:
        return bundled[path.name.removesuffix(".yaml")]
    raise ConfigError(
        f"{name_or_path}: config file not found, and no bundled config has that name ({', '.join(bundled)})"
    )


def load_training_config(path: str | os.PathLike, overrides: typing.Sequence[str] = ()) -> TrainingConfig:
    """Read, merge (``extends``), override and check a YAML training config (a file, or a bundled name)."""
    path = resolve_config_path(path)
    data = _read_yaml(path)
    for override in overrides:
        data = _apply_override(data, override, str(path))
    return config_from_dict(data, str(path))


__all__ = [
    "FAMILIES",
    "DataSection",
    "ModelSection",
    "OutputSection",
    "PreAlignedModelSection",
    "PreAlignedTrainingConfig",
    "PreAlignedTrainingSection",
    "TrainingConfig",
    "TrainingSection",
    "bundled_configs",
    "config_from_dict",
    "load_training_config",
    "resolve_config_path",
]
