"""Training throughput of a CMAH preset: samples/s, peak GPU memory and model FLOPs utilisation.

    python benchmarks/bench_training.py write-dataset DIR --shapes 16384     # synthetic data, built layout
    python benchmarks/bench_training.py step --preset cmah-base --batch-size 256
    python benchmarks/bench_training.py mfu --preset cmah-base --train-log runs/x/train_log.jsonl
    python benchmarks/bench_training.py profile --preset cmah-base --batch-size 256   # where GPU time goes
    python benchmarks/bench_training.py compare --baseline REV --data DIR   # CPU: this tree vs REV, one run
    python benchmarks/bench_training.py allocator   # CPU: matmuls into fresh 32 MiB outputs, glibc default vs kept

``compare`` runs the real training module (``accelerate launch -m hf_cmah.training.train_cmah``,
data loading included) for ``--steps`` steps of a config at two source trees, this one and a git
worktree of ``--baseline``, alternating them ``--rounds`` times so that both see the same machine
load, and prints samples/s (median of the logged windows after the first) and wall time of each
run, their ratio, and how far the two loss curves of the same seed lie apart.

FLOPs are counted, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` records every
matmul, convolution and attention kernel of one training step (forward with the masked pass,
the loss of `CMAHForPreTraining.forward`, backward) at the given batch size; element-wise work
(norms, activations, the optimizer) is not counted. MFU = counted FLOPs per sample × samples/s
÷ the GPU's dense bf16 peak (H100 SXM: 989 TFLOP/s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def write_dataset(folder: Path, shapes: int, image_size: int, num_points: int, seed: int = 0) -> None:
    """Random clouds and random flat-coloured images with one render each: throughput only, nothing to learn."""
    import datasets
    from PIL import Image

    from hf_cmah.data.features import empty_view, shape_features

    rng = np.random.default_rng(seed)
    rows = []
    for index in range(shapes):
        pixels = np.full((image_size, image_size, 3), 255, dtype=np.uint8)
        low, high = sorted(rng.integers(0, image_size, size=2))
        pixels[low : high + 1, low : high + 1] = rng.integers(0, 255, size=3, dtype=np.uint8)
        rows.append(
            {
                "shape_id": f"synthetic_{index:06d}",
                "label": index % 10,
                "points": rng.normal(size=(num_points, 3)).astype(np.float32),
                "image": Image.fromarray(pixels),
                "view": {**empty_view("render"), "index": 0},
                "source": "synthetic",
                "mesh_path": "",
            }
        )
    features = shape_features([f"class_{i}" for i in range(10)], num_points)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    split = len(rows) * 9 // 10
    for name, part in (("train", rows[:split]), ("test", rows[split:])):
        datasets.Dataset.from_list(part, features=features).to_parquet(
            str(folder / "data" / f"{name}-00000-of-00001.parquet")
        )


def _training_step_parts(preset: str, batch_size: int, device: torch.device, cpu_bf16: bool = False):
    """The model and one training step on random inputs; bf16 autocast on a GPU, on a CPU only with ``cpu_bf16``."""
    from hf_cmah import CMAHConfig, CMAHForPreTraining
    from hf_cmah.training.train_cmah import masking_noise

    config = CMAHConfig.from_preset(preset)
    model = CMAHForPreTraining(config).to(device)
    pixel_values = torch.randn(batch_size, 3, config.image_size, config.image_size, device=device)
    points = torch.randn(batch_size, config.num_points, 3, device=device)

    def step(optimizer=None, batch_index: int = 0):
        noise = masking_noise(config, batch_size, 0, batch_index, 0, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" or cpu_bf16):
            loss = model(pixel_values, points, image_noise=noise[0], point_noise=noise[1]).loss
        loss.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return loss

    return model, step


def flops_per_sample(preset: str, batch_size: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    _, step = _training_step_parts(preset, batch_size, device)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / batch_size


def peak_tflops(device: torch.device, override: float | None) -> float:
    if override:
        return override
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    raise SystemExit(f"no known bf16 peak for {name!r}: pass --peak-tflops")


def run_step_benchmark(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    flops = flops_per_sample(args.preset, args.batch_size, device)
    bf16 = device.type == "cuda" or args.cpu_bf16
    model, step = _training_step_parts(args.preset, args.batch_size, device, args.cpu_bf16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    for index in range(args.warmup):
        step(optimizer, index)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for index in range(args.steps):
        step(optimizer, args.warmup + index)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    samples_per_second = args.batch_size * args.steps / seconds
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "preset": args.preset,
        "batch_size": args.batch_size,
        "precision": "bf16 autocast" if bf16 else "fp32",
        "gflops_per_sample": flops / 1e9,
        "samples_per_second": samples_per_second,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }
    if device.type == "cuda":
        result["mfu"] = flops * samples_per_second / (peak_tflops(device, args.peak_tflops) * 1e12)
    return result


def run_mfu(args) -> dict:
    """MFU of a real train_cmah.py run from its log (median samples/s of the logged windows after the first)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    flops = flops_per_sample(args.preset, args.batch_size, device)
    records = [json.loads(line) for line in Path(args.train_log).read_text().splitlines()]
    rates = [record["samples_per_second"] for record in records[1:]]
    rate = statistics.median(rates)
    return {
        "train_log": args.train_log,
        "gflops_per_sample": flops / 1e9,
        "median_samples_per_second": rate,
        "peak_memory_gib": max(record.get("peak_memory_gib", 0.0) for record in records),
        "mfu": flops * rate / (peak_tflops(device, args.peak_tflops) * 1e12),
    }


