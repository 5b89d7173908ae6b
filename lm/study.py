"""Ablation studies: a grid of config overrides x seeds, one run per cell.

  python -m lm.study experiments/STUDY.py [--out=DIR] [--seeds=0,1]
                     [--dry_run]

A study file defines `get_study()` returning a dict:
  base      'configs/NAME.py[:VARIANT]' (a config file, read by path)
  grid      {cell name: {dotted key: value, ...}, ...}
  seeds     [0, 1, 2]
  metrics   keys of a run's results to tabulate: '<split>.<metric>' of the
            final evaluation (e.g. 'validation.loss'), 'train.tokens_per_sec',
            'train.best_eval_loss', 'model.kv_cache_bytes_per_token'
  overrides (optional) {dotted key: value} applied to every cell first
  before    (optional) {name: {'config': 'configs/NAME.py[:VARIANT]',
            'overrides': {...}}}: runs trained first, into OUT/<name> (e.g.
            pretraining runs that cells start from); a string value
            '{out}' in any override is replaced by the output folder, so a
            cell can say {'init_from': '{out}/pretrain_300'}
  eval_lens (optional) extra final-evaluation contexts, e.g. [128, 256]:
            each adds 'eval@LEN.<split>.<metric>' columns
  eval_settings (optional) {name: {dotted key: value}}: the final evaluation
            of every trained cell run again with these overrides, e.g.
            {'beam8': {'eval.beam_size': 8}}; each adds '<name>.<split>.
            <metric>' values, tabulated in a second table (cell x setting).
            Settings added later are evaluated on rerun without retraining.
  shared    (optional) {cell: folder}: cells whose runs live in another
            study's output folder, FOLDER/<cell>/seed_<s> (a recipe both
            studies tabulate): trained once, by whichever study runs first
            (run the two one after the other, not at once)
  out       (optional) output folder, default runs/<study name>
Each (cell, seed) is an ordinary training run in OUT/<cell>/seed_<s> (a
cluster launcher can run them in parallel); finished runs are skipped, so a
rerun resumes an interrupted study (a finished run whose config differs
from its cell's, edited since, is refused, not reused). SIGTERM or Ctrl-C
stops the run in training after its step, with a checkpoint, and ends the
study there (exit 128 + the signal), that run not recorded as finished.
The study writes OUT/results.json, OUT/results.md (mean ± std over seeds
per cell) and one plot per metric, OUT/<metric>.png (with eval_settings,
also OUT/<metric>_by_setting.png: every setting side by side). A finished run
needs only its config.json and study_cell.json to be skipped (the study
folders keep them in git), and a `before` run is trained only while a cell
that names it ('{out}/NAME') still has to train.
--seeds runs a subset of the study's seeds (e.g. --seeds=0: a first table of
every cell at one seed), and tabulates those.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

from lm import cli
from lm import config as config_lib
from lm.train import checkpoint as checkpoint_lib
from lm.train import evaluation
from lm.train import loop
from lm.train import workdir as workdir_lib

flags.DEFINE_string('out', None, 'Output folder (default: the study\'s).')
flags.DEFINE_list('seeds', None, 'Only these of the study\'s seeds, e.g. '
                  '0 or 0,1 (default: all of them).')
flags.DEFINE_bool('dry_run', False, 'List the cells and stop.')
FLAGS = flags.FLAGS


def _failed(where: str, e: Exception) -> config_lib.ConfigError:
  """A user's Python file that failed, as one line naming it."""
  if isinstance(e, SyntaxError):
    return config_lib.ConfigError(f'{where}: {e.msg} (line {e.lineno})')
  return config_lib.ConfigError(f'{where}: {type(e).__name__}: {e}')


def _call(path: str, name: str, function: str, *args):
  """`function(*args)` of the Python file at `path` (loaded as module
  `name`); whatever goes wrong in the user's file is one ConfigError line."""
  if not os.path.isfile(path):
    raise config_lib.ConfigError(f'no such file: {path}')
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
  try:
    spec.loader.exec_module(module)
    if not callable(getattr(module, function, None)):
      raise config_lib.ConfigError(f'{path} defines no {function}()')
    return getattr(module, function)(*args)
  except config_lib.ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise _failed(f'{path}' if function == 'get_study' else
                  f'{path}: {function}({", ".join(map(repr, args))})',
                  e) from None
  finally:
    sys.path.pop(0)


def load_config(spec: str):
  """The config of 'path.py[:variant]'."""
  path, _, arg = spec.partition(':')
  return _call(path, 'study_base', 'get_config', arg or None)


