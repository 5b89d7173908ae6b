"""Runs nanoGPT (github.com/karpathy/nanoGPT) as a baseline, from a checkout.

nanoGPT is not part of this project and none of its code is copied here: the
functions below call its own scripts (prepare.py, train.py, model.py) in a
user's checkout, with a Python that has PyTorch, numpy and requests.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]

# nanoGPT's README command for its CPU shakespeare_char run.
CPU_ARGS = ['config/train_shakespeare_char.py', '--device=cpu',
            '--compile=False', '--eval_iters=20', '--log_interval=1',
            '--block_size=64', '--batch_size=12', '--n_layer=4', '--n_head=4',
            '--n_embd=128', '--max_iters=2000', '--lr_decay_iters=2000',
            '--dropout=0.0']

# Loss of a nanoGPT checkpoint on its whole validation split, in the same
# non-overlapping 64-token windows as experiments/shakespeare_char_cpu.py.
_FULL_VAL = '''
import sys, numpy as np, torch
sys.path.insert(0, '.')
from model import GPT, GPTConfig
ckpt = torch.load(sys.argv[1] + '/ckpt.pt', map_location='cpu')
model = GPT(GPTConfig(**ckpt['model_args']))
model.load_state_dict({k.replace('_orig_mod.', ''): v
                       for k, v in ckpt['model'].items()})
model.eval()
val = np.fromfile('data/shakespeare_char/val.bin', np.uint16).astype(np.int64)
T, B = 64, 64
n = (len(val) - 1) // T
losses = []
with torch.no_grad():
  for s in range(0, n - B + 1, B):
    rows = [torch.from_numpy(val[(s + i) * T:(s + i) * T + T + 1])
            for i in range(B)]
    x = torch.stack([r[:-1] for r in rows]); y = torch.stack([r[1:] for r in rows])
    losses.append(model(x, y)[1].item())
print(float(np.mean(losses)))
'''


def check(nanogpt_dir: pathlib.Path, torch_python: str) -> str | None:
  """A one-line problem with the arguments, or None."""
  if not (nanogpt_dir / 'train.py').exists():
    return f'{nanogpt_dir} has no train.py; pass a nanoGPT checkout'
  if shutil.which(torch_python) is None and not pathlib.Path(
      torch_python).exists():
    return f'{torch_python} not found; pass a Python with PyTorch'
  return None


def prepare(nanogpt_dir: pathlib.Path, torch_python: str) -> None:
  """nanoGPT's own data preparation, fed the embedded Tiny Shakespeare."""
  data = nanogpt_dir / 'data' / 'shakespeare_char'
  if (data / 'train.bin').exists():
    return
  shutil.copy(REPO / 'lm' / 'assets' / 'tinyshakespeare.txt',
              data / 'input.txt')
  subprocess.run([torch_python, 'prepare.py'], cwd=data, check=True,
                 capture_output=True)


def train(nanogpt_dir, torch_python, out_dir, *extra) -> str:
  """Runs train.py on the CPU recipe; returns its stdout."""
  return subprocess.run(
      [torch_python, 'train.py', *CPU_ARGS, f'--out_dir={out_dir}', *extra],
      cwd=nanogpt_dir, capture_output=True, text=True, check=True).stdout


def step_times_ms(stdout: str) -> list[float]:
  return [float(ms) for ms in re.findall(r'time ([\d.]+)ms', stdout)]


def val_losses(stdout: str) -> list[float]:
  return [float(v) for v in re.findall(r'val loss ([\d.]+)', stdout)]


def full_val_loss(nanogpt_dir, torch_python, out_dir) -> float:
  out = subprocess.run([torch_python, '-c', _FULL_VAL, str(out_dir)],
                       cwd=nanogpt_dir, capture_output=True, text=True,
                       check=True).stdout
  return float(out.strip().splitlines()[-1])
