"""Train a language model: python -m lm.main --config=CONFIG --workdir=DIR.

Trains, evaluating and checkpointing as it goes; run it again on the same
workdir to resume. Override any config field on the command line, e.g.
  --config=configs/shakespeare_char.py:cpu --config.optim.lr=3e-4
With --dry_run (no workdir needed) it compiles the train step for the mesh
and prints per-device memory and FLOPs instead (lm/train/dryrun.py), e.g. for a
64-chip mesh on a laptop:
  --dry_run --simulate_devices=64 --device_kind=H100 --config.mesh.fsdp=8
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from lm import cli
from lm import config as config_lib
from lm import tasks
from lm.data import corpus as corpus_lib
from lm.parallel import compilation
from lm.parallel import distributed
from lm.train import dryrun
from lm.train import loop
from lm.train import workdir as workdir_lib

config_flags.DEFINE_config_file(
    'config', None, 'Config file (configs/NAME.py[:VARIANT]).',
    lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, metrics, '
                    'TensorBoard; an existing run there is resumed.')
flags.DEFINE_bool('dry_run', False, 'Compile the train step and report '
                  'per-device memory and FLOPs; train nothing.')
flags.DEFINE_integer('simulate_devices', 0, 'With --dry_run: compile for this '
                     'many simulated CPU devices (a mesh larger than the '
                     'machine).')
flags.DEFINE_string('device_kind', None, 'With --dry_run: the chip to compare '
                    'memory and peak FLOP/s against (e.g. H100, "TPU v5e"); '
                    'default: the device present.')
flags.DEFINE_string('coordinator_address', '', 'Multi-process runs: '
                    'HOST:PORT of process 0 (TPU pods, SLURM and Open MPI are '
                    'detected without it).')
flags.DEFINE_integer('num_processes', 0, 'Multi-process runs: how many.')
flags.DEFINE_integer('process_id', -1, 'Multi-process runs: this one, from 0.')
flags.mark_flags_as_required(['config'])
FLAGS = flags.FLAGS


def train(config, workdir):
  config_lib.validate(config)
  s = loop.train_and_evaluate(config, workdir)
  if s.preempted:  # Stopped by a signal, checkpoint written: exit 0.
    return
  if jax.process_index() == 0:
    then = tasks.get(config).next_step(s.workdir)
    print(f'done: {s.steps} steps, final eval loss {s.final_eval_loss:.4f}, '
          f'best {s.best_eval_loss:.4f}, {s.tokens_per_sec:,.0f} tokens/s; '
          f'run in {s.workdir} ({then})')


def dry_run(config, device_kind):
  config_lib.validate(config)
  vocab = config.model.vocab_size
  if not vocab:  # Taken from the data's tokenizer, as a run would.
    vocab = corpus_lib.load_corpus(config.data,
                                   config.model.max_len).tokenizer.vocab_size
  if device_kind and config.model.dtype == 'auto':
    config = config.copy_and_resolve_references()
    config.model.dtype = 'bfloat16'  # As it would run on that accelerator.
  report = dryrun.analyse(workdir_lib.resolve(config, vocab), device_kind)
  print(dryrun.format_report(report))
  dryrun.check_fits(report)


def main(argv):
  cli.start(argv)
  compilation.configure(FLAGS.config.compile)
  if FLAGS.simulate_devices:
    if not FLAGS.dry_run:
      cli.usage_error('--simulate_devices is for --dry_run only; add --dry_run')
    jax.config.update('jax_platforms', 'cpu')
    jax.config.update('jax_num_cpu_devices', FLAGS.simulate_devices)
  else:
    cli.exit_on_user_error(distributed.initialize, FLAGS.coordinator_address,
                           FLAGS.num_processes, FLAGS.process_id)
  if FLAGS.dry_run:
    cli.exit_on_user_error(dry_run, FLAGS.config, FLAGS.device_kind)
    return
  if not FLAGS.workdir:
    cli.usage_error('--workdir is required (or give --dry_run)')
  cli.exit_on_user_error(train, FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
