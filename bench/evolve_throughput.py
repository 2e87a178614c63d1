"""Evolve throughput and memory against the fake OpenAI-compatible server.

    python bench/evolve_throughput.py                      # 2,000 seeds, one round, concurrency 64
    python bench/evolve_throughput.py --memory-seeds 50000 # also: peak RSS for 2k vs 50k seeds

The fake server runs in its own process and answers in 100-500 ms (uniform, mean 300 ms).
The measured evolve engine runs in another process, so its CPU time is its own:
  - LLM calls per second as a fraction of the ideal (concurrency / mean latency);
  - CPU milliseconds of the whole evolve process per LLM call (all threads, start-up and
    seed import excluded);
  - peak RSS of the evolve process.
Prints figures; asserts nothing (targets: >= 0.9 of ideal, <= 3 ms per call).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_seeds(path: Path, n: int) -> None:
    base = []
    for name, key in (("seeds/alpaca_seed_tasks.jsonl", "instruction"), ("testsets/wizardlm_testset.jsonl", "Instruction"),
                      ("testsets/vicuna80/question.jsonl", "text")):
        f = SHARED / name
        if f.exists():
            base += [json.loads(line)[key] for line in f.read_text().splitlines() if line.strip()]
    base = base or [f"Explain topic {i} to a beginner." for i in range(100)]
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"instruction": f"{base[i % len(base)]} (variant {i})",
                                 "output": "A short reference answer."}) + "\n")


def worker(args) -> None:
    """Runs inside the measured process: import seeds, then time the evolution itself."""
    from wizardlab.config import Settings
    from wizardlab.store import Store
    from wizardlab.evol.run import prepare_run, run_evolution

    settings = Settings(db=args.db, base_url=args.base_url, model="fake", concurrency=args.concurrency,
                        request_timeout=30)
    store = Store(args.db)
    t0 = time.perf_counter()
    run_id = prepare_run(store, settings, args.seeds_file, rounds=args.rounds)
    import_s = time.perf_counter() - t0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = run_evolution(store, run_id, settings, show_progress=False)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    calls = result["session"]["calls"]
    print(json.dumps({"seeds": args.n, "rounds": args.rounds, "calls": calls, "wall_s": wall, "cpu_s": cpu,
                      "import_s": import_s, "failures": result["session"]["failures"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(n: int, args, base_url: str, tmp: Path, extra: list[str] = ()) -> dict:
    seeds = tmp / f"seeds{n}.jsonl"
    write_seeds(seeds, n)
    db = tmp / f"bench{n}.db"
    cmd = [sys.executable, __file__, "--worker", "--db", str(db), "--seeds-file", str(seeds), "--n", str(n),
           "--base-url", base_url, "--concurrency", str(args.concurrency), "--rounds", "1", *extra]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency", default="0.1:0.5", help="fake server latency LO:HI seconds (uniform)")
    p.add_argument("--memory-seeds", type=int, default=0, help="also run this many seeds and compare peak RSS")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db"), p.add_argument("--seeds-file"), p.add_argument("--n", type=int)
    p.add_argument("--base-url"), p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    lo, hi = (float(x) for x in args.latency.split(":"))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.fakellm", "--port", str(port), "--latency", args.latency],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        server.stdout.readline()
        base_url = f"http://127.0.0.1:{port}/v1"
        with tempfile.TemporaryDirectory() as tmp:
            r = measure(args.seeds, args, base_url, Path(tmp))
            ideal = args.concurrency / ((lo + hi) / 2)
            rate = r["calls"] / r["wall_s"]
            print(f"machine: {os.cpu_count()} cores; fake server latency U({lo},{hi}) s in its own process")
            print(f"seeds {r['seeds']}, concurrency {args.concurrency}, one round: {r['calls']} LLM calls "
                  f"in {r['wall_s']:.1f} s ({r['failures']} failed), seed import {r['import_s']:.2f} s")
            print(f"calls/s {rate:.1f} of ideal {ideal:.1f} = {rate / ideal:.3f} of ideal (target >= 0.9)")
            print(f"CPU per LLM call {1000 * r['cpu_s'] / r['calls']:.2f} ms (target <= 3 ms)")
            print(f"peak RSS {r['peak_rss_mb']:.0f} MB")
            if args.memory_seeds:
                m = measure(args.memory_seeds, args, base_url, Path(tmp))
                print(f"memory: peak RSS {r['peak_rss_mb']:.0f} MB at {r['seeds']} seeds, "
                      f"{m['peak_rss_mb']:.0f} MB at {m['seeds']} seeds ({m['calls']} calls in {m['wall_s']:.0f} s, "
                      f"{1000 * m['cpu_s'] / m['calls']:.2f} ms CPU per call)")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
