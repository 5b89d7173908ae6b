"""Interleaved in-process benchmark of JAX GPT train-step variants.

usage: python bench.py [--rounds R] [--steps S] [--mode sync|pipe] VARIANT [VARIANT ...]
VARIANT = "name:key=val,key=val" with keys of gpt_jax.make_step (attn, mask, gelu, mm, ln, qkv, opt, donate)
Prints per-variant median ms/step and CPU-time/wall ratio (≈ cores used).
Run from the repo root with the glibc malloc fix in the environment, e.g.
  MALLOC_MMAP_THRESHOLD_=2147483647 MALLOC_TRIM_THRESHOLD_=2147483647 \
  PYTHONPATH=experiments/cpu_variants python experiments/cpu_variants/bench.py \
      "3d:mm=3d" "2d:mm=2d" "best:mm=2d,resid=2d,ln=onepass,gelu=erf"
"""
import argparse, json, os, resource, sys, time
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--rounds", type=int, default=8)
ap.add_argument("--steps", type=int, default=15)
ap.add_argument("--warmup", type=int, default=5)
ap.add_argument("--mode", default="sync", choices=["sync", "pipe"])
ap.add_argument("--json", default=None)
ap.add_argument("variants", nargs="+")
args = ap.parse_args()

import jax
import jax.numpy as jnp
import gpt_jax as G


def parse(v):
    name, _, kv = v.partition(":")
    kw = {}
    for item in filter(None, kv.split(",")):
        k, _, val = item.partition("=")
        kw[k] = (val == "1") if k == "donate" else val
    return name, kw


def cpu_time():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


runners = []
for v in args.variants:
    name, kw = parse(v)
    init, step = G.make_step(**kw)
    state = init(G.init_params(jax.random.PRNGKey(0)))

    class R:
        def __init__(self, state, step):
            self.state, self.step = state, step

        def __call__(self, x, y):
            self.state, loss = self.step(self.state, x, y)
            return loss
    runner = R(state, step)
    data = G.Data()
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        x, y = data.batch()
        runner(x, y).block_until_ready()
    print(f"# {v}: compile+warmup {time.perf_counter()-t0:.2f}s", file=sys.stderr)
    runners.append((v, runner, data))

times = {v: [] for v, _, _ in runners}
cpu = {v: [0.0, 0.0] for v, _, _ in runners}
losses = {}
for r in range(args.rounds):
    for v, runner, data in runners:
        c0 = cpu_time(); w0 = time.perf_counter()
        if args.mode == "sync":
            for _ in range(args.steps):
                t0 = time.perf_counter()
                x, y = data.batch()
                loss = runner(x, y)
                float(loss)  # like nanoGPT's loss.item() every iter
                times[v].append((time.perf_counter() - t0) * 1e3)
        else:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                x, y = data.batch()
                loss = runner(x, y)
            loss.block_until_ready()
            times[v].append((time.perf_counter() - t0) * 1e3 / args.steps)
        cpu[v][0] += cpu_time() - c0; cpu[v][1] += time.perf_counter() - w0
        losses[v] = float(loss)

res = {}
for v, _, _ in runners:
    med = float(np.median(times[v]))
    res[v] = dict(median_ms=med, p25=float(np.percentile(times[v], 25)), cores=cpu[v][0] / cpu[v][1], loss=losses[v])
base = args.variants[0]
for v in args.variants:
    print(f"{res[v]['median_ms']:8.2f} ms  (p25 {res[v]['p25']:6.2f})  x{res[v]['median_ms']/res[base]['median_ms']:.2f} vs first  cores~{res[v]['cores']:.2f}  loss {res[v]['loss']:.3f}  {v}")
if args.json:
    json.dump(res, open(args.json, "w"), indent=1)
