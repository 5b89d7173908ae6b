"""The defaults of each config section, one function per section.

`lm.config.default()` joins them, in this order, into the full config:
`top_level_defaults()` then the sections data, model, optim, train, eval,
checkpoint, compile and mesh. The comment beside a field documents it; the
checks of each field are in `lm.config_checks`.

The lowest layer with lm.config: it imports no other lm module.
"""

import ml_collections


def top_level_defaults() -> ml_collections.ConfigDict:
  """The top-level fields: the seed, the task and where the run starts from."""
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
  return c


def data_defaults() -> ml_collections.ConfigDict:
  """The `data` section: the corpus, its splits, tokenizer and batching."""
  c = ml_collections.ConfigDict()
  c.name = 'tiny_shakespeare'  # A TFDS builder in lm/data/builders.py.
  c.config = ''  # The builder's config ('' its first), e.g. 'raw'.
  # A local copy to prepare from (a folder; a file or folder for
  # text_files); '' downloads it, or for tiny_shakespeare reads the copy
  # embedded in the package.
  c.path = ''
  c.tfds_dir = ''  # Where prepared ArrayRecords go ('' TFDS's default).
  c.train_split = 'train'  # TFDS split expressions.
  c.eval_split = 'validation'
  c.test_split = 'test'  # '' or a split the corpus lacks: no test.
  c.val_fraction = 0.1  # Held out of train when there is no validation.
  c.pack = 'stream'  # 'stream' windows or 'segments' packed documents.
  c.tokenizer = 'char'
  c.vocab_size = 0  # SentencePiece: required; word: cap (0 keeps all).
  c.spm_model_type = 'bpe'
  c.normalize = 'none'  # Unicode normalisation of every text.
  c.lowercase = False
  c.remove_stopwords = False  # Classification only; refused for LMs.
  # masked_lm, replaced_token: tokens chosen (80% [MASK], 10/10).
  c.mask_rate = 0.15
  c.whole_word_mask = False  # Masking every piece of a chosen word.
  # Language modelling: another corpus (a data.name) whose `extra_split`
  # texts, labels dropped, follow the training split's in the training
  # stream and train the tokenizer, e.g. sst2's training sentences for an
  # encoder later fine-tuned on them. Never an evaluation split.
  c.extra_name = ''
  c.extra_path = ''  # Its local copy, as data.path.
  c.extra_split = 'train'
  # classification: the split that chooses the best step and early stopping:
  # 'heldout', this share of the training sentences held out of training
  # (whole sentences, seeded; dev is then scored once, at the end), or
  # 'validation' (dev itself, which flatters the dev figure).
  c.selection_split = 'heldout'
  c.selection_fraction = 0.05
  # classification: row length, [CLS] and [SEP] included (longer sentences
  # are cut, and counted); 0: model.max_len.
  c.seq_len = 0
  # classification: batch sentences of similar length and cut each batch's
  # rows to its longest, rounded up to a multiple of this (fewer [PAD]
  # positions computed); 0: every row data.seq_len long.
  c.length_bucket = 0
  # classification: word dropout, the share of training pieces read as
  # [MASK] (each independently; [CLS], [SEP] and [PAD] never); 0: off.
  c.token_dropout = 0.0
  # translation: tokens a batch holds (fairseq's max_tokens): a batch of row
  # width w has max_tokens // w pairs; widths are multiples of
  # data.length_bucket (0: 8) up to model.max_len.
  c.max_tokens = 4096
  # translation, summarization: the decoder rows' width (targets are cut to
  # it), beside model.max_len for the source; 0: each batch's source width.
  # span_corruption: the targets' width (required).
  c.target_len = 0
  # span_corruption: the share of tokens corrupted and the mean length of
  # the corrupted spans (T5: 0.15 and 3).
  c.noise_density = 0.15
  c.mean_span = 3.0
  c.batch_size = 12  # Global batch, summed over all devices and hosts.
  c.prefetch = 2  # Batches prepared ahead by grain's threads.
  # Filters of the training split (lm.data.filters, docs/data_quality.md),
  # applied before the tokenizer is trained; evaluation splits untouched.
  c.decontaminate = False  # Drop documents sharing an n-gram with eval text.
  c.decontaminate_ngram = 13  # Words (the GPT-3 paper's analysis).
  c.dedup = 'none'  # 'exact' or 'near' duplicates dropped, the first kept.
  c.dedup_threshold = 0.8  # near: Jaccard of the 5-word shingle sets.
  c.scrub_pii = False  # E-mail, phone, IP and card numbers -> placeholders.
  c.filtered = ''  # Written by the run: what the filters changed (JSON).
  return c


