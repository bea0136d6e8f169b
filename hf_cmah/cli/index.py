"""`hf-cmah index build | export-milvus | info | push` and `hf-cmah search`."""

from __future__ import annotations

import argparse
import json
import sys


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser("index", help="build and export shape indexes")
    commands = index.add_subparsers(dest="index_command", required=True, metavar="INDEX_COMMAND")

    build = commands.add_parser("build", help="encode a shape library into a ShapeIndex folder (resumable)")
    build.add_argument(
        "library",
        help="folder of mesh / point files (labels = first sub-folder names), or a dataset built by `hf-cmah data build`",
    )
    build.add_argument(
        "--split", action="append", help="with a built dataset: the split(s) to index (default: all of them)"
    )
    build.add_argument("--model", required=True, help="hub id or local folder of a hashing model")
    build.add_argument("--out", required=True, help="index folder to write (replaced atomically)")
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    build.add_argument("--no-embeddings", action="store_true", help="store codes only (no float re-ranking)")
    build.add_argument(
        "--assets",
        action="store_true",
        help="also store each shape's mesh (GLB) and thumbnail (PNG: a built dataset's image, else a Blender render)",
    )
    build.add_argument(
        "--no-thumbnails", action="store_true", help="with --assets: render no thumbnails (no Blender needed)"
    )
    build.add_argument("--thumbnail-size", type=int, default=256, help="rendered thumbnails' width and height, px")
    build.add_argument("--blender", default=None, help="Blender executable or Python with bpy for the thumbnails")
    build.add_argument(
        "--mesh-root",
        help="with a built dataset: the folder its mesh_path values start from, e.g. the LIBRARY it was built from "
        "(default: the current folder); meshes not found there are stored as their point clouds",
    )
    build.add_argument("--strict", action="store_true", help="stop at the first unreadable file")
    build.set_defaults(handler=run_build)

    export = commands.add_parser("export-milvus", help="copy a ShapeIndex into a Milvus collection")
    export.add_argument("index_dir")
    export.add_argument("--uri", required=True, help="Milvus server URL or a milvus-lite .db file")
    export.add_argument("--collection", required=True)
    export.add_argument("--overwrite", action="store_true", help="drop an existing collection of that name")
    export.set_defaults(handler=run_export_milvus)

    info = commands.add_parser("info", help="verify an index folder and print its manifest")
    info.add_argument("index_dir")
    info.set_defaults(handler=run_info)

    push = commands.add_parser("push", help="upload an index folder to a Hub dataset repo, with a dataset card")
    push.add_argument("index_dir")
    push.add_argument("repo_id", help="dataset repo to create or update, e.g. user/cmah-64-library")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument(
        "--license", help="licence of the shapes (meshes, thumbnails) as a Hub id, e.g. cc-by-4.0 (default: other)"
    )
    push.add_argument("--model-id", help="Hub id of the model that built the index (default: the manifest's)")
    push.set_defaults(handler=run_push)

    search = subparsers.add_parser("search", help="search a ShapeIndex with an image, a shape or a hex code")
    search.add_argument("index_dir", help="index folder, or a Hub dataset repo pushed by `hf-cmah index push`")
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", help="image file")
    query.add_argument("--shape", help="mesh or point file")
    query.add_argument("--code", help="packed code as hex (K/8 bytes)")
    search.add_argument("--model", help="model that built the index (needed for --image / --shape)")
    search.add_argument("-k", type=int, default=10)
    search.add_argument("--rerank", type=int, default=0, help="re-rank this many Hamming candidates by cosine")
    search.add_argument("--backend", choices=["exact", "approximate", "milvus"], default="exact")
    search.add_argument(
        "--method", choices=["ivf", "hnsw", "mih"], default="ivf", help="with --backend approximate: the method"
    )
    search.add_argument("--nprobe", type=int, default=16, help="with --method ivf: inverted-file cells scanned")
    search.add_argument("--ef-search", type=int, default=64, help="with --method hnsw: candidates a query keeps")
    search.add_argument("--milvus-uri", help="with --backend milvus")
    search.add_argument("--collection", help="with --backend milvus")
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")
    search.set_defaults(handler=run_search)


def run_build(args: argparse.Namespace) -> int:
    from ..errors import InvalidInputError
    from ..index.build import build_index
    from ..index.encoding import load_retriever

    library = _library(args.library, args.split)
    if args.mesh_root and isinstance(library, str):
        raise InvalidInputError(f"--mesh-root: {args.library} is a mesh folder, not a built dataset")
    model, processor = load_retriever(args.model)
    index, failures = build_index(
        model,
        library,
        args.out,
        processor=processor,
        device=args.device,
        batch_size=args.batch_size,
        with_embeddings=not args.no_embeddings,
        with_assets=args.assets,
        with_thumbnails=not args.no_thumbnails,
        thumbnail_size=args.thumbnail_size,
        blender=args.blender,
        mesh_root=args.mesh_root,
        strict=args.strict,
    )
    print(f"indexed {len(index)} shapes ({index.code_bits}-bit codes) into {args.out}")
    _report_asset_notes(index, args.mesh_root)
    for shape_id, message in failures:
        print(f"skipped {shape_id}: {message}")
    return 1 if failures else 0


