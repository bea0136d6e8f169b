"""The dataset card (README.md) written beside every built dataset and pushed with it."""

from __future__ import annotations

import json

import datasets
import yaml


def dataset_card(dataset: datasets.DatasetDict, info: dict, description: str) -> str:
    """Card with a YAML header the Hub reads (licence, configs) and a body saying how it was made."""
    header = {
        "license": _hub_licence(info["licence"]),
        "pretty_name": f"hf-cmah {info['source']}",
        "tags": ["3d", "point-cloud", "image-to-3d-retrieval", "hf-cmah"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*"} for split in dataset],
            }
        ],
    }
    splits = ", ".join(f"{split}: {len(table):,} rows" for split, table in dataset.items())
    features = next(iter(dataset.values())).features if dataset else {}
    feature_lines = "\n".join(f"| `{name}` | `{_feature_text(feature)}` |" for name, feature in features.items())
    failures = info["failures"]
    return f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
---

# hf-cmah {info["source"]} dataset

{description}

One row per (shape, image) pair: a shape's `points` repeat across its views; use
`hf_cmah.data.select_views` to draw one view per shape per epoch.

Splits: {splits}. Classes: {len(info["class_names"])}.

## Features

| column | type |
|---|---|
{feature_lines}

## Source and licence

- Source: {info["source"]} {info["homepage"]}
- Licence: {info["licence"]}
- Citation: {info["citation"] or "none given"}

## How it was made

`hf-cmah data build` (hf-cmah), settings:

```json
{json.dumps(info["settings"], indent=1, default=str)}
```

Shapes skipped because they failed to load, sample or render: {len(failures)}
(listed in `build_info.json`).
"""


def _hub_licence(licence: str) -> str:
    """The Hub's licence identifier; anything non-standard is ``other`` (the body states it in full)."""
    known = {"cc-by-4.0", "cc0-1.0", "mit", "apache-2.0", "cc-by-sa-4.0", "cc-by-nc-4.0"}
    return licence.lower() if licence.lower() in known else "other"


def _feature_text(feature: object) -> str:
    if isinstance(feature, datasets.ClassLabel):
        return f"ClassLabel({feature.num_classes} classes)"
    if isinstance(feature, dict):
        return "struct{" + ", ".join(feature) + "}"
    return type(feature).__name__ + (f"{feature.shape} {feature.dtype}" if hasattr(feature, "shape") else "")


__all__ = ["dataset_card"]