# A study's keys and the type each must have.
_STUDY_TYPES = {'base': str, 'grid': dict, 'seeds': list, 'metrics': list,
                'overrides': dict, 'before': dict, 'eval_lens': list,
                'eval_settings': dict, 'shared': dict, 'out': str}


def load_study(path: str) -> dict:
  study = _call(path, 'study_file', 'get_study')
  if not isinstance(study, dict):
    raise config_lib.ConfigError(f'{path}: get_study() returned a '
                                 f'{type(study).__name__}, not a dict')
  missing = {'base', 'grid', 'seeds', 'metrics'} - set(study)
  if missing:
    raise config_lib.ConfigError(f'{path}: get_study() lacks '
                                 f'{", ".join(sorted(missing))}')
  for key, kind in _STUDY_TYPES.items():
    if key in study and not isinstance(study[key], kind):
      raise config_lib.ConfigError(
          f'{path}: get_study()[{key!r}] is a {type(study[key]).__name__}, '
          f'not a {kind.__name__} (see python -m lm.study --help)')
  for cell, overrides in study['grid'].items():
    if not isinstance(overrides, dict):
      raise config_lib.ConfigError(
          f'{path}: grid cell {cell!r} is a {type(overrides).__name__}, not '
          'a dict of {dotted key: value}')
  for name, overrides in study.get('eval_settings', {}).items():
    if not isinstance(overrides, dict):
      raise config_lib.ConfigError(
          f'{path}: eval_settings[{name!r}] is a {type(overrides).__name__}, '
          'not a dict of {dotted key: value}')
  for cell, folder in study.get('shared', {}).items():
    if cell not in study['grid'] or not isinstance(folder, str):
      raise config_lib.ConfigError(
          f'{path}: shared[{cell!r}] must name a grid cell and a folder')
  study.setdefault('shared', {})
  study.setdefault('eval_lens', [])
  study.setdefault('eval_settings', {})
  study.setdefault('overrides', {})
  study.setdefault('before', {})
  study.setdefault('out', os.path.join(
      'runs', os.path.splitext(os.path.basename(path))[0]))
  return study


def cell_config(base, overrides: dict, seed: int):
  """The base config with a cell's overrides and the seed, validated."""
  c = _overridden(base, overrides)
  c.seed = seed
  config_lib.validate(c)
  return c


def _overridden(base, overrides: dict):
  """A copy of `base` with {dotted key: value} set; unknown keys refused."""
  c = base.copy_and_resolve_references()
  for key, value in overrides.items():
    message = config_lib.unknown_key_message(key)
    if message:
      raise config_lib.ConfigError(message)
    node = c
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def evaluations(study: dict) -> dict[str, dict]:
  """The re-evaluations of every cell, by column prefix: eval_lens (the
  whole split in windows of LEN), then eval_settings."""
  out = {f'eval@{n}': {'eval.max_len': n, 'eval.stride': 0}
         for n in study['eval_lens']}
  out.update(study['eval_settings'])
  return out


def _with_out(overrides: dict, out: str) -> dict:
  """Overrides with '{out}' in string values replaced by the study's folder."""
  return {k: v.replace('{out}', out) if isinstance(v, str) else v
          for k, v in overrides.items()}


def run_before(study: dict, out: str, names) -> None:
  """Trains the study's `before` runs among `names` (a finished one is
  skipped)."""
  for name, spec in study['before'].items():
    if name not in names:
      continue
    c = cell_config(load_config(spec['config']),
                    _with_out(spec.get('overrides', {}), out),
                    spec.get('seed', 0))
    workdir = os.path.join(out, name)
    steps = checkpoint_lib.saved_steps(workdir)
    if steps and steps[-1] >= c.train.num_steps:
      continue
    print(f'[before] {name}: {spec["config"]} {spec.get("overrides", {})}',
          flush=True)
    loop.train_to_end(c, workdir)


def _names_run(overrides: dict, name: str) -> bool:
  """Whether a cell's overrides name the before run `name` ('{out}/NAME')."""
  path = f'{{out}}/{name}'
  return any(isinstance(v, str) and (v == path or v.startswith(path + '/'))
             for v in overrides.values())


def cell_workdir(study: dict, out: str, name: str, seed: int) -> str:
  """The run folder of a cell's seed: in the study's own folder, or in the
  other study's folder that `shared` names."""
  return os.path.join(study['shared'].get(name, out), name, f'seed_{seed}')


