"""Encoder-decoder generation speed against `transformers`, side by side.

A T5-small-shaped model (6+6 layers, width 512, 8 heads of 64, MLP 2048,
ReLU, vocabulary 32,128: about 60M parameters) with random weights made by
`transformers` is saved, imported with `lm.convert`'s code, and both
generate for the same batches of 8 random sources (24 tokens each): greedy
and 4-beam search of exactly --tokens tokens (EOS suppressed until then:
`min_new_tokens`, `Settings.min_len`), Hugging Face's length penalty, in
float32 on this machine's CPU cores. Sentences per second are timed over
--rounds batches after a warm-up call, alternating the two libraries each
round; this project's first call (compilation) is reported apart. The
outputs of both are compared too (random weights: near-ties make a few
differences possible, and are counted, not asserted). `--profile` also
prints XLA's own time per decoding step by operation kind
(`translation_decoding.profile`).

  python experiments/t5_generation_speed.py --out=experiments/results/t5_generation_speed.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'experiments'))
sys.path.insert(0, str(REPO / 'tests'))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position

T5_SMALL = dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                num_decoder_layers=6, num_heads=8, vocab_size=32128,
                feed_forward_proj='relu', dropout_rate=0.0,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def make_model(folder: str, seed: int):
  """The random T5-small-shaped model, saved with a small tokenizer."""
  import hf_fixtures  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(
      transformers.T5Config(**T5_SMALL)).eval()
  tok = hf_fixtures.seq2seq_tokenizer('T5ForConditionalGeneration', 1000)
  hf_fixtures.save(model, tok, folder)
  return model


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--tokens', type=int, default=64)
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', default='', help='results JSON file')
  parser.add_argument('--profile', action='store_true',
                      help='also: XLA\'s time per decoding step by operation')
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  from lm import tasks  # pylint: disable=g-import-not-at-top
  from lm.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  from lm.eval import translator as translator_lib  # pylint: disable=g-import-not-at-top
  from lm.interop import hf_io  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  work = tempfile.mkdtemp(prefix='t5_speed_')
  model = make_model(os.path.join(work, 'hf'), args.seed)
  print(hf_io.from_hf(os.path.join(work, 'hf'), os.path.join(work, 'run')),
        flush=True)
  c, params = hf_io.load_run_params(os.path.join(work, 'run'))
  task = tasks.get(c)
  graphdef, _ = task.abstract()
  tok = tokenizer_lib.load(os.path.join(work, 'run'))
  params = jax.device_put(params)
  rng = np.random.default_rng(args.seed)
  B, M, T = args.batch, 24, args.tokens
  # Sources of ids the tokenizer has (ours never emits ids past it; the
  # model's 32,128 rows are T5's padded vocabulary), EOS last.
  sources = rng.integers(3, tok.vocab_size, (args.rounds + 1, B, M - 1))
  results = {'date': datetime.date.today().isoformat(),
             'cpu': machine.cpu_model(), 'cores': os.cpu_count(),
             'parameters': sum(p.numel() for p in model.parameters()),
             'batch': B, 'source_tokens': M, 'new_tokens': T}
  for beams in (1, 4):
    settings = translator_lib.Settings(beam_size=beams, alpha=1.0,
                                       penalty='hf', max_len=T, min_len=T)
    translator = translator_lib.Translator(graphdef, task.model_cfg, tok,
                                           settings, batch_size=B)
    # Suppress the ids past the tokenizer for transformers too: the same
    # search space, so the outputs can be compared.
    banned = list(range(tok.vocab_size, T5_SMALL['vocab_size'])) + [0]

    def ours(batch):
      rows = np.zeros((B, c.model.max_len), np.int32)
      rows[:, :M - 1] = batch
      rows[:, M - 1] = 1
      # As lm.translate batches them: the encoder's width is the longest
      # source rounded up to a power of two (32 here), not max_len (512).
      return translator.decode_rows(params, rows, jax.random.key(0))

    def theirs(batch):
      ids = torch.as_tensor(np.concatenate(
          [batch, np.ones((B, 1), np.int64)], axis=1))
      with torch.no_grad():
        return model.generate(
            input_ids=ids, num_beams=beams, do_sample=False,
            max_new_tokens=T, min_new_tokens=T, length_penalty=1.0,
            early_stopping='never', suppress_tokens=banned).numpy()[:, 1:]

    start = time.perf_counter()
    ours(sources[0])
    first = time.perf_counter() - start
    theirs(sources[0])  # Warm-up.
    times = {'ours': [], 'transformers': []}
    same = 0
    for r in range(1, args.rounds + 1):
      for name, fn in (('ours', ours), ('transformers', theirs)):
        start = time.perf_counter()
        out = fn(sources[r])
        times[name].append(time.perf_counter() - start)
        if name == 'ours':
          mine = out
        else:
          same += int((mine[:, :T] == out[:, :T]).all(axis=1).sum())
    rate = {k: B / float(np.median(v)) for k, v in times.items()}
    key = 'greedy' if beams == 1 else f'beam{beams}'
    results[key] = {
        'ours_sentences_per_sec': round(rate['ours'], 2),
        'transformers_sentences_per_sec': round(rate['transformers'], 2),
        'speedup': round(rate['ours'] / rate['transformers'], 2),
        'ours_first_call_seconds': round(first, 2),
        'ours_steady_seconds': [round(t, 3) for t in times['ours']],
        'transformers_seconds': [round(t, 3) for t in times['transformers']],
        'identical_outputs': f'{same} of {B * args.rounds}'}
    print(key, json.dumps(results[key]), flush=True)
    if args.profile:
      import translation_decoding  # pylint: disable=g-import-not-at-top
      texts = [' '.join(map(str, row)) for row in sources[0]]
      ms = translation_decoding.profile(translator, params, texts,
                                        os.path.join(work, 'profile'))
      results[key]['xla_ms_per_step'] = {
          k: round(v, 3) for k, v in list(ms.items())[:10]}
      print(f'{key}, XLA ms a step:', round(sum(ms.values()), 1),
            results[key]['xla_ms_per_step'], flush=True)
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(results, f, indent=2)
    print(f'written to {args.out}')


if __name__ == '__main__':
  main()
