"""GPT: a decoder-only Transformer as Flax NNX modules.

The default is GPT-2's layout: token and learned position embeddings,
pre-LayerNorm blocks of causal multi-head self-attention and a GELU MLP, a
final LayerNorm and an output head tied to the token embedding. Config
switches choose the variants on the same code: positions (none, learned,
sinusoidal, RoPE, ALiBi, T5's relative buckets), grouped-query and
multi-query attention (`num_kv_heads`), LayerNorm or RMSNorm, pre- or
post-norm blocks (and BERT's norm on the embeddings), GELU (exact or
GPT-2's tanh form), ReLU, squared ReLU or SwiGLU, tied or untied output
head, biases, dropout sites and depth-scaled init. Every parameter is
declared with logical axis names; `lm.parallel.sharding` maps them onto mesh axes.

Tensor names carry their shapes:
  B batch, L query length, M key length (the KV cache's length when decoding,
  the encoder's in cross-attention),
  D model width, H heads, G key/value heads, K head width, F MLP width,
  V vocabulary, N relative-position buckets.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp

from lm.models import attention as attention_lib
from lm.models import layers
from lm.models import positions as positions_lib
from lm.parallel import sharding


class Block(nnx.Module):
  """Pre-norm: x + attn(ln(x)), then x + mlp(ln(x)); post-norm (the original
  Transformer): ln(x + attn(x)), then ln(x + mlp(x)). Dropout on each
  branch's output (site 'residual').

  With `cross`, a cross-attention sub-layer (its own norm `ln_cross`) sits
  between self-attention and the MLP, normed the same way: its queries
  attend, without causal mask or positions, to an encoder's output.
  """

  def __init__(self, cfg: layers.TransformerConfig, *, rngs, cross=False):
    self.ln1 = layers.LayerNorm(cfg, rngs=rngs)
    self.attn = attention_lib.Attention(cfg, rngs=rngs)
    # Encoder and decoder positions are in different sequences: no position
    # information (RoPE, ALiBi, T5) relates them, and no causal order.
    self.ln_cross, self.cross_attn = (
        (layers.LayerNorm(cfg, rngs=rngs),
         attention_lib.Attention(cfg, rngs=rngs, causal=False,
                                 positional=False))
        if cross else (None, None))
    self.ln2 = layers.LayerNorm(cfg, rngs=rngs)
    self.mlp = layers.MLP(cfg, rngs=rngs)
    self.dropout = nnx.Dropout(cfg.dropout_at('residual'))
    self.pre = cfg.norm_position == 'pre'

  def _residual(self, norm, branch, x_BxLxD, deterministic, rngs):
    """x + branch(norm(x)) (pre-norm) or norm(x + branch(x)) (post-norm),
    with dropout on the branch; `branch` returns (y, aux), aux passed on."""
    y_BxLxD, aux = branch(norm(x_BxLxD) if self.pre else x_BxLxD)
    x_BxLxD = x_BxLxD + self.dropout(y_BxLxD, deterministic=deterministic,
                                     rngs=rngs)
    return (x_BxLxD if self.pre else norm(x_BxLxD)), aux

  def __call__(self, x_BxLxD, *, positions_BxL, segment_ids_BxL=None,
               encoded_BxMxD=None, encoded_segment_ids_BxM=None,
               cross_cache=None, cache=None, relative_NxH=None,
               deterministic=True, rngs=None):
    """The block's output [B, L, D] and the updated self-attention cache.

    A cross block attends to `encoded_BxMxD` (or to its keys and values,
    `cross_cache` from `cross_attn.cross_cache`, when decoding); encoder
    segment ids mask its padding (id 0) or match packed segments to the
    queries' `segment_ids_BxL` (see `attention_lib.attention_mask`).
    """
    kw = dict(deterministic=deterministic, rngs=rngs)
    x_BxLxD, cache = self._residual(self.ln1, lambda h_BxLxD: self.attn(
        h_BxLxD, positions_BxL=positions_BxL, segment_ids_BxL=segment_ids_BxL,
        cache=cache, relative_NxH=relative_NxH, **kw), x_BxLxD, **kw)
    if self.cross_attn is not None:
      x_BxLxD, _ = self._residual(self.ln_cross, lambda h_BxLxD: self._cross(
          h_BxLxD, positions_BxL, segment_ids_BxL, encoded_BxMxD,
          encoded_segment_ids_BxM, cross_cache, kw), x_BxLxD, **kw)
    x_BxLxD, _ = self._residual(self.ln2, lambda h_BxLxD: (
        self.mlp(h_BxLxD, **kw), None), x_BxLxD, **kw)
    return sharding.constrain(x_BxLxD, ('batch', None, 'embed')), cache

  def _cross(self, h_BxLxD, positions_BxL, segment_ids_BxL, encoded_BxMxD,
             encoded_segment_ids_BxM, cross_cache, kw):
    """Cross-attention of h's queries to the encoder's output. When h holds
    W rows per source (beams, samples: B = S * W rows, in source order) and
    the encoder's output or cross cache one per source (S), the W rows'
    queries are laid side by side as one row of W * L queries: attention
    without causal order or positions is the same, and the source's keys and
    values are read once, never copied per row."""
    S = (encoded_BxMxD if cross_cache is None
         else cross_cache.k_BxGxMxK).shape[0]
    B, L, D = h_BxLxD.shape
    if S == B:
      return self.cross_attn(h_BxLxD, encoded_BxMxD,
                             positions_BxL=positions_BxL,
                             segment_ids_BxL=segment_ids_BxL,
                             kv_segment_ids_BxM=encoded_segment_ids_BxM,
                             cache=cross_cache, **kw)
    W = B // S
    y_SxWLxD, _ = self.cross_attn(
        h_BxLxD.reshape(S, W * L, D), encoded_BxMxD,
        positions_BxL=jnp.zeros((1, W * L), jnp.int32),
        kv_segment_ids_BxM=encoded_segment_ids_BxM, cache=cross_cache, **kw)
    return y_SxWLxD.reshape(B, L, D), cross_cache


class GPT(nnx.Module):
  """Token ids in, next-token logits out."""

  def __init__(self, cfg: layers.TransformerConfig, *, rngs: nnx.Rngs,
               cross: bool = False, wte: nnx.Param | None = None):
    """`cross`: blocks with cross-attention to an encoder's output (the
    decoder of an encoder-decoder); `wte`: another model's token embedding,
    shared (one parameter), instead of one of its own."""
    self.cfg = cfg
    init = nnx.initializers.normal(0.02)
    # Scaled embeddings (the original Transformer) are read times sqrt(D):
    # drawn with std 1/sqrt(D), they enter the blocks with unit scale.
    self.wte = wte if wte is not None else layers.param(
        rngs, nnx.initializers.normal(
            cfg.embed_dim**-0.5 if cfg.scale_embeddings else 0.02),
        (cfg.vocab_size, cfg.embed_dim), ('vocab', 'embed'), cfg.param_dtype)
    self.wpe = (layers.param(rngs, init, (cfg.max_len, cfg.embed_dim),
                             (None, 'embed'), cfg.param_dtype)
                if cfg.position == 'learned' else None)
    # T5 shares one bias table [buckets, heads] across the layers.
    self.wtt = (layers.param(rngs, init, (cfg.type_vocab_size, cfg.embed_dim),
                             (None, 'embed'), cfg.param_dtype)
                if cfg.type_vocab_size else None)
    self.relative = (layers.param(
        rngs, init, (cfg.relative_buckets, cfg.num_heads),
        (None, 'heads'), cfg.param_dtype) if cfg.position == 't5' else None)
    self.ln_e = layers.LayerNorm(cfg, rngs=rngs) if cfg.embed_norm else None
    self.dropout = nnx.Dropout(cfg.dropout_at('embed'))
    if cfg.scan_layers:
      # One Block whose parameters carry a leading layer axis: the stack is
      # one array per parameter, scanned over (compile time flat in depth).
      @nnx.split_rngs(splits=cfg.num_layers)
      @nnx.vmap(in_axes=(0,), out_axes=0,
                transform_metadata={nnx.PARTITION_NAME: None})
      def stacked(rngs):
        return Block(cfg, rngs=rngs, cross=cross)
      self.blocks = stacked(rngs)
    else:
      self.blocks = nnx.List([Block(cfg, rngs=rngs, cross=cross)
                              for _ in range(cfg.num_layers)])
    # Post-norm blocks already end in a norm.
    self.ln_f = (layers.LayerNorm(cfg, rngs=rngs)
                 if cfg.norm_position == 'pre' else None)
    self.head = (None if cfg.tie_embeddings else layers.param(
        rngs, init, (cfg.vocab_size, cfg.embed_dim),
        ('vocab', 'embed'), cfg.param_dtype))

  def __call__(self, tokens_BxL, *, positions=None, segment_ids_BxL=None,
               cache=None, deterministic=True, rngs=None,
               token_types_BxL=None, head_DxV=None, **cross):
    """Logits [B, L, V] in float32, and the updated cache (None if not given).
    (`hidden` gives the final hidden states instead, for other heads.)

    `positions` ([L] or [B, L]; default 0..L-1) are the tokens' positions
    (a learned table's rows; sinusoidal, RoPE, ALiBi and T5 compute from
    them).
    Packed rows pass `segment_ids_BxL` and positions restarting at 0 in each
    segment; a token then attends only to earlier tokens of its segment.
    With a cache (from `init_cache`), tokens sit at `positions` ([L], which
    must be consecutive); keys and values are written there and attention
    reads the cache, so decoding one token at a time equals one full call.
    A decoder (`cross`) is also given the encoder's output (see `hidden`).
    Decoding loops pass `head_DxV` (`output_table_DxV`, transposed once):
    XLA's CPU matrix products read the output layer faster that way.
    """
    x_BxLxD, new_cache = self.hidden(
        tokens_BxL, positions=positions, segment_ids_BxL=segment_ids_BxL,
        cache=cache, deterministic=deterministic, rngs=rngs,
        token_types_BxL=token_types_BxL, **cross)
    B, L, D = x_BxLxD.shape
    if head_DxV is not None:
      logits_BLxV = jnp.einsum('ND,DV->NV', x_BxLxD.reshape(B * L, D),
                               head_DxV.astype(x_BxLxD.dtype))
    else:
      logits_BLxV = jnp.einsum('ND,VD->NV', x_BxLxD.reshape(B * L, D),
                               self._output_table().astype(x_BxLxD.dtype))
    return logits_BLxV.reshape(B, L, -1).astype(jnp.float32), new_cache

  def _output_table(self):
    """The output layer's table [V, D] (the token embedding's, when tied)."""
    return self.wte[...] if self.head is None else self.head[...]

  def output_table_DxV(self):
    """The output layer's table transposed, [D, V]."""
    return self._output_table().T

  def hidden(self, tokens_BxL, *, positions=None, segment_ids_BxL=None,
             cache=None, deterministic=True, rngs=None, token_types_BxL=None,
             encoded_BxMxD=None, encoded_segment_ids_BxM=None,
             cross_caches=None):
    """The final (normed) hidden states [B, L, D] and the updated cache.
    Encoders pass `segment_ids_BxL` 1 on real tokens and 0 on padding (no
    token then attends across the two) and, with `type_vocab_size`,
    `token_types_BxL` (BERT's sentence A/B). A decoder attends to the
    encoder's output `encoded_BxMxD` (or, decoding, to its keys and values,
    `cross_caches` from `cross_caches`), masked by `encoded_segment_ids_BxM`
    (0 on the source's padding); see `Block._cross` for B a multiple of
    the encoder's rows."""
    dtype = layers.DTYPES[self.cfg.dtype]
    L = tokens_BxL.shape[1]
    if positions is None:
      positions = jnp.arange(L)
    positions_BxL = positions if positions.ndim == 2 else positions[None]
    # Gather from tables whose embed axis is whole: gathering from an
    # fsdp-sharded table makes XLA's partitioner rematerialise it anyway.
    wte_VxD = sharding.constrain(self.wte[...], ('vocab', None))
    x_BxLxD = jnp.take(wte_VxD, tokens_BxL, axis=0)
    if self.cfg.scale_embeddings:
      x_BxLxD = x_BxLxD * jnp.sqrt(jnp.float32(self.cfg.embed_dim)).astype(
          x_BxLxD.dtype)
    if self.cfg.position == 'learned':
      wpe_LxD = sharding.constrain(self.wpe[...], (None, None))
      x_BxLxD = x_BxLxD + jnp.take(wpe_LxD, positions_BxL, axis=0)
    elif self.cfg.position == 'sinusoidal':
      x_BxLxD = x_BxLxD + positions_lib.sinusoidal(
          positions_BxL, self.cfg.embed_dim,
          layout=self.cfg.sinusoidal_layout)
    if self.wtt is not None:
      types_BxL = (jnp.zeros_like(tokens_BxL) if token_types_BxL is None
                   else token_types_BxL)
      x_BxLxD = x_BxLxD + jnp.take(self.wtt[...], types_BxL, axis=0)
    if self.ln_e is not None:
      x_BxLxD = self.ln_e(x_BxLxD)
    x_BxLxD = x_BxLxD.astype(dtype)
    x_BxLxD = sharding.constrain(x_BxLxD, ('batch', None, 'embed'))
    x_BxLxD = self.dropout(x_BxLxD, deterministic=deterministic, rngs=rngs)
    relative_NxH = None if self.relative is None else self.relative[...]
    cross = dict(encoded_BxMxD=encoded_BxMxD,
                 encoded_segment_ids_BxM=encoded_segment_ids_BxM)
    x_BxLxD, new_cache = self._blocks(x_BxLxD, positions_BxL, segment_ids_BxL,
                                      relative_NxH, cache, deterministic, rngs,
                                      cross, cross_caches)
    if self.ln_f is not None:
      x_BxLxD = self.ln_f(x_BxLxD)
    return x_BxLxD, new_cache

  def _blocks(self, x_BxLxD, positions_BxL, segment_ids_BxL, relative_NxH,
              cache, deterministic, rngs, cross, cross_caches):
    """The blocks in order: a Python loop over the layers, or (scan_layers)
    one `jax.lax.scan` over the stacked layers; with `remat`, each block is
    recomputed in the backward pass. Dropout keys are drawn per layer from
    one key. `cross` (the encoder's output and segment ids) goes to every
    layer, `cross_caches` each layer its own. Returns the output and the
    updated cache (None if not given)."""
    cfg = self.cfg
    if not cfg.scan_layers and cfg.remat == 'none':  # The plain stack.
      new_cache = None if cache is None else []
      for i, block in enumerate(self.blocks):
        x_BxLxD, layer_cache = block(
            x_BxLxD, positions_BxL=positions_BxL,
            segment_ids_BxL=segment_ids_BxL,
            cache=None if cache is None else cache[i],
            cross_cache=None if cross_caches is None else cross_caches[i],
            relative_NxH=relative_NxH, deterministic=deterministic, rngs=rngs,
            **cross)
        if cache is not None:
          new_cache.append(layer_cache)
      return x_BxLxD, new_cache
    train = not deterministic and cfg.dropout > 0
    keys = (jax.random.split(rngs.dropout(), cfg.num_layers) if train else
            jnp.zeros((cfg.num_layers, 2), jnp.uint32))
    graphdef = nnx.graphdef(self.blocks if cfg.scan_layers else
                            self.blocks[0])

    def body(x_BxLxD, layer):
      state, key, layer_cache, cross_cache = layer
      block = nnx.merge(graphdef, state)
      return block(x_BxLxD, positions_BxL=positions_BxL,
                   segment_ids_BxL=segment_ids_BxL, cache=layer_cache,
                   cross_cache=cross_cache, relative_NxH=relative_NxH,
                   deterministic=not train,
                   rngs=nnx.Rngs(dropout=key) if train else None, **cross)
    if cfg.remat != 'none' and cache is None:
      policy = (jax.checkpoint_policies.dots_with_no_batch_dims_saveable
                if cfg.remat == 'dots' else None)
      body = jax.checkpoint(body, policy=policy)
    if cfg.scan_layers:  # The cache, too, is stacked over the layers.
      return jax.lax.scan(body, x_BxLxD,
                          (nnx.state(self.blocks), keys, cache, cross_caches))
    new_cache = None if cache is None else []
    for i, block in enumerate(self.blocks):
      x_BxLxD, layer_cache = body(x_BxLxD, (
          nnx.state(block), keys[i], None if cache is None else cache[i],
          None if cross_caches is None else cross_caches[i]))
      if cache is not None:
        new_cache.append(layer_cache)
    return x_BxLxD, new_cache

  def cross_caches(self, encoded_BxMxD):
    """Each layer's cross-attention keys and values of the encoder's output
    (a list of `CrossCache`, or one stacked over the layers with
    scan_layers): computed once per source, then only read."""
    if not self.cfg.scan_layers:
      return [block.cross_attn.cross_cache(encoded_BxMxD)
              for block in self.blocks]
    graphdef, state = nnx.split(self.blocks)
    return jax.vmap(lambda s: nnx.merge(graphdef, s).cross_attn.cross_cache(
        encoded_BxMxD))(state)

  def init_cache(self, batch_size: int, length: int | None = None,
                 beams: int = 1):
    """An empty KV cache of `length` positions (default: the whole
    context, max_len): one {'k', 'v'} entry per layer, or (scan_layers) one
    entry stacked over the layers; each array [B, G, T, K] (heads-major, see
    `attention.reference_attention`), with a leading layer axis when
    stacked (see `cache_rows_axis`). With `beams` W > 1, a beam search's cache
    that rows never leave (see `attention.beam_attention`): for batch_size
    = S * W rows, 'k' [S, G, K, T * W], 'v' [S, G, T * W, K] and
    'ancestors' [S, W, T]; `reorder_beams` keeps it with the beams."""
    c = self.cfg
    T = length or c.max_len
    dtype = layers.DTYPES[c.dtype]
    if beams > 1:
      if batch_size % beams:
        raise ValueError(f'{batch_size} rows are not a multiple of {beams} '
                         'beams')
      S = batch_size // beams
      shapes = {'k': ((S, c.kv_heads, c.head_dim, T * beams), dtype),
                'v': ((S, c.kv_heads, T * beams, c.head_dim), dtype),
                'ancestors': ((S, beams, T), jnp.int32)}
    else:
      shapes = {name: ((batch_size, c.kv_heads, T, c.head_dim), dtype)
                for name in ('k', 'v')}
    if c.scan_layers:
      return {name: jnp.zeros((c.num_layers, *shape), t)
              for name, (shape, t) in shapes.items()}
    return [{name: jnp.zeros(shape, t) for name, (shape, t) in shapes.items()}
            for _ in range(c.num_layers)]


