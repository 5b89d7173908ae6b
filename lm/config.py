"""The config schema: every key a run accepts, its default, and its checks.

Experiment configs under `configs/` start from `default()` and change fields;
`validate()` runs at the command-line edge, before anything is compiled, and
turns a mistake into one `ConfigError` line that names the key and the fix.
"""

from __future__ import annotations

import json
from typing import Any

import ml_collections

from lm import errors

# Keys whose value must be one of a fixed set of choices.
CHOICES = {
    'task': ('causal_lm', 'masked_lm', 'replaced_token', 'classification'),
    'data.name': ('tiny_shakespeare', 'wikitext2', 'text_files', 'sst2'),
    'data.pack': ('stream', 'segments'),
    'data.tokenizer': ('char', 'word', 'sentencepiece', 'byte', 'hf'),
    'data.spm_model_type': ('bpe', 'unigram'),
    'data.normalize': ('none', 'NFC', 'NFKC'),
    'model.dtype': ('auto', 'float32', 'bfloat16', 'float16'),
    'model.position': ('none', 'learned', 'sinusoidal', 'rope', 'alibi',
                       't5'),
    'model.norm': ('layernorm', 'rmsnorm'),
    'model.norm_position': ('pre', 'post'),
    'model.activation': ('gelu', 'gelu_tanh', 'relu', 'relu2', 'swiglu'),
    'model.attention_impl': ('reference', 'xla', 'cudnn', 'splash'),
    'model.remat': ('none', 'full', 'dots'),
    'model.pooling': ('cls', 'mean'),
    'model.param_dtype': ('float32', 'bfloat16'),
    'optim.name': ('adamw', 'adam', 'sgd'),
    'optim.state_dtype': ('float32', 'bfloat16'),
    'train.nonfinite': ('stop', 'skip'),
}

# Model fields a checkpoint's shapes depend on: resuming needs them unchanged.
ARCHITECTURE_KEYS = ('vocab_size', 'num_layers', 'num_heads', 'embed_dim',
                     'mlp_dim', 'max_len', 'use_bias', 'position',
                     'num_kv_heads', 'norm', 'norm_position', 'activation',
                     'tie_embeddings', 'qk_norm', 'relative_buckets',
                     'scan_layers',  # Scanned layers are stacked arrays.
                     'type_vocab_size', 'num_classes', 'embed_norm')

# Fields a resumed run may change freely: how long, how often, how it is
# laid out or compiled; the same run either way. Changing any other field of
# a workdir's run takes allow_config_change=true (and is recorded).
RESUMABLE_CHANGES = ('init_from', 'allow_config_change', 'data.prefetch',
                     'data.tfds_dir', 'model.attention_impl', 'model.remat',
                     'optim.grad_accum_steps', 'train.*', 'eval.*',
                     'checkpoint.*', 'compile.*', 'mesh.*')

# Tasks that pretrain an encoder on masked rows (lm.data.masking).
MASKED_TASKS = ('masked_lm', 'replaced_token')

DROPOUT_SITES = ('embed', 'attention', 'residual', 'mlp')


class ConfigError(errors.UserError):
  """A user mistake in a config, reported as one line."""


