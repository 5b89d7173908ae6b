"""Decoding speed of a translation run: beam search against greedy, and
cross-attention keys and values computed once against recomputed each step.

  python experiments/translation_decoding.py --workdir=runs/multi30k \
      --sentences=200

Translates the first --sentences sources of the run's test split four ways,
each first once untimed (compilation), then --rounds timed passes of the
four in turn (medians reported):
  greedy            beam 1 (the decoder's KV cache, cross caches once);
  beam 4            beam search, cross caches once, shared by the beams,
                    a KV cache that never moves (each row reads its
                    hypothesis through an ancestry table);
  beam 4, recompute the same search, but every step projects the encoder's
                    output to keys and values again in every layer (what the
                    Flax and t5x examples do);
  beam 4, copied    the same search, copying the KV cache's rows with the
                    beams at each step (fairseq's and Hugging Face's way);
and prints the seconds per sentence of each and the three ratios. Appends a
row to experiments/translation_decoding/results.md.

With --profile, it then traces one batch of greedy and one of beam decoding
with the JAX profiler and prints where a decoding step's time goes: XLA's
time per operation kind (its fusions grouped by name), per step of the
decoding loop.
"""

from __future__ import annotations

import argparse
import collections
import copy
import datetime
import functools
import glob
import gzip
import json
import os
import platform
import re
import sys
import tempfile
import time

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from lm import translate
from lm.data import corpus as corpus_lib
from lm.data import prepare
from lm.eval import search
from lm.eval import translator as translator_lib
from lm.models import transformer
from lm.train import workdir as workdir_lib

RESULTS = os.path.join(os.path.dirname(__file__), 'translation_decoding',
                       'results.md')


class Recomputing(translator_lib.Translator):
  """A Translator whose decoder attends to the encoder's output itself at
  every step (keys and values projected again in every layer)."""

  @functools.partial(jax.jit, static_argnums=0)
  def _decode(self, params, head_DxV, source_BxM, rng):
    del rng
    model = nnx.merge(self.graphdef, params)
    s = self.settings
    eos_BxM = (source_BxM == self.eos).astype(jnp.int32)
    segments_BxM = (jnp.cumsum(eos_BxM, axis=1) - eos_BxM == 0).astype(
        jnp.int32)
    encoded_BxMxD = model.encode(source_BxM, segments_BxM)
    B, W = source_BxM.shape[0], s.beam_size

    def step(tokens_N, i, cache):
      logits, cache = model.decode(tokens_N[:, None], positions=i[None],
                                   source_segment_ids_BxM=segments_BxM,
                                   encoded_BxMxD=encoded_BxMxD, cache=cache,
                                   head_DxV=head_DxV)
      return logits[:, 0], cache

    tokens, _ = search.beam_search(
        step, model.init_cache(B * W, self.max_out, W), num_sources=B,
        beam_size=W, max_len=self.max_out, bos=self.bos, eos=self.eos,
        alpha=s.alpha, penalty=s.penalty, banned=self.banned,
        reorder=transformer.reorder_beams)
    return tokens[:, 0]


class CopiedRows(translator_lib.Translator):
  """A Translator whose beam search copies the KV cache's rows with the
  beams at every step (as fairseq and Hugging Face do), instead of reading
  them through an ancestry table."""
  beam_ancestors = False


# Spans of the runtime and of Python, not XLA operations.
_RUNTIME = ('ThunkExecutor', '$', 'Slinky', 'PjitFunction', 'CommonPjRt',
            'ExecuteReplicated')


def profile(translator, params, sources, folder: str) -> dict[str, float]:
  """Milliseconds per decoding step of each kind of XLA operation, traced
  over one batch of `sources` (compiled before the trace)."""
  steps = []
  loop = jax.lax.while_loop

  def counting(cond, body, carry):  # The decoding loop: its step count.
    out = loop(cond, body, carry)
    jax.debug.callback(lambda i: steps.append(int(i)), out[0])
    return out

  jax.lax.while_loop = counting
  translator = copy.copy(translator)  # A new jit key: traced with the count.
  try:
    batch = sources[:translator.batch_size]
    translator.translate(params, batch)
    steps.clear()
    with jax.profiler.trace(folder, create_perfetto_trace=True):
      translator.translate(params, batch)
  finally:
    jax.lax.while_loop = loop
  trace = max(glob.glob(os.path.join(folder, '**', '*.json.gz'),
                        recursive=True), key=os.path.getmtime)
  with gzip.open(trace) as f:
    events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  # Each event's own time, without the events nested in it (a while loop's
  # body), on each thread; the runtime's own spans are left out.
  totals = collections.Counter()
  spans = sorted((e for e in events if e.get('ph') == 'X' and 'dur' in e),
                 key=lambda e: (e['pid'], e['tid'], e['ts'], -e['dur']))
  stack = []
  for e in spans:
    while stack and (stack[-1]['pid'], stack[-1]['tid']) == (
        e['pid'], e['tid']) and stack[-1]['ts'] + stack[-1]['dur'] <= e['ts']:
      stack.pop()
    if stack and (stack[-1]['pid'], stack[-1]['tid']) == (e['pid'], e['tid']):
      stack[-1]['own'] -= e['dur']
    else:
      stack.clear()
    e['own'] = e['dur']
    stack.append(e)
  for e in spans:
    if not e['name'].startswith(_RUNTIME) and '.__call__' not in e['name']:
      totals[re.sub(r'\.\d+$', '', e['name'])] += e['own']
  return {k: v / 1e3 / sum(steps) for k, v in totals.most_common()}


