"""PyTorch's word_language_model Transformer on WikiText-2, for a fixed time.

The baseline is the official example in github.com/pytorch/examples (folder
word_language_model), run as

  python main.py --model Transformer --use-optimizer --lr 0.001

with every other flag at its default, on the CPU. That script trains in whole
epochs (about 24 minutes each on a 2-core machine) and prints nothing until
one ends, so this driver trains for a wall-clock budget instead and then
measures validation and test perplexity of the model at that point.

The example is not part of this project and none of its code is copied here:
its own modules (data.py for the corpus, model.py for TransformerModel) are
imported from a user's checkout, and main.py's training loop is re-implemented
below, choice for choice (see `_MAIN_PY_CHOICES`). Run it with a Python that
has PyTorch:

  PATH/bin/python experiments/word_language_model.py \
      --examples-dir=PATH/examples/word_language_model --minutes=20

Deviations from main.py, all forced by the time budget or harmless:
  * Training stops at the first batch boundary after `--minutes` of training
    (the clock starts at the first batch; loading the corpus and building the
    model are timed separately). An epoch that ends before the budget is
    followed, as in main.py, by a validation pass (its time counts against
    the budget, since main.py spends it too, but not in tokens/s) and the next
    epoch.
  * The reported val/test figures are those of the model when the budget ran
    out. main.py instead tests the best-validation checkpoint saved at epoch
    ends; when at least one epoch completed, that figure is reported as well
    under `best_epoch_checkpoint` (the checkpoint is kept in memory, not in
    model.pt).
  * main.py's `lr /= 4` on a validation plateau only changes its hand-written
    SGD update; with --use-optimizer AdamW's learning rate never changes, so
    nothing is annealed here either.
  * The progress line's loss is the mean over the batches since the previous
    line (main.py divides the sum by 200 even for the first 201 batches), and
    it also shows tokens/s and elapsed time.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import math
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

import machine  # experiments/machine.py, beside this script.

REPO = pathlib.Path(__file__).resolve().parents[1]

# main.py's settings for `--model Transformer --use-optimizer --lr 0.001` (the
# rest are its argparse defaults), and its hard-coded evaluation batch size.
_MAIN_PY_CHOICES = dict(
    emsize=200, nhid=200, nlayers=2, nhead=2, dropout=0.2, lr=0.001,
    clip=0.25, batch_size=20, bptt=35, eval_batch_size=10, log_interval=200,
    optimizer='AdamW (torch defaults besides lr)', loss='NLLLoss on '
    'log_softmax outputs, mean over tokens')
_MAIN_PY_EQUIVALENT = ('python main.py --model Transformer --use-optimizer '
                       '--lr 0.001 --data DATA_DIR')
# Git blob id of the main.py this loop was written against (pytorch/examples
# commit 77f55b912142e11fcfdf5b530231fb9c52f181e8).
_MAIN_PY_BLOB = '581b17cecd7d8008387c89f8e4b708dd33d88d01'


def _git_blob_id(path: pathlib.Path) -> str:
  """The id `git hash-object` gives a file: ties it to a tree in the repo."""
  content = path.read_bytes()
  return hashlib.sha1(b'blob %d\0' % len(content) + content).hexdigest()


def _load_module(name: str, path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _examples_commit(examples_dir: pathlib.Path, given: str | None) -> str:
  if given:
    return given
  try:
    return subprocess.run(['git', '-C', str(examples_dir), 'rev-parse', 'HEAD'],
                          capture_output=True, text=True,
                          check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown (not a git checkout; see examples_files blob ids)'


def _corpus_dir(data_dir: pathlib.Path, tmp: str) -> pathlib.Path:
  """A directory with train.txt, valid.txt and test.txt, as data.py wants."""
  names = ('train', 'valid', 'test')
  if all((data_dir / f'{n}.txt').exists() for n in names):
    return data_dir
  for n in names:
    src = data_dir / f'wiki.{n}.tokens'
    if not src.exists():
      raise FileNotFoundError(f'{src} (nor {n}.txt) not found in {data_dir}')
    os.symlink(src.resolve(), os.path.join(tmp, f'{n}.txt'))
  return pathlib.Path(tmp)


def batchify(data: torch.Tensor, bsz: int) -> torch.Tensor:
  """Columns of a token stream: [len // bsz, bsz], the remainder dropped."""
  nbatch = data.size(0) // bsz
  return data[:nbatch * bsz].view(bsz, nbatch).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int):
  """Rows i..i+bptt of `source` and, flattened, the rows one step later."""
  seq_len = min(bptt, source.size(0) - 1 - i)
  return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