def model_defaults() -> ml_collections.ConfigDict:
  """The `model` section: the network's shape, layers and numerics."""
  c = ml_collections.ConfigDict()
  c.vocab_size = 0  # 0: taken from the tokenizer built from the data.
  c.num_layers = 4
  c.num_heads = 4
  c.embed_dim = 128
  c.mlp_dim = 0  # 0: 4 * embed_dim.
  c.max_len = 64  # Context length (nanoGPT's block_size).
  c.dropout = 0.0
  # Comma-separated sites where model.dropout applies: embed, attention
  # (probabilities), residual (each branch's output), mlp (hidden layer).
  c.dropout_sites = 'embed,attention,residual'
  c.scaled_init = True  # Residual projections: 0.02 / sqrt(2 layers).
  c.use_bias = True
  c.dtype = 'auto'  # Compute; auto: float32 on CPU, else bfloat16.
  c.param_dtype = 'float32'
  c.position = 'learned'  # none, learned, sinusoidal, rope, alibi, t5.
  # sinusoidal: sin at even and cos at odd features (interleaved), or all
  # sines then all cosines (concat: tensor2tensor, fairseq, Marian).
  c.sinusoidal_layout = 'interleaved'
  # Each attention head's width; 0: embed_dim / num_heads (T5 sets its own).
  c.head_width = 0
  c.rope_base = 10000.0
  # t5: a learned per-head bias for each of this many distance buckets (half
  # exact, half log-spaced up to relative_max_distance), shared by layers.
  c.relative_buckets = 32
  c.relative_max_distance = 128
  c.num_kv_heads = 0  # 0: num_heads (MHA); 1: MQA; between: GQA.
  c.norm = 'layernorm'  # or rmsnorm.
  c.norm_position = 'pre'  # pre (GPT-2) or post (original).
  # gelu, gelu_tanh (GPT-2's approximation), relu, relu2 (squared), silu;
  # gated: swiglu (silu), geglu (gelu_tanh; T5 v1.1's gated-gelu).
  c.activation = 'gelu'
  c.norm_eps = 1e-5  # Every norm's epsilon (BERT: 1e-12).
  c.embed_norm = False  # A LayerNorm on the summed embeddings (BERT).
  c.tie_embeddings = True  # Output head = token embedding.
  # A GloVe/word2vec text file whose vectors start the token embedding of a
  # fresh run (word tokenizer; vectors as wide as embed_dim).
  c.init_embeddings = ''
  # > 0: the vectors are scaled (one factor) to this standard deviation, the
  # table's own init scale (0.02), before training; 0: as in the file.
  c.init_embeddings_std = 0.0
  c.causal = True  # False: bidirectional attention (encoders).
  c.attention_window = 0  # > 0: sliding window of this many positions.
  c.qk_norm = False  # RMSNorm on each head's queries and keys.
  # reference: einsums + softmax (attention dropout here only); xla/cudnn:
  # jax.nn.dot_product_attention with that implementation (cudnn: fused, GPU);
  # splash: the Pallas flash-attention kernel for TPU.
  c.attention_impl = 'reference'
  # Layers stacked into one array per parameter and jax.lax.scan'ed: compile
  # time flat in depth (checkpoints keep the layout they were made with).
  c.scan_layers = False
  c.remat = 'none'  # full or dots: recompute activations (less memory).
  c.type_vocab_size = 0  # > 0: token-type embeddings (BERT: 2).
  c.num_classes = 2  # classification: the classifier's outputs.
  # classification: the classes' names, in order (an imported Hugging Face
  # classifier's id2label, written back on export); () names them LABEL_i.
  c.class_names = ()
  # classification: what the classifier reads: the [CLS] state (BERT) or the
  # mean of the real tokens' states (padding excluded). On SST-2 mean pooling
  # learned faster and then overfitted, ending below [CLS] (BENCHMARKS.md).
  c.pooling = 'cls'
  # replaced_token: the generator's heads (so width and MLP) as a share of
  # the encoder's, same depth (ELECTRA: 1/4 to 1/2 works best).
  c.generator_fraction = 0.25
  # Token embeddings drawn with std 1/sqrt(embed_dim) and multiplied by
  # sqrt(embed_dim) when read (the original Transformer's recipe): a
  # sinusoidal position table then adds at the embeddings' scale.
  c.scale_embeddings = False
  # encoder_decoder: the decoder's depth (num_layers is the encoder's); 0:
  # num_layers.
  c.decoder_layers = 0
  # encoder_decoder: encoder and decoder read one token embedding (a joint
  # vocabulary); false: each its own.
  c.share_embeddings = True
  return c