def check_same_config(c, workdir: str) -> None:
  """Refuses to reuse a finished run in `workdir` that was trained with
  another config than the cell's (a grid cell edited since, or a shared
  cell that differs from the other study's)."""
  old = workdir_lib.saved_config(workdir)
  c = workdir_lib.resolve(c, old.model.vocab_size)  # As the run resolved it.
  changes = (config_lib.architecture_changes(old, c) +
             config_lib.config_changes(old, c))
  if changes:
    raise config_lib.ConfigError(
        f'cell run {workdir} was trained with another config '
        f'({"; ".join(changes)}); make the cell equal to it, stop sharing '
        'it, or move the run away to train it again')


def _finished(c, workdir: str) -> dict | None:
  """The saved study_cell.json of a run trained to the end, else None."""
  results_path = os.path.join(workdir, 'study_cell.json')
  if not os.path.exists(results_path):
    return None
  with open(results_path) as f:
    saved = json.load(f)
  return saved if saved.get('step') == c.train.num_steps else None


def run_cell(c, workdir: str, evaluations: dict[str, dict]) -> dict:
  """A finished cell's metrics (flattened 'split.metric', and
  'name.split.metric' of each re-evaluation); trains if needed and runs the
  re-evaluations it has not got yet."""
  results_path = os.path.join(workdir, 'study_cell.json')
  metrics, evaluated = None, []
  saved = _finished(c, workdir)
  if saved:
    check_same_config(c, workdir)
    metrics = saved['metrics']
    # Files written before 'evaluated' was recorded held eval_lens only.
    evaluated = saved.get('evaluated', sorted(
        {k.split('.')[0] for k in metrics if k.startswith('eval@')}))
  if metrics is None:
    metrics = _train_cell(c, workdir)
    _save_cell(results_path, c, metrics, evaluated)
  for name, overrides in evaluations.items():
    if name in evaluated:
      continue
    try:
      e = _overridden(c, overrides)
      config_lib.validate(e)
    except config_lib.ConfigError as error:  # A learned table cannot.
      print(f'  no {name} evaluation: {error}', flush=True)
      continue
    print(f'  evaluating {name}: {overrides}', flush=True)
    extra = evaluation.evaluate_saved(e, workdir)
    metrics.update({f'{name}.{k}': v for k, v in _flat(extra).items()})
    evaluated.append(name)
    _save_cell(results_path, c, metrics, evaluated)  # Kept if interrupted.
  return metrics


def _save_cell(path: str, c, metrics: dict, evaluated: list[str]) -> None:
  with open(path, 'w') as f:
    json.dump({'step': c.train.num_steps, 'metrics': metrics,
               'evaluated': evaluated}, f, indent=2)


