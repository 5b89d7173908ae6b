"""Time importing a GPT-2-small-sized (124M) Hugging Face checkpoint and
computing its first logits, on this machine.

Builds a random `GPT2LMHeadModel` of GPT-2 small's shape (12 layers, 768
wide, 12 heads, 1,024 positions, 50,257-token vocabulary) with
`transformers`, saves it with a byte-level BPE tokenizer trained on Tiny
Shakespeare (a smaller vocabulary than the model's, which the import
allows), then, in a fresh process, times
  1. `python -m lm.convert from-hf` as a user runs it (process start to
     exit: Python, JAX, reading safetensors, mapping, the Orbax save), and
  2. a second fresh process that loads the run and computes logits for a
     64-token prompt (process start to logits on the host),
and checks those logits against transformers'. Needs the test extras
(transformers, torch).

  python experiments/hf_import_speed.py --out=experiments/results/hf_import.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'experiments'))
import machine  # pylint: disable=g-import-not-at-top,wrong-import-position

FIRST_LOGITS = r'''
import time, sys
t0 = time.perf_counter()
import numpy as np, jax.numpy as jnp
from flax import nnx
from lm import tasks
from lm.interop import hf_io
c, params = hf_io.load_run_params(sys.argv[1])
graphdef, _ = tasks.get(c).abstract()
ids = np.load(sys.argv[2], allow_pickle=False)
logits = np.asarray(nnx.merge(graphdef, params)(jnp.asarray(ids))[0])
np.save(sys.argv[3], logits)
print(time.perf_counter() - t0)
'''


def build(folder: str, seed: int) -> None:
  import tokenizers  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  text = (REPO / 'lm' / 'assets' / 'tinyshakespeare.txt').read_text()
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator([text], vocab_size=8000, show_progress=False,
                          special_tokens=['<|endoftext|>'])
  tok = transformers.PreTrainedTokenizerFast(
      tokenizer_object=bpe._tokenizer, eos_token='<|endoftext|>')  # pylint: disable=protected-access
  torch.manual_seed(seed)
  model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
  tok.save_pretrained(folder)
  model.save_pretrained(folder)


def timed(cmd: list[str]) -> tuple[float, str]:
  start = time.perf_counter()
  done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                        check=False)
  if done.returncode:
    raise SystemExit(f'{" ".join(cmd)} failed:\n{done.stderr[-2000:]}')
  return time.perf_counter() - start, done.stdout


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='', help='write the figures as JSON')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix='hf_import_')
  try:
    folder, run_dir = os.path.join(tmp, 'gpt2'), os.path.join(tmp, 'run')
    print('building a random 124M GPT-2 checkpoint ...', flush=True)
    build(folder, args.seed)
    size = os.path.getsize(os.path.join(folder, 'model.safetensors'))
    ids = np.random.RandomState(args.seed).randint(0, 8000, (1, 64))
    np.save(os.path.join(tmp, 'ids.npy'), ids)
    print('timing lm.convert from-hf ...', flush=True)
    import_s, said = timed([sys.executable, '-m', 'lm.convert', 'from-hf',
                            f'--model_dir={folder}', f'--workdir={run_dir}'])
    print(said.strip(), flush=True)
    print('timing the first logits ...', flush=True)
    logits_s, inner = timed([sys.executable, '-c', FIRST_LOGITS, run_dir,
                             os.path.join(tmp, 'ids.npy'),
                             os.path.join(tmp, 'ours.npy')])
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    model = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.no_grad():
      theirs = model(torch.tensor(ids)).logits.numpy()
    diff = float(np.abs(np.load(os.path.join(tmp, 'ours.npy'), allow_pickle=False) - theirs).max())
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  result = {
      'date': datetime.date.today().isoformat(), 'cpu': machine.cpu_model(),
      'cores': os.cpu_count(), 'safetensors_mb': round(size / 2**20, 1),
      'import_seconds': round(import_s, 1),
      'first_logits_seconds': round(logits_s, 1),
      'first_logits_in_process_seconds': round(float(inner), 1),
      'total_seconds': round(import_s + logits_s, 1),
      'max_abs_logit_diff_vs_transformers': diff}
  print(json.dumps(result, indent=2))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
