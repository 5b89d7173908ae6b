"""Train a language model: python -m lm.main --config=CONFIG --workdir=DIR.

Trains, evaluating and checkpointing as it goes; run it again on the same
workdir to resume. Override any config field on the command line, e.g.
  --config=configs/shakespeare_char.py:cpu --config.optim.lr=3e-4
"""

from absl import app, flags
from ml_collections import config_flags

from lm import config as config_lib
from lm import cli
from lm import run

config_flags.DEFINE_config_file(
    'config', None, 'Config file (configs/NAME.py[:VARIANT]).',
    lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, metrics, '
                    'TensorBoard; an existing run there is resumed.')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def train(config, workdir):
  config_lib.validate(config)
  s = run.train_and_evaluate(config, workdir)
  print(f'done: {s.steps} steps, final eval loss {s.final_eval_loss:.4f}, '
        f'best {s.best_eval_loss:.4f}, {s.tokens_per_sec:,.0f} tokens/s; '
        f'run in {s.workdir} (sample: python -m lm.sample --workdir='
        f'{s.workdir})')


def main(argv):
  cli.start(argv)
  cli.exit_on_user_error(train, FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