def reorder_beams(cache, parents_SxW):
  """A cache of `init_cache(beams=W)` after beam search has put in row w of
  each source s the hypothesis grown from its row parents[s, w]: the rows
  take their parents' ancestry; no key or value moves."""
  def one(layer):
    ancestors = layer['ancestors']  # [(layers,) S, W, T]
    index = parents_SxW.reshape((1,) * (ancestors.ndim - 3) +
                                parents_SxW.shape + (1,))
    return {**layer, 'ancestors': jnp.take_along_axis(ancestors, index,
                                                      axis=-2)}
  return [one(layer) for layer in cache] if isinstance(cache, list) else one(
      cache)


def cache_rows_axis(cfg: layers.TransformerConfig) -> int:
  """The row axis of the arrays of `GPT.init_cache` (beams=1)."""
  return 1 if cfg.scan_layers else 0


def stack_layers(params: dict) -> dict:
  """Parameters of a per-layer stack ({'blocks': {0: ..., 1: ...}}) in the
  layout of `scan_layers` (each leaf stacked on a leading layer axis)."""
  blocks = params['blocks']
  layers = [blocks[i] for i in sorted(blocks)]
  return {**params, 'blocks': jax.tree.map(lambda *xs: jnp.stack(xs),
                                           *layers)}


def unstack_layers(params: dict) -> dict:
  """The inverse of `stack_layers`."""
  stacked = params['blocks']
  n = jax.tree.leaves(stacked)[0].shape[0]
  return {**params, 'blocks': {
      i: jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(n)}}


def count_params(params) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
