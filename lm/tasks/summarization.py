"""summarization: an encoder-decoder trained on (document, summary) pairs.

Training is the translation task's (`lm.tasks.translation`): token-count
batches of every (document, summary) pair, label-smoothed cross-entropy of
the summary under teacher forcing. Documents are usually much longer than
their summaries, so decoder rows have their own width, `data.target_len`
(summaries are cut to it, and counted), and so do the summaries decoded.

The final evaluation summarizes each document of the validation and test
splits once (beam search, `eval.beam_size`, `eval.alpha`, `eval.penalty`)
and scores it against all of its references with ROUGE-1/2/L as SciTLDR's
authors do (`lm.eval.rouge`: best reference by ROUGE-1, stemmed), beside
the lead-sentence baseline and the best-single-sentence oracle. A
document's references are the targets of the examples that share its id
(a corpus without ids, such as `parallel_text`: its source text).
"""

from __future__ import annotations

import re

from lm.data import prepare as prepare_lib
from lm.data import summaries
from lm.eval import rouge
from lm.tasks import translation


def split_sentences(text: str) -> list[str]:
  """A document's sentences where the corpus does not give them: split
  after '.', '!' or '?' followed by whitespace."""
  return [s for s in re.split(r'(?<=[.!?])\s+', text.strip()) if s]


class Summarization(translation.Translation):
  """A sequence-to-sequence summarization model."""

  name = 'summarization'
  starts_from = {'summarization': '', 'translation': '',
                 'span_corruption': ''}
  hf_imports = ()

  def documents(self, split: str) -> list[tuple[str, list[str], list[str]]]:
    """Each document of `split` once, in order: (its text, its sentences,
    its non-empty references)."""
    pairs = self._texts(split)
    builder = self.corpus.builder
    if 'id' in builder.info.features:
      meta = summaries.read_sentences(prepare_lib.source(
          builder, self.corpus.splits.get(split, split)))
    else:
      meta = [(source, split_sentences(source)) for source, _ in pairs]
    docs = {}
    for (source, target), (key, sentences) in zip(pairs, meta):
      doc = docs.setdefault(key, (source, sentences, []))
      if target.strip():
        doc[2].append(target)
    return [d for d in docs.values() if d[2]]

  def score(self, translator, params, split: str, writer=None) -> dict:
    """ROUGE of summarizing `split`'s documents, with the baselines'."""
    docs = self.documents(split)
    progress = (writer.sub_progress(f'summarize {split}', 'document')
                if writer else None)
    outputs, seconds, tokens = translator.translate(
        params, [source for source, _, _ in docs], progress)
    result = rouge.report(outputs, [(sentences, refs)
                                    for _, sentences, refs in docs])
    result.update(documents=len(docs),
                  references=sum(len(refs) for _, _, refs in docs),
                  sentences_per_sec=len(docs) / max(seconds, 1e-9),
                  tokens_per_sec=tokens / max(seconds, 1e-9))
    return result

  def next_step(self, workdir: str) -> str:
    return f'summarize: python -m lm.summarize --workdir={workdir}'
