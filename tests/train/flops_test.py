"""Tests of lm.train.flops."""

from lm.models import layers
from lm.train import flops


def test_flops_per_token_by_hand():
  cfg = layers.TransformerConfig(
      vocab_size=65, num_layers=4, num_heads=4,
      embed_dim=128, mlp_dim=512, max_len=64)
  n = 1000 + 64 * 128
  want = 6 * 1000 + 12 * 4 * 4 * 32 * 64
  assert flops.train_flops_per_token(cfg, n) == want


def test_peaks():
  assert flops.peak_flops('NVIDIA H100 80GB HBM3') == 989e12
  assert flops.peak_flops('TPU v5 lite') == 197e12
  assert flops.peak_flops('TPU v5p') == 459e12
  assert flops.peak_flops('TPU v5') == 459e12
  assert flops.peak_flops('TPU v5e') == 197e12
  assert flops.peak_flops('cpu') is None
