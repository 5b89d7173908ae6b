"""Tests of lm.eval.translator beyond what the translation task's and
lm.translate's tests run end to end: counting the pieces a batch wrote."""

import numpy as np

from lm.eval import translator


def test_written_counts_pieces_up_to_and_with_the_first_eos():
  eos = 2
  ids_BxL = np.array([[5, 6, 2, 0, 0],   # 2 pieces and EOS: 3.
                      [2, 0, 0, 0, 0],   # EOS at once: 1.
                      [5, 2, 7, 2, 0],   # The first EOS ends it: 2.
                      [5, 6, 7, 8, 9]])  # No EOS (cut at max_len): 5.
  assert translator._written(ids_BxL, eos) == 3 + 1 + 2 + 5
  assert translator._written(ids_BxL[:0], eos) == 0
