"""How long loading real GloVe vectors into a run's vocabulary takes, and
what they cover: the 100,000 x 50 GloVe 6B file (gzip) into WikiText-2's
word vocabulary (33,278 words), as `model.init_embeddings` does.

  python experiments/glove_load.py [--vectors=../shared/data/glove/glove.6B.50d.100k.txt.gz]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'configs'))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--vectors', default=str(
      REPO.parent / 'shared' / 'data' / 'glove' / 'glove.6B.50d.100k.txt.gz'))
  parser.add_argument('--rounds', type=int, default=3)
  args = parser.parse_args()
  import wikitext2_word  # pylint: disable=g-import-not-at-top
  from lm.data import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
  from lm.data import embeddings  # pylint: disable=g-import-not-at-top
  c = wikitext2_word.get_config('cpu')
  corpus = corpus_lib.load_corpus(c.data, c.model.max_len)
  tok = corpus.tokenizer
  words = list(tok.words)
  counts = np.bincount(corpus.train, minlength=tok.vocab_size)
  times = []
  for _ in range(args.rounds):
    start = time.perf_counter()
    vectors = embeddings.read_vectors(args.vectors, set(words))
    _, coverage = embeddings.initialise(
        np.zeros((tok.vocab_size, 50), np.float32), words, vectors, counts)
    times.append(time.perf_counter() - start)
  print(f'{len(words):,}-word vocabulary: {coverage}')
  print(f'read and placed in {np.median(times):.2f} s (median of '
        f'{args.rounds}; {", ".join(f"{t:.2f}" for t in times)})')


if __name__ == '__main__':
  main()
