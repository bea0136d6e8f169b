"""Point-cloud layers shared by the CMAH and pre-aligned models, in pure PyTorch.

Farthest point sampling, kNN and ball-query grouping, the Point-MAE mini-PointNet and the
centre position MLP. No CUDA extensions: everything runs on the CPU and on any GPU, batched,
and is deterministic (FPS starts from a fixed index, no hidden random state). Like
`vit_layers`, these take plain sizes; imports only torch (saved with the model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gather_points(points: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Index ``points`` ``[B, N, C]`` with ``indices`` ``[B, ...]`` → ``[B, ..., C]``."""
    batch = points.shape[0]
    flat = indices.reshape(batch, -1)
    gathered = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, points.shape[-1]))
    return gathered.reshape(*indices.shape, points.shape[-1])


def farthest_point_sample(xyz: torch.Tensor, num_samples: int, start_index: int = 0) -> torch.Tensor:
    """Indices ``[B, num_samples]`` of iterative farthest point sampling over ``xyz`` ``[B, N, 3]``.

    Starts at ``start_index`` in every cloud (the pointnet2 CUDA kernel starts at 0), so the
    result is a pure function of the input. One vectorised step per sample: O(G · N) work.
    """
    batch, num_points, _ = xyz.shape
    indices = torch.zeros(batch, num_samples, dtype=torch.long, device=xyz.device)
    min_distance = torch.full((batch, num_points), float("inf"), dtype=xyz.dtype, device=xyz.device)
    farthest = torch.full((batch,), start_index, dtype=torch.long, device=xyz.device)
    rows = torch.arange(batch, device=xyz.device)
    for step in range(num_samples):
        indices[:, step] = farthest
        centre = xyz[rows, farthest].unsqueeze(1)  # (B, 1, 3)
        min_distance = torch.minimum(min_distance, ((xyz - centre) ** 2).sum(-1))
        farthest = min_distance.argmax(-1)
    return indices


def knn_indices(xyz: torch.Tensor, centres: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[B, G, k]`` of the ``k`` nearest points of ``xyz`` ``[B, N, 3]`` to each centre ``[B, G, 3]``.

    Sorted by distance; ties resolve by ``topk``'s order, stable for a given input.
    """
    distances = torch.cdist(centres, xyz)  # (B, G, N)
    return distances.topk(k, dim=-1, largest=False, sorted=True).indices


def ball_query_indices(xyz: torch.Tensor, centres: torch.Tensor, radius: float, num_neighbors: int) -> torch.Tensor:
    """pointnet2's ball query: the first ``num_neighbors`` points (in index order) within ``radius``.

    Slots past the last in-ball point repeat the first in-ball point, as the CUDA kernel does.
    A centre always lies in its own ball when it is one of ``xyz``, so every ball is non-empty.
    """
    num_points = xyz.shape[1]
    distances_sq = torch.cdist(centres, xyz) ** 2  # (B, G, N)
    order = torch.arange(num_points, device=xyz.device).expand_as(distances_sq)
    candidate = torch.where(distances_sq < radius**2, order, torch.full_like(order, num_points))
    candidate = candidate.sort(dim=-1).values[..., :num_neighbors]  # (B, G, k)
    first = candidate[..., :1].expand_as(candidate)
    candidate = torch.where(candidate == num_points, first, candidate)
    # A centre with no point in its ball (only when centres are not input points) takes its nearest point.
    nearest = distances_sq.argmin(-1, keepdim=True).expand_as(candidate)
    return torch.where(candidate == num_points, nearest, candidate)


class MiniPointNet(nn.Module):
    """Point-MAE's group encoder: shared MLP, max-pool, concat the global feature, MLP, max-pool.

    ``[B, G, S, C_in]`` neighbourhoods → ``[B, G, out_channels]`` tokens. The weights keep Point-MAE's
    1×1 ``Conv1d`` layout (checkpoints and converters rely on it), but the forward runs every 1×1
    conv as one matmul over all B·G·S points, channels last, and splits the layer after the
    concat: ``W · [pooled; local] = W_g · pooled + W_l · local``, so the global half is computed
    once per group instead of once per point. As ``local = W_2 · a + b_2`` is linear, the local half
    runs as ``(W_l · W_2) · a`` on the first layer's narrower activations ``a``. Same function, a
    fraction of the conv form's FLOPs and no layout transposes (docs/BENCHMARKS.md#training-on-cpu).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        first_channels: tuple[int, int] = (128, 256),
        second_channels: int = 512,
    ):
        super().__init__()
        hidden, global_channels = first_channels
        # Sequential indices name the checkpoint keys (first_conv.0.weight, …); the ReLUs hold no weights.
        self.first_conv = nn.Sequential(
            nn.Conv1d(in_channels, hidden, 1),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv1d(hidden, global_channels, 1),
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(2 * global_channels, second_channels, 1),
            nn.BatchNorm1d(second_channels),
            nn.ReLU(inplace=True),
            nn.Conv1d(second_channels, out_channels, 1),
        )

    def forward(self, neighborhoods: torch.Tensor) -> torch.Tensor:
        batch, groups, size, channels = neighborhoods.shape
        conv1, norm1, _, conv2 = self.first_conv
        conv3, norm2, _, conv4 = self.second_conv
        points = neighborhoods.reshape(batch * groups * size, channels)
        # In-place ReLUs and add, as Point-MAE's ReLU(inplace=True): batch norm's and linear's
        # backward need their inputs, not their outputs, and the 16k × 512 buffers are not copied.
        activations = F.relu(norm1(pointwise(conv1, points)), inplace=True).view(batch * groups, size, -1)
        local = pointwise(conv2, activations)  # (BG, S, C1)
        pooled = local.max(dim=1).values  # (BG, C1)
        weight2, weight3 = conv2.weight.squeeze(-1), conv3.weight.squeeze(-1)
        global_weight, local_weight = weight3.split(pooled.shape[-1], dim=1)  # the concat put global first
        # W_l · local = (W_l · W_2) · activations + W_l · b_2: the per-point matmul shrinks from C1 to C0 inputs.
        global_part = F.linear(pooled, global_weight, conv3.bias + local_weight @ conv2.bias)  # (BG, C2)
        # 3-D in and out: an in-place add on a view of the output would make autograd copy it.
        hidden = F.linear(activations, local_weight @ weight2).add_(global_part.unsqueeze(1))  # (BG, S, C2)
        hidden = F.relu(norm2(hidden.view(batch * groups * size, -1)), inplace=True)
        features = pointwise(conv4, hidden).view(batch * groups, size, -1).max(dim=1).values  # (BG, C_out)
        return features.reshape(batch, groups, -1)


