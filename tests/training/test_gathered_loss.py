"""The contrastive loss across processes: two gloo processes, each with half the batch and train_cmah's
differentiable all-gather, compute the loss and (DDP-averaged) gradients of the whole batch in one process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from hf_cmah import CMAHForPreTraining
from tests.conftest import REPO_ROOT, mini_config, synthetic_pairs

WORKER = textwrap.dedent("""
    import functools, sys
    import torch
    import torch.distributed as dist
    from hf_cmah import CMAHForPreTraining
    from hf_cmah.training.train_cmah import gather_with_grad
    from tests.conftest import mini_config, synthetic_pairs

    rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = CMAHForPreTraining(mini_config()).eval()  # eval: batch norm reads running statistics, not the shard's
    inputs = torch.load(f"{out}/inputs.pt")
    rows = slice(4 * rank, 4 * rank + 4)
    output = model(
        inputs["pixel_values"][rows], inputs["points"][rows], image_noise=inputs["image_noise"][rows],
        point_noise=inputs["point_noise"][rows], gather_codes=functools.partial(gather_with_grad, num_processes=2),
    )
    output.loss.backward()
    grads = {}
    for name, parameter in model.named_parameters():
        dist.all_reduce(parameter.grad)  # what DDP does: the mean of the processes' gradients
        grads[name] = parameter.grad / 2
    losses = {name: getattr(output, name).detach() for name in ("loss", "contrastive_loss")}
    torch.save({"losses": losses, "grads": grads}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()
""")


@pytest.mark.slow  # two interpreters start and import torch + transformers: ~50 s on 2 busy cores
def test_two_processes_with_gathered_codes_match_one_process_with_the_whole_batch(tmp_path):
    config = mini_config()
    pixel_values, points = synthetic_pairs(8, config.num_points, config.image_size)
    generator = torch.Generator().manual_seed(2)
    noise = {
        "image_noise": torch.rand(8, config.num_patches, generator=generator),
        "point_noise": torch.rand(8, config.num_groups, generator=generator),
    }
    torch.save({"pixel_values": pixel_values, "points": points, **noise}, tmp_path / "inputs.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", WORKER]
    workers = [
        subprocess.Popen(
            [*command, str(rank), str(tmp_path / "store"), str(tmp_path)],
            env=env,
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
        )
        for rank in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr.decode()[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    torch.manual_seed(0)
    model = CMAHForPreTraining(config).eval()
    whole = model(pixel_values, points, **noise)
    whole.loss.backward()
    for rank in ranks:  # every process sees the whole batch's negatives
        torch.testing.assert_close(rank["losses"]["contrastive_loss"], whole.contrastive_loss, rtol=1e-6, atol=1e-6)
    mean_loss = (ranks[0]["losses"]["loss"] + ranks[1]["losses"]["loss"]) / 2  # equal shards: mean of the means
    torch.testing.assert_close(mean_loss, whole.loss, rtol=1e-5, atol=1e-6)
    for name, parameter in model.named_parameters():
        # float32 sums over other groupings of the rows: the error is relative to the tensor's scale, not to each
        # element (a near-cancelling sum, as batch norm's over 2048 points; attention's key bias: zero up to noise)
        scale = parameter.grad.abs().max().item()
        torch.testing.assert_close(
            ranks[0]["grads"][name], parameter.grad, rtol=1e-4, atol=max(1e-3 * scale, 1e-6),
            msg=lambda message, name=name: f"{name}: {message}",
        )  # fmt: skip