def optim_defaults() -> ml_collections.ConfigDict:
  """The `optim` section: the optimizer, its schedule and the loss weights."""
  c = ml_collections.ConfigDict()
  c.name = 'adamw'
  c.lr = 1e-3
  c.min_lr = 1e-4
  c.warmup_steps = 100
  c.decay_steps = 0  # 0: decay over train.num_steps.
  # After warmup: cosine (to min_lr over decay_steps, then flat) or
  # inverse_sqrt (lr * sqrt(warmup_steps / step): fairseq's, for
  # Transformers trained from scratch; min_lr and decay_steps unused).
  c.schedule = 'cosine'
  c.b1 = 0.9
  c.b2 = 0.99
  c.eps = 1e-8
  c.momentum = 0.9  # SGD only.
  c.weight_decay = 0.1
  c.grad_clip = 1.0  # Global-norm clip; 0 turns it off.
  c.grad_accum_steps = 1
  # Optimizer state (Adam's moments, SGD momentum) kept in bfloat16 halves
  # its memory; updates are still computed in float32.
  c.state_dtype = 'float32'
  # Never update the token, position and type embeddings (every task, every
  # table: an encoder-decoder's both; a tied output layer with them), or
  # train them at this fraction of the learning rate instead; fine-tuning:
  # the pretrained encoder's learning rate as a fraction of the head's.
  c.freeze_embeddings = False
  c.embedding_lr_scale = 1.0
  # The tables those two act on: 'all' (token, position and type) or
  # 'tokens' (the token table alone: word vectors frozen, positions learned).
  c.embedding_tables = 'all'
  c.encoder_lr_scale = 1.0
  # Layer-wise decay (ELECTRA's 0.8): each encoder block at this times the
  # rate of the one above it, the embeddings one step below the lowest.
  c.layer_lr_decay = 1.0
  # replaced_token: loss = generator masked-LM loss + this x the
  # discriminator's mean binary cross-entropy over the tokens (ELECTRA: 50).
  c.detection_weight = 50.0
  # translation: label smoothing of the target tokens' cross-entropy (0.1 in
  # the original Transformer); evaluation reports the unsmoothed loss.
  c.label_smoothing = 0.0
  return c


