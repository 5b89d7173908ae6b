"""The value checks of each config section, and the error they raise.

`lm.config.validate()` first checks the schema (known keys, types, CHOICES),
then runs `CHECKS` in order. The order is part of the interface: a config
with several mistakes is reported by the first check it fails, and later
checks rely on earlier ones (they divide by fields checked to be >= 1). So a
section may have more than one check function, each at its place in CHECKS.

The lowest layer with lm.config: it imports no other lm module.
"""

import functools

import ml_collections

from lm import errors


class ConfigError(errors.UserError):
  """A user mistake in a config, reported as one line."""


# Keys whose value must be one of a fixed set of choices.
CHOICES = {
    'task': ('causal_lm', 'masked_lm', 'replaced_token', 'classification',
             'translation', 'summarization', 'span_corruption'),
    'data.name': ('tiny_shakespeare', 'wikitext2', 'text_files', 'sst2',
                  'multi30k', 'parallel_text', 'scitldr'),
    'data.pack': ('stream', 'segments'),
    'data.tokenizer': ('char', 'word', 'sentencepiece', 'byte', 'hf'),
    'data.spm_model_type': ('bpe', 'unigram'),
    'data.normalize': ('none', 'NFC', 'NFKC'),
    'model.dtype': ('auto', 'float32', 'bfloat16', 'float16'),
    'model.position': ('none', 'learned', 'sinusoidal', 'rope', 'alibi',
                       't5'),
    'model.norm': ('layernorm', 'rmsnorm'),
    'model.norm_position': ('pre', 'post'),
    'model.activation': ('gelu', 'gelu_tanh', 'relu', 'relu2', 'silu',
                         'swiglu', 'geglu'),
    'model.sinusoidal_layout': ('interleaved', 'concat'),
    'model.attention_impl': ('reference', 'xla', 'cudnn', 'splash'),
    'model.remat': ('none', 'full', 'dots'),
    'model.pooling': ('cls', 'mean'),
    'model.param_dtype': ('float32', 'bfloat16'),
    'optim.name': ('adamw', 'adam', 'sgd'),
    'optim.schedule': ('cosine', 'inverse_sqrt'),
    'eval.penalty': ('gnmt', 'hf'),
    'optim.state_dtype': ('float32', 'bfloat16'),
    'train.nonfinite': ('stop', 'skip'),
}

# Tasks that pretrain an encoder on masked rows (lm.data.masking).
MASKED_TASKS = ('masked_lm', 'replaced_token')

# Tasks that train an encoder-decoder on (source, target) pairs, and all
# that train an encoder-decoder.
PAIR_TASKS = ('translation', 'summarization')
ENCODER_DECODER_TASKS = (*PAIR_TASKS, 'span_corruption')

DROPOUT_SITES = ('embed', 'attention', 'residual', 'mlp')

# Counts and sizes that must be at least 1, then those that must be >= 0,
# checked in this order before any other value.
POSITIVE = ('model.num_layers', 'model.num_heads', 'model.embed_dim',
            'model.max_len', 'data.batch_size', 'train.num_steps',
            'train.log_every', 'train.eval_every', 'train.eval_batches',
            'checkpoint.every', 'checkpoint.max_to_keep',
            'optim.grad_accum_steps')
NON_NEGATIVE = ('model.vocab_size', 'model.mlp_dim', 'model.type_vocab_size',
                'data.prefetch', 'train.early_stopping',
                'train.nonfinite_limit', 'optim.warmup_steps',
                'optim.decay_steps', 'optim.weight_decay', 'optim.grad_clip',
                'optim.momentum')


def _field(c: ml_collections.ConfigDict, key: str):
  """The value of dotted `key` in `c`, read as attributes (c.model.x)."""
  return functools.reduce(getattr, key.split('.'), c)


def check_bounds(c: ml_collections.ConfigDict) -> None:
  """POSITIVE fields are >= 1, then NON_NEGATIVE fields are >= 0."""
  # Every field is read before the first comparison, as a missing one is
  # reported before any bad value.
  for key, value in [(key, _field(c, key)) for key in POSITIVE]:
    if value < 1:
      raise ConfigError(f'config key {key!r} must be at least 1, got {value}')
  for key, value in [(key, _field(c, key)) for key in NON_NEGATIVE]:
    if value < 0:
      raise ConfigError(f'config key {key!r} must be >= 0, got {value}')