def pointwise(conv: nn.Conv1d, features: torch.Tensor) -> torch.Tensor:
    """A 1×1 ``Conv1d`` applied to channels-last rows ``[..., C_in]``: one matmul."""
    return F.linear(features, conv.weight.squeeze(-1), conv.bias)


class CentrePositionMLP(nn.Module):
    """Learned position embedding of group centres: ``xyz`` → hidden width (Point-MAE ``pos_embed``)."""

    def __init__(self, hidden_size: int, intermediate_size: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(3, intermediate_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, centres: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(centres)))


def group_points(
    xyz: torch.Tensor,
    features: torch.Tensor,
    num_groups: int,
    group_size: int,
    radius: float | None = None,
    start_index: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FPS centres and their neighbourhoods, with xyz relative to the centre.

    ``xyz`` ``[B, N, 3]``, ``features`` ``[B, N, C]`` (per-point channels gathered beside the
    relative xyz). ``radius`` selects pointnet2's ball query (OpenShape), ``None`` kNN (Point-BERT).
    Returns the centres ``[B, G, 3]`` and ``[B, G, S, 3 + C]`` = relative xyz ⊕ gathered features.
    """
    centres = gather_points(xyz, farthest_point_sample(xyz, num_groups, start_index))  # (B, G, 3)
    if radius is None:
        neighbours = knn_indices(xyz, centres, group_size)
    else:
        neighbours = ball_query_indices(xyz, centres, radius, group_size)  # (B, G, S)
    relative = gather_points(xyz, neighbours) - centres.unsqueeze(2)  # (B, G, S, 3)
    return centres, torch.cat([relative, gather_points(features, neighbours)], dim=-1)


class SetAbstraction(nn.Module):
    """PointNet++'s single-scale set abstraction MLP, as OpenShape's PPAT uses it.

    ``[B, G, S, C_in]`` neighbourhoods (from `group_points` with a radius) → 1×1 convs, each with
    BatchNorm and ReLU (``in_channels → channels[0] → … → channels[-1]``) → max over the S
    neighbours → ``[B, G, channels[-1]]``. Conv2d keeps the original weight layout.
    """

    def __init__(self, in_channels: int, channels: list[int] | tuple[int, ...]):
        super().__init__()
        self.mlp_convs = nn.ModuleList()
        self.mlp_bns = nn.ModuleList()
        last = in_channels
        for width in channels:
            self.mlp_convs.append(nn.Conv2d(last, width, 1))
            self.mlp_bns.append(nn.BatchNorm2d(width))
            last = width

    def forward(self, neighbourhoods: torch.Tensor) -> torch.Tensor:
        features = neighbourhoods.permute(0, 3, 1, 2)  # (B, C_in, G, S)
        for conv, norm in zip(self.mlp_convs, self.mlp_bns):
            features = torch.relu(norm(conv(features)))
        return features.max(dim=-1).values.transpose(1, 2)  # (B, G, C_out)
