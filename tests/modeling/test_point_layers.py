"""Point layers: the matmul form of the mini-PointNet computes what Point-MAE's conv form does."""

from __future__ import annotations

import pytest
import torch

from hf_cmah.modeling.point_layers import MiniPointNet


def conv_form(encoder: MiniPointNet, neighbourhoods: torch.Tensor) -> torch.Tensor:
    """Point-MAE's forward, verbatim: 1×1 Conv1d stacks on ``[B·G, C, S]``, concat of the pooled feature."""
    batch, groups, size, channels = neighbourhoods.shape
    features = encoder.first_conv(neighbourhoods.reshape(batch * groups, size, channels).transpose(1, 2))
    pooled = features.max(dim=-1, keepdim=True).values
    features = torch.cat([pooled.expand(-1, -1, size), features], dim=1)
    return encoder.second_conv(features).max(dim=-1).values.reshape(batch, groups, -1)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("in_channels", [3, 6])
def test_matmul_form_matches_the_conv_form_and_its_gradients(training, in_channels):
    torch.manual_seed(0)
    encoder = MiniPointNet(in_channels, 24, (16, 32), 48).train(training)
    for norm in (encoder.first_conv[1], encoder.second_conv[1]):  # non-trivial running statistics for eval
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
    neighbourhoods = torch.randn(3, 5, 7, in_channels)

    expected = conv_form(encoder, neighbourhoods)
    expected.square().sum().backward()
    expected_grads = {name: p.grad.clone() for name, p in encoder.named_parameters()}
    encoder.zero_grad()
    actual = encoder(neighbourhoods)
    actual.square().sum().backward()

    assert actual.shape == (3, 5, 24)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    for name, parameter in encoder.named_parameters():
        # Biases right before a batch norm have a zero gradient in both forms: compare them absolutely.
        torch.testing.assert_close(parameter.grad, expected_grads[name], rtol=1e-4, atol=1e-4, msg=name)