def check_seed(c: ml_collections.ConfigDict) -> None:
  """The seed fits the 32 bits of a NumPy/JAX seed."""
  if not 0 <= c.seed < 2**32:
    raise ConfigError(f'seed must be in [0, 2**32), got {c.seed}')


def check_optim_moments(c: ml_collections.ConfigDict) -> None:
  """Adam's decay rates are in [0, 1) and its epsilon is positive."""
  o = c.optim
  for key in ('b1', 'b2'):
    if not 0.0 <= o[key] < 1.0:
      raise ConfigError(f'optim.{key} must be in [0, 1), got {o[key]}')
  if o.eps <= 0:
    raise ConfigError(f'optim.eps must be > 0, got {o.eps}')


def check_model_shape(c: ml_collections.ConfigDict) -> None:
  """Heads split the width evenly; norm epsilon and dropout are in range."""
  m = c.model
  if m.embed_dim % m.num_heads:
    raise ConfigError(f'model.embed_dim ({m.embed_dim}) must be divisible by '
                      f'model.num_heads ({m.num_heads})')
  if not m.norm_eps > 0:
    raise ConfigError(f'model.norm_eps must be > 0, got {m.norm_eps}')
  if not 0.0 <= m.dropout < 1.0:
    raise ConfigError(f'model.dropout must be in [0, 1), got {m.dropout}')


def check_train(c: ml_collections.ConfigDict) -> None:
  """The parameter average's decay is in [0, 1)."""
  t = c.train
  if not 0.0 <= t.ema_decay < 1.0:
    raise ConfigError(f'train.ema_decay must be in [0, 1) (0: no average), '
                      f'got {t.ema_decay}')


def check_data(c: ml_collections.ConfigDict) -> None:
  """The corpus, its tokenizer and its batches fit together."""
  d, o = c.data, c.optim
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
  if d.selection_split not in ('heldout', 'validation'):
    raise ConfigError(f'data.selection_split={d.selection_split!r}; choose '
                      'heldout or validation')
  if not 0.0 < d.selection_fraction <= 0.5:
    raise ConfigError('data.selection_fraction is the share of training '
                      'sentences held out to choose the best step, in (0, '
                      f'0.5]; got {d.selection_fraction}')
  if d.dedup not in ('none', 'exact', 'near'):  # lm.data.filters' modes.
    raise ConfigError(f'data.dedup={d.dedup!r}; choose from none, exact, '
                      'near')
  if not 0.0 < d.dedup_threshold <= 1.0:
    raise ConfigError(f'data.dedup_threshold={d.dedup_threshold} is outside '
                      '(0, 1]')
  if d.decontaminate_ngram < 1:
    raise ConfigError(f'data.decontaminate_ngram={d.decontaminate_ngram}: '
                      'give at least 1 word')


def check_eval(c: ml_collections.ConfigDict) -> None:
  """The final evaluation's context, stride and token budget are in range."""
  m, e = c.model, c.eval
  eval_len = e.max_len or m.max_len
  if e.max_tokens < 0:
    raise ConfigError(f'eval.max_tokens must be >= 0, got {e.max_tokens}')
  if e.max_len < 0:
    raise ConfigError(f'eval.max_len must be >= 0, got {e.max_len}')
  if eval_len > m.max_len and m.position == 'learned':
    raise ConfigError(f'eval.max_len={eval_len} is past the learned position '
                      f'table of model.max_len={m.max_len}; evaluate at most '
                      'that long or use sinusoidal, rope, alibi, t5 or none')
  if not 0 <= e.stride <= eval_len:
    raise ConfigError(f'eval.stride must be in [0, {eval_len}] (the eval '
                      f'context), got {e.stride}')


