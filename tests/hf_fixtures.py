"""Small random Hugging Face checkpoints, built locally (nothing downloaded):
a byte-level BPE or WordPiece tokenizer trained on Tiny Shakespeare and a
`transformers` model of a given config, saved with `save_pretrained`."""

import os

from conftest import REPO
import numpy as np

TEXT = (REPO / 'lm' / 'assets' / 'tinyshakespeare.txt').read_text()[:100_000]
BERT_SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']


def gpt2_tokenizer(vocab_size: int):
  import tokenizers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  tok = tokenizers.ByteLevelBPETokenizer()
  tok.train_from_iterator([TEXT], vocab_size=vocab_size, show_progress=False,
                          special_tokens=['<|endoftext|>'])
  assert tok.get_vocab_size() == vocab_size
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok._tokenizer, eos_token='<|endoftext|>',  # pylint: disable=protected-access
      bos_token='<|endoftext|>', unk_token='<|endoftext|>')


def bert_tokenizer(vocab_size: int):
  import tokenizers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  tok = tokenizers.BertWordPieceTokenizer(lowercase=True)
  tok.train_from_iterator([TEXT], vocab_size=vocab_size, show_progress=False,
                          special_tokens=BERT_SPECIALS)
  return transformers.BertTokenizerFast(tokenizer_object=tok._tokenizer,  # pylint: disable=protected-access
                                        do_lower_case=True)


def save(model, tokenizer, folder) -> str:
  """Saves both into `folder` (created); returns it as a string."""
  os.makedirs(folder, exist_ok=True)
  tokenizer.save_pretrained(folder)
  model.save_pretrained(folder)
  return str(folder)


def _perturbed(model):
  """`model` with noise on its norms and biases, which transformers
  initialises to 1 and 0: a mapping that swapped them would pass unseen."""
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 1:
        p.add_(torch.randn_like(p) * 0.1)
  return model


def gpt2(folder, *, vocab_size=1000, seed=0, **config):
  """A random GPT2LMHeadModel (eval mode) saved in `folder`; config defaults:
  2 layers, 64 wide, 4 heads, 64 positions."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  tok = gpt2_tokenizer(vocab_size)
  torch.manual_seed(seed)
  eos = tok.convert_tokens_to_ids('<|endoftext|>')
  cfg = transformers.GPT2Config(**{
      'n_layer': 2, 'n_embd': 64, 'n_head': 4, 'n_positions': 64,
      'vocab_size': vocab_size, 'bos_token_id': eos, 'eos_token_id': eos,
      **config})
  model = _perturbed(transformers.GPT2LMHeadModel(cfg).eval())
  if not cfg.tie_word_embeddings:  # Make the untied head differ visibly.
    with torch.no_grad():
      model.lm_head.weight.normal_(0, 0.05)
  return model, tok, save(model, tok, folder)


def bert(folder, arch='BertForMaskedLM', *, vocab_size=600, seed=0,
         **config):
  """A random BERT of class `arch` (eval mode) saved in `folder`; defaults:
  2 layers, 64 wide, 4 heads, MLP 96, 40 positions."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  tok = bert_tokenizer(vocab_size)
  torch.manual_seed(seed)
  cfg = transformers.BertConfig(**{
      'num_hidden_layers': 2, 'hidden_size': 64, 'num_attention_heads': 4,
      'intermediate_size': 96, 'max_position_embeddings': 40,
      'vocab_size': len(tok), **config})
  model = _perturbed(getattr(transformers, arch)(cfg).eval())
  return model, tok, save(model, tok, folder)


def torch_logits(model, ids, **kw) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    return model(torch.as_tensor(np.asarray(ids)), **{
        k: torch.as_tensor(np.asarray(v)) for k, v in kw.items()}
                 ).logits.numpy()


# Special tokens in id order, and (pad, eos, decoder start) of each
# encoder-decoder class.
SEQ2SEQ_SPECIALS = {'T5ForConditionalGeneration': ['<pad>', '</s>', '<unk>'],
                    'BartForConditionalGeneration': ['<s>', '<pad>', '</s>',
                                                     '<unk>'],
                    'MarianMTModel': ['</s>', '<unk>', '<pad>']}


def seq2seq_tokenizer(arch: str, vocab_size: int):
  import tokenizers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  specials = SEQ2SEQ_SPECIALS[arch]
  tok = tokenizers.ByteLevelBPETokenizer()
  tok.train_from_iterator([TEXT], vocab_size=vocab_size, show_progress=False,
                          special_tokens=specials)
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok._tokenizer, pad_token='<pad>', eos_token='</s>',  # pylint: disable=protected-access
      unk_token='<unk>')


