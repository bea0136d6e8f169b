"""`hf-cmah model init` and `hf-cmah encode`: make a model folder, and turn files into codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    model = subparsers.add_parser("model", help="create model folders")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    init = model_commands.add_parser("init", help="save a freshly initialised (untrained) CMAH model + processor")
    init.add_argument("--preset", default="cmah-tiny", help="cmah-tiny or cmah-base")
    init.add_argument("--code-bits", type=int, default=64, help="K, a multiple of 8")
    init.add_argument("--seed", type=int, default=0)
    init.add_argument("--out", required=True, type=Path, help="output folder")
    init.set_defaults(handler=_init_model)

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


def _encode(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor

    from ..codes import pack_codes
    from ..errors import InvalidInputError
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