def train_defaults() -> ml_collections.ConfigDict:
  """The `train` section: run length, logging, evaluation and averaging."""
  c = ml_collections.ConfigDict()
  c.num_steps = 2000
  c.log_every = 10
  c.eval_every = 250
  c.eval_batches = 20
  # A non-finite loss or gradient: its update is always skipped; 'stop' then
  # ends the run naming the step and leaf, 'skip' counts it and goes on.
  c.nonfinite = 'stop'
  # Under 'skip': stop as 'stop' does once this many updates in a row were
  # skipped (seen where the host syncs: log and checkpoint steps); 0: never.
  c.nonfinite_limit = 50
  # > 0: stop after this many evaluations without a better eval metric
  # (classification: accuracy; else loss); the best step is then evaluated.
  c.early_stopping = 0
  # > 0: also keep an exponential moving average of the parameters,
  # ema <- d * ema + (1 - d) * params after every step (Polyak averaging).
  # Evaluations, the best step, sampling, exports and init_from then use it.
  # It is kept in float32, sharded as the parameters (one more copy of them).
  c.ema_decay = 0.0
  return c


def eval_defaults() -> ml_collections.ConfigDict:
  """The `eval` section: the final evaluation's splits and context."""
  c = ml_collections.ConfigDict()
  c.final = True  # Whole validation and test splits after training.
  c.stride = 0  # Sliding-window stride; 0: max_len (no overlap).
  c.batch_size = 0  # 0: data.batch_size.
  c.max_len = 0  # Final-evaluation context; 0: model.max_len.
  # > 0: score only each split's first N tokens (quick studies; token loss
  # and perplexity only). 0: whole splits.
  c.max_tokens = 0
  # translation: the final evaluation's beam search: beam width (1: greedy),
  # length-penalty exponent and convention (gnmt: ((5 + len) / 6)^alpha;
  # hf: len^alpha).
  c.beam_size = 4
  c.alpha = 0.6
  c.penalty = 'gnmt'
  # translation, summarization: no n-gram of this size twice in an output
  # (Hugging Face's no_repeat_ngram_size; 3 in BART's summarization); 0: off.
  c.no_repeat_ngram = 0
  # translation: more splits of the corpus the final evaluation translates
  # (comma-separated; Multi30k: test2017, mscoco2017, test2018).
  c.extra_splits = ''
  return c


def checkpoint_defaults() -> ml_collections.ConfigDict:
  """The `checkpoint` section: how often, how many, how restored."""
  c = ml_collections.ConfigDict()
  c.every = 250
  c.max_to_keep = 2  # The latest N, and the best by eval loss.
  c.async_save = True
  # A corrupted newest checkpoint (every file's size and SHA-256 are checked
  # on restore) is an error; true: move it to WORKDIR/corrupt_checkpoints and
  # resume from the newest intact one.
  c.fallback = False
  # A step without manifest.json cannot be verified: refused (or, with
  # fallback, set aside) unless this trusts it.
  c.trust_unverified = False
  return c


def compile_defaults() -> ml_collections.ConfigDict:
  """The `compile` section: XLA flags and the compilation cache."""
  c = ml_collections.ConfigDict()
  # Persistent compilation cache ('' off; e.g. ~/.cache/lm/jax, or a bucket
  # all pod workers share): restarts load the compiled step.
  c.cache_dir = ''
  c.cache_min_seconds = 1.0  # Cache only steps this slow to compile.
  c.gpu_flags = True  # XLA_FLAGS that help on NVIDIA GPUs.
  return c


def mesh_defaults() -> ml_collections.ConfigDict:
  """The `mesh` section: device-mesh axis sizes and the sharding rules."""
  c = ml_collections.ConfigDict()
  c.data = -1  # -1: all devices the other axes leave.
  c.fsdp = 1
  c.tensor = 1
  # Multi-slice (TPU slices joined by the data-center network) or multi-node
  # GPU: how many slices (nodes) each axis spans. The sizes above are then
  # per slice, and an axis's whole size is the product. 1: one slice.
  c.dcn_data = 1
  c.dcn_fsdp = 1
  c.dcn_tensor = 1
  # Logical axis -> mesh axes. Parameters and activations name logical axes;
  # this table alone decides how they are laid out on the mesh.
  c.rules = (
      ('batch', ('data', 'fsdp')),
      ('vocab', 'tensor'),
      ('embed', 'fsdp'),
      ('heads', 'tensor'),
      ('mlp', 'tensor'),
  )
  return c
