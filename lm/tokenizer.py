"""Character tokenizer: one id per distinct character of the training text."""

from __future__ import annotations

import json
import os

import numpy as np


class TokenizerError(ValueError):
  """Text the tokenizer cannot encode, or a tokenizer file it cannot read."""


class CharTokenizer:
  """Maps each character of a fixed alphabet to an id (sorted order)."""

  def __init__(self, chars: str):
    self.chars = chars
    self._ids = {ch: i for i, ch in enumerate(chars)}

  @classmethod
  def from_text(cls, text: str) -> 'CharTokenizer':
    return cls(''.join(sorted(set(text))))

  @property
  def vocab_size(self) -> int:
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    unknown = sorted(set(text) - self._ids.keys())
    if unknown:
      raise TokenizerError(
          f'characters not in the vocabulary: {"".join(unknown)!r}; the model '
          f'knows only {self.chars!r}')
    return np.fromiter((self._ids[ch] for ch in text), np.int32, len(text))

  def decode(self, ids) -> str:
    return ''.join(self.chars[int(i)] for i in ids)

  def save(self, path: str) -> None:
    with open(path, 'w') as f:
      json.dump({'type': 'char', 'chars': self.chars}, f)

  @classmethod
  def load(cls, path: str) -> 'CharTokenizer':
    if not os.path.exists(path):
      raise TokenizerError(f'no tokenizer at {path}; is this a run directory?')
    with open(path) as f:
      spec = json.load(f)
    if spec.get('type') != 'char':
      raise TokenizerError(f'{path}: unknown tokenizer type {spec.get("type")!r}')
    return cls(spec['chars'])
