"""Translate with a trained run: python -m lm.translate --workdir=RUN.

Reads sentences, one a line, from --input (or stdin), and prints one
translation a line. Beam search by default; --beam_size=1 decodes greedily
(or samples, with --temperature). --average_last=N translates with the mean
of the run's N latest checkpoints. With --reference, also prints sacreBLEU
and chrF of the translations against that file to stderr.

`lm.summarize` is the same command for summarization runs (one document a
line in, one summary a line out, ROUGE against --reference); both read any
encoder-decoder run that maps text to text.
"""

import dataclasses
import math
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from lm import cli
from lm import config as config_lib
from lm import tasks
from lm.data import tokenizer as tokenizer_lib
from lm.eval import bleu
from lm.eval import rouge
from lm.eval import search
from lm.eval import translator as translator_lib
from lm.train import workdir as workdir_lib

flags.DEFINE_string('workdir', None, 'A translation or summarization run '
                    'written by lm.main.')
flags.DEFINE_string('input', '', 'A file of sentences (documents, to '
                    'summarize), one a line; (empty) reads stdin.')
flags.DEFINE_string('reference', '', 'A file of references, one a line: '
                    'print BLEU and chrF (lm.summarize: ROUGE) to stderr.')
flags.DEFINE_integer('beam_size', 4, 'Beam width; 1: greedy (or sampled).')
flags.DEFINE_float('length_penalty', 0.6, 'Length-penalty exponent alpha '
                   '(>= 0; 0: none).')
flags.DEFINE_enum('penalty', 'gnmt', search.PENALTIES, 'gnmt: ((5 + len) / '
                  '6)^alpha; hf: len^alpha.')
flags.DEFINE_integer('max_len', None, 'Output tokens at most (default: the '
                     'run\'s data.target_len, else its model.max_len).')
flags.DEFINE_integer('min_len', 0, 'Tokens before EOS at least (Hugging '
                     'Face\'s min_new_tokens); 0: any.')
flags.DEFINE_integer('no_repeat_ngram', 0, 'No n-gram of this size twice in '
                     'an output (Hugging Face\'s no_repeat_ngram_size); 0: '
                     'off.')
flags.DEFINE_float('temperature', 0.0, 'Sampling temperature with '
                   '--beam_size=1; 0 is greedy.')
flags.DEFINE_integer('top_k', 0, 'Sample among the k likeliest; 0: all.')
flags.DEFINE_float('top_p', 1.0, 'Sample among the likeliest ids whose '
                   'probability reaches p; 1: all.')
flags.DEFINE_integer('seed', 0, 'Random seed of sampling.')
flags.DEFINE_integer('average_last', 1, 'Average the parameters of the run\'s '
                     'N latest checkpoints.')
flags.DEFINE_integer('batch_size', 32, 'Sentences decoded together.')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def check_settings(s: translator_lib.Settings, average_last: int,
                   batch_size: int) -> None:
  """One-line errors for decoding settings no search can use."""
  for name, value, low in (('beam_size', s.beam_size, 1),
                           ('average_last', average_last, 1),
                           ('batch_size', batch_size, 1),
                           ('top_k', s.top_k, 0), ('max_len', s.max_len, 1),
                           ('min_len', s.min_len, 0),
                           ('no_repeat_ngram', s.no_repeat_ngram, 0)):
    if value < low:
      raise config_lib.ConfigError(f'--{name} must be at least {low}, got '
                                   f'{value}')
  for name, value in (('length_penalty', s.alpha),
                      ('temperature', s.temperature)):
    if not value >= 0 or math.isinf(value):  # NaN fails >= 0.
      raise config_lib.ConfigError(f'--{name} must be a finite number >= 0, '
                                   f'got {value}')
  if not 0.0 < s.top_p <= 1.0:
    raise config_lib.ConfigError(f'--top_p must be in (0, 1], got {s.top_p}')


