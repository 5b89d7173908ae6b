"""The encoder-decoder Transformer (Vaswani et al., 2017) as Flax NNX modules.

Two `lm.models.transformer.GPT` stacks: the encoder reads the source with
bidirectional self-attention (its padding, segment id 0, masked as keys);
the decoder reads the target with causal self-attention, then attends to the
encoder's output through a cross-attention sub-layer in each block, and
predicts the next target token through its output layer. Both use every
option the GPT has (positions, norms, activations, dropout sites, scan_layers,
remat); `share_embeddings` makes the encoder and decoder read one token
embedding (a joint vocabulary), and `tie_embeddings` ties the decoder's to
its output layer. Parameters sit under 'encoder' and 'decoder' with the
GPT's names and logical axes, so every mesh layout applies.

Decoding runs the encoder once per source; `cross_caches` computes each
layer's cross-attention keys and values of its output once, and the decoder
only reads them afterwards, while its self-attention writes a KV cache.
Several rows per source (beams, samples) read one source's cross cache
without copies (`transformer.Block._cross`).

Tensor names carry their shapes (see lm.models.transformer): B batch,
M source length, L target length, D model width, V vocabulary.
"""

from __future__ import annotations

import dataclasses

from flax import nnx
import jax.numpy as jnp

from lm.models import layers
from lm.models import transformer


class EncoderDecoder(nnx.Module):
  """Source ids and target ids in, next-target-token logits out."""

  def __init__(self, cfg: layers.TransformerConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    # The encoder's own output layer is never used: tied, it has none.
    self.encoder = transformer.GPT(
        dataclasses.replace(cfg, causal=False, tie_embeddings=True),
        rngs=rngs)
    self.decoder = transformer.GPT(
        dataclasses.replace(cfg, causal=True,
                            num_layers=cfg.decoder_layers or cfg.num_layers),
        rngs=rngs, cross=True,
        wte=self.encoder.wte if cfg.share_embeddings else None)

  def encode(self, source_BxM, source_segment_ids_BxM=None,
             deterministic=True, rngs=None):
    """The encoder's output [B, M, D]. `source_segment_ids_BxM`: 1 on real
    tokens, 0 on padding (default: no padding)."""
    if source_segment_ids_BxM is None:
      source_segment_ids_BxM = jnp.ones(source_BxM.shape, jnp.int32)
    encoded_BxMxD, _ = self.encoder.hidden(
        source_BxM, segment_ids_BxL=source_segment_ids_BxM,
        deterministic=deterministic, rngs=rngs)
    return encoded_BxMxD

  def decode(self, target_BxL, *, source_segment_ids_BxM, encoded_BxMxD=None,
             cross_caches=None, positions=None, cache=None,
             deterministic=True, rngs=None, head_DxV=None):
    """Logits [B, L, V] (float32) of the next target token at each target
    position, and the updated self-attention cache (None if not given).
    The decoder attends to `encoded_BxMxD`, or (decoding) to its keys and
    values `cross_caches`; B may be a multiple of the sources' rows (W
    consecutive rows per source). Decoding loops pass `head_DxV` (see
    `GPT.__call__`)."""
    return self.decoder(target_BxL, positions=positions, cache=cache,
                        deterministic=deterministic, rngs=rngs,
                        head_DxV=head_DxV,
                        encoded_BxMxD=encoded_BxMxD,
                        encoded_segment_ids_BxM=source_segment_ids_BxM,
                        cross_caches=cross_caches)

  def __call__(self, source_BxM, target_BxL, *, source_segment_ids_BxM=None,
               deterministic=True, rngs=None):
    """Teacher forcing: logits [B, L, V] of the token after each of
    `target_BxL` (the target shifted right: BOS first), given the source."""
    if source_segment_ids_BxM is None:
      source_segment_ids_BxM = jnp.ones(source_BxM.shape, jnp.int32)
    encoded_BxMxD = self.encode(source_BxM, source_segment_ids_BxM,
                                deterministic, rngs)
    logits_BxLxV, _ = self.decode(
        target_BxL, source_segment_ids_BxM=source_segment_ids_BxM,
        encoded_BxMxD=encoded_BxMxD, deterministic=deterministic, rngs=rngs)
    return logits_BxLxV

  def cross_caches(self, encoded_BxMxD):
    """Each decoder layer's cross-attention keys and values of the encoder's
    output, computed once per source (see `GPT.cross_caches`)."""
    return self.decoder.cross_caches(encoded_BxMxD)

  def init_cache(self, batch_size: int, length: int | None = None,
                 beams: int = 1):
    """An empty self-attention KV cache of the decoder for `batch_size`
    rows and `length` target positions (default `max_len`); a beam search's
    with `beams` > 1 (see `GPT.init_cache`)."""
    return self.decoder.init_cache(batch_size, length, beams)