def seq2seq(folder, arch: str, *, vocab_size=500, seed=0, **config):
  """A random T5, BART or Marian model (eval mode) saved in `folder`, its
  tokenizer's specials as the class has them; defaults: 2+2 layers, 32
  wide, 4 heads, MLP 48, 40 positions. Norms and biases perturbed, an
  untied head (T5 v1.1) drawn apart."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  tok = seq2seq_tokenizer(arch, vocab_size)
  torch.manual_seed(seed)
  ids = {t: tok.convert_tokens_to_ids(t) for t in ('<pad>', '</s>')}
  tokens = {'pad_token_id': ids['<pad>'], 'eos_token_id': ids['</s>']}
  if arch == 'T5ForConditionalGeneration':
    cfg = transformers.T5Config(**{
        'num_layers': 2, 'num_decoder_layers': 2, 'd_model': 32, 'd_kv': 8,
        'num_heads': 4, 'd_ff': 48, 'vocab_size': vocab_size,
        'decoder_start_token_id': ids['<pad>'], **tokens, **config})
  else:
    start = ids['</s>'] if arch == 'BartForConditionalGeneration' else (
        ids['<pad>'])
    cls = (transformers.BartConfig if arch == 'BartForConditionalGeneration'
           else transformers.MarianConfig)
    cfg = cls(**{
        'encoder_layers': 2, 'decoder_layers': 2, 'd_model': 32,
        'encoder_attention_heads': 4, 'decoder_attention_heads': 4,
        'encoder_ffn_dim': 48, 'decoder_ffn_dim': 48,
        'max_position_embeddings': 40, 'vocab_size': vocab_size,
        'decoder_start_token_id': start, 'forced_eos_token_id': None,
        **tokens, **config})
  model = getattr(transformers, arch)(cfg).eval()
  with torch.no_grad():  # Norms and biases away from 1 and 0.
    for name, p in model.named_parameters():
      if p.ndim == 1 and 'embed_positions' not in name:
        p.add_(torch.randn_like(p) * 0.1)
  if arch == 'T5ForConditionalGeneration' and config.get(
      'tie_word_embeddings') is False:
    return _untied_t5(model, tok, folder)
  return model, tok, save(model, tok, folder)


def _untied_t5(model, tok, folder):
  """A T5 v1.1-style checkpoint: its own lm_head (transformers 5 builds T5
  tied; it reads a checkpoint whose head differs as untied)."""
  import json  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  save(model, tok, folder)
  path = os.path.join(folder, 'model.safetensors')
  tensors = load_file(path)
  rng = np.random.default_rng(1)
  tensors['lm_head.weight'] = rng.normal(
      0, 0.05, tensors['shared.weight'].shape).astype(np.float32)
  save_file(tensors, path, metadata={'format': 'pt'})
  config_path = os.path.join(folder, 'config.json')
  with open(config_path) as f:
    config = json.load(f)
  config.update(tie_word_embeddings=False, scale_decoder_outputs=False)
  with open(config_path, 'w') as f:
    json.dump(config, f)
  model = transformers.T5ForConditionalGeneration.from_pretrained(
      folder).eval()
  assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
  return model, tok, str(folder)


def reversal_batch(rng, size: int, vocab: int, first: int, length=(3, 8)):
  """Random sources of ids in [first, first + 12) and their reversal, as
  (sources, targets) lists."""
  sources = [list(rng.integers(first, first + 12, rng.integers(*length)))
             for _ in range(size)]
  del vocab
  return sources, [s[::-1] for s in sources]


def trained_seq2seq(folder, arch: str, steps: int = 800, lr: float = 1e-3,
                    **config):
  """`seq2seq`'s model trained with Adam to reverse short id sequences (a
  few hundred steps: its scores are then far from ties), saved in `folder`.
  Returns (model, tokenizer, folder)."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(1)  # Tiny matrices: threads only contend.
  model, tok, _ = seq2seq(str(folder) + '_init', arch, **config)
  pad, eos = tok.pad_token_id, tok.eos_token_id
  start = model.config.decoder_start_token_id
  first = len(SEQ2SEQ_SPECIALS[arch]) + 5
  rng = np.random.default_rng(0)
  model.train()
  opt = torch.optim.Adam(model.parameters(), lr=lr)
  for _ in range(steps):
    sources, targets = reversal_batch(rng, 32, 0, first)
    width = max(map(len, sources)) + 1
    src = torch.full((32, width), pad)
    mask = torch.zeros((32, width), dtype=torch.long)
    dec_in = torch.full((32, width), pad)
    labels = torch.full((32, width), -100)
    for r, (s, t) in enumerate(zip(sources, targets)):
      src[r, :len(s) + 1] = torch.tensor(s + [eos])
      mask[r, :len(s) + 1] = 1
      dec_in[r, :len(t) + 1] = torch.tensor([start] + t)
      labels[r, :len(t) + 1] = torch.tensor(t + [eos])
    loss = model(input_ids=src, attention_mask=mask, decoder_input_ids=dec_in,
                 labels=labels).loss
    opt.zero_grad()
    loss.backward()
    opt.step()
  model.eval()
  return model, tok, save(model, tok, folder)
