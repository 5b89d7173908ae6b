"""What machine a benchmark ran on, and writing its results file."""

from __future__ import annotations

import json
import platform


def cpu_model() -> str:
  """The CPU's model name (from /proc/cpuinfo on Linux)."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def write_results(results: dict, path: str) -> None:
  """`results` as indented JSON at `path`, and a line saying so."""
  with open(path, 'w') as f:
    json.dump(results, f, indent=2)
  print(f'written to {path}')
