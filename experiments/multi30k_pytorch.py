"""bentrevett's PyTorch Transformer tutorial on Multi30k English->German, for a
fixed wall-clock, scored with this project's BLEU scorers.

The baseline is the notebook "6 - Attention is All You Need" of
github.com/bentrevett/pytorch-seq2seq (folder legacy/ since the 2024
rewrite): a 3+3-layer post-norm Transformer, width 256, 8 heads, feed-forward
512, dropout 0.1, learned positions, token embeddings scaled by sqrt(256),
Xavier-uniform initialisation, Adam lr 5e-4, gradient clipping at 1, batches
of 128 sentence pairs, plain cross-entropy, 10 epochs, the best-validation-
loss epoch kept, greedy decoding up to 50 tokens.

The notebook is not part of this project and none of its code is copied
here: its model classes (Encoder, EncoderLayer, MultiHeadAttentionLayer,
PositionwiseFeedforwardLayer, Decoder, DecoderLayer, Seq2Seq) and its batched
greedy decoder (translate_sentence_vectorized) are executed from the user's
checkout of the notebook. What it gets from torchtext.legacy (Field,
BucketIterator, the Multi30k download) and spaCy's downloaded models no longer
installs, so this driver re-implements those parts, choice for choice:

  * Tokenization: spaCy's rule-based tokenizer of each language
    (`spacy.blank(lang).tokenizer`, the same rules the notebook's
    `spacy.load('*_core_*_sm').tokenizer` applies), lowercased, with <sos>
    and <eos> added.
  * Vocabulary: torchtext's order (<unk>, <pad>, <sos>, <eos>, then the
    training tokens seen at least twice by falling frequency, ties
    alphabetical), one per language.
  * Batches: torchtext's BucketIterator for training (shuffled pools of 100
    batches, sorted within a pool by source then target length, cut into
    batches of 128, batch order shuffled) and sorted, unshuffled batches for
    evaluation.

Deviations, all forced by the comparison:
  * Direction English->German (the notebook translates German->English), on
    the raw, cased Multi30k files in ../shared/data/multi30k/raw (the
    notebook's torchtext loader read the same raw training and test2016
    files).
  * Training stops at the first batch boundary after `--train-minutes` or
    after `--epochs` epochs, whichever comes first; each finished epoch is
    followed, as in the notebook, by a validation-loss pass whose time counts
    against the budget. The best-validation-loss epoch is then scored (the
    notebook's choice); the model as it stood when training stopped is
    scored as well.
  * Scoring: the greedy outputs (lowercased spaCy tokens) are detokenized
    with Moses's German detokenizer and scored exactly as this project's
    runs are (lm/eval/bleu.py, loaded by path): lowercased tokenized BLEU
    against Multi30k's official tok/ references (the papers' figure), and
    sacreBLEU (cased, 13a) and chrF against the raw references. Since the
    model writes lowercase only, sacreBLEU's cased figure penalises it; the
    lowercased sacreBLEU is stored beside it. The notebook's own figure
    (torchtext's BLEU on spaCy tokens) is stored as `notebook_bleu`.

Run it with a Python that has PyTorch, spaCy, sacrebleu and sacremoses:

  PATH/bin/python experiments/multi30k_pytorch.py \\
      --notebook='CHECKOUT/legacy/6 - Attention is All You Need.ipynb' \\
      --train-minutes=45
"""

from __future__ import annotations

import argparse
import collections
import copy
import importlib.util
import json
import math
import os
import pathlib
import random
import socket
import subprocess
import sys
import time

import numpy as np
import sacrebleu
import sacremoses
import spacy
import torch
from torch import nn

import machine  # experiments/machine.py, beside this script.

REPO = pathlib.Path(__file__).resolve().parents[1]
SPECIALS = ('<unk>', '<pad>', '<sos>', '<eos>')
# The notebook's settings (cells 3, 14, 30, 39, 49 and translate_sentence's
# max_len).
NOTEBOOK_CHOICES = dict(
    seed=1234, batch_size=128, hid_dim=256, enc_layers=3, dec_layers=3,
    heads=8, pf_dim=512, dropout=0.1, lr=0.0005, clip=1.0, epochs=10,
    min_freq=2, max_len=50, optimizer='Adam (torch defaults besides lr)',
    loss='CrossEntropyLoss(ignore_index=pad)', init='xavier_uniform_ on '
    'every weight of 2+ dimensions')