def run_profile(args) -> None:
    """torch.profiler over 3 training steps (kernels by GPU time), then FPS / kNN / whole-step timings."""
    from torch.profiler import ProfilerActivity, profile

    from hf_cmah.modeling.point_layers import farthest_point_sample, gather_points, knn_indices

    device = torch.device("cuda")
    model, step = _training_step_parts(args.preset, args.batch_size, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    for index in range(3):
        step(optimizer, index)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        for index in range(3):
            step(optimizer, 10 + index)
        torch.cuda.synchronize()
    print(profiler.key_averages().table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=60))

    def milliseconds(function, repeats: int = 10) -> float:
        function()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / repeats * 1e3

    config = model.config
    points = torch.randn(args.batch_size, config.num_points, 3, device=device)
    centres = gather_points(points, farthest_point_sample(points, config.num_groups))
    print(f"farthest-point sampling: {milliseconds(lambda: farthest_point_sample(points, config.num_groups)):.2f} ms")
    print(f"kNN grouping: {milliseconds(lambda: knn_indices(points, centres, config.group_size)):.2f} ms")
    print(f"training step: {milliseconds(lambda: step(optimizer, 50), 5):.1f} ms")


ALLOCATOR_PROBE = """
import resource, sys, time, torch
from hf_cmah.training.allocator import keep_freed_memory
if sys.argv[1] == "kept":
    keep_freed_memory()
torch.set_num_threads(int(sys.argv[2]))
a, b = torch.randn(16384, 128), torch.randn(128, 512)
for _ in range(3):
    torch.mm(a, b)
faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
for _ in range(30):
    torch.mm(a, b)  # a new 16,384 x 512 float output (32 MiB) each time, freed at once, as in the group encoder
seconds = (time.perf_counter() - start) / 30
print(2 * 16384 * 128 * 512 / seconds / 1e9, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 30)
"""


def run_allocator(args) -> None:
    """The matmul of the group encoder's widest layer, glibc's default allocator vs `keep_freed_memory`, alternating."""
    from machine import machine_line

    print(f"{machine_line()}; torch {torch.__version__}; {args.threads} threads; 16,384 x 128 x 512 matmuls")
    rows: dict[str, list[tuple[float, float]]] = {"default": [], "kept": []}
    for _ in range(args.rounds):
        for mode in rows:
            done = subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE, mode, str(args.threads)], check=True,
                                  capture_output=True, text=True)  # fmt: skip
            rows[mode].append(tuple(float(value) for value in done.stdout.split()))
    for mode, runs in rows.items():
        gflops = statistics.median(run[0] for run in runs)
        faults = statistics.median(run[1] for run in runs)
        print(f"{mode:>8}: {gflops:6.1f} GFLOP/s, {faults:8.0f} page faults a matmul (median of {args.rounds})")


def _launch_training(tree: Path, config: str, overrides: list[str], threads: int) -> dict:
    """One training run of ``tree``'s hf_cmah; samples/s from its log and its wall time."""
    output = Path(tempfile.mkdtemp(prefix="bench-train-"))
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
        "--num_cpu_threads_per_process", str(threads), "-m", "hf_cmah.training.train_cmah", config,
        f"--set=output.dir={output}", "--set=output.report_to=none", *(f"--set={o}" for o in overrides),
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(tree), "TQDM_DISABLE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.perf_counter()
    # In the tree itself: `python -m` puts the working directory first on sys.path, before PYTHONPATH.
    subprocess.run(command, check=True, env=environment, capture_output=True, text=True, cwd=tree)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]
    shutil.rmtree(output)
    return {
        "samples_per_second": statistics.median(record["samples_per_second"] for record in records[1:]),
        "wall_s": wall,
        "losses": [record["loss"] for record in records],
    }


