"""Input-pipeline throughput: tokens/s the grain pipeline delivers on CPU.

Reads WikiText-2 train through the TFDS ArrayRecord source and the same
functions a run uses, in both layouts: 'segments' (shuffle documents,
tokenize, shift, concat-then-split packing with segment ids, batch) and
'stream' (shuffled windows of the pre-tokenized stream, batch). No model
runs: this is the rate at which data could feed a training step.

  python experiments/input_pipeline.py [--batch=64 --length=1024 --batches=200]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import time

import machine  # experiments/machine.py, beside this script.

REPO = pathlib.Path(__file__).resolve().parents[1]


def measure(it, batches: int, warmup: int = 5) -> float:
  for _ in range(warmup):
    next(it)
  start, tokens = time.perf_counter(), 0
  for _ in range(batches):
    batch = next(it)
    tokens += batch['inputs'].size
  return tokens / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=str(REPO.parent / 'shared' / 'data' /
                                            'wikitext-2'),
                      help='local WikiText-2 folder')
  parser.add_argument('--tfds_dir', default='/tmp/lm_tfds',
                      help='where the ArrayRecords are prepared')
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--length', type=int, default=1024)
  parser.add_argument('--batches', type=int, default=200)
  parser.add_argument('--tokenizer', default='word',
                      choices=('word', 'sentencepiece', 'byte'))
  parser.add_argument('--out', default=str(REPO / 'experiments' / 'results' /
                                           'input_pipeline.json'))
  args = parser.parse_args()
  sys.path.insert(0, str(REPO))
  from lm import config as config_lib  # pylint: disable=g-import-not-at-top
  from lm.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from lm.data import rows as rows_lib  # pylint: disable=g-import-not-at-top

  d = config_lib.default().data
  d.update(name='wikitext2', config='tokens', path=args.data,
           tfds_dir=args.tfds_dir, tokenizer=args.tokenizer,
           vocab_size=8000 if args.tokenizer == 'sentencepiece' else 0)
  t = time.perf_counter()
  corpus = corpus_lib.load_corpus(d, args.length)
  train_tokens = len(corpus.train)  # Reads and tokenizes every split.
  results = {'load_seconds': time.perf_counter() - t}
  print(f'prepared (or reused), read and tokenized all splits in '
        f'{results["load_seconds"]:.1f} s; train stream {train_tokens:,} '
        'tokens', flush=True)
  packed = iter(
      rows_lib.packed_dataset(rows_lib.process_documents(corpus),
                              args.length,
                              args.batch,
                              seed=0))
  results['segments_tokens_per_sec'] = measure(packed, args.batches)
  print(f"segments: {results['segments_tokens_per_sec']:,.0f} tokens/s",
        flush=True)
  stream = iter(
      rows_lib.train_dataset(corpus.train, args.length, args.batch, seed=0))
  results['stream_tokens_per_sec'] = measure(stream, args.batches)
  print(f"stream: {results['stream_tokens_per_sec']:,.0f} tokens/s")
  record = {'command': ' '.join(['python'] + sys.argv),
            'date': datetime.date.today().isoformat(), 'cpu': machine.cpu_model(),
            'cores': os.cpu_count(), 'batch': args.batch,
            'length': args.length, 'batches': args.batches,
            'tokenizer': args.tokenizer, **results}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(record, f, indent=2)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
