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
