"""Batched against one-at-a-time generation on the embedded model (or any local checkpoint), side by side.

    python bench/local_generation.py                       # embedded Gemma 3 270M, 48 new tokens, 1/4/16 in flight
    python bench/local_generation.py --dtypes float32,bfloat16 --in-flight 1,16
    python bench/local_generation.py --evolve 24           # also: evolve N demo seeds, concurrency 1 vs 16

For each dtype it loads the model once and sends few-shot prompts built from real seed
instructions (temperature 0.7, `--new-tokens` per answer, the usual stop strings):
  - one at a time: a backend with batch_size 1, requests one after another (the old path);
  - N in flight: N concurrent requests to a backend with batch_size N (one batch).
It prints aggregate completion tokens/s for each and the ratio to one-at-a-time in the
same run, with the load average. `--evolve N` times the first round of `evolve` on the
first N demo seeds at --concurrency 1 and 16 (fresh databases, same cache dir, after two
1-token requests per task, one after the other, that leave the model converted and every task's
head and template KV stored). By default each evolve run finds the model loaded in a model
server (`--evolve-model served`: a fresh server per run, started and warmed before the clock
starts), as every command after the first does; `--evolve-model in-process` has each run load
the model itself (~7-9 s of its time), `both` times the two.
Asserts nothing (target: >= 4x at 16 in flight; >= 3x for evolve at concurrency 16).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def loadavg() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def demo_seeds_path() -> str:
    return str(REPO / "wizardlab" / "data" / "demo_seeds.jsonl")


def prompts(n: int) -> list[list[dict]]:
    from wizardlab.evol.operations import respond_messages

    seeds = [json.loads(line)["instruction"] for line in Path(demo_seeds_path()).read_text().splitlines() if line]
    return [respond_messages(seeds[i % len(seeds)], "", few_shot=True) for i in range(n)]


async def run_requests(backend, messages: list[list[dict]], new_tokens: int, concurrent: bool) -> tuple[int, float]:
    start = time.perf_counter()
    calls = [backend.chat(m, max_tokens=new_tokens, temperature=0.7, stop=None, timeout=3600) for m in messages]
    if concurrent:
        results = await asyncio.gather(*calls)
    else:
        results = [await c for c in calls]
    return sum(r.completion_tokens for r in results), time.perf_counter() - start


def bench_dtype(model: str, dtype: str, in_flight: list[int], new_tokens: int, singles: int) -> None:
    from wizardlab.config import default_cache_dir
    from wizardlab.llm.local import LocalBackend

    if dtype == "auto":  # what the backend picks on this machine (see wizardlab.llm.local.local_precision)
        os.environ.pop("WIZARDLAB_LOCAL_DTYPE", None)
    else:
        os.environ["WIZARDLAB_LOCAL_DTYPE"] = dtype
    one = LocalBackend.embedded(default_cache_dir()) if model == "embedded" else LocalBackend(model)
    one.batch_size = 1
    one.load()
    dtype = one.precision
    asyncio.run(run_requests(one, prompts(1), 4, False))  # warm-up
    tokens, wall = asyncio.run(run_requests(one, prompts(singles), new_tokens, False))
    base = tokens / wall
    print(f"  {dtype:<9} one at a time    {singles:>2} requests  {tokens:>5} tokens in {wall:6.1f} s  "
          f"{base:6.2f} tok/s  x1.00  ({loadavg()})", flush=True)
    for n in in_flight:
        if n == 1:
            continue
        one.batch_size, one.batch_wait_s = n, 0.05  # the same loaded model, batching up to n
        tokens, wall = asyncio.run(run_requests(one, prompts(n), new_tokens, True))
        print(f"  {dtype:<9} {n:>2} in flight      {n:>2} requests  {tokens:>5} tokens in {wall:6.1f} s  "
              f"{tokens / wall:6.2f} tok/s  x{tokens / wall / base:.2f}  (batches {one.batches[-3:]}, {loadavg()})",
              flush=True)
    asyncio.run(one.aclose())


def warm_task_heads(served: bool) -> None:
    """Two 1-token requests per evolution task on the embedded model, one after the other: the model
    converted, and every task's head (system prompt and worked examples) and template (the fixed
    text its last message starts with, found when two of its prompts share it) stored in the cache
    dir, as any earlier run on this machine would have left them. `served`: sent to the model server
    (started and loaded by them), which then holds them in memory too."""
    from wizardlab import evol
    from wizardlab.config import EMBEDDED_MODEL, default_cache_dir
    from wizardlab.evol.operations import OPERATIONS
    from wizardlab.llm.local import LocalBackend
    from wizardlab.llm.model_server import ServedBackend

    backend = (ServedBackend(EMBEDDED_MODEL, cache_dir=default_cache_dir(), keep_s=600) if served
               else LocalBackend.embedded(default_cache_dir()))
    tasks = []
    for seed, evolved in (("Name three colors.", "Name three primary colors and say why they are primary."),
                          ("Write a haiku about rain.", "Write a haiku about rain in a city at night.")):
        tasks += [evol.evolve_messages(op, seed, "", True) for op in OPERATIONS]
        tasks += [evol.respond_messages(seed, "", True), evol.equal_messages(seed, evolved, True)]

    async def run():
        for messages in tasks:
            await backend.chat(messages, max_tokens=1, temperature=0.0, stop=None, timeout=3600)
        await backend.aclose()
    asyncio.run(run())


def bench_evolve(n_seeds: int, max_new_tokens: int, modes: list[str]) -> None:
    """`served`: each timed run finds a model server loaded (started fresh and warmed just before it,
    so neither run reuses what the other one computed); `in-process`: each run loads the model itself."""
    from wizardlab.config import default_cache_dir
    from wizardlab.llm.model_server import stop_servers

    for mode in modes:
        served = mode == "served"
        env = {**os.environ, "WIZARDLAB_KEEP_MODEL_S": "600" if served else "0"}
        times, rates, per_call, after_load = {}, {}, {}, {}
        print(f"  evolve, the model {'kept loaded in a model server' if served else 'loaded by each run'}:",
              flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            stop_servers(default_cache_dir())
            if not served:
                warm_task_heads(served=False)  # both timed runs then find every task's head stored
            for concurrency in (1, 16):
                if served:
                    stop_servers(default_cache_dir())
                    warm_task_heads(served=True)  # a fresh server, loaded, with every task's head in memory
                db = Path(tmp) / f"{mode}-c{concurrency}.db"
                argv = [sys.executable, "-m", "pipeline", "evolve", "--db", str(db), "--seeds", demo_seeds_path(),
                        "--limit", str(n_seeds), "--rounds", "1", "--concurrency", str(concurrency), "--quiet",
                        "--max-new-tokens", str(max_new_tokens)]
                start = time.perf_counter()
                done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env)
                times[concurrency] = time.perf_counter() - start
                if done.returncode:
                    raise SystemExit(f"evolve failed:\n{done.stderr[-2000:]}")
                paid = re.search(r"LLM calls paid \(all sessions\): (\d+), tokens in/out (\d+)/(\d+)", done.stdout)
                calls, tokens_out = (int(paid[1]), int(paid[3])) if paid else (0, 0)
                rates[concurrency] = tokens_out / times[concurrency]
                per_call[concurrency] = times[concurrency] / calls if calls else float("nan")
                # the round itself: the run's own time less the model's loading (which its first calls wait for)
                wall = re.search(r"run \d+: \w+ in ([\d.]+)s", done.stdout)
                load = re.search(r"the local model loaded in ([\d.]+) s", done.stdout)
                after_load[concurrency] = float(wall[1]) - (float(load[1]) if load else 0.0) if wall else float("nan")
                print(f"    --concurrency {concurrency:>2}, {n_seeds} demo seeds, one round: "
                      f"{times[concurrency]:6.1f} s ({after_load[concurrency]:.1f} s once the model was loaded), "
                      f"{calls} calls, {tokens_out} tokens generated ({rates[concurrency]:.1f} tok/s; {loadavg()})",
                      flush=True)
            if served:
                stop_servers(default_cache_dir())
        # each request samples with its own seed (from its key), so both runs ask nearly the same calls
        # (batched float rounding can still flip a sampled token now and then)
        print(f"    speed-up at concurrency 16: x{times[1] / times[16]:.2f} in time, process start to exit "
              f"(target >= 3), x{after_load[1] / after_load[16]:.2f} once the model was loaded, "
              f"x{rates[16] / rates[1]:.2f} in generated tokens/s, x{per_call[1] / per_call[16]:.2f} in time per call",
              flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded", help="'embedded' or a local checkpoint directory")
    p.add_argument("--dtypes", default="auto", help="auto (the backend's choice here) or float32,bfloat16,int8")
    p.add_argument("--in-flight", default="1,4,16")
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--singles", type=int, default=3, help="requests timed one at a time")
    p.add_argument("--evolve", type=int, default=0,
                   help="also time evolve on this many demo seeds, concurrency 1 vs 16")
    p.add_argument("--evolve-max-new-tokens", type=int, default=48)
    p.add_argument("--evolve-model", default="served",
                   help="served (the model kept loaded in a model server, the default), in-process, or both")
    args = p.parse_args()
    import torch

    print(f"machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {loadavg()}; model {args.model}; "
          f"{args.new_tokens} new tokens per answer (fewer where a sequence ends early)", flush=True)
    for dtype in filter(None, args.dtypes.split(",")):
        bench_dtype(args.model, dtype.strip(), [int(x) for x in args.in_flight.split(",")], args.new_tokens,
                    args.singles)
    if args.evolve:
        modes = ["served", "in-process"] if args.evolve_model == "both" else [args.evolve_model]
        bench_evolve(args.evolve, args.evolve_max_new_tokens, modes)


if __name__ == "__main__":
    main()
