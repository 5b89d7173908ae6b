"""Sample text from a trained run: python -m lm.sample --workdir=RUN.

Reads the run's config, tokenizer and latest checkpoint, and generates with a
KV cache in a jitted decode loop.
"""

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
from lm.eval import decode
from lm.train import workdir as workdir_lib

flags.DEFINE_string('workdir', None, 'A run directory written by lm.main.')
flags.DEFINE_string('prompt', '\n', 'Text to continue.')
flags.DEFINE_integer('max_new_tokens', 500, 'Tokens to generate per sample.')
flags.DEFINE_float('temperature', 0.8, 'Softmax temperature; 0 is greedy.')
flags.DEFINE_integer('top_k', 200, 'Sample among the k likeliest; 0: all.')
flags.DEFINE_integer('seed', 0, 'Random seed.')
flags.DEFINE_integer('num_samples', 1, 'Independent samples, decoded as a '
                     'batch.')
flags.mark_flag_as_required('workdir')
FLAGS = flags.FLAGS


def sample(workdir, prompt, max_new_tokens, temperature, top_k, seed,
           num_samples) -> list[str]:
  """Generates `num_samples` continuations of `prompt` from the run."""
  for name, value, low in (('max_new_tokens', max_new_tokens, 1),
                           ('num_samples', num_samples, 1), ('top_k', top_k,
                                                             0)):
    if value < low:
      raise config_lib.ConfigError(f'--{name} must be at least {low}, got '
                                   f'{value}')
  if not temperature >= 0 or math.isinf(temperature):  # NaN fails >= 0.
    raise config_lib.ConfigError(f'--temperature must be >= 0, got '
                                 f'{temperature}')
  if not prompt:
    raise config_lib.ConfigError('--prompt is empty; give at least one '
                                 'character')
  config = workdir_lib.saved_config(workdir)
  task = tasks.get(config)
  if not task.generates:
    raise workdir_lib.RunError(
        f'{workdir} is a task={config.task} run: only '
        f'{tasks.named(generates=True)} runs generate text (a classifier '
        'labels sentences: python -m lm.finetune predict)')
  tok = tokenizer_lib.load(workdir)
  if tok.vocab_size > config.model.vocab_size:
    raise workdir_lib.RunError(
        f'{workdir}: its tokenizer has {tok.vocab_size} '
        f'entries but its model only {config.model.vocab_size}'
        '; the tokenizer files are not this run\'s')
  prompt_ids = tok.encode(prompt)
  graphdef, _ = task.abstract()
  params = workdir_lib.load_params(workdir_lib.single_device_params(config),
                                   workdir)
  if not all(bool(np.isfinite(x).all()) for x in jax.tree.leaves(params)):
    raise workdir_lib.RunError(
        f'{workdir}: its parameters hold NaN or infinite values (the run '
        'diverged); there is nothing to sample: train it again with a lower '
        'optim.lr')
  sampler = decode.Sampler(graphdef, task.model_cfg, valid_vocab=tok.vocab_size)
  ids = sampler.generate(params, prompt_ids, max_new_tokens,
                         num_samples=num_samples, temperature=temperature,
                         top_k=min(top_k, tok.vocab_size), seed=seed)
  return [prompt + tok.decode(row) for row in ids]


def main(argv):
  cli.start(argv, logging.ERROR)
  texts = cli.exit_on_user_error(
      sample, FLAGS.workdir, FLAGS.prompt, FLAGS.max_new_tokens,
      FLAGS.temperature, FLAGS.top_k, FLAGS.seed, FLAGS.num_samples)
  for i, text in enumerate(texts):
    if len(texts) > 1:
      print(f'--- sample {i + 1} ---')
    sys.stdout.write(text + '\n')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
