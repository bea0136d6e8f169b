"""Inference speed of the CMAH presets on this machine: images and shapes encoded to codes per second.

    python benchmarks/bench_inference.py                       # cmah-tiny and cmah-base, all cores
    python benchmarks/bench_inference.py --presets cmah-tiny --batch-size 32 --threads 1

Two rates per preset and modality: the model alone (``get_*_codes_and_embeds`` on tensors already
made) and end to end from what a user holds (PIL images of 512 px, float clouds of 10,000 points)
through `CMAHProcessor`. Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from machine import machine_line
from PIL import Image

from hf_cmah import CMAHConfig, CMAHModel, CMAHProcessor


def rate(function, items: int, seconds: float) -> float:
    """Items per second of ``function`` over at least ``seconds`` (after one untimed call)."""
    function()
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        function()
        calls += 1
    return items * calls / (time.perf_counter() - start)


def user_inputs(batch_size: int, seed: int = 0) -> tuple[list[Image.Image], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)) for _ in range(batch_size)]
    clouds = [rng.normal(size=(10_000, 3)).astype(np.float32) for _ in range(batch_size)]
    return images, clouds


@torch.inference_mode()
def measure(preset: str, batch_size: int, seconds: float) -> dict[str, float]:
    config = CMAHConfig.from_preset(preset)
    model = CMAHModel(config).eval()
    processor = CMAHProcessor.from_model_config(config)
    images, clouds = user_inputs(batch_size)
    inputs = processor(images=images, points=clouds, return_tensors="pt")
    return {
        "images/s (model)": rate(lambda: model.get_image_codes_and_embeds(inputs["pixel_values"]), batch_size, seconds),
        "images/s (end to end)": rate(
            lambda: model.get_image_codes_and_embeds(processor(images=images)["pixel_values"]), batch_size, seconds
        ),
        "shapes/s (model)": rate(lambda: model.get_shape_codes_and_embeds(inputs["points"]), batch_size, seconds),
        "shapes/s (end to end)": rate(
            lambda: model.get_shape_codes_and_embeds(processor(points=clouds)["points"]), batch_size, seconds
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["cmah-tiny", "cmah-base"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed span per figure")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{machine_line()}; torch {torch.__version__}; {torch.get_num_threads()} threads; batch {args.batch_size}")
    rows = {preset: measure(preset, args.batch_size, args.seconds) for preset in args.presets}
    columns = list(next(iter(rows.values())))
    print("| preset | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for preset, figures in rows.items():
        print(f"| {preset} | " + " | ".join(f"{figures[column]:,.0f}" for column in columns) + " |")


if __name__ == "__main__":
    main()
