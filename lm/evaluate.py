"""Evaluate a language-model or translation run: python -m lm.evaluate
--workdir=RUN.

Scores the run's latest parameters (or --step's): with --text=FILE, the
perplexity of that UTF-8 text file read as one document in the run's
tokenizer (e.g. an imported GPT-2 on WikiText-2 raw); without it, the run's
own final evaluation of its validation and test splits. Windows of --max_len
tokens (default: the model's context) start --stride tokens apart (default:
--max_len, no overlap); every token after the first is scored once, with the
context its window gives it. Prints loss, perplexity, word-level perplexity
and bits per byte, and writes them as JSON with --out. A translation or
summarization run is scored by its final evaluation (beam search; BLEU,
chrF and tokenized BLEU, or ROUGE-1/2/L beside the lead-sentence and oracle
baselines, of its validation, test and eval.extra_splits, or of the corpus
splits named by --split), optionally with the mean of its --average_last
latest checkpoints.
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags
from absl import logging
import jax

from lm import cli
from lm import tasks
from lm.eval import metrics as metrics_lib
from lm.train import evaluation

flags.DEFINE_string('workdir', None, 'A GPT run (trained, or imported '
                    'with lm.convert from-hf).')
flags.DEFINE_string('text', '', 'A UTF-8 text file to score (default: the '
                    'run\'s own validation and test splits).')
flags.DEFINE_integer('max_len', 0, 'Window length in tokens; 0: the model\'s '
                     'context.')
flags.DEFINE_integer('stride', 0, 'Tokens between window starts; 0: '
                     '--max_len.')
flags.DEFINE_integer('batch_size', 8, 'Windows per forward pass.')
flags.DEFINE_integer('step', None, 'The checkpoint step (default: latest).')
flags.DEFINE_integer('average_last', 1, 'Translation runs: the mean of the '
                     'N latest checkpoints.')
flags.DEFINE_list('split', [], 'Translation and summarization runs: score '
                  'these splits of the run\'s corpus (default: validation, '
                  'test and eval.extra_splits).')
flags.DEFINE_integer('no_repeat_ngram', None, 'Translation and summarization '
                     'runs: decode with no n-gram of this size twice (0: '
                     'off; default: the run\'s eval.no_repeat_ngram).')
flags.DEFINE_string('out', '', 'Also write the results to this JSON file.')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def main(argv):
  cli.start(argv, logging.ERROR)
  if FLAGS.out:  # Before minutes of evaluation, not after.
    cli.exit_on_user_error(cli.check_output_file, 'out', FLAGS.out)
  if FLAGS.text:
    results = {'text': cli.exit_on_user_error(
        evaluation.text_perplexity, FLAGS.workdir, FLAGS.text, FLAGS.max_len,
        FLAGS.stride, FLAGS.batch_size, FLAGS.step)}
  else:
    c = cli.exit_on_user_error(evaluation.eval_config, FLAGS.workdir,
                               FLAGS.max_len, FLAGS.stride, FLAGS.batch_size)
    if FLAGS.average_last < 1:
      cli.usage_error(f'--average_last must be at least 1, got '
                      f'{FLAGS.average_last}')
    for flag in ('split', 'no_repeat_ngram'):
      if FLAGS[flag].present and not tasks.TASKS[c.task].translates:
        cli.usage_error(f'--{flag} is for translation and summarization '
                        f'runs; {FLAGS.workdir} is a task={c.task} run')
    if FLAGS.no_repeat_ngram is not None:
      if FLAGS.no_repeat_ngram < 0:
        cli.usage_error('--no_repeat_ngram must be >= 0 (0: off), got '
                        f'{FLAGS.no_repeat_ngram}')
      c.eval.no_repeat_ngram = FLAGS.no_repeat_ngram
    results = cli.exit_on_user_error(evaluation.evaluate_saved, c,
                                     FLAGS.workdir, FLAGS.step,
                                     FLAGS.average_last, FLAGS.split or None)
  for line in metrics_lib.format_results(results):
    print(line)
  if FLAGS.out and jax.process_index() == 0:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