# Multi30k file stems of the splits scored, as lm.data.parallel names them.
SPLITS = {'validation': 'val', 'test': 'test_2016_flickr',
          'test2017': 'test_2017_flickr', 'mscoco2017': 'test_2017_mscoco'}
# The notebook cells this driver runs: the model and the batched decoder.
_CELL_NAMES = ('Encoder', 'EncoderLayer', 'MultiHeadAttentionLayer',
               'PositionwiseFeedforwardLayer', 'Decoder', 'DecoderLayer',
               'Seq2Seq', 'translate_sentence_vectorized')


def _load_module(name: str, path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def notebook_namespace(notebook: pathlib.Path) -> dict:
  """The notebook's model classes and greedy decoder, run from its cells."""
  cells = json.loads(notebook.read_text())['cells']
  namespace = {'torch': torch, 'nn': nn}
  found = set()
  for cell in cells:
    source = ''.join(cell['source'])
    if cell['cell_type'] != 'code':
      continue
    for name in _CELL_NAMES:
      if (source.startswith(f'class {name}(') or
          source.startswith(f'def {name}(')):
        exec(compile(source, f'{notebook.name}:{name}', 'exec'), namespace)
        found.add(name)
  missing = sorted(set(_CELL_NAMES) - found)
  if missing:
    raise SystemExit(f'error: {notebook} defines no {", ".join(missing)}; '
                     'pass legacy/6 - Attention is All You Need.ipynb of a '
                     'bentrevett/pytorch-seq2seq checkout')
  return namespace


class Vocab:
  """torchtext.legacy's Vocab: stoi and itos, specials first."""

  def __init__(self, sentences: list[list[str]], min_freq: int):
    counts = collections.Counter(t for s in sentences for t in s)
    for special in SPECIALS:
      counts.pop(special, None)
    words = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    self.itos = list(SPECIALS) + [w for w, c in words if c >= min_freq]
    self.stoi = collections.defaultdict(
        int, {w: i for i, w in enumerate(self.itos)})  # unknown -> <unk> (0)


class Field:
  """What translate_sentence_vectorized reads of a torchtext Field."""
  init_token, eos_token, pad_token = '<sos>', '<eos>', '<pad>'

  def __init__(self, vocab: Vocab):
    self.vocab = vocab


def tokenizer(lang: str):
  nlp = spacy.blank(lang)
  return lambda text: [t.text.lower() for t in nlp.tokenizer(text)]


def numericalize(tokens: list[str], vocab: Vocab) -> list[int]:
  return [vocab.stoi['<sos>']] + [vocab.stoi[t] for t in tokens] + [
      vocab.stoi['<eos>']]


def pad(rows: list[list[int]], pad_id: int) -> torch.Tensor:
  width = max(len(r) for r in rows)
  return torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])


def train_batches(pairs: list[tuple[list[int], list[int]]], batch_size: int,
                  rng: random.Random):
  """torchtext's BucketIterator order for training: pools of 100 batches
  sorted by length, cut into batches, batch order shuffled."""
  order = list(range(len(pairs)))
  rng.shuffle(order)
  batches = []
  pool = 100 * batch_size
  for start in range(0, len(order), pool):
    chunk = sorted(order[start:start + pool],
                   key=lambda i: (len(pairs[i][0]), len(pairs[i][1])))
    batches += [chunk[j:j + batch_size]
                for j in range(0, len(chunk), batch_size)]
  rng.shuffle(batches)
  return batches


