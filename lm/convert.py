"""Hugging Face checkpoints in and out: GPT-2 and BERT.

  python -m lm.convert from-hf --model_dir=HF_DIR --workdir=RUN
  python -m lm.convert to-hf --workdir=RUN --out_dir=HF_DIR

`from-hf` reads a local `transformers` folder (config.json,
model.safetensors or its shards, and tokenizer.json, or vocab.json +
merges.txt, or vocab.txt) of a `GPT2LMHeadModel`, `BertForMaskedLM` or
`BertForSequenceClassification` and writes a run: config.json, the
tokenizer (data.tokenizer=hf) and an Orbax checkpoint of the parameters
(step 0). Every tensor is mapped by name and its shape checked against the
config (lm/interop/hf_format.py has the table). The run then works like a trained
one: `lm.sample`, `lm.evaluate`, `lm.finetune`, and any training config with
`--config.init_from=RUN` (which takes the run's architecture and tokenizer).

`to-hf` writes such a folder from a run whose model has a Hugging Face
equivalent (GPT-2: learned positions, pre-LayerNorm, GELU or ReLU, MHA;
BERT: post-LayerNorm with a norm on the embeddings, token types, exact GELU),
which `from_pretrained` loads. The tokenizer is written only when it is a
Hugging Face one (an imported run's): a run's own char, word, byte or
SentencePiece vocabulary has no tokenizer.json form here.

Reads safetensors with numpy: neither torch nor transformers is needed.
"""

from __future__ import annotations

from absl import app
from absl import flags
from absl import logging

from lm import cli
from lm.interop import hf_io

COMMANDS = ('from-hf', 'to-hf')
flags.DEFINE_string('model_dir', None, 'from-hf: the Hugging Face folder.')
flags.DEFINE_string('workdir', None, 'from-hf: the run to write (new); '
                    'to-hf: the run to export.')
flags.DEFINE_string('out_dir', None, 'to-hf: the folder to write (new or '
                    'empty).')
flags.DEFINE_integer('step', None, 'to-hf: the checkpoint step (default: the '
                     'latest).')
FLAGS = flags.FLAGS


def main(argv):
  command = argv[1] if len(argv) > 1 else ''
  if command not in COMMANDS:
    cli.usage_error(f'give a command: {" or ".join(COMMANDS)} (see --help)')
  cli.start(argv[:1] + argv[2:], logging.ERROR)
  if command == 'from-hf':
    if not FLAGS.model_dir or not FLAGS.workdir:
      cli.usage_error('from-hf needs --model_dir=HF_DIR and --workdir=RUN')
    print(cli.exit_on_user_error(hf_io.from_hf, FLAGS.model_dir, FLAGS.workdir))
  else:
    if not FLAGS.workdir or not FLAGS.out_dir:
      cli.usage_error('to-hf needs --workdir=RUN and --out_dir=HF_DIR')
    cli.exit_on_user_error(cli.check_output_dir, 'out_dir', FLAGS.out_dir)
    print(cli.exit_on_user_error(hf_io.to_hf, FLAGS.workdir, FLAGS.out_dir,
                                 FLAGS.step))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
