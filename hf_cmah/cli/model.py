"""`hf-cmah model init|calibrate` and `hf-cmah encode`: make or calibrate a model folder, and turn files into codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InvalidInputError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="create and calibrate model folders")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    init = model_commands.add_parser("init", help="save a freshly initialised (untrained) CMAH model + processor")
    init.add_argument("--preset", default="cmah-tiny", help="cmah-tiny or cmah-base")
    init.add_argument("--code-bits", type=int, default=64, help="K, a multiple of 8")
    init.add_argument("--seed", type=int, default=0)
    init.add_argument("--out", required=True, type=Path, help="output folder")
    init.set_defaults(handler=_init_model)
    calibrate = model_commands.add_parser(
        "calibrate",
        help="fit per-bit image-code thresholds to unlabeled images of the query domain (photos, thumbnails)",
        description="Save a copy of MODEL whose image codes are balanced on the given images: each bit's "
        "threshold becomes its median logit over them. Shape codes, and so existing indexes, are unchanged.",
    )
    calibrate.add_argument("model", help="a saved CMAH model folder or Hub id")
    calibrate.add_argument("--out", required=True, type=Path, help="new model folder (must not exist or be empty)")
    source = calibrate.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", type=Path, help="image files or folders (searched recursively)")
    source.add_argument("--data", type=Path, help="a built dataset folder (`hf-cmah data build`)")
    calibrate.add_argument("--split", default="train", help="with --data: the split (default: train)")
    calibrate.add_argument("--kind", default="thumbnail", help="with --data: thumbnail, render, photo, mask, …")
    calibrate.add_argument("--max-images", type=int, default=1000, help="a seeded sample of at most this many")
    calibrate.set_defaults(handler=_calibrate)

    encode = subparsers.add_parser("encode", help="print the packed codes of images and meshes as JSON lines")
    encode.add_argument("model", help="a saved model folder or Hub id")
    encode.add_argument("--image", nargs="*", default=[], type=Path, help="image files")
    encode.add_argument("--shape", nargs="*", default=[], type=Path, help="mesh or point files")
    encode.set_defaults(handler=_encode)


def _init_model(args: argparse.Namespace) -> int:
    import torch

    from .. import CMAHConfig, CMAHModel, CMAHProcessor

    torch.manual_seed(args.seed)
    config = CMAHConfig.from_preset(args.preset, code_bits=args.code_bits)
    CMAHModel(config).save_pretrained(args.out)
    CMAHProcessor.from_model_config(config).save_pretrained(args.out)
    print(f"saved an untrained {args.preset} ({args.code_bits} bits) to {args.out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from transformers import AutoModel, AutoProcessor

    from ..evaluation.calibration import calibrate_image_codes

    if args.out.exists() and any(args.out.iterdir()):
        raise InvalidInputError(f"--out: {args.out} exists and is not empty")
    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    report = calibrate_image_codes(model, processor, _calibration_images(args))
    _save_atomically(model, processor, args.out)
    print(
        f"calibrated {args.model} on {report.num_images} images → {args.out}: bit balance (0: every bit splits "
        f"them in half) {report.bit_balance_before:.3f} → {report.bit_balance_after:.3f}; distinct codes "
        f"{report.distinct_codes_before} → {report.distinct_codes_after}"
    )
    return 0


def _calibration_images(args: argparse.Namespace) -> list:
    """The images of ``--data`` or ``--images`` (a seeded sample of ``--max-images``); unreadable files are
    skipped and reported."""
    import sys

    import numpy as np

    from ..images import load_image

    generator = np.random.default_rng(0)
    if args.data is not None:
        from ..data.storage import load_built_dataset
        from ..evaluation.retrieval import image_rows

        splits = load_built_dataset(args.data)
        if args.split not in splits:
            raise InvalidInputError(f"--split: {args.data} has splits {sorted(splits)}, not {args.split!r}")
        rows, column = image_rows(splits[args.split], args.kind)
        chosen = np.sort(generator.permutation(len(rows))[: args.max_images])
        return list(rows.select(chosen)[column])
    files = sorted(_image_files(args.images))
    files = [files[index] for index in np.sort(generator.permutation(len(files))[: args.max_images])]
    images, skipped = [], []
    for path in files:
        try:
            images.append(load_image(path, f"--images: {path}").convert("RGB"))
        except InvalidInputError as error:
            skipped.append(str(error))
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):\n  " + "\n  ".join(skipped), file=sys.stderr)
    return images


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def _image_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files += [file for file in path.rglob("*") if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file()]
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidInputError(f"--images: {path}: no such file or folder")
    return files


def _save_atomically(model, processor, out: Path) -> None:
    """save_pretrained into a temporary sibling folder, then rename it to ``out``."""
    import shutil
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _encode(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor

    from ..codes import pack_codes
    from ..geometry import load_points

    if not args.image and not args.shape:
        raise InvalidInputError("encode: give at least one --image or --shape file")
    model = AutoModel.from_pretrained(args.model).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    with torch.no_grad():
        for path in args.image:
            with Image.open(path) as image:
                pixel_values = processor(images=image.copy())["pixel_values"]
            _print_code("image", path, pack_codes(model.get_image_codes(pixel_values))[0])
        for path in args.shape:
            cloud = load_points(path, processor.num_points)
            _print_code("shape", path, pack_codes(model.get_shape_codes(processor(points=cloud)["points"]))[0])
    return 0


def _print_code(kind: str, path: Path, packed) -> None:
    print(json.dumps({"kind": kind, "path": str(path), "bits": len(packed) * 8, "code": bytes(packed).hex()}))