def timed(translator, params, sources):
  """(seconds per sentence, translations) of one pass over `sources`."""
  start = time.perf_counter()
  out = translator.translate(params, sources).texts
  return (time.perf_counter() - start) / len(sources), out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True, help='A translation run.')
  parser.add_argument('--sentences', type=int, default=200,
                      help='Test sources to translate (default 200).')
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--beam_size', type=int, default=4)
  parser.add_argument('--out', default=RESULTS,
                      help='The results table a row is appended to '
                      '(default: %(default)s).')
  parser.add_argument('--rounds', type=int, default=3,
                      help='Interleaved timed passes of each way; the '
                      'median is reported (default 3).')
  parser.add_argument('--profile', action='store_true',
                      help='Then trace a batch of greedy and of beam '
                      'decoding and print ms per step by operation kind.')
  args = parser.parse_args()
  try:
    task, _, graphdef, params = translate.load(args.workdir)
  except workdir_lib.RunError as e:
    sys.exit(f'error: {e}')
  c = task.c
  builder = prepare.prepare(c.data.name, config=c.data.config,
                            path=c.data.path, data_dir=c.data.tfds_dir)
  sources = [s for s, _ in corpus_lib.read_pairs(
      prepare.source(builder, 'test'))][:args.sentences]
  ways = {}
  for name, cls, beam in (('greedy', translator_lib.Translator, 1),
                          (f'beam {args.beam_size}', translator_lib.Translator,
                           args.beam_size),
                          (f'beam {args.beam_size}, recompute', Recomputing,
                           args.beam_size),
                          (f'beam {args.beam_size}, copied', CopiedRows,
                           args.beam_size)):
    settings = translator_lib.Settings(beam_size=beam, alpha=c.eval.alpha,
                                       penalty=c.eval.penalty)
    ways[name] = cls(graphdef, task.model_cfg, task.tok, settings,
                     args.batch_size)
    print(f'{name}: compiling...', flush=True)
    timed(ways[name], params, sources)  # Compiles every batch shape.
  times, outputs = {name: [] for name in ways}, {}
  for r in range(args.rounds):  # Interleaved: the machine's noise is shared.
    for name, t in ways.items():
      seconds, out = timed(t, params, sources)
      times[name].append(seconds)
      outputs[name] = out
      print(f'round {r + 1}, {name}: {seconds * 1000:.1f} ms a sentence; '
            f'e.g. {out[0]!r}', flush=True)
  rows = {name: float(np.median(ts)) for name, ts in times.items()}
  once = rows[f'beam {args.beam_size}']
  recompute = rows[f'beam {args.beam_size}, recompute']
  copied = rows[f'beam {args.beam_size}, copied']
  # Neither computing cross-attention once nor reading the cache through
  # the ancestry table may change a single translation.
  same = (outputs[f'beam {args.beam_size}'] ==
          outputs[f'beam {args.beam_size}, recompute'] ==
          outputs[f'beam {args.beam_size}, copied'])
  print(f'same translations all three beam ways: {same}')
  beam_vs_greedy = once / rows['greedy']
  print(f'beam {args.beam_size} / greedy time: {beam_vs_greedy:.2f}x; '
        f'recomputing cross-attention / computing it once: '
        f'{recompute / once:.2f}x; copying the cache rows / an ancestry '
        f'table: {copied / once:.2f}x')
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  header = ('| date | machine | run | sentences | greedy ms | beam ms | '
            'beam recompute ms | beam / greedy | recompute / once | '
            'same output | beam copied-rows ms | copied / ancestry |\n')
  old = open(args.out).read() if os.path.exists(args.out) else ''
  with open(args.out, 'a') as f:
    if header not in old:  # A new table when the columns changed.
      f.write(('\n' if old else '') + header +
              '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: '
              '| --- | ---: | ---: |\n')
    f.write(f'| {datetime.date.today()} | {platform.machine()} '
            f'{os.cpu_count()} CPUs, {jax.default_backend()} | '
            f'{args.workdir} | {len(sources)} | {rows["greedy"] * 1e3:.1f} | '
            f'{once * 1e3:.1f} | {recompute * 1e3:.1f} | '
            f'{beam_vs_greedy:.2f} | {recompute / once:.2f} | '
            f'{"yes" if same else "no"} | {copied * 1e3:.1f} | '
            f'{copied / once:.2f} |\n')
  print(f'appended to {args.out}')
  if args.profile:
    for name in ('greedy', f'beam {args.beam_size}'):
      with tempfile.TemporaryDirectory() as folder:
        kinds = profile(ways[name], params, sources, folder)
      print(f'{name}: {sum(kinds.values()):.2f} ms a decoding step of XLA '
            'operations; the largest kinds:')
      for kind, ms in list(kinds.items())[:8]:
        print(f'  {ms:7.2f} ms  {kind}')


if __name__ == '__main__':
  main()
