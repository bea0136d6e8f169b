"""Model cards and publishing: a `save_pretrained` folder + processor + README.md → the Hub.

The card's YAML header is a `ModelCardData` (library_name, tags, datasets, metrics) with a
``model-index`` built from `hf-cmah eval` results, so the Hub shows the numbers; its body
says what the model is, how it was evaluated and how to load it.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .errors import InvalidInputError

# (direction, metric key, metric type, readable name) of the model-index entries.
CARD_METRICS = (
    ("image_to_shape", "map@all", "map", "image→shape mAP@all"),
    ("image_to_shape", "p@10", "precision_at_10", "image→shape P@10"),
    ("image_to_shape", "acc@1", "accuracy_at_1", "image→shape Acc@1"),
    ("shape_to_image", "map@all", "map", "shape→image mAP@all"),
    ("shape_to_image", "p@10", "precision_at_10", "shape→image P@10"),
    ("shape_to_image", "acc@1", "accuracy_at_1", "shape→image Acc@1"),
)

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A **CMAH** (contrastive masked auto-encoder hashing) model from
[hf-cmah](https://github.com/hf-cmah/hf-cmah): an image encoder and a point-cloud encoder that
emit {{ code_bits }}-bit hash codes in one Hamming space, for image ⇄ 3D-shape retrieval.
Preset size: {{ hidden_size }} wide, {{ image_layers }} image / {{ point_layers }} point layers,
{{ image_size }}-px images, {{ num_points }} points per shape.

## Use

```python
import hf_cmah  # registers the model and processor with the Auto classes
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{{ repo_id }}")  # or trust_remote_code=True without hf_cmah
processor = AutoProcessor.from_pretrained("{{ repo_id }}")
image_codes = model.get_image_codes(**processor(images=[image], return_tensors="pt"))  # ±1 int8 [1, {{ code_bits }}]
shape_codes = model.get_shape_codes(processor(points=[xyz], return_tensors="pt")["points"])
```

Rank shapes by the Hamming distance between codes (`hf_cmah.codes.hamming_distance` on
`hf_cmah.codes.pack_codes` output), or build a `ShapeIndex` with `hf-cmah index build`.

## Evaluation

{{ evaluation }}

## Training

{{ training }}
"""


def _model_index(results: dict, model_name: str, dataset_name: str, dataset_type: str) -> list[EvalResult]:
    entries = []
    for direction, key, metric_type, name in CARD_METRICS:
        if direction not in results or key not in results[direction]:
            continue
        entries.append(
            EvalResult(
                task_type="image-to-3d-retrieval" if direction == "image_to_shape" else "3d-to-image-retrieval",
                task_name=direction.replace("_", " "),
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                metric_type=metric_type,
                metric_name=name,
                metric_value=round(float(results[direction][key]), 4),
            )
        )
    return entries


def _evaluation_text(results: dict | None, dataset_name: str) -> str:
    if not results:
        return "Not evaluated yet: run `hf-cmah eval` and `hf-cmah push --results results.json`."
    lines = [
        f"On {dataset_name}, by Hamming distance of the codes (class-level relevance; Acc@k: the paired item "
        "in the top k). Ties keep database order (shapes sorted by id).",
        "",
        "| direction | mAP@all | P@10 | Acc@1 | Acc@10 |",
        "|---|---|---|---|---|",
    ]
    for direction in ("image_to_shape", "shape_to_image"):
        if direction in results:
            scores = results[direction]
            cells = " | ".join(f"{scores[key]:.3f}" for key in ("map@all", "p@10", "acc@1", "acc@10"))
            lines.append(f"| {direction.replace('_to_', ' → ')} | {cells} |")
    return "\n".join(lines)


def build_model_card(
    folder: str | Path,
    repo_id: str | None = None,
    results: dict | None = None,
    datasets: list[str] | None = None,
    dataset_name: str = "",
) -> ModelCard:
    """The card of a saved CMAH folder (reads its config.json and training_config.json if present)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InvalidInputError(f"{folder}: not a save_pretrained folder (no config.json)")
    config = json.loads(config_path.read_text())
    model_name = repo_id.split("/")[-1] if repo_id else folder.name
    training_path = folder / "training_config.json"
    if training_path.is_file():
        training = json.loads(training_path.read_text())
        steps, batch = training["training"]["max_steps"], training["training"]["batch_size"]
        training_text = (
            f"Self-supervised (no labels) on paired images and point clouds: preset `{training['model']['preset']}`, "
            f"{steps} steps of {batch} pairs per process, AdamW lr {training['training']['learning_rate']}, "
            f"seed {training['training']['seed']}. Full config: `training_config.json`."
        )
    else:
        training_text = "No training config was saved with this model."
    dataset_name = dataset_name or (datasets[0] if datasets else "evaluation split")
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="feature-extraction",
        license="apache-2.0",
        tags=["hf-cmah", "cmah", "3d", "point-cloud", "image-to-3d", "retrieval", "hashing"],
        datasets=datasets or None,
        metrics=["map", "precision", "accuracy"] if results else None,
        model_name=model_name,
        eval_results=_model_index(results, model_name, dataset_name, (datasets or ["custom"])[0]) if results else None,
    )
    return ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        model_name=model_name,
        repo_id=repo_id or str(folder),
        code_bits=config["code_bits"],
        hidden_size=config["hidden_size"],
        image_layers=config["image_num_hidden_layers"],
        point_layers=config["point_num_hidden_layers"],
        image_size=config["image_size"],
        num_points=config["num_points"],
        evaluation=_evaluation_text(results, dataset_name),
        training=training_text,
    )


def write_model_card(folder: str | Path, repo_id: str | None = None, **card_options) -> Path:
    """Write README.md (the model card) into a saved folder; returns its path."""
    path = Path(folder) / "README.md"
    build_model_card(folder, repo_id, **card_options).save(path)
    return path


def push_model(folder: str | Path, repo_id: str, private: bool = False, api: HfApi | None = None) -> str:
    """Create the repository if needed and upload the folder (model, processor, card); returns the commit URL.

    ``api`` defaults to ``HfApi()`` (``HF_ENDPOINT`` and the saved token decide where and as whom).
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InvalidInputError(f"{folder}: not a save_pretrained folder (no config.json)")
    api = api or HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id, folder_path=folder, commit_message="Upload CMAH model, processor and card (hf-cmah push)"
    )
    return commit.commit_url


__all__ = ["build_model_card", "push_model", "write_model_card"]
