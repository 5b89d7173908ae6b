"""Two diagnostics of the SST-2 fine-tunes: what limits their dev accuracy.

`prompt`: does a pretrained masked-LM know sentiment before any fine-tune?
Each dev sentence is followed by a cloze template ("... it was [MASK] .") and
the masked-LM's log-probabilities of a positive and a negative word at the
mask are compared (Schick and Schuetze, 2021). Two accuracies per template
and word pair: positive when log p(positive) > log p(negative), and the same
with the threshold at the median difference (calibrated: half of the
sentences each way; the dev split is about half positive). 50% is chance.

`ensemble`: are the fine-tunes' errors independent? The class probabilities
of several fine-tuned runs are averaged; if their mistakes were independent
(variance), the average would beat the runs, and if they were shared (the
encoder's limits), it would not. Reports the runs' own accuracies, the mean
over every ensemble of `--size` runs and the ensemble of all of them, at each
run's best step (by dev accuracy) or its last (`--step=last`).

  python experiments/sst2_diagnostics.py prompt --pretrained=runs/bert_cpu
  python experiments/sst2_diagnostics.py ensemble \
      --runs=runs/sst2_s0,runs/sst2_s1,runs/sst2_s2 --step=last
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import pathlib
import statistics
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'experiments'))
# pylint: disable=g-import-not-at-top,wrong-import-position
import machine

DEFAULT_DATA = REPO.parent / 'shared' / 'data' / 'sst2'
# Templates: the sentence goes where {} is, the mask where [MASK] is.
TEMPLATES = ('{} it was [MASK] .', '{} it is [MASK] .', '{} a [MASK] movie .',
             '[MASK] : {}')
PAIRS = 'great/terrible,good/bad,best/worst,excellent/awful,fun/boring'
SENTENCE_PIECES = 50  # Sentences cut to this (dev's longest is 67 pieces).


def dev_sentences(path: str, transform):
  """(texts, labels) of SST-2's dev split, through the project's builder."""
  from lm.data import prepare as prepare_lib
  from lm.data import corpus as corpus_lib
  source = prepare_lib.source(prepare_lib.prepare('sst2', path=path),
                              'validation')
  return ([transform(t) for t in corpus_lib.read_texts(source)],
          corpus_lib.read_labels(source))


def load_masked_lm(workdir: str):
  """(model with the run's parameters, tokenizer, text transform, row
  length)."""
  from flax import nnx
  from lm.models import heads
  from lm.models import layers
  from lm.data import preprocess
  from lm.train import workdir as workdir_lib
  from lm.data import tokenizer as tokenizer_lib
  c = workdir_lib.saved_config(workdir)
  if c.task != 'masked_lm':
    raise workdir_lib.RunError(
        f'{workdir} is a task={c.task} run; give a masked-LM '
        'run (python -m lm.main --config=configs/'
        'bert_wikitext2.py)')
  model = heads.MaskedLM(layers.TransformerConfig.from_config(c.model),
                         rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model, nnx.Param)
  nnx.replace_by_pure_dict(
      state, workdir_lib.load_params(nnx.to_pure_dict(state), workdir))
  transform = preprocess.make(c.data.normalize, c.data.lowercase, False)
  return (nnx.merge(graphdef, state), tokenizer_lib.load(workdir), transform,
          c.model.max_len)


def cloze_rows(tok, texts, template: str, max_len: int):
  """Rows `[CLS] template(sentence) [SEP]` no longer than `max_len`, each
  sentence cut to what the template leaves (at most SENTENCE_PIECES), their
  segment ids and the position of each row's [MASK]."""
  import numpy as np
  ids = tok.special_ids

  def pieces(part):
    head, mask, tail = part.partition('[MASK]')
    out = list(tok.encode(head)) if head.strip() else []
    if mask:
      out.append(ids['mask'])
      out += list(tok.encode(tail)) if tail.strip() else []
    return out

  before, after = map(pieces, template.split('{}'))
  room = min(SENTENCE_PIECES, max_len - 2 - len(before) - len(after))
  if room < 1:
    raise ValueError(f'the template {template!r} leaves no room for a '
                     f'sentence in rows of model.max_len={max_len}')
  width = 2 + len(before) + room + len(after)
  inputs = np.full((len(texts), width), ids['pad'], np.int32)
  segments = np.zeros_like(inputs)
  where = np.zeros(len(texts), np.int32)
  for i, text in enumerate(texts):
    row = [ids['cls'], *before, *tok.encode(text)[:room], *after, ids['sep']]
    inputs[i, :len(row)] = row
    segments[i, :len(row)] = 1
    where[i] = row.index(ids['mask'])
  return inputs, segments, where


