"""The training tasks (`config.task`), one `Task` class a file.

A new task is a module with a `base.Task` subclass and its line in `TASKS`;
lm.config checks its config.
"""

from lm.tasks import base
from lm.tasks import causal_lm
from lm.tasks import classification
from lm.tasks import masked_lm
from lm.tasks import replaced_token
from lm.tasks import span_corruption
from lm.tasks import summarization
from lm.tasks import translation

TASKS: dict[str, type[base.Task]] = {t.name: t for t in (
    causal_lm.CausalLM, masked_lm.MaskedLM, replaced_token.ReplacedToken,
    classification.Classification, translation.Translation,
    summarization.Summarization, span_corruption.SpanCorruption)}


def get(c, corpus=None) -> base.Task:
  """The task of config `c`, on `corpus` (a prepared one) for its data."""
  return TASKS[c.task](c, corpus)


def named(**attributes) -> str:
  """The names of the tasks whose class attributes have these values, as
  'a or b' (for messages)."""
  return ' or '.join(name for name, t in TASKS.items()
                     if all(getattr(t, k) == v for k, v in attributes.items()))


def for_architecture(architecture: str) -> type[base.Task]:
  """The task a Hugging Face class maps to."""
  return next(t for t in TASKS.values() if t.hf_architecture == architecture
              or architecture in t.hf_imports)
