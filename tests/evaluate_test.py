"""lm.evaluate: a run's perplexity on a text file, checked against a direct
`transformers` computation on the same tokens and windows."""

import json

from conftest import run_cli
import hf_fixtures
import numpy as np
import pytest

from lm.data import tokenizer as tokenizer_lib
from lm.interop import hf_io
from lm.train import evaluation


@pytest.fixture(scope='module')
def imported(tmp_path_factory):
  """(transformers GPT-2, its imported run, a text file)."""
  root = tmp_path_factory.mktemp('evaluate')
  model, _, folder = hf_fixtures.gpt2(root / 'hf', n_positions=48)
  hf_io.from_hf(folder, str(root / 'run'))
  text = root / 'text.txt'
  text.write_text(hf_fixtures.TEXT[50_000:56_000])
  return model, str(root / 'run'), text


def transformers_nll(model, ids, max_len, stride):
  """Summed NLL and count: window w starts at w * stride; each target is
  scored in the first window that holds it (the usual strided recipe)."""
  import torch  # pylint: disable=g-import-not-at-top
  total, count, start, n = 0.0, 0, 0, len(ids)
  while True:
    window = ids[start:start + max_len + 1]
    with torch.no_grad():
      logp = torch.log_softmax(model(torch.tensor(window[:-1])[None]).logits[0]
                               .double(), -1).numpy()
    targets = window[1:]
    fresh = np.arange(len(targets)) >= (0 if start == 0 else max_len - stride)
    total -= logp[np.arange(len(targets)), targets][fresh].sum()
    count += int(fresh.sum())
    if start + max_len + 1 >= n:
      return total, count
    start += stride


@pytest.mark.parametrize('max_len,stride', [(48, 48), (32, 12)])
def test_text_perplexity_matches_transformers(imported, max_len, stride):
  model, run_dir, text = imported
  got = evaluation.text_perplexity(run_dir,
                                   str(text),
                                   max_len=max_len,
                                   stride=stride,
                                   batch_size=8)
  ids = tokenizer_lib.load(run_dir).encode(text.read_text()).tolist()
  nll, count = transformers_nll(model, ids, max_len, stride)
  assert got['tokens'] == count == len(ids) - 1
  np.testing.assert_allclose(got['perplexity'], np.exp(nll / count),
                             rtol=1e-5)


def test_cli_scores_a_text_file_and_refuses_mistakes(imported, tmp_path):
  _, run_dir, text = imported
  out = tmp_path / 'ppl.json'
  done = run_cli('lm.evaluate', f'--workdir={run_dir}', f'--text={text}',
                 '--stride=24', f'--out={out}')
  assert done.returncode == 0, done.stderr
  assert done.stdout.startswith('text: loss ')
  assert json.loads(out.read_text())['text']['perplexity'] > 1
  done = run_cli('lm.evaluate', f'--workdir={run_dir}',
                 f'--text={tmp_path}/missing.txt')
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
      f'error: --text={tmp_path}/missing.txt: No such file or directory']
