"""Evaluation metrics: a language model's loss, perplexities and bits per
byte; a classifier's accuracy, F1 and confusion matrix.

Model-agnostic: the caller supplies `nll_fn(inputs_BxL, targets_BxL,
weights_BxL)`, the summed natural-log NLL of the weighted targets, typically a
jitted model call. Totals accumulate in float64 on the host.

Word-level perplexity uses the WikiText word count (whitespace-split words
plus one <eos> per line), so models with different tokenizers are compared on
the same total NLL of a split over the same denominator.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

NllFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def count_words(text: str) -> int:
  """Words as WikiText counts them: whitespace words plus one <eos> a line.

  Lines are `text.split('\n')`, except that one trailing newline ends the last
  line rather than starting an empty one.
  """
  if not text:
    return 0
  lines = text.count('\n') + (0 if text.endswith('\n') else 1)
  return len(text.split()) + lines


def count_bytes(text: str) -> int:
  """The length of the text in UTF-8 bytes."""
  return len(text.encode('utf-8'))


@dataclasses.dataclass(frozen=True)
class Totals:
  """Summed natural-log NLL and the number of scored tokens."""
  nll: float = 0.0
  tokens: int = 0

  def __add__(self, other: Totals) -> Totals:
    return Totals(self.nll + other.nll, self.tokens + other.tokens)


def _exp(x: float) -> float:
  """exp(x), or inf where it would overflow a float64."""
  try:
    return math.exp(x)
  except OverflowError:
    return math.inf


def summarize(totals: Totals, *, words: int | None = None,
              num_bytes: int | None = None) -> dict[str, float]:
  """Mean token loss (nats) and perplexity; per word and per byte if given.

  `word_perplexity` is exp(total NLL / words) and `bits_per_byte` is
  total NLL / (ln 2 * bytes), both over the whole split the totals cover.
  """
  if totals.tokens <= 0:
    raise ValueError('no tokens were scored; evaluate a stream of 2+ tokens')
  nll = float(totals.nll)
  loss = nll / totals.tokens
  out = {'loss': loss, 'perplexity': _exp(loss)}
  if words is not None:
    out['word_perplexity'] = _exp(nll / words)
  if num_bytes is not None:
    out['bits_per_byte'] = nll / (math.log(2) * num_bytes)
  return out


def num_windows(num_tokens: int, max_len: int, stride: int) -> int:
  """How many windows, one every `stride` tokens, cover every target."""
  num_targets = num_tokens - 1
  return 1 + max(0, -(-(num_targets - max_len) // stride))


def sliding_window_nll(nll_fn: NllFn, tokens: np.ndarray, *, max_len: int,
                       stride: int, batch_size: int,
                       progress: Callable[[int, int], None] | None = None
                       ) -> Totals:
  """Total NLL of a token stream, each target scored once, in sliding windows.

  Window w starts at s = w * stride; its inputs are tokens[s : s + max_len]
  and its targets tokens[s + 1 : s + max_len + 1]. The first window scores all
  its targets; each later one only those no earlier window scored (its last
  `stride`, fewer in a short final window). stride == max_len is the
  non-overlapping tiling; a smaller stride gives every target more context.
  `nll_fn` always sees [batch_size, max_len] arrays; padding has weight 0.

  Args:
    nll_fn: (inputs_BxL int32, targets_BxL int32, weights_BxL float32) ->
      the summed NLL of the weighted targets, a scalar.
    tokens: the stream, a 1-D int array of at least 2 tokens.
    max_len: the context length L of every window.
    stride: tokens between window starts, 1 <= stride <= max_len.
    batch_size: windows per call of nll_fn (B).
    progress: called with (windows done, windows in all) after each batch.

  Returns:
    The summed NLL and the number of scored tokens, len(tokens) - 1.
  """
  tokens = np.asarray(tokens)
  if not 1 <= stride <= max_len:
    raise ValueError(f'stride={stride} must be between 1 and '
                     f'max_len={max_len}')
  if tokens.ndim != 1 or len(tokens) < 2:
    raise ValueError(f'need a 1-D stream of at least 2 tokens to score, got '
                     f'shape {tokens.shape}')
  n = len(tokens)
  total_windows = num_windows(n, max_len, stride)
  pos_L = np.arange(max_len)
  totals = Totals()
  for first in range(0, total_windows, batch_size):
    w_B = np.arange(first, first + batch_size)
    start_B = w_B * stride
    idx_BxL = start_B[:, None] + pos_L[None, :]  # Stream index of each input.
    # Later windows score only targets past the previous window's last one.
    fresh_BxL = (w_B[:, None] == 0) | (pos_L[None, :] >= max_len - stride)
    real_B = w_B < total_windows
    weights_BxL = fresh_BxL & (idx_BxL + 1 < n) & real_B[:, None]
    real_BxL = (idx_BxL < n) & real_B[:, None]
    inputs_BxL = np.where(real_BxL, tokens[np.minimum(idx_BxL, n - 1)], 0)
    targets_BxL = np.where(weights_BxL, tokens[np.minimum(idx_BxL + 1, n - 1)],
                           0)
    nll = nll_fn(inputs_BxL.astype(np.int32), targets_BxL.astype(np.int32),
                 weights_BxL.astype(np.float32))
    totals += Totals(float(nll), int(weights_BxL.sum()))
    if progress is not None:
      progress(min(first + batch_size, total_windows), total_windows)
  return totals


def classification(labels_N: np.ndarray, predictions_N: np.ndarray,
                   num_classes: int) -> dict:
  """Accuracy, F1 and the confusion matrix (rows: true class, columns:
  predicted). F1 is the positive class's (1) for two classes, as GLUE
  reports it, else the mean over classes (macro)."""
  labels_N, predictions_N = np.asarray(labels_N), np.asarray(predictions_N)
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels_N, predictions_N), 1)
  tp = np.diag(confusion).astype(np.float64)
  predicted, actual = confusion.sum(0), confusion.sum(1)
  f1_C = np.divide(2 * tp, predicted + actual, out=np.zeros_like(tp),
                   where=(predicted + actual) > 0)
  return {'accuracy': float(tp.sum() / max(len(labels_N), 1)),
          'f1': float(f1_C[1] if num_classes == 2 else f1_C.mean()),
          'examples': int(len(labels_N)),
          'confusion': confusion.tolist()}


def format_results(results: dict[str, dict]) -> list[str]:
  """One line per split of a final evaluation (confusion matrices as
  [[true 0 predicted 0, ...], ...])."""
  return [f'{split}: ' + ', '.join(
      f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}'
      for k, v in m.items() if k != 'tokens') for split, m in results.items()]