def evaluate(model, criterion, source: torch.Tensor, ntokens: int,
             bptt: int) -> float:
  """main.py's evaluation: per-window mean loss weighted by window length.

  Each window's loss is the mean over its seq_len * eval_batch_size targets
  (every token of the corpus, `<eos>` included, is a target once); the sum of
  loss * seq_len is divided by the number of rows less one.
  """
  model.eval()
  total = 0.
  with torch.no_grad():
    for i in range(0, source.size(0) - 1, bptt):
      data, targets = get_batch(source, i, bptt)
      output = model(data).view(-1, ntokens)
      total += len(data) * criterion(output, targets).item()
  return total / (len(source) - 1)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--examples-dir', required=True, type=pathlib.Path,
                  help="a checkout's word_language_model folder (with data.py "
                  'and model.py) of github.com/pytorch/examples')
  ap.add_argument('--data-dir', type=pathlib.Path,
                  default=REPO.parent / 'shared' / 'data' / 'wikitext-2',
                  help='WikiText-2 as wiki.{train,valid,test}.tokens or '
                  '{train,valid,test}.txt (default: %(default)s)')
  ap.add_argument('--minutes', type=float, default=20.,
                  help='training wall-clock budget (default: %(default)s)')
  ap.add_argument('--threads', type=int,
                  default=len(os.sched_getaffinity(0)),
                  help='torch.set_num_threads (default: all cores, '
                  '%(default)s)')
  ap.add_argument('--seed', type=int, default=1111,
                  help='torch.manual_seed, as main.py (default: %(default)s)')
  ap.add_argument('--examples-commit', default=None,
                  help='pytorch/examples commit of the checkout, recorded in '
                  'the result (default: `git rev-parse HEAD` there)')
  ap.add_argument('--out', type=pathlib.Path,
                  default=REPO / 'experiments' / 'results' /
                  'word_language_model.json')
  args = ap.parse_args()
  ex = args.examples_dir.resolve()
  for name in ('data.py', 'model.py'):
    if not (ex / name).exists():
      ap.error(f'{ex} has no {name}; pass the word_language_model folder of a '
               'pytorch/examples checkout')
  files = {n: _git_blob_id(ex / n) for n in ('main.py', 'data.py', 'model.py')
           if (ex / n).exists()}
  if files.get('main.py') != _MAIN_PY_BLOB:
    print(f'warning: {ex}/main.py is not the version this loop mirrors '
          f'(blob {_MAIN_PY_BLOB}); check it for changes', flush=True)
  c = argparse.Namespace(**_MAIN_PY_CHOICES)

  wlm_data = _load_module('wlm_data', ex / 'data.py')
  wlm_model = _load_module('wlm_model', ex / 'model.py')
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)

  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as tmp:
    corpus = wlm_data.Corpus(str(_corpus_dir(args.data_dir, tmp)))
  train_data = batchify(corpus.train, c.batch_size)
  val_data = batchify(corpus.valid, c.eval_batch_size)
  test_data = batchify(corpus.test, c.eval_batch_size)
  ntokens = len(corpus.dictionary)
  model = wlm_model.TransformerModel(ntokens, c.emsize, c.nhead, c.nhid,
                                     c.nlayers, c.dropout)
  criterion = nn.NLLLoss()
  optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr)
  setup_seconds = time.perf_counter() - start
  nbatches = len(range(0, train_data.size(0) - 1, c.bptt))
  print(f'corpus: {ntokens} words, train {corpus.train.numel()} tokens '
        f'({nbatches} batches of {c.batch_size}x{c.bptt} an epoch), set up in '
        f'{setup_seconds:.1f}s; training for {args.minutes:g} min on '
        f'{args.threads} threads', flush=True)

  budget = args.minutes * 60
  t0 = time.perf_counter()
  train_seconds = epoch_eval_seconds = 0.
  tokens = batches = epochs_completed = 0
  best_val, best_state, epoch_vals = None, None, []
  out_of_time = False
  epoch = 0
  while not out_of_time:
    epoch += 1
    model.train()
    interval_loss, interval_batches, interval_tokens = 0., 0, 0
    interval_start = time.perf_counter()
    for batch, i in enumerate(range(0, train_data.size(0) - 1, c.bptt)):
      if time.perf_counter() - t0 >= budget:
        out_of_time = True
        break
      data, targets = get_batch(train_data, i, c.bptt)
      optimizer.zero_grad()
      output = model(data).view(-1, ntokens)
      loss = criterion(output, targets)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), c.clip)
      optimizer.step()
      interval_loss += loss.item()
      interval_batches += 1
      interval_tokens += targets.numel()
      if batch % c.log_interval == 0 and batch > 0:
        now = time.perf_counter()
        cur = interval_loss / interval_batches
        print(f'| epoch {epoch:3d} | {batch:5d}/{nbatches:5d} batches | '
              f'ms/batch {(now - interval_start) * 1e3 / interval_batches:6.1f}'
              f' | tokens/s {interval_tokens / (now - interval_start):7.0f} | '
              f'elapsed {now - t0:7.1f}s | loss {cur:5.2f} | '
              f'ppl {math.exp(cur):8.2f}', flush=True)
        train_seconds += now - interval_start
        tokens += interval_tokens
        batches += interval_batches
        interval_loss, interval_batches, interval_tokens = 0., 0, 0
        interval_start = time.perf_counter()
    now = time.perf_counter()
    train_seconds += now - interval_start
    tokens += interval_tokens
    batches += interval_batches
    if out_of_time:
      if interval_batches:
        cur = interval_loss / interval_batches
        print(f'| epoch {epoch:3d} | stopped at {batch:5d}/{nbatches:5d} '
              f'batches (time budget) | elapsed {now - t0:7.1f}s | loss '
              f'{cur:5.2f} over the last {interval_batches} batches',
              flush=True)
      break
    # End of an epoch: main.py's validation pass and best-model bookkeeping.
    epochs_completed += 1
    eval_start = time.perf_counter()
    val_loss = evaluate(model, criterion, val_data, ntokens, c.bptt)
    epoch_eval_seconds += time.perf_counter() - eval_start
    epoch_vals.append(val_loss)
    print(f'| end of epoch {epoch:3d} | elapsed '
          f'{time.perf_counter() - t0:.1f}s | valid loss {val_loss:5.2f} | '
          f'valid ppl {math.exp(val_loss):8.2f}', flush=True)
    if not best_val or val_loss < best_val:
      best_val, best_state = val_loss, copy.deepcopy(model.state_dict())
  wall_seconds = time.perf_counter() - t0

  eval_start = time.perf_counter()
  val_loss = evaluate(model, criterion, val_data, ntokens, c.bptt)
  val_seconds = time.perf_counter() - eval_start
  test_loss = evaluate(model, criterion, test_data, ntokens, c.bptt)
  eval_seconds = time.perf_counter() - eval_start
  print(f'| at the time budget | valid loss {val_loss:5.2f} | valid ppl '
        f'{math.exp(val_loss):8.2f} | test loss {test_loss:5.2f} | test ppl '
        f'{math.exp(test_loss):8.2f} | eval {eval_seconds:.1f}s', flush=True)

  best = None
  if best_state is not None:
    model.load_state_dict(best_state)
    best_test = evaluate(model, criterion, test_data, ntokens, c.bptt)
    best = {'val_loss': best_val, 'val_ppl': math.exp(best_val),
            'test_loss': best_test, 'test_ppl': math.exp(best_test)}
    print(f'| best epoch checkpoint (what main.py tests) | valid ppl '
          f'{math.exp(best_val):8.2f} | test ppl {math.exp(best_test):8.2f}',
          flush=True)

  result = {
      'command': ' '.join([sys.executable] + sys.argv),
      'main_py_equivalent': _MAIN_PY_EQUIVALENT,
      'examples_commit': _examples_commit(ex, args.examples_commit),
      'examples_files': files,
      'torch_version': torch.__version__,
      'threads': args.threads,
      'seed': args.seed,
      'minutes': args.minutes,
      'settings': _MAIN_PY_CHOICES,
      'vocab_size': ntokens,
      'setup_seconds': setup_seconds,
      'train_seconds': train_seconds,
      'wall_seconds': wall_seconds,
      'epoch_eval_seconds': epoch_eval_seconds,
      'train_tokens_processed': tokens,
      'batches': batches,
      'batches_per_epoch': nbatches,
      'epochs_completed': epochs_completed,
      'epoch_fraction': epochs_completed + (batches - epochs_completed *
                                            nbatches) / nbatches,
      'tokens_per_sec': tokens / train_seconds if train_seconds else 0.,
      'val_loss': val_loss,
      'val_ppl': math.exp(val_loss),
      'test_loss': test_loss,
      'test_ppl': math.exp(test_loss),
      'val_eval_seconds': val_seconds,
      'eval_seconds': eval_seconds,
      'epoch_val_losses': epoch_vals,
      'best_epoch_checkpoint': best,
      'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
      'hostname': socket.gethostname(),
      'cpu': machine.cpu_model(),
      'cores': os.cpu_count(),
  }
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2) + '\n')
  print(json.dumps(result), flush=True)
  print(f'wrote {args.out}', flush=True)


if __name__ == '__main__':
  main()
