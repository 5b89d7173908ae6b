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
# glibc refuses mmap thresholds above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit).
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def keep_freed_memory(trim_threshold: int = 1 << 34) -> bool:
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
  ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
  ok &= mallopt(_M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1))
  return bool(ok)