def _train_cell(c, workdir: str) -> dict:
  """Trains (or finishes) one cell; its final metrics and model figures."""
  c.eval.final = True
  summary = loop.train_to_end(c, workdir)  # Stopped: nothing recorded.
  metrics = _flat(summary.final)
  m = c.model
  metrics['train.tokens_per_sec'] = summary.tokens_per_sec
  metrics['train.best_eval_loss'] = summary.best_eval_loss
  # Keys and values, every layer, float32 on CPU: what decoding must hold.
  heads = m.num_kv_heads or m.num_heads
  metrics['model.kv_cache_bytes_per_token'] = float(
      2 * m.num_layers * heads * (m.embed_dim // m.num_heads) * 4)
  return metrics


def _flat(final: dict) -> dict[str, float]:
  return {f'{split}.{k}': v for split, m in final.items() for k, v in m.items()}


def summarize(rows: dict[str, list[dict]], metrics) -> dict:
  """Per cell and metric: mean, sample std and the per-seed values."""
  out = {}
  for cell, runs in rows.items():
    out[cell] = {}
    for m in metrics:
      values = [r[m] for r in runs if m in r]
      if values:
        out[cell][m] = {
            'mean': float(np.mean(values)),
            'std': float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            'values': values}
  return out


def unreported(rows: dict[str, list[dict]], metrics) -> list[str]:
  """The metrics no run reports (a misspelt name, or a figure the task's
  final evaluation does not make), each with a hint of what the runs have."""
  have = sorted({k for runs in rows.values() for r in runs for k in r})
  notes = []
  for m in metrics:
    if not any(m in r for runs in rows.values() for r in runs):
      split = m.split('.')[0] + '.'
      alike = [k for k in have if k.startswith(split)][:6] or have[:6]
      notes.append(f'note: no run reports {m}; the runs report e.g. '
                   f'{", ".join(alike)}')
  return notes


def _number(x: float, digits: int = 4) -> str:
  """Large figures (tokens/s, bytes) in whole digits with separators; the
  rest to `digits` significant digits."""
  return f'{x:,.0f}' if abs(x) >= 1000 else f'{x:.{digits}g}'


def _cell(m: dict) -> str:
  """Mean ± std; a single seed's figure alone (it has no spread to show)."""
  if len(m['values']) == 1:
    return _number(m['mean'])
  return f'{_number(m["mean"])} ± {_number(m["std"], 2)}'


def _cols(ms: dict, keys) -> str:
  return ' | '.join(_cell(ms[k]) if k in ms else '—' for k in keys)


def markdown(summary: dict, metrics, settings=(), base_metrics=()) -> str:
  """The cells' table (mean ± std over seeds); with `settings`, a second
  table of each cell under each re-evaluation setting."""
  lines = ['| cell | ' + ' | '.join(metrics) + ' |',
           '| --- |' + ' ---: |' * len(metrics)]
  for cell, ms in summary.items():
    lines.append(f'| {cell} | {_cols(ms, metrics)} |')
  if settings:
    lines += ['', '| cell | evaluation | ' + ' | '.join(base_metrics) + ' |',
              '| --- | --- |' + ' ---: |' * len(base_metrics)]
    for cell, ms in summary.items():
      for name in settings:
        keys = [f'{name}.{m}' for m in base_metrics]
        lines.append(f'| {cell} | {name} | {_cols(ms, keys)} |')
  return '\n'.join(lines) + '\n'


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save_plot(plt, fig, out: str, name: str) -> str:
  """Writes `fig` to OUT/<name>.png ('/' in metric names made '_')."""
  fig.tight_layout()
  path = os.path.join(out, name.replace('/', '_') + '.png')
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot(summary: dict, metrics, out: str) -> list[str]:
  """A bar chart (mean ± std over seeds) per metric."""
  plt = _pyplot()
  paths = []
  cells = list(summary)
  for m in metrics:
    have = [c for c in cells if m in summary[c]]
    if not have:
      continue
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(have)), 3.5))
    ax.bar(range(len(have)), [summary[c][m]['mean'] for c in have],
           yerr=[summary[c][m]['std'] for c in have], capsize=4)
    ax.set_xticks(range(len(have)), have, rotation=30, ha='right')
    ax.set_ylabel(m)
    paths.append(_save_plot(plt, fig, out, m.replace('@', '_at_')))
  return paths


def plot_lengths(summary: dict, base_metrics, train_len: int, eval_lens,
                 out: str) -> list[str]:
  """Per base metric, one line per cell across the evaluation contexts (the
  training context, then `eval_lens`): the 'train short, test long' view."""
  plt = _pyplot()
  lengths = [train_len, *eval_lens]
  paths = []
  for m in base_metrics:
    fig, ax = plt.subplots(figsize=(6, 4))
    for cell, ms in summary.items():
      keys = [m] + [f'eval@{n}.{m}' for n in eval_lens]
      points = [(n, ms[k]) for n, k in zip(lengths, keys) if k in ms]
      if points:
        ax.errorbar([n for n, _ in points], [v['mean'] for _, v in points],
                    yerr=[v['std'] for _, v in points], marker='o',
                    capsize=3, label=cell)
    ax.set_xscale('log', base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel(f'evaluation context (trained at {train_len})')
    ax.set_ylabel(m)
    ax.legend(fontsize=8)
    paths.append(_save_plot(plt, fig, out, m + '_by_length'))
  return paths


def plot_settings(summary: dict, base_metrics, settings, out: str
                  ) -> list[str]:
  """Per base metric, each re-evaluation setting's mean ± std over seeds,
  a bar per cell: the view of a study that varies decoding, not training."""
  plt = _pyplot()
  cells = list(summary)
  width = 0.8 / len(cells)
  paths = []
  for m in base_metrics:
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(settings) * len(cells)),
                                    3.5))
    values = []
    for j, cell in enumerate(cells):
      have = [(i, summary[cell][f'{name}.{m}'])
              for i, name in enumerate(settings)
              if f'{name}.{m}' in summary[cell]]
      ax.bar([i + (j - (len(cells) - 1) / 2) * width for i, _ in have],
             [v['mean'] for _, v in have], width,
             yerr=[v['std'] for _, v in have], capsize=3, label=cell)
      values += [v['mean'] for _, v in have]
    ax.set_xticks(range(len(settings)), settings, rotation=30, ha='right')
    ax.set_ylabel(m)
    if values and min(values) > 0:  # Bars from zero hide differences of 1%.
      spread = max(values) - min(values)
      ax.set_ylim(max(0, min(values) - spread), max(values) + spread / 2)
    if len(cells) > 1:
      ax.legend(fontsize=8)
    paths.append(_save_plot(plt, fig, out, m + '_by_setting'))
  return paths


