"""Tests of lm.parallel.distributed: two processes over loopback train as one."""

import json
import os
import socket
import subprocess
import sys

from conftest import REPO
from conftest import cli_env
from conftest import run_cli
import pytest

from lm.parallel import distributed


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return [r['step'] for r in rows], [r['train/loss'] for r in rows]


TRAIN = ['lm.main', '--config=configs/shakespeare_char.py:test',
         '--config.checkpoint.every=5']


def test_two_processes_train_like_one_with_two_devices(tmp_path):
  # Two processes of one CPU device each, collectives over gloo (TCP); each
  # process is a 'slice' and the data axis spans the two (as over DCN).
  port = free_port()
  env = cli_env()
  procs = [subprocess.Popen(
      [sys.executable, '-m', *TRAIN, '--config.mesh.dcn_data=2',
       f'--workdir={tmp_path / "two"}',
       f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
       f'--process_id={i}'], cwd=REPO, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  # The same global batches on one process with two devices.
  one = run_cli(*TRAIN, f'--workdir={tmp_path / "one"}',
                env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  assert one.returncode == 0, one.stderr[-2000:]
  assert "mesh {'data': 2," in one.stdout  # Two devices, data-parallel.
  # Process 0 alone writes the log and reports; each step once.
  steps, two_losses = losses(tmp_path / 'two')
  assert steps == list(range(1, 11))
  assert 'done: 10 steps' in outs[0][0] and 'done:' not in outs[1][0]
  _, one_losses = losses(tmp_path / 'one')
  assert two_losses == pytest.approx(one_losses, rel=1e-5)
  results = [json.loads((tmp_path / w / 'eval_results.json').read_text())
             for w in ('one', 'two')]
  assert results[1]['validation']['loss'] == pytest.approx(
      results[0]['validation']['loss'], rel=1e-6)
  # Both processes saved through Orbax: the checkpoints are complete.
  assert sorted(os.listdir(tmp_path / 'two' / 'checkpoints')) == ['10', '5']


def test_bad_process_flags_are_one_line_errors():
  with pytest.raises(distributed.DistributedError, match='--num_processes'):
    distributed.initialize('127.0.0.1:1234', num_processes=2, process_id=2)
  with pytest.raises(distributed.DistributedError,
                     match='need --coordinator_address'):
    distributed.initialize(num_processes=2, process_id=0)
  assert not distributed.initialize(env={})  # One process: nothing to join.
  r = run_cli(*TRAIN, '--workdir=/tmp/unused', '--num_processes=2',
              '--process_id=1')
  assert r.returncode == 2 and r.stderr.strip() == (
      'error: --num_processes and --process_id need '
      '--coordinator_address=HOST:PORT of process 0')


def test_cluster_detection():
  assert distributed.cluster_detected({'SLURM_NTASKS': '4'}) == 'SLURM'
  assert distributed.cluster_detected({'SLURM_NTASKS': '1'}) is None
  assert distributed.cluster_detected(
      {'OMPI_COMM_WORLD_SIZE': '2'}) == 'Open MPI'
  assert distributed.cluster_detected(
      {'TPU_WORKER_HOSTNAMES': 'w0,w1'}) == 'TPU pod slice'
  assert distributed.cluster_detected({'TPU_WORKER_HOSTNAMES': 'w0'}) is None