def eval_loss(model, pairs, batch_size, criterion, src_pad, trg_pad) -> float:
  """The notebook's evaluate(): mean over batches of each batch's mean loss."""
  model.eval()
  order = sorted(range(len(pairs)),
                 key=lambda i: (len(pairs[i][0]), len(pairs[i][1])))
  total, n = 0., 0
  with torch.no_grad():
    for j in range(0, len(order), batch_size):
      idx = order[j:j + batch_size]
      src = pad([pairs[i][0] for i in idx], src_pad)
      trg = pad([pairs[i][1] for i in idx], trg_pad)
      output, _ = model(src, trg[:, :-1])
      total += criterion(output.reshape(-1, output.shape[-1]),
                         trg[:, 1:].reshape(-1)).item()
      n += 1
  return total / n


def translate(ns, model, sources: list[list[int]], src_field, trg_field,
              batch_size: int, max_len: int) -> list[list[str]]:
  """The notebook's batched greedy decoder over sorted batches, outputs in
  input order."""
  model.eval()
  order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
  out: list[list[str]] = [[] for _ in sources]
  pad_id = src_field.vocab.stoi['<pad>']
  for j in range(0, len(order), batch_size):
    idx = order[j:j + batch_size]
    src = pad([sources[i] for i in idx], pad_id)
    hyps, _ = ns['translate_sentence_vectorized'](
        src, src_field, trg_field, model, torch.device('cpu'), max_len)
    for i, h in zip(idx, hyps):
      out[i] = h
  return out