def _pick_seeds(study: dict, seeds) -> list[int]:
  """The study's seeds that --seeds names (all of them if None)."""
  if seeds is None:
    return study['seeds']
  try:
    picked = [int(s) for s in seeds]
  except ValueError:
    raise config_lib.ConfigError(
        f'--seeds={",".join(seeds)}: give whole numbers, e.g. --seeds=0,1'
    ) from None
  unknown = [s for s in picked if s not in study['seeds']]
  if unknown or not picked:
    raise config_lib.ConfigError(
        f'--seeds={",".join(seeds)}: the study\'s seeds are '
        f'{", ".join(map(str, study["seeds"]))}')
  return picked


def run_study(path: str, out: str | None = None, dry_run: bool = False,
              seeds=None):
  """Runs (or resumes) every cell of the study at `path`; writes results."""
  study = load_study(path)
  study['seeds'] = _pick_seeds(study, seeds)
  out = out or study['out']
  base = load_config(study['base'])
  cells = [(name, seed, cell_config(
      base, _with_out({**study['overrides'], **overrides}, out), seed))
           for name, overrides in study['grid'].items()
           for seed in study['seeds']]
  metrics = list(study['metrics']) + [
      f'eval@{n}.{m}' for n in study['eval_lens'] for m in study['metrics']]
  settings = list(study['eval_settings'])
  every_metric = metrics + [f'{name}.{m}' for name in settings
                            for m in study['metrics']]
  print(f'{len(cells)} runs: {len(study["grid"])} cells x '
        f'{len(study["seeds"])} seeds, into {out}', flush=True)
  if dry_run:
    for name, spec in study['before'].items():
      print(f'  before: {name} ({spec["config"]})')
    for name, seed, _ in cells:
      where = (f' (in {study["shared"][name]})' if name in study['shared']
               else '')
      print(f'  {name} seed {seed}{where}')
    for name, overrides in evaluations(study).items():
      print(f'  then evaluated as {name}: {overrides}')
    return None
  os.makedirs(out, exist_ok=True)
  to_train = {(name, seed) for name, seed, c in cells
              if not _finished(c, cell_workdir(study, out, name, seed))}
  run_before(study, out, [b for b in study['before'] if any(
      _names_run({**study['overrides'], **study['grid'][name]}, b)
      for name, _ in to_train)])
  rows, spent, trained = {}, 0.0, 0
  for i, (name, seed, c) in enumerate(cells):
    left = len(cells) - i
    eta = f', about {spent / trained * left / 60:.0f} min left' if trained else ''
    print(f'[{i + 1}/{len(cells)}] {name} seed {seed}{eta}', flush=True)
    start = time.perf_counter()
    workdir = cell_workdir(study, out, name, seed)
    rows.setdefault(name, []).append(run_cell(c, workdir, evaluations(study)))
    if (name, seed) in to_train:
      spent += time.perf_counter() - start
      trained += 1
  summary = summarize(rows, every_metric)
  for note in unreported(rows, study['metrics']):
    print(note, flush=True)
  record = {'study': path, 'base': study['base'], 'grid': study['grid'],
            'seeds': study['seeds'], 'summary': summary}
  with open(os.path.join(out, 'results.json'), 'w') as f:
    json.dump(record, f, indent=2)
  with open(os.path.join(out, 'results.md'), 'w') as f:
    f.write(markdown(summary, metrics, settings, study['metrics']))
  plots = plot(summary, metrics, out)
  if study['eval_lens']:
    train_len = cells[0][2].model.max_len
    plots += plot_lengths(summary, study['metrics'], train_len,
                          study['eval_lens'], out)
  if settings:
    plots += plot_settings(summary, study['metrics'], settings, out)
  print(f'wrote {out}/results.json, results.md and {len(plots)} plot(s)')
  return record


def main(argv):
  if len(argv) != 2:
    cli.usage_error('give one study file: python -m lm.study STUDY_FILE.py '
                    '[--out=DIR] [--seeds=0,1] [--dry_run]')
  cli.start(argv[:1])
  cli.exit_on_user_error(run_study, argv[1], FLAGS.out, FLAGS.dry_run,
                         FLAGS.seeds)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