def run_compare(args) -> None:
    """This tree against a baseline revision, alternating runs; the ratio is what the docs quote."""
    from machine import machine_line

    repo = Path(__file__).resolve().parents[1]
    baseline = Path(tempfile.mkdtemp(prefix="bench-baseline-")) / "tree"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(baseline), args.baseline], check=True)
    overrides = [f"data.path={Path(args.data).resolve()}", f"training.max_steps={args.steps}", *args.set]
    threads = {"baseline": args.baseline_threads or args.threads, "this tree": args.threads}
    print(f"{machine_line()}; torch {torch.__version__}; threads {threads}; config {args.config}")
    print(f"{'round':>5} {'tree':<22} {'samples/s':>10} {'wall s':>7}")
    runs: dict[str, list[dict]] = {"baseline": [], "this tree": []}
    try:
        for round_index in range(args.rounds):
            for name, tree in (("baseline", baseline), ("this tree", repo)):
                run = _launch_training(tree, args.config, overrides, threads[name])
                runs[name].append(run)
                label = f"{name} ({args.baseline[:10]})" if name == "baseline" else name
                print(f"{round_index:>5} {label:<22} {run['samples_per_second']:>10.1f} {run['wall_s']:>7.1f}")
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(baseline)], check=True)
    rate = {name: statistics.median(run["samples_per_second"] for run in group) for name, group in runs.items()}
    wall = {name: statistics.median(run["wall_s"] for run in group) for name, group in runs.items()}
    base_losses, new_losses = np.array(runs["baseline"][0]["losses"]), np.array(runs["this tree"][0]["losses"])
    print(
        f"median samples/s: baseline {rate['baseline']:.1f}, this tree {rate['this tree']:.1f} "
        f"(x{rate['this tree'] / rate['baseline']:.2f}); median wall: {wall['baseline']:.1f} s vs "
        f"{wall['this tree']:.1f} s (x{wall['baseline'] / wall['this tree']:.2f})"
    )
    gap = np.abs(new_losses - base_losses) / np.abs(base_losses)
    print(f"loss curves ({len(base_losses)} logged steps, same seed): max relative gap {gap.max():.2e}")
    print("baseline losses:  " + " ".join(f"{loss:.4f}" for loss in base_losses))
    print("this tree losses: " + " ".join(f"{loss:.4f}" for loss in new_losses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("write-dataset")
    data.add_argument("folder", type=Path)
    data.add_argument("--shapes", type=int, default=16384)
    data.add_argument("--image-size", type=int, default=128)
    data.add_argument("--num-points", type=int, default=1024)
    for name in ("step", "mfu", "profile"):
        command = commands.add_parser(name)
        command.add_argument("--preset", default="cmah-base")
        command.add_argument("--batch-size", type=int, default=256)
        command.add_argument("--peak-tflops", type=float, default=None)
    commands.choices["step"].add_argument("--steps", type=int, default=20)
    commands.choices["step"].add_argument("--warmup", type=int, default=5)
    commands.choices["step"].add_argument(
        "--cpu-bf16", action="store_true", help="bf16 autocast on a CPU too (fast where it has AVX-512 BF16 or AMX)"
    )
    commands.choices["mfu"].add_argument("--train-log", required=True)
    compare = commands.add_parser("compare")
    compare.add_argument("--baseline", required=True, help="git revision to compare against (e.g. a commit)")
    compare.add_argument("--data", required=True, help="a built dataset (e.g. outputs/quickstart/dataset)")
    compare.add_argument("--config", default="tiny-cpu", help="training config: a file or a bundled name")
    compare.add_argument("--steps", type=int, default=60)
    compare.add_argument("--rounds", type=int, default=2)
    compare.add_argument("--threads", type=int, default=os.cpu_count())
    compare.add_argument(
        "--baseline-threads",
        type=int,
        help="threads of the baseline's runs (default --threads; 1 = how plain `accelerate launch` ran it)",
    )
    compare.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    allocator = commands.add_parser("allocator")
    allocator.add_argument("--threads", type=int, default=os.cpu_count())
    allocator.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.command == "write-dataset":
        write_dataset(args.folder, args.shapes, args.image_size, args.num_points)
        return
    if args.command == "profile":
        run_profile(args)
        return
    if args.command == "compare":
        run_compare(args)
        return
    if args.command == "allocator":
        run_allocator(args)
        return
    print(json.dumps(run_step_benchmark(args) if args.command == "step" else run_mfu(args), indent=1))


if __name__ == "__main__":
    main()
