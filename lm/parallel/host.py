"""Host process settings that make XLA:CPU fast: glibc malloc thresholds.

XLA:CPU allocates each step's temporary buffers (megabytes) with malloc. With
glibc's defaults those come from fresh mmaps that are unmapped after the step
and page-faulted (zero-filled) again on the next: on a 2-core CPU about a third
of a small GPT's step went to the kernel's page-fault handler. Keeping freed
memory in the heap (no trimming, no mmap for buffers below the cap) removes
that churn. Measured in BENCHMARKS.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# XLA:CPU takes a step's temporaries as one block (about 50 MiB for the small
# CPU GPT), so a threshold of a few MiB is not enough; mallopt takes an int.
_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
  """Tells glibc malloc to reuse freed memory; False where not glibc/Linux.

  LM_KEEP_FREED_MEMORY=0 in the environment turns this off (for comparison).
  """
  if (not sys.platform.startswith('linux') or
      os.environ.get('LM_KEEP_FREED_MEMORY', '1') == '0'):
    return False
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  return bool(
      mallopt(_M_MMAP_THRESHOLD, _MAX) & mallopt(_M_TRIM_THRESHOLD, _MAX))
