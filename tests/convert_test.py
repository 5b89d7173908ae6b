"""lm.convert's command line: import a Hugging Face GPT-2, sample from it
greedily (as transformers generates), export it, and a one-line error."""

import os

from conftest import run_cli
import hf_fixtures


def test_import_sample_export_from_the_command_line(tmp_path):
  model, tok, folder = hf_fixtures.gpt2(tmp_path / 'hf')
  run_dir, out = tmp_path / 'run', tmp_path / 'out'
  done = run_cli('lm.convert', 'from-hf', f'--model_dir={folder}',
                 f'--workdir={run_dir}')
  assert done.returncode == 0, done.stderr
  assert done.stdout.startswith('imported GPT2LMHeadModel (')
  prompt = 'ROMEO:\nBut soft'
  done = run_cli('lm.sample', f'--workdir={run_dir}', f'--prompt={prompt}',
                 '--temperature=0', '--max_new_tokens=12')
  assert done.returncode == 0, done.stderr
  import torch  # pylint: disable=g-import-not-at-top
  ids = tok(prompt, return_tensors='pt')['input_ids']
  with torch.no_grad():
    want = model.generate(ids, max_new_tokens=12, do_sample=False,
                          eos_token_id=None, pad_token_id=0,
                          attention_mask=torch.ones_like(ids))
  assert done.stdout == prompt + tok.decode(want[0, ids.shape[1]:]) + '\n'
  done = run_cli('lm.convert', 'to-hf', f'--workdir={run_dir}',
                 f'--out_dir={out}')
  assert done.returncode == 0, done.stderr
  assert sorted(os.listdir(out)) == ['config.json', 'model.safetensors',
                                     'tokenizer.json', 'tokenizer_config.json']
  done = run_cli('lm.convert', 'from-hf', f'--model_dir={tmp_path}/nope',
                 f'--workdir={tmp_path}/run2')
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
      f'error: --model_dir={tmp_path}/nope: no such folder']