def check_model_attention(c: ml_collections.ConfigDict) -> None:
  """Key/value heads, rotary width, word vectors and window are usable."""
  m, d = c.model, c.data
  if m.num_kv_heads < 0 or (m.num_kv_heads and
                            m.num_heads % m.num_kv_heads):
    raise ConfigError(f'model.num_heads ({m.num_heads}) must be divisible by '
                      f'model.num_kv_heads ({m.num_kv_heads}); 0 means '
                      'num_heads')
  width = m.head_width or m.embed_dim // m.num_heads
  if m.head_width < 0:
    raise ConfigError(f'model.head_width must be >= 0 (0: embed_dim / '
                      f'num_heads), got {m.head_width}')
  if m.position == 'rope' and width % 2:
    raise ConfigError('model.position=rope needs an even head width '
                      f'(embed_dim / num_heads = {width})')
  if m.init_embeddings and d.tokenizer != 'word':
    raise ConfigError('model.init_embeddings maps word vectors through the '
                      'vocabulary; it needs data.tokenizer=word')
  if m.init_embeddings_std < 0:
    raise ConfigError('model.init_embeddings_std must be >= 0 (0: the '
                      f'vectors as in the file), got {m.init_embeddings_std}')
  if m.attention_window < 0:
    raise ConfigError(f'model.attention_window must be >= 0, got '
                      f'{m.attention_window}')


def check_task(c: ml_collections.ConfigDict) -> None:
  """The task-specific fields are set only for the tasks that read them."""
  m, d, o = c.model, c.data, c.optim
  if d.length_bucket < 0 or (d.length_bucket and c.task not in
                             ('classification', *PAIR_TASKS)):
    raise ConfigError('data.length_bucket batches sentences by length '
                      '(task=classification, translation or summarization), '
                      f'a multiple >= 1; got {d.length_bucket} for '
                      f'task={c.task}')
  check_translation(c)
  check_span_corruption(c)
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
  if o.embedding_lr_scale < 0:
    raise ConfigError('optim.embedding_lr_scale must be >= 0, got '
                      f'{o.embedding_lr_scale}')
  if o.get('embedding_tables', 'all') not in ('all', 'tokens'):
    raise ConfigError("optim.embedding_tables must be 'all' or 'tokens', got "
                      f'{o.embedding_tables!r}')
  if o.freeze_embeddings and o.embedding_lr_scale != 1.0:
    raise ConfigError('optim.freeze_embeddings and optim.embedding_lr_scale '
                      'both set; freeze (a scale of 0) or scale, not both')
  if not 0.0 < o.layer_lr_decay <= 1.0:
    raise ConfigError('optim.layer_lr_decay must be in (0, 1] (1: off), got '
                      f'{o.layer_lr_decay}')
  if o.layer_lr_decay != 1.0 and m.scan_layers:
    raise ConfigError('optim.layer_lr_decay scales each block on its own; '
                      'set model.scan_layers=false (stacked blocks)')


# Corpora of (source, target) pairs (lm.data.parallel, lm.data.summaries),
# read by task=translation and task=summarization.
PARALLEL_CORPORA = ('multi30k', 'parallel_text', 'scitldr')


def check_translation(c: ml_collections.ConfigDict) -> None:
  """A translation or summarization run reads a corpus of pairs with a
  SentencePiece vocabulary, batches of at least one widest row, and decodes
  with valid beam settings; no other task reads a corpus of pairs."""
  d, e = c.data, c.eval
  pairs = c.task in PAIR_TASKS
  if pairs != (d.name in PARALLEL_CORPORA):
    raise ConfigError(
        f'task=translation and task=summarization read a corpus of pairs '
        f'({", ".join(PARALLEL_CORPORA)}); got task={c.task} with '
        f'data.name={d.name}')
  if d.target_len < 0 or (d.target_len and c.task not in
                          ENCODER_DECODER_TASKS):
    raise ConfigError('data.target_len is the decoder\'s width (an '
                      'encoder-decoder task), >= 0; got '
                      f'{d.target_len} for task={c.task}')
  if c.task not in ENCODER_DECODER_TASKS:
    return
  if d.tokenizer not in ('sentencepiece', 'hf'):
    raise ConfigError(f'task={c.task} needs data.tokenizer=sentencepiece '
                      '(one vocabulary with BOS and EOS; hf: an imported '
                      f'checkpoint\'s); got {d.tokenizer}')
  if d.target_len == 1:
    raise ConfigError('data.target_len must be 0 (model.max_len) or at least '
                      '2 (a token and EOS)')
  if c.task == 'span_corruption':
    return
  if d.max_tokens < c.model.max_len:
    raise ConfigError(f'data.max_tokens={d.max_tokens} holds no row of '
                      f'model.max_len={c.model.max_len}; raise it')
  if c.optim.grad_accum_steps != 1:
    raise ConfigError(f'task={c.task} batches by token count; set '
                      'data.max_tokens instead of optim.grad_accum_steps')
  if e.beam_size < 1:
    raise ConfigError(f'eval.beam_size must be at least 1, got {e.beam_size}')
  if e.no_repeat_ngram < 0:
    raise ConfigError('eval.no_repeat_ngram must be >= 0 (0: off), got '
                      f'{e.no_repeat_ngram}')
  if e.alpha < 0:
    raise ConfigError(f'eval.alpha (the length penalty) must be >= 0, got '
                      f'{e.alpha}')
  if not 0.0 <= c.optim.label_smoothing < 1.0:
    raise ConfigError('optim.label_smoothing must be in [0, 1), got '
                      f'{c.optim.label_smoothing}')