def _report_asset_notes(index, mesh_root: str | None) -> None:
    """One line per kind of asset note: how many shapes have it and which (the first few)."""
    from pathlib import Path

    from ..index.library import MESH_NOT_FOUND_NOTE

    groups: dict[str, list[str]] = {}
    for shape_id, note in zip(index.shape_ids, index.metadata.column("asset_note").to_pylist()):
        if note:
            groups.setdefault(note, []).append(shape_id)
    for note, shape_ids in sorted(groups.items(), key=lambda group: -len(group[1])):
        shown = ", ".join(shape_ids[:3]) + (", …" if len(shape_ids) > 3 else "")
        print(f"{len(shape_ids)} shape{'s' if len(shape_ids) > 1 else ''}: {note} ({shown})")
    if MESH_NOT_FOUND_NOTE in groups:
        print(f"  (mesh_path looked for under {Path(mesh_root or '.').resolve()}; --mesh-root sets that folder)")


def _library(path: str, splits: list[str] | None):
    """A mesh folder as it is; a built dataset folder as one ``datasets.Dataset`` of the chosen splits."""
    from pathlib import Path

    from ..data.storage import BUILD_INFO, load_built_dataset
    from ..errors import InvalidInputError

    if not (Path(path) / BUILD_INFO).is_file():
        if splits:
            raise InvalidInputError(f"--split: {path} is a mesh folder, not a built dataset (no {BUILD_INFO})")
        return path
    import datasets

    dataset = load_built_dataset(path)
    unknown = sorted(set(splits or ()) - set(dataset))
    if unknown:
        raise InvalidInputError(f"--split: {path} has no split {unknown[0]!r} (it has {sorted(dataset)})")
    return datasets.concatenate_datasets([dataset[split] for split in splits or sorted(dataset)])


def run_export_milvus(args: argparse.Namespace) -> int:
    from ..index.milvus import export_to_milvus
    from ..index.shape_index import ShapeIndex

    count = export_to_milvus(ShapeIndex.load(args.index_dir), args.uri, args.collection, overwrite=args.overwrite)
    print(f"exported {count} shapes to {args.uri} collection {args.collection!r}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..index import simd
    from ..index.storage import read_manifest

    print(json.dumps(read_manifest(args.index_dir), indent=2, sort_keys=True))
    print(simd.describe(simd.KERNEL), file=sys.stderr)  # stderr: stdout stays the manifest's JSON
    return 0


def run_push(args: argparse.Namespace) -> int:
    from ..index.shape_index import ShapeIndex

    index = ShapeIndex.load(args.index_dir)
    url = index.push_to_hub(args.repo_id, private=args.private, model_id=args.model_id, license=args.license)
    print(f"pushed {len(index)} shapes to dataset repo {args.repo_id}: {url}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from ..errors import InvalidInputError
    from ..index.shape_index import ShapeIndex

    if (args.image or args.shape) and not args.model:
        raise InvalidInputError("--model: needed to encode an --image or --shape query")
    index = ShapeIndex.from_pretrained(args.index_dir)
    if args.model:
        from ..index.encoding import load_retriever

        index.set_model(*load_retriever(args.model))
    if args.backend == "milvus":
        index.use_backend("milvus", uri=args.milvus_uri, collection=args.collection)
    elif args.backend == "approximate":
        options = {"ivf": {"nprobe": args.nprobe}, "hnsw": {"ef_search": args.ef_search}, "mih": {}}[args.method]
        index.use_backend("approximate", method=args.method, **options)
    result = index.search(**_query(args, index), k=args.k, rerank=args.rerank, with_metadata=True)
    rows = [
        {"rank": rank + 1, "shape_id": shape_id, "distance": distance}
        for rank, (shape_id, distance) in enumerate(zip(result.ids[0], result.distances[0]))
    ]
    if result.scores is not None:
        for row, score in zip(rows, result.scores[0]):
            row["score"] = round(score, 6)
    for row, metadata in zip(rows, result.metadata[0]):
        row.update(metadata)  # label, source (the mesh file to open), thumbnail
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            print("\t".join("-" if value is None else str(value) for value in row.values()))
    return 0


def _query(args: argparse.Namespace, index) -> dict:
    import numpy as np

    from ..errors import InvalidInputError

    if args.code:
        try:
            return {"codes": np.frombuffer(bytes.fromhex(args.code), np.uint8)}
        except ValueError:
            raise InvalidInputError(f"--code: {args.code!r} is not hex") from None
    if args.image:
        from ..images import load_image

        return {"images": [load_image(args.image, "--image")]}
    from ..geometry import load_points

    return {"shapes": [load_points(args.shape, index.encoder.processor.num_points)]}
