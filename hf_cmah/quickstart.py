"""`make quickstart`: the whole path from meshes to a search, with the same commands a user types.

1. build the procedural shape library (10 categories; points + Blender renders → Parquet),
2. train `cmah-tiny` on its train split (accelerate, a few minutes on a 2-core CPU),
3. evaluate image→shape / shape→image retrieval on its test split, beside random codes,
4. write the test meshes to a folder and index it with their meshes and thumbnails (`hf-cmah index build --assets`),
5. search that index with a rendered test view (`hf-cmah search --image`).

Outputs go to ``outputs/quickstart/`` (or ``--out``); a second run reuses finished steps' caches.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .cli import main as cli_main

TRAIN_CONFIG = "tiny-cpu"  # a config the package ships (hf_cmah/training/configs/), found from a wheel too
DEFAULT_OUT = Path("outputs/quickstart")


def quickstart_outputs(out: Path = DEFAULT_OUT) -> dict[str, Path]:
    """Where a quickstart run leaves what the web demo serves: the trained model, the index, the query image."""
    return {"model": out / "train" / "final", "index": out / "index", "query": out / "query.png"}


def _run(arguments: list[str]) -> None:
    """Run one `hf-cmah` command, echoing it first; stop the quickstart if it fails."""
    print(f"\n$ hf-cmah {shlex.join(arguments)}", flush=True)
    status = cli_main(arguments)
    if status:
        sys.exit(f"quickstart: `hf-cmah {arguments[0]}` failed with exit code {status}")


def _write_test_library(dataset_dir: Path, library_dir: Path, seed: int) -> tuple[Path, str]:
    """Write each test shape's mesh as OBJ under ``<category>/`` and one test render as the query image."""
    import numpy as np
    import trimesh

    from .data import load_built_dataset
    from .data.builders.procedural import make_shape

    test = load_built_dataset(dataset_dir)["test"]
    names = test.features["label"].names
    query_path, query_label = library_dir.parent / "query.png", ""
    for row in test.select_columns(["shape_id", "label", "mesh_path"]):
        category, index = row["mesh_path"].removeprefix("procedural://").split("/")
        target = library_dir / names[row["label"]] / f"{row['shape_id']}.obj"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            mesh = make_shape(category, int(index), seed=seed)  # generated z-up; files are y-up
            mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
            mesh.export(target)
    first = test[0]
    first["image"].save(query_path)
    query_label = names[first["label"]]
    return query_path, query_label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hf_cmah.quickstart", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--per-category", type=int, default=20, help="procedural shapes per category")
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = args.out
    dataset_dir, train_dir, model_dir = out / "dataset", out / "train", quickstart_outputs(out)["model"]

    _run(["data", "build", "procedural", "--per-category", str(args.per_category), "--views", "4",
          "--engine", "workbench", "--resolution", "128", "--seed", str(args.seed), "--out", str(dataset_dir)])  # fmt: skip
    _run(["train", str(TRAIN_CONFIG), "--set", f"data.path={dataset_dir.resolve()}",
          "--set", f"output.dir={train_dir}", "--set", f"training.max_steps={args.steps}",
          "--set", f"training.seed={args.seed}"])  # fmt: skip
    _run(["eval", str(model_dir), "--data", str(dataset_dir), "--split", "test", "--random-baseline",
          "--output", str(out / "eval")])  # fmt: skip
    query_path, query_label = _write_test_library(dataset_dir, out / "library", args.seed)
    _run(["index", "build", str(out / "library"), "--model", str(model_dir), "--out", str(out / "index"), "--assets"])
    print(f"\nquery: {query_path} (a render of a {query_label})")
    _run(["search", str(out / "index"), "--model", str(model_dir), "--image", str(query_path), "-k", "5"])

    results = json.loads((out / "eval" / "results.json").read_text())["results"]
    print(f"\nquickstart done. Test-split retrieval ({out / 'eval'}: results.json and plots):")
    print(f"{'codes':<28} {'direction':<15} {'mAP@all':>8} {'P@10':>6} {'Acc@1':>6} {'Acc@10':>7}")
    for name, directions in results.items():
        label = "trained cmah-tiny" if name == str(model_dir) else name
        for direction in ("image_to_shape", "shape_to_image"):
            m = directions[direction]
            print(
                f"{label:<28} {direction:<15} {m['map@all']:>8.3f} {m['p@10']:>6.3f} "
                f"{m.get('acc@1', float('nan')):>6.3f} {m.get('acc@10', float('nan')):>7.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