def check_span_corruption(c: ml_collections.ConfigDict) -> None:
  """Span corruption reads a text corpus, with a noise density in (0, 1)
  and spans of mean length >= 1 that fit the decoder."""
  d = c.data
  if c.task != 'span_corruption':
    return
  if not 0.0 < d.noise_density < 1.0:
    raise ConfigError('data.noise_density is the share of tokens corrupted, '
                      f'in (0, 1); got {d.noise_density}')
  if not d.mean_span >= 1.0:
    raise ConfigError(f'data.mean_span must be at least 1, got {d.mean_span}')
  if not d.target_len:
    raise ConfigError('task=span_corruption needs data.target_len, the '
                      'decoder\'s width (the spans of a row, their sentinels '
                      'and EOS)')


def check_encoder(c: ml_collections.ConfigDict) -> None:
  """An encoder task (masked_lm, replaced_token, classification) has what
  encoders need."""
  m, d, o = c.model, c.data, c.optim
  if c.task in ('causal_lm', *ENCODER_DECODER_TASKS):  # Their own checks.
    return
  if m.causal:
    raise ConfigError(f'task={c.task} trains a bidirectional encoder; set '
                      'model.causal=False')
  if d.tokenizer not in ('sentencepiece', 'hf', 'word'):
    raise ConfigError(f'task={c.task} needs [CLS], [SEP] and [MASK] tokens: '
                      'set data.tokenizer=sentencepiece or word (or start '
                      'from an imported BERT, whose tokenizer is '
                      'data.tokenizer=hf)')
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
  if m.class_names and len(m.class_names) != m.num_classes:
    raise ConfigError(f'model.class_names names {len(m.class_names)} '
                      f'classes but model.num_classes={m.num_classes}; name '
                      'each class once, or none')
  if o.encoder_lr_scale < 0:
    raise ConfigError('optim.encoder_lr_scale must be >= 0, got '
                      f'{o.encoder_lr_scale}')


def check_model_layers(c: ml_collections.ConfigDict) -> None:
  """Dropout sites, t5 buckets, splash kernel and rotary base are usable."""
  m = c.model
  eval_len = c.eval.max_len or m.max_len
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


def check_data_splits(c: ml_collections.ConfigDict) -> None:
  """Training and evaluation splits are named; extra text is training text."""
  d = c.data
  if not d.train_split or not d.eval_split:
    raise ConfigError('data.train_split and data.eval_split must name splits')
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


def check_optim_schedule(c: ml_collections.ConfigDict) -> None:
  """The learning rate is positive and decays to a floor below it."""
  o = c.optim
  if o.lr <= 0 or o.min_lr < 0 or o.min_lr > o.lr:
    raise ConfigError(f'need 0 <= optim.min_lr <= optim.lr and optim.lr > 0, '
                      f'got lr={o.lr}, min_lr={o.min_lr}')


def check_mesh(c: ml_collections.ConfigDict) -> None:
  """Mesh axis sizes are valid and every sharding rule names mesh axes."""
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


# The value checks in the order validate() runs them (see the module
# docstring): the first that fails is the one reported.
CHECKS = (check_bounds, check_seed, check_optim_moments, check_model_shape,
          check_train, check_data, check_eval, check_model_attention,
          check_task, check_encoder, check_model_layers, check_data_splits,
          check_optim_schedule, check_mesh)
