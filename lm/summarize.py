"""Summarize with a trained run: python -m lm.summarize --workdir=RUN.

Reads documents, one a line, from --input (or stdin), and prints one
summary a line. The options are lm.translate's: beam search by default
(--beam_size, --length_penalty, --penalty), --beam_size=1 greedy or sampled,
--max_len (default: the run's data.target_len), --average_last=N. With
--reference (one reference summary a line), also prints ROUGE-1/2/L F1
(stemmed) of the summaries to stderr.
"""

from absl import app
from absl import flags

from lm import cli
from lm import translate

flags.adopt_module_key_flags(translate)


def main(argv):
  translate.main(argv, command='lm.summarize')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
