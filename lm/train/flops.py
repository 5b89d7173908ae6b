"""Model FLOPs per token, accelerator peaks and memory sizes, for MFU and
the dry run.

Convention (PaLM, appendix B): training FLOPs per token = 6 * N + 12 * L * H *
K * T, with N the parameters that take part in matmuls (the tied token
embedding counts once, as the output head; position embeddings do not), L
layers, H heads of width K and T the context length. The attention term
counts the full L x L score matrix, as PaLM does, not half of it for the
causal mask.
"""

from __future__ import annotations

# Dense bf16 peak FLOP/s per chip, by a substring of `jax.Device.device_kind`.
PEAK_FLOPS = (
    ('H200', 989e12), ('H100', 989e12), ('A100', 312e12),
    ('TPU v6', 918e12), ('TPU v5 lite', 197e12), ('TPU v5e', 197e12),
    ('TPU v5', 459e12),  # v5p reports itself as 'TPU v5'.
    ('TPU v4', 275e12),
)


def train_flops_per_token(cfg, num_params: int) -> float:
  """6N + attention, for a TransformerConfig-like `cfg` with `num_params` in all."""
  n = num_params
  if getattr(cfg, 'position', 'learned') == 'learned':
    n -= cfg.max_len * cfg.embed_dim  # A position table is a gather.
  if getattr(cfg, 'position', 'learned') == 't5':
    n -= cfg.relative_buckets * cfg.num_heads  # So is T5's bias table.
  if not getattr(cfg, 'tie_embeddings', True):
    n -= cfg.vocab_size * cfg.embed_dim  # So is an untied input embedding.
  attention = 12 * cfg.num_layers * cfg.num_heads * cfg.head_dim * cfg.max_len
  return 6 * n + attention


# Memory per chip in bytes (HBM), by a substring of `device_kind`; for a dry
# run on simulated devices, and where a backend reports no limit.
GIB = 2**30
DEVICE_MEMORY = (
    ('H200', 141e9), ('H100', 80e9), ('A100-SXM4-40GB', 40e9),
    ('A100-PCIE-40GB', 40e9), ('A100', 80e9),
    ('TPU v6', 32 * GIB), ('TPU v5 lite', 16 * GIB), ('TPU v5e', 16 * GIB),
    ('TPU v5', 95 * GIB), ('TPU v4', 32 * GIB),
)


def _lookup(table, device_kind: str):
  for name, value in table:
    if name.lower() in device_kind.lower():
      return value
  return None


def device_memory(device_kind: str) -> float | None:
  """The chip's memory in bytes, or None where it is unknown."""
  return _lookup(DEVICE_MEMORY, device_kind)


def peak_flops(device_kind: str) -> float | None:
  """The chip's peak, or None where it is unknown (CPUs among them)."""
  return _lookup(PEAK_FLOPS, device_kind)