def single_piece(tok, word: str):
  """The id of `word` as one piece (after a space), or None."""
  ids = tok.encode(' ' + word)
  return int(ids[-1]) if len(ids) == 1 else None


def word_pairs(text: str) -> list[list[str]]:
  """[[positive, negative], ...] of --pairs."""
  pairs = [p.split('/') for p in text.split(',') if p]
  if not pairs or any(len(p) != 2 or not all(p) for p in pairs):
    raise ValueError(f'--pairs={text}: give POSITIVE/NEGATIVE word pairs, '
                     'comma-separated')
  return pairs


def prompt(args) -> dict:
  import jax
  import numpy as np
  pairs = word_pairs(args.pairs)
  model, tok, transform, max_len = load_masked_lm(args.pretrained)
  texts, labels = dev_sentences(args.data, transform)

  @jax.jit
  def log_probs(inputs, segments, where):
    logits, _ = model(inputs, segment_ids_BxL=segments,
                      predict_at_BxK=where[:, None])
    return jax.nn.log_softmax(logits[:, 0])

  results = {'sentences': len(texts), 'positive': int(labels.sum()),
             'templates': {}}
  for template in TEMPLATES:
    inputs, segments, where = cloze_rows(tok, texts, template, max_len)
    scores = np.concatenate([
        np.asarray(log_probs(inputs[i:i + 128], segments[i:i + 128],
                             where[i:i + 128]))
        for i in range(0, len(texts), 128)])
    found = {}
    for good, bad in pairs:
      g, b = single_piece(tok, good), single_piece(tok, bad)
      name = f'{good}/{bad}'
      if g is None or b is None:
        found[name] = 'not single pieces'
        continue
      diff = scores[:, g] - scores[:, b]
      found[name] = {
          'accuracy': round(float(((diff > 0) == labels).mean()), 4),
          'calibrated_accuracy': round(float(
              ((diff > np.median(diff)) == labels).mean()), 4)}
      print(f'{template!r} {name}: accuracy {found[name]["accuracy"]:.3f}, '
            f'calibrated {found[name]["calibrated_accuracy"]:.3f}', flush=True)
    results['templates'][template] = found
  return results


def ensemble_runs(args) -> list[str]:
  """The --runs workdirs; too few, or a bad --size, refused before anything
  is loaded (--size defaults to 3, or 2 of two runs)."""
  runs = [w for w in args.runs.split(',') if w]
  if len(runs) < 2:
    raise ValueError('--runs: give at least two fine-tuned workdirs, '
                     'comma-separated')
  args.size = args.size or min(3, len(runs))
  if not 2 <= args.size <= len(runs):
    raise ValueError(f'--size={args.size} must be in [2, {len(runs)}] '
                     '(the number of --runs)')
  return runs