def load(workdir: str, average_last: int = 1, command: str = 'lm.translate'):
  """(task, tokenizer, graphdef, parameters) of a translation (or
  summarization) run."""
  config = workdir_lib.saved_config(workdir)
  task = tasks.get(config)
  if not task.translates:
    kind = ('a pretrained encoder-decoder' if task.encoder_decoder
            else 'not an encoder-decoder')
    raise workdir_lib.RunError(
        f'{workdir} is a task={config.task} run, {kind}; '
        f'{command} reads {tasks.named(translates=True)} runs')
  tok = tokenizer_lib.load(workdir)
  task.tok = tok
  graphdef, _ = task.abstract()
  abstract = workdir_lib.single_device_params(config)
  if average_last > 1:
    params, _ = workdir_lib.averaged_params(abstract, workdir, average_last)
  else:
    params = workdir_lib.load_params(abstract, workdir)
  if not all(bool(np.isfinite(x).all()) for x in jax.tree.leaves(params)):
    raise workdir_lib.RunError(
        f'{workdir}: its parameters hold NaN or infinite values (the run '
        'diverged); train it again with a lower optim.lr')
  return task, tok, graphdef, params


def read_input(path: str) -> list[str]:
  if not path:
    return sys.stdin.read().splitlines()
  return bleu.read_lines(path)


def main(argv, command: str = 'lm.translate'):
  cli.start(argv, logging.ERROR)
  settings = translator_lib.Settings(
      beam_size=FLAGS.beam_size, alpha=FLAGS.length_penalty,
      penalty=FLAGS.penalty,
      max_len=FLAGS.max_len if FLAGS.max_len is not None else 10**9,
      min_len=FLAGS.min_len, no_repeat_ngram=FLAGS.no_repeat_ngram,
      temperature=FLAGS.temperature,
      top_k=FLAGS.top_k, top_p=FLAGS.top_p,
      seed=FLAGS.seed)
  cli.exit_on_user_error(check_settings, settings, FLAGS.average_last,
                         FLAGS.batch_size)
  task, _, graphdef, params = cli.exit_on_user_error(
      load, FLAGS.workdir, FLAGS.average_last, command)
  if FLAGS.max_len is None and task.c.data.target_len:
    settings = dataclasses.replace(settings, max_len=task.c.data.target_len)
  sources = cli.exit_on_user_error(_read, FLAGS.input)
  references = (cli.exit_on_user_error(_read, FLAGS.reference)
                if FLAGS.reference else None)
  if references is not None and len(references) != len(sources):
    cli.usage_error(f'--reference has {len(references)} lines but the input '
                    f'{len(sources)}; give one reference a sentence')
  translator = translator_lib.Translator(graphdef, task.model_cfg, task.tok,
                                         settings, FLAGS.batch_size)
  hypotheses, seconds, _ = translator.translate(params, sources)
  for line in hypotheses:
    sys.stdout.write(line + '\n')
  rate = f'{len(sources) / max(seconds, 1e-9):.1f} sentences/s'
  if references is not None and command == 'lm.summarize':
    scores = rouge.corpus_scores(hypotheses, [[r] for r in references])
    print(f'ROUGE-1 {scores["rouge1"]:.2f}, ROUGE-2 {scores["rouge2"]:.2f}, '
          f'ROUGE-L {scores["rougeL"]:.2f} (F1, stemmed); {rate}',
          file=sys.stderr)
  elif references is not None:
    scores = bleu.corpus_scores(hypotheses, references)
    print(f'BLEU {scores["bleu"]:.2f} ({scores["bleu_signature"]}); chrF '
          f'{scores["chrf"]:.2f}; {rate}', file=sys.stderr)


def _read(path: str) -> list[str]:
  try:
    return read_input(path)
  except (OSError, UnicodeDecodeError) as e:
    raise config_lib.ConfigError(f'cannot read {path}: {e}') from None


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