def default() -> ml_collections.ConfigDict:
  """Every key a run accepts, with the project's defaults (a small CPU GPT)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # causal_lm: a GPT predicting the next token. masked_lm: a bidirectional
  # encoder predicting masked tokens (BERT pretraining). replaced_token: the
  # encoder telling which tokens a small masked-LM generator replaced
  # (ELECTRA pretraining). classification: the encoder with a [CLS]
  # classifier, on a labelled corpus (sst2).
  c.task = 'causal_lm'
  # A run directory whose latest parameters start this run (classification:
  # a masked_lm or replaced_token run's encoder).
  c.init_from = ''
  # Resume a workdir's run under a config that differs in more than
  # RESUMABLE_CHANGES (recorded in WORKDIR/config_changes.jsonl).
  c.allow_config_change = False

  c.data = ml_collections.ConfigDict()
  c.data.name = 'tiny_shakespeare'  # A TFDS builder in lm/data/builders.py.
  c.data.config = ''  # The builder's config ('' its first), e.g. 'raw'.
  # A local copy to prepare from (a folder; a file or folder for
  # text_files); '' downloads it, or for tiny_shakespeare reads the copy
  # embedded in the package.
  c.data.path = ''
  c.data.tfds_dir = ''  # Where prepared ArrayRecords go ('' TFDS's default).
  c.data.train_split = 'train'  # TFDS split expressions.
  c.data.eval_split = 'validation'
  c.data.test_split = 'test'  # '' or a split the corpus lacks: no test.
  c.data.val_fraction = 0.1  # Held out of train when there is no validation.
  c.data.pack = 'stream'  # 'stream' windows or 'segments' packed documents.
  c.data.tokenizer = 'char'
  c.data.vocab_size = 0  # SentencePiece: required; word: cap (0 keeps all).
  c.data.spm_model_type = 'bpe'
  c.data.normalize = 'none'  # Unicode normalisation of every text.
  c.data.lowercase = False
  c.data.remove_stopwords = False  # Classification only; refused for LMs.
  # masked_lm, replaced_token: tokens chosen (80% [MASK], 10/10).
  c.data.mask_rate = 0.15
  c.data.whole_word_mask = False  # Masking every piece of a chosen word.
  # Language modelling: another corpus (a data.name) whose `extra_split`
  # texts, labels dropped, follow the training split's in the training
  # stream and train the tokenizer, e.g. sst2's training sentences for an
  # encoder later fine-tuned on them. Never an evaluation split.
  c.data.extra_name = ''
  c.data.extra_path = ''  # Its local copy, as data.path.
  c.data.extra_split = 'train'
  # classification: row length, [CLS] and [SEP] included (longer sentences
  # are cut, and counted); 0: model.max_len.
  c.data.seq_len = 0
  # classification: batch sentences of similar length and cut each batch's
  # rows to its longest, rounded up to a multiple of this (fewer [PAD]
  # positions computed); 0: every row data.seq_len long.
  c.data.length_bucket = 0
  # classification: word dropout, the share of training pieces read as
  # [MASK] (each independently; [CLS], [SEP] and [PAD] never); 0: off.
  c.data.token_dropout = 0.0
  c.data.batch_size = 12  # Global batch, summed over all devices and hosts.
  c.data.prefetch = 2  # Batches prepared ahead by grain's threads.

  c.model = ml_collections.ConfigDict()
  c.model.vocab_size = 0  # 0: taken from the tokenizer built from the data.
  c.model.num_layers = 4
  c.model.num_heads = 4
  c.model.embed_dim = 128
  c.model.mlp_dim = 0  # 0: 4 * embed_dim.
  c.model.max_len = 64  # Context length (nanoGPT's block_size).
  c.model.dropout = 0.0
  # Comma-separated sites where model.dropout applies: embed, attention
  # (probabilities), residual (each branch's output), mlp (hidden layer).
  c.model.dropout_sites = 'embed,attention,residual'
  c.model.scaled_init = True  # Residual projections: 0.02 / sqrt(2 layers).
  c.model.use_bias = True
  c.model.dtype = 'auto'  # Compute; auto: float32 on CPU, else bfloat16.
  c.model.param_dtype = 'float32'
  c.model.position = 'learned'  # none, learned, sinusoidal, rope, alibi, t5.
  c.model.rope_base = 10000.0
  # t5: a learned per-head bias for each of this many distance buckets (half
  # exact, half log-spaced up to relative_max_distance), shared by layers.
  c.model.relative_buckets = 32
  c.model.relative_max_distance = 128
  c.model.num_kv_heads = 0  # 0: num_heads (MHA); 1: MQA; between: GQA.
  c.model.norm = 'layernorm'  # or rmsnorm.
  c.model.norm_position = 'pre'  # pre (GPT-2) or post (original).
  # gelu, gelu_tanh (GPT-2's approximation), relu, relu2 (squared), swiglu.
  c.model.activation = 'gelu'
  c.model.norm_eps = 1e-5  # Every norm's epsilon (BERT: 1e-12).
  c.model.embed_norm = False  # A LayerNorm on the summed embeddings (BERT).
  c.model.tie_embeddings = True  # Output head = token embedding.
  # A GloVe/word2vec text file whose vectors start the token embedding of a
  # fresh run (word tokenizer; vectors as wide as embed_dim).
  c.model.init_embeddings = ''
  c.model.causal = True  # False: bidirectional attention (encoders).
  c.model.attention_window = 0  # > 0: sliding window of this many positions.
  c.model.qk_norm = False  # RMSNorm on each head's queries and keys.
  # reference: einsums + softmax (attention dropout here only); xla/cudnn:
  # jax.nn.dot_product_attention with that implementation (cudnn: fused, GPU);
  # splash: the Pallas flash-attention kernel for TPU.
  c.model.attention_impl = 'reference'
  # Layers stacked into one array per parameter and jax.lax.scan'ed: compile
  # time flat in depth (checkpoints keep the layout they were made with).
  c.model.scan_layers = False
  c.model.remat = 'none'  # full or dots: recompute activations (less memory).
  c.model.type_vocab_size = 0  # > 0: token-type embeddings (BERT: 2).
  c.model.num_classes = 2  # classification: the classifier's outputs.
  # classification: what the classifier reads: the [CLS] state (BERT) or the
  # mean of the real tokens' states (padding excluded). On SST-2 mean pooling
  # learned faster and then overfitted, ending below [CLS] (BENCHMARKS.md).
  c.model.pooling = 'cls'
  # replaced_token: the generator's heads (so width and MLP) as a share of
  # the encoder's, same depth (ELECTRA: 1/4 to 1/2 works best).
  c.model.generator_fraction = 0.25

  c.optim = ml_collections.ConfigDict()
  c.optim.name = 'adamw'
  c.optim.lr = 1e-3
  c.optim.min_lr = 1e-4
  c.optim.warmup_steps = 100
  c.optim.decay_steps = 0  # 0: decay over train.num_steps.
  c.optim.b1 = 0.9
  c.optim.b2 = 0.99
  c.optim.eps = 1e-8
  c.optim.momentum = 0.9  # SGD only.
  c.optim.weight_decay = 0.1
  c.optim.grad_clip = 1.0  # Global-norm clip; 0 turns it off.
  c.optim.grad_accum_steps = 1
  # Optimizer state (Adam's moments, SGD momentum) kept in bfloat16 halves
  # its memory; updates are still computed in float32.
  c.optim.state_dtype = 'float32'
  # Fine-tuning: never update the token, position and type embeddings; the
  # pretrained encoder's learning rate as a fraction of the head's.
  c.optim.freeze_embeddings = False
  c.optim.encoder_lr_scale = 1.0
  # Layer-wise decay (ELECTRA's 0.8): each encoder block at this times the
  # rate of the one above it, the embeddings one step below the lowest.
  c.optim.layer_lr_decay = 1.0
  # replaced_token: loss = generator masked-LM loss + this x the
  # discriminator's mean binary cross-entropy over the tokens (ELECTRA: 50).
  c.optim.detection_weight = 50.0

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 2000
  c.train.log_every = 10
  c.train.eval_every = 250
  c.train.eval_batches = 20
  # A non-finite loss or gradient: its update is always skipped; 'stop' then
  # ends the run naming the step and leaf, 'skip' counts it and goes on.
  c.train.nonfinite = 'stop'
  # > 0: stop after this many evaluations without a better eval metric
  # (classification: accuracy; else loss); the best step is then evaluated.
  c.train.early_stopping = 0
  # > 0: also keep an exponential moving average of the parameters,
  # ema <- d * ema + (1 - d) * params after every step (Polyak averaging).
  # Evaluations, the best step, sampling, exports and init_from then use it.
  # It is kept in float32, sharded as the parameters (one more copy of them).
  c.train.ema_decay = 0.0

  c.eval = ml_collections.ConfigDict()
  c.eval.final = True  # Whole validation and test splits after training.
  c.eval.stride = 0  # Sliding-window stride; 0: max_len (no overlap).
  c.eval.batch_size = 0  # 0: data.batch_size.
  c.eval.max_len = 0  # Final-evaluation context; 0: model.max_len.
  # > 0: score only each split's first N tokens (quick studies; token loss
  # and perplexity only). 0: whole splits.
  c.eval.max_tokens = 0

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 250
  c.checkpoint.max_to_keep = 2  # The latest N, and the best by eval loss.
  c.checkpoint.async_save = True
  # A corrupted newest checkpoint (every file's size and SHA-256 are checked
  # on restore) is an error; true: move it to WORKDIR/corrupt_checkpoints and
  # resume from the newest intact one.
  c.checkpoint.fallback = False

  c.compile = ml_collections.ConfigDict()
  # Persistent compilation cache ('' off; e.g. ~/.cache/lm/jax, or a bucket
  # all pod workers share): restarts load the compiled step.
  c.compile.cache_dir = ''
  c.compile.cache_min_seconds = 1.0  # Cache only steps this slow to compile.
  c.compile.gpu_flags = True  # XLA_FLAGS that help on NVIDIA GPUs.

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1: all devices the other axes leave.
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  # Multi-slice (TPU slices joined by the data-center network) or multi-node
  # GPU: how many slices (nodes) each axis spans. The sizes above are then
  # per slice, and an axis's whole size is the product. 1: one slice.
  c.mesh.dcn_data = 1
  c.mesh.dcn_fsdp = 1
  c.mesh.dcn_tensor = 1
  # Logical axis -> mesh axes. Parameters and activations name logical axes;
  # this table alone decides how they are laid out on the mesh.
  c.mesh.rules = (
      ('batch', ('data', 'fsdp')),
      ('vocab', 'tensor'),
      ('embed', 'fsdp'),
      ('heads', 'tensor'),
      ('mlp', 'tensor'),
  )
  return c


def flat(c: ml_collections.ConfigDict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for k, v in c.items():
    if isinstance(v, ml_collections.ConfigDict):
      out.update(flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def unknown_key_message(key: str) -> str | None:
  """None if `key` (dotted) names a field or section, else what to say."""
  keys = flat(default())
  if key in keys or any(k.startswith(key + '.') for k in keys):
    return None
  section = key.rpartition('.')[0]
  prefix = section + '.' if section else ''
  valid = sorted({k[len(prefix):].split('.')[0] for k in keys
                  if k.startswith(prefix)})
  return (f'unknown config key {key!r}; valid keys in '
          f'{section or "the top level"}: {", ".join(valid)}')


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for unknown keys, wrong types and bad values."""
  schema, given = flat(default()), flat(c)
  for key in given:
    message = unknown_key_message(key)
    if message:
      raise ConfigError(message)
  for key, value in given.items():
    want = type(schema[key])
    ok = isinstance(value, want) or (want is float and isinstance(value, int))
    if want is not bool and isinstance(value, bool):
      ok = False
    if not ok:
      raise ConfigError(f'config key {key!r} must be {want.__name__}, '
                        f'got {value!r}')
  for key, options in CHOICES.items():
    if given[key] not in options:
      raise ConfigError(f'config key {key!r} is {given[key]!r}; valid choices: '
                        f'{", ".join(options)}')
  m, d, o, t = c.model, c.data, c.optim, c.train
  positive = {'model.num_layers': m.num_layers, 'model.num_heads': m.num_heads,
              'model.embed_dim': m.embed_dim, 'model.max_len': m.max_len,
              'data.batch_size': d.batch_size, 'train.num_steps': t.num_steps,
              'train.log_every': t.log_every, 'train.eval_every': t.eval_every,
              'train.eval_batches': t.eval_batches,
              'checkpoint.every': c.checkpoint.every,
              'checkpoint.max_to_keep': c.checkpoint.max_to_keep,
              'optim.grad_accum_steps': o.grad_accum_steps}
  for key, value in positive.items():
    if value < 1:
      raise ConfigError(f'config key {key!r} must be at least 1, got {value}')
  non_negative = {'model.vocab_size': m.vocab_size, 'model.mlp_dim': m.mlp_dim,
                  'model.type_vocab_size': m.type_vocab_size,
                  'data.prefetch': d.prefetch,
                  'train.early_stopping': t.early_stopping,
                  'optim.warmup_steps': o.warmup_steps,
                  'optim.decay_steps': o.decay_steps,
                  'optim.weight_decay': o.weight_decay,
                  'optim.grad_clip': o.grad_clip, 'optim.momentum': o.momentum}
  for key, value in non_negative.items():
    if value < 0:
      raise ConfigError(f'config key {key!r} must be >= 0, got {value}')
  if not 0 <= c.seed < 2**32:
    raise ConfigError(f'seed must be in [0, 2**32), got {c.seed}')
  for key in ('b1', 'b2'):
    if not 0.0 <= o[key] < 1.0:
      raise ConfigError(f'optim.{key} must be in [0, 1), got {o[key]}')
  if o.eps <= 0:
    raise ConfigError(f'optim.eps must be > 0, got {o.eps}')
  if m.embed_dim % m.num_heads:
    raise ConfigError(f'model.embed_dim ({m.embed_dim}) must be divisible by '
                      f'model.num_heads ({m.num_heads})')
  if not m.norm_eps > 0:
    raise ConfigError(f'model.norm_eps must be > 0, got {m.norm_eps}')
  if not 0.0 <= m.dropout < 1.0:
    raise ConfigError(f'model.dropout must be in [0, 1), got {m.dropout}')
  if not 0.0 <= t.ema_decay < 1.0:
    raise ConfigError(f'train.ema_decay must be in [0, 1) (0: no average), '
                      f'got {t.ema_decay}')
  if not 0.0 < d.val_fraction < 1.0:
    raise ConfigError(f'data.val_fraction must be in (0, 1), got '
                      f'{d.val_fraction}')
  if d.batch_size % o.grad_accum_steps:
    raise ConfigError(f'data.batch_size ({d.batch_size}) must be divisible by '
                      f'optim.grad_accum_steps ({o.grad_accum_steps})')
  if d.name == 'text_files' and not d.path:
    raise ConfigError("data.name='text_files' needs data.path=FILE_OR_DIR")
  if d.remove_stopwords and c.task != 'classification':
    raise ConfigError('data.remove_stopwords is for classification pipelines; '
                      'a language model must see the text it is scored on')
  if d.tokenizer == 'sentencepiece' and d.vocab_size < 16:
    raise ConfigError('data.tokenizer=sentencepiece needs data.vocab_size '
                      '(e.g. 8000)')
  if d.vocab_size < 0 or c.eval.batch_size < 0:
    raise ConfigError('data.vocab_size and eval.batch_size must be >= 0')
  eval_len = c.eval.max_len or m.max_len
  if c.eval.max_tokens < 0:
    raise ConfigError(f'eval.max_tokens must be >= 0, got {c.eval.max_tokens}')
  if c.eval.max_len < 0:
    raise ConfigError(f'eval.max_len must be >= 0, got {c.eval.max_len}')
  if eval_len > m.max_len and m.position == 'learned':
    raise ConfigError(f'eval.max_len={eval_len} is past the learned position '
                      f'table of model.max_len={m.max_len}; evaluate at most '
                      'that long or use sinusoidal, rope, alibi, t5 or none')
  if not 0 <= c.eval.stride <= eval_len:
    raise ConfigError(f'eval.stride must be in [0, {eval_len}] (the eval '
                      f'context), got {c.eval.stride}')
  if m.num_kv_heads < 0 or (m.num_kv_heads and
                            m.num_heads % m.num_kv_heads):
    raise ConfigError(f'model.num_heads ({m.num_heads}) must be divisible by '
                      f'model.num_kv_heads ({m.num_kv_heads}); 0 means '
                      'num_heads')
  if m.position == 'rope' and (m.embed_dim // m.num_heads) % 2:
    raise ConfigError('model.position=rope needs an even head width '
                      f'(embed_dim / num_heads = {m.embed_dim // m.num_heads})'
                      )
  if m.init_embeddings and d.tokenizer != 'word':
    raise ConfigError('model.init_embeddings maps word vectors through the '
                      'vocabulary; it needs data.tokenizer=word')
  if m.attention_window < 0:
    raise ConfigError(f'model.attention_window must be >= 0, got '
                      f'{m.attention_window}')
  _validate_task(c)
  sites = [x for x in m.dropout_sites.split(',') if x]
  if any(x not in DROPOUT_SITES for x in sites):
    raise ConfigError(f'model.dropout_sites={m.dropout_sites!r}: give a '
                      'comma-separated subset of ' + ','.join(DROPOUT_SITES))
  if m.position == 't5' and (
      m.relative_buckets < 4 or
      m.relative_max_distance <= m.relative_buckets // 2):
    raise ConfigError('model.position=t5 needs model.relative_buckets >= 4 and '
                      'model.relative_max_distance > relative_buckets / 2 '
                      f'(got {m.relative_buckets} and '
                      f'{m.relative_max_distance})')
  if m.attention_impl == 'splash' and (
      m.max_len % 128 or eval_len % 128 or m.position in ('alibi', 't5')):
    raise ConfigError('model.attention_impl=splash needs model.max_len (and '
                      'eval.max_len) a multiple of 128 and no additive '
                      'position bias (alibi, t5); got max_len='
                      f'{m.max_len}, position={m.position}')
  if m.rope_base <= 1:
    raise ConfigError(f'model.rope_base must be > 1, got {m.rope_base}')
  if not d.train_split or not d.eval_split:
    raise ConfigError('data.train_split and data.eval_split must name splits')
  _validate_extra(c)
  if o.lr <= 0 or o.min_lr < 0 or o.min_lr > o.lr:
    raise ConfigError(f'need 0 <= optim.min_lr <= optim.lr and optim.lr > 0, '
                      f'got lr={o.lr}, min_lr={o.min_lr}')
  axes = ('data', 'fsdp', 'tensor')
  for axis in axes:
    size = c.mesh[axis]
    if size == 0 or size < -1:
      raise ConfigError(
          f'mesh.{axis} must be a positive size or -1, got {size}')
    if c.mesh[f'dcn_{axis}'] < 1:
      raise ConfigError(f'mesh.dcn_{axis} must be >= 1, got '
                        f'{c.mesh[f"dcn_{axis}"]}')
  for rule in c.mesh.rules:
    targets = rule[1] if isinstance(rule[1], (tuple, list)) else (rule[1],)
    unknown = [a for a in targets if a is not None and a not in axes]
    if len(rule) != 2 or unknown:
      raise ConfigError(f'mesh.rules entry {rule!r} must be (logical_name, '
                        f'mesh axes) with mesh axes among {", ".join(axes)}')


def _validate_extra(c: ml_collections.ConfigDict) -> None:
  """The checks of the extra training text (data.extra_*)."""
  d = c.data
  if not d.extra_name:
    return
  if d.extra_name not in CHOICES['data.name']:
    raise ConfigError(f'data.extra_name={d.extra_name!r} is not a corpus; '
                      f'choose one of {", ".join(CHOICES["data.name"])}')
  if any(part.split('[')[0] != 'train' for part in d.extra_split.split('+')):
    raise ConfigError(f'data.extra_split={d.extra_split!r}: extra training '
                      'text must come from a train split (an evaluation '
                      "split would leak into training); use 'train' or "
                      "'train[...]'")
  if c.task == 'classification':
    raise ConfigError('data.extra_name adds unlabelled text for language '
                      'modelling; a classifier trains on its labelled split '
                      'only (unset data.extra_name)')
  if d.pack == 'segments':
    raise ConfigError('data.extra_name joins the training stream; use '
                      "data.pack='stream'")


def _validate_task(c: ml_collections.ConfigDict) -> None:
  """The checks of `task` and the fields that go with it."""
  m, d, o = c.model, c.data, c.optim
  if d.length_bucket < 0 or (d.length_bucket and c.task != 'classification'):
    raise ConfigError('data.length_bucket batches labelled sentences by '
                      'length (task=classification), a multiple >= 1; got '
                      f'{d.length_bucket} for task={c.task}')
  if not 0.0 <= d.token_dropout < 1.0 or (d.token_dropout and
                                          c.task != 'classification'):
    raise ConfigError('data.token_dropout masks fine-tuning pieces '
                      '(task=classification), a share in [0, 1); got '
                      f'{d.token_dropout} for task={c.task}')
  if d.whole_word_mask and c.task not in MASKED_TASKS:
    raise ConfigError('data.whole_word_mask chooses the words a masked-LM '
                      'predicts (task=masked_lm or replaced_token), not '
                      f'task={c.task}')
  if not 0.0 < m.generator_fraction <= 1.0:
    raise ConfigError('model.generator_fraction is the generator\'s share of '
                      'the encoder\'s heads, in (0, 1]; got '
                      f'{m.generator_fraction}')
  if o.detection_weight < 0:
    raise ConfigError('optim.detection_weight must be >= 0, got '
                      f'{o.detection_weight}')
  if c.task == 'causal_lm' and not m.causal:
    raise ConfigError('model.causal=False (bidirectional) is for encoders; '
                      'set task=masked_lm or task=classification')
  for key in ('encoder_lr_scale', 'layer_lr_decay'):
    if c.task == 'causal_lm' and o[key] != 1.0:
      raise ConfigError(f'optim.{key} is for fine-tuning an encoder '
                        '(task=classification); a GPT has no encoder')
  if not 0.0 < o.layer_lr_decay <= 1.0:
    raise ConfigError('optim.layer_lr_decay must be in (0, 1] (1: off), got '
                      f'{o.layer_lr_decay}')
  if o.layer_lr_decay != 1.0 and m.scan_layers:
    raise ConfigError('optim.layer_lr_decay scales each block on its own; '
                      'set model.scan_layers=false (stacked blocks)')
  if c.task == 'causal_lm':
    return
  if m.causal:
    raise ConfigError(f'task={c.task} trains a bidirectional encoder; set '
                      'model.causal=False')
  if d.tokenizer not in ('sentencepiece', 'hf'):
    raise ConfigError(f'task={c.task} needs [CLS], [SEP] and [MASK] tokens: '
                      'set data.tokenizer=sentencepiece (or start from an '
                      'imported BERT, whose tokenizer is data.tokenizer=hf)')
  if not 0.0 < d.mask_rate <= 1.0:
    raise ConfigError(f'data.mask_rate must be in (0, 1], got {d.mask_rate}')
  if m.max_len < 3:
    raise ConfigError('an encoder row is [CLS] tokens [SEP]: model.max_len '
                      f'must be at least 3, got {m.max_len}')
  if not 0 <= d.seq_len <= m.max_len or d.seq_len in (1, 2):
    raise ConfigError(f'data.seq_len must be 0 (model.max_len) or in [3, '
                      f'model.max_len={m.max_len}], got {d.seq_len}')
  if c.task == 'classification' and d.name != 'sst2':
    raise ConfigError(f'task=classification needs a labelled corpus; '
                      f'data.name={d.name!r} has no labels (use sst2)')
  if m.num_classes < 2:
    raise ConfigError(f'model.num_classes must be at least 2, got '
                      f'{m.num_classes}')
  if o.encoder_lr_scale < 0:
    raise ConfigError('optim.encoder_lr_scale must be >= 0, got '
                      f'{o.encoder_lr_scale}')


def to_json(c: ml_collections.ConfigDict) -> str:
  return json.dumps(c.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """A config saved by `to_json`, with tuples restored where the schema has them."""
  c = default()
  saved = json.loads(text)

  def fill(node, values):
    for k, v in values.items():
      if isinstance(v, dict):
        fill(node[k], v)
      else:
        node[k] = _tuples(v) if isinstance(v, list) else v
  fill(c, saved)
  return c


def _tuples(v):
  return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def architecture_changes(old: ml_collections.ConfigDict,
                         new: ml_collections.ConfigDict) -> list[str]:
  """Model fields that differ, as 'key: old -> new' strings."""
  return [f'model.{k}: {old.model[k]} -> {new.model[k]}'
          for k in ARCHITECTURE_KEYS if old.model[k] != new.model[k]]


def config_changes(old: ml_collections.ConfigDict,
                   new: ml_collections.ConfigDict) -> list[str]:
  """Fields outside RESUMABLE_CHANGES that differ, as 'key: old -> new'."""
  def free(key):
    return any(key == k or (k.endswith('.*') and key.startswith(k[:-1]))
               for k in RESUMABLE_CHANGES)
  a, b = flat(old), flat(new)
  return [f'{k}: {a.get(k)} -> {b.get(k)}' for k in sorted(set(a) | set(b))
          if not free(k) and a.get(k) != b.get(k)]