def ensemble(args, runs: list[str]) -> dict:
  import numpy as np
  from lm.train import checkpoint as checkpoint_lib
  from lm import finetune
  probs, accuracies, steps, labels = [], {}, {}, None
  for n, w in enumerate(runs, 1):
    step = (checkpoint_lib.Checkpointer(w, read_only=True).latest_step()
            if args.step == 'last' and os.path.isdir(w) else None)
    model = finetune.Classifier(w, step)
    sentences = model.task.sentences('validation')
    if labels is not None and not np.array_equal(labels, sentences.labels):
      raise ValueError(f'{w} reads another dev split than {runs[0]}')
    labels = sentences.labels
    p = model.task.predict(model.trainer, model.params, sentences)
    probs.append(p)
    accuracies[w] = round(float((p.argmax(-1) == labels).mean()), 4)
    steps[w] = model.step
    print(f'[{n}/{len(runs)}] {w} at step {model.step}: dev accuracy '
          f'{accuracies[w]:.4f}', flush=True)

  def accuracy(members):
    mean = np.mean([probs[i] for i in members], axis=0)
    return float((mean.argmax(-1) == labels).mean())

  subsets = [accuracy(s) for s in
             itertools.combinations(range(len(runs)), args.size)]
  results = {'step': args.step, 'steps': steps, 'accuracies': accuracies,
             'mean_of_runs': round(statistics.mean(accuracies.values()), 4),
             f'ensembles_of_{args.size}': {
                 'count': len(subsets),
                 'mean': round(statistics.mean(subsets), 4),
                 'min': round(min(subsets), 4), 'max': round(max(subsets), 4)},
             'ensemble_of_all': round(accuracy(range(len(runs))), 4)}
  wrong_RxN = np.array([p.argmax(-1) != labels for p in probs])
  results.update(
      sentences=len(labels),
      wrong_by_every_run=int(wrong_RxN.all(0).sum()),
      right_by_every_run=int((~wrong_RxN).all(0).sum()),
      pairwise_agreement=round(statistics.mean(
          float((probs[i].argmax(-1) == probs[j].argmax(-1)).mean())
          for i, j in itertools.combinations(range(len(runs)), 2)), 4))
  print(f'runs: mean {results["mean_of_runs"]:.4f}; ensembles of '
        f'{args.size}: mean {results[f"ensembles_of_{args.size}"]["mean"]:.4f}'
        f' over {len(subsets)}; all {len(runs)}: '
        f'{results["ensemble_of_all"]:.4f}; {results["wrong_by_every_run"]} '
        f'of {len(labels)} sentences wrong in every run, '
        f'{results["right_by_every_run"]} right in every run')
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  sub = parser.add_subparsers(dest='command', required=True)
  p = sub.add_parser('prompt', help='zero-shot cloze accuracy of a '
                     'pretrained masked-LM on SST-2 dev')
  p.add_argument('--pretrained', required=True, help='a masked-LM workdir')
  p.add_argument('--pairs', default=PAIRS,
                 help='positive/negative words, comma-separated (pairs that '
                 'are not one piece each are reported and skipped)')
  p.add_argument('--data', default=str(DEFAULT_DATA),
                 help='the GLUE SST-2 folder (dev.tsv)')
  e = sub.add_parser('ensemble', help='dev accuracy of fine-tunes averaged')
  e.add_argument('--runs', required=True,
                 help='fine-tuned workdirs, comma-separated')
  e.add_argument('--step', choices=('best', 'last'), default='best',
                 help="each run's best step by dev accuracy, or its last")
  e.add_argument('--size', type=int, default=0,
                 help='ensembles of this many runs are averaged over '
                 '(default: 3, or 2 of two runs)')
  for q in (p, e):
    q.add_argument('--out', default='', help='results JSON file')
  args = parser.parse_args()
  if args.command == 'prompt' and not os.path.isdir(args.data):
    parser.error(f'--data={args.data}: no such folder; point it at the GLUE '
                 'SST-2 folder')
  try:
    if args.command == 'prompt':
      word_pairs(args.pairs)  # Refused before the model loads.
      results = prompt(args)
    else:
      results = ensemble(args, ensemble_runs(args))
  except ValueError as err:  # RunError, ConfigError, DataError among them.
    parser.error(str(err))
  results.update(date=datetime.date.today().isoformat(),
                 cpu=machine.cpu_model(), command=' '.join(sys.argv[1:]))
  if args.out:
    machine.write_results(results, args.out)


if __name__ == '__main__':
  main()