def score(bleu_lib, hyp_tokens, raw_refs, tok_refs, spacy_refs) -> dict:
  """This project's scores of detokenized outputs, and the notebook's own."""
  detok = sacremoses.MosesDetokenizer('de')
  hyps = [detok.detokenize(h) for h in hyp_tokens]
  scores = bleu_lib.corpus_scores(hyps, raw_refs)
  scores['tokenized_bleu'] = bleu_lib.tokenized_bleu(hyps, tok_refs, 'de')
  scores['bleu_lowercase'] = float(sacrebleu.metrics.BLEU(
      lowercase=True).corpus_score(hyps, [raw_refs]).score)
  scores['notebook_bleu'] = float(sacrebleu.metrics.BLEU(
      tokenize='none', force=True).corpus_score(
          [' '.join(h) for h in hyp_tokens],
          [[' '.join(r) for r in spacy_refs]]).score)
  scores['sentences'] = len(hyps)
  return scores, hyps


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--notebook', required=True, type=pathlib.Path,
                  help="the checkout's 'legacy/6 - Attention is All You "
                  "Need.ipynb' of github.com/bentrevett/pytorch-seq2seq")
  ap.add_argument('--data-dir', type=pathlib.Path,
                  default=REPO.parent / 'shared' / 'data' / 'multi30k',
                  help='Multi30k with raw/ (gzip) and tok/ (default: '
                  '%(default)s)')
  ap.add_argument('--train-minutes', type=float, default=45.,
                  help='training wall-clock budget, epoch validation passes '
                  'included (default: %(default)s)')
  ap.add_argument('--epochs', type=int, default=0,
                  help='stop after this many epochs (default: 0, the time '
                  'budget only; the notebook trains 10)')
  ap.add_argument('--threads', type=int,
                  default=len(os.sched_getaffinity(0)),
                  help='torch.set_num_threads (default: all cores, '
                  '%(default)s)')
  ap.add_argument('--seed', type=int, default=NOTEBOOK_CHOICES['seed'])
  ap.add_argument('--out', type=pathlib.Path,
                  default=REPO / 'experiments' / 'results' /
                  'multi30k_pytorch.json')
  args = ap.parse_args()
  if not args.notebook.is_file():
    ap.error(f'{args.notebook} is not a file; pass the notebook of a '
             'bentrevett/pytorch-seq2seq checkout')
  for d in ('raw', 'tok'):
    if not (args.data_dir / d).is_dir():
      ap.error(f'{args.data_dir} has no {d}/ folder; pass --data-dir='
               'Multi30k with raw/ and tok/')
  c = argparse.Namespace(**NOTEBOOK_CHOICES)
  ns = notebook_namespace(args.notebook)
  bleu_lib = _load_module('bleu', REPO / 'lm' / 'eval' / 'bleu.py')
  torch.set_num_threads(args.threads)
  random.seed(args.seed)
  np.random.seed(args.seed)
  torch.manual_seed(args.seed)
  rng = random.Random(args.seed)

  t_start = time.perf_counter()
  tok_en, tok_de = tokenizer('en'), tokenizer('de')
  raw = lambda stem, lang: bleu_lib.read_lines(
      args.data_dir / 'raw' / f'{stem}.{lang}.gz')
  train_src = [tok_en(s) for s in raw('train', 'en')]
  train_trg = [tok_de(s) for s in raw('train', 'de')]
  src_vocab, trg_vocab = Vocab(train_src, c.min_freq), Vocab(train_trg,
                                                              c.min_freq)
  src_field, trg_field = Field(src_vocab), Field(trg_vocab)
  train = [(numericalize(s, src_vocab), numericalize(t, trg_vocab))
           for s, t in zip(train_src, train_trg)]
  splits = {}
  for name, stem in SPLITS.items():
    src_raw, trg_raw = raw(stem, 'en'), raw(stem, 'de')
    tok_path = args.data_dir / 'tok' / f'{stem}.lc.norm.tok.de'
    trg_tok = [tok_de(s) for s in trg_raw]
    splits[name] = dict(
        sources=[numericalize(tok_en(s), src_vocab) for s in src_raw],
        pairs=[(numericalize(tok_en(s), src_vocab), numericalize(t, trg_vocab))
               for s, t in zip(src_raw, trg_tok)],
        raw_refs=trg_raw, spacy_refs=trg_tok,
        tok_refs=bleu_lib.read_lines(tok_path))
  src_pad, trg_pad = src_vocab.stoi['<pad>'], trg_vocab.stoi['<pad>']
  enc = ns['Encoder'](len(src_vocab.itos), c.hid_dim, c.enc_layers, c.heads,
                      c.pf_dim, c.dropout, torch.device('cpu'))
  dec = ns['Decoder'](len(trg_vocab.itos), c.hid_dim, c.dec_layers, c.heads,
                      c.pf_dim, c.dropout, torch.device('cpu'))
  model = ns['Seq2Seq'](enc, dec, src_pad, trg_pad, torch.device('cpu'))

  def init(m):
    if hasattr(m, 'weight') and m.weight.dim() > 1:
      nn.init.xavier_uniform_(m.weight.data)
  model.apply(init)
  params = sum(p.numel() for p in model.parameters() if p.requires_grad)
  optimizer = torch.optim.Adam(model.parameters(), lr=c.lr)
  criterion = nn.CrossEntropyLoss(ignore_index=trg_pad)
  setup_seconds = time.perf_counter() - t_start
  nbatches = math.ceil(len(train) / c.batch_size)
  print(f'vocab en {len(src_vocab.itos)}, de {len(trg_vocab.itos)}; '
        f'{params:,} parameters; {nbatches} batches of {c.batch_size} pairs '
        f'an epoch; set up in {setup_seconds:.1f}s; training for '
        f'{args.train_minutes:g} min on {args.threads} threads', flush=True)

  budget = args.train_minutes * 60
  t0 = time.perf_counter()
  epochs, steps, tokens, out_of_time = 0, 0, 0, False
  best_val, best_state, best_epoch, epoch_vals = math.inf, None, 0, []
  while not out_of_time and (not args.epochs or epochs < args.epochs):
    model.train()
    interval_loss, interval_n = 0., 0
    for b, idx in enumerate(train_batches(train, c.batch_size, rng)):
      if time.perf_counter() - t0 >= budget:
        out_of_time = True
        break
      src = pad([train[i][0] for i in idx], src_pad)
      trg = pad([train[i][1] for i in idx], trg_pad)
      optimizer.zero_grad()
      output, _ = model(src, trg[:, :-1])
      loss = criterion(output.reshape(-1, output.shape[-1]),
                       trg[:, 1:].reshape(-1))
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), c.clip)
      optimizer.step()
      steps += 1
      tokens += int((trg[:, 1:] != trg_pad).sum()) + int(
          (src != src_pad).sum())
      interval_loss += loss.item()
      interval_n += 1
      if (b + 1) % 50 == 0:
        elapsed = time.perf_counter() - t0
        print(f'| epoch {epochs + 1:3d} | {b + 1:4d}/{nbatches} batches | '
              f'loss {interval_loss / interval_n:.3f} | {steps / elapsed:.2f} '
              f'steps/s | elapsed {elapsed:7.1f}s', flush=True)
        interval_loss, interval_n = 0., 0
    if out_of_time:
      break
    epochs += 1
    val = eval_loss(model, splits['validation']['pairs'], c.batch_size,
                    criterion, src_pad, trg_pad)
    epoch_vals.append(val)
    print(f'| end of epoch {epochs:3d} | elapsed {time.perf_counter() - t0:7.1f}'
          f's | valid loss {val:.3f} | valid ppl {math.exp(val):7.3f}',
          flush=True)
    if val < best_val:
      best_val, best_epoch = val, epochs
      best_state = copy.deepcopy(model.state_dict())
  train_seconds = time.perf_counter() - t0

  results = {}
  eval_start = time.perf_counter()
  candidates = [('last', model.state_dict() if best_state is None else
                 copy.deepcopy(model.state_dict()))]
  if best_state is not None:
    candidates.insert(0, ('best_epoch', best_state))
  for which, state in candidates:
    model.load_state_dict(state)
    results[which] = {}
    for name, split in splits.items():
      start = time.perf_counter()
      hyp_tokens = translate(ns, model, split['sources'], src_field,
                             trg_field, c.batch_size, c.max_len)
      scores, hyps = score(bleu_lib, hyp_tokens, split['raw_refs'],
                           split['tok_refs'], split['spacy_refs'])
      scores['seconds'] = time.perf_counter() - start
      results[which][name] = scores
      print(f'{which} {name}: tokenized BLEU {scores["tokenized_bleu"]:.2f}, '
            f'sacreBLEU {scores["bleu"]:.2f} (lowercased '
            f'{scores["bleu_lowercase"]:.2f}), chrF {scores["chrf"]:.2f}, '
            f'notebook BLEU {scores["notebook_bleu"]:.2f} '
            f'({scores["seconds"]:.0f}s)', flush=True)
      if which == candidates[0][0] and name == 'test':
        print('  e.g. ' + ' | '.join(hyps[:3]), flush=True)
  eval_seconds = time.perf_counter() - eval_start
  scored_first = candidates[0][0]
  result = {
      'command': ' '.join([sys.executable] + sys.argv),
      'notebook': str(args.notebook),
      'notebook_commit': subprocess.run(
          ['git', '-C', str(args.notebook.resolve().parent), 'rev-parse',
           'HEAD'], capture_output=True, text=True).stdout.strip() or
      'unknown (not a git checkout)',
      'torch_version': torch.__version__,
      'spacy_version': spacy.__version__,
      'threads': args.threads,
      'seed': args.seed,
      'train_minutes': args.train_minutes,
      'settings': NOTEBOOK_CHOICES,
      'parameters': params,
      'vocab': {'en': len(src_vocab.itos), 'de': len(trg_vocab.itos)},
      'setup_seconds': setup_seconds,
      'train_seconds': train_seconds,
      'eval_seconds': eval_seconds,
      # Setup, training and scoring of the checkpoint the notebook keeps
      # (the 'last' model's scoring is extra).
      'wall_seconds': setup_seconds + train_seconds + sum(
          s['seconds'] for s in results[scored_first].values()),
      'steps': steps,
      'steps_per_sec': steps / train_seconds,
      'tokens_per_sec': tokens / train_seconds,
      'epochs_completed': epochs,
      'epoch_val_losses': epoch_vals,
      'best_epoch': best_epoch,
      'scores': results,
      'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
      'hostname': socket.gethostname(),
      'cpu': machine.cpu_model(),
      'cores': os.cpu_count(),
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2) + '\n')
  print(f'wrote {args.out}', flush=True)


if __name__ == '__main__':
  main()
