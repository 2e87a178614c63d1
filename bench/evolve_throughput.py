"""Evolve throughput and memory against the fake OpenAI-compatible server.

    python bench/evolve_throughput.py                      # 2,000 seeds, one round, concurrency 64
    python bench/evolve_throughput.py --memory-seeds 50000 # also: peak RSS for 2k vs 50k seeds
    python bench/evolve_throughput.py --profile            # also: where the engine's CPU goes (cProfile)
    python bench/evolve_throughput.py --pool 2             # also: the engine over a pool of 2 fake endpoints

The fake server runs in its own process and answers in 100-500 ms (uniform, mean 300 ms).
The measured evolve engine runs in another process, so its CPU time is its own:
  - LLM calls per second as a fraction of the ideal (concurrency / mean latency);
  - CPU milliseconds of the whole evolve process per LLM call (all threads, start-up and
    seed import excluded);
  - peak RSS of the evolve process.
In the same run, side by side against the same server, a bare asyncio loop of the `openai`
client (`chat.completions.create`, the same number of calls, the same concurrency, evolve-
sized messages) gives the floor any `openai`-based program pays; the ratio engine / bare
survives a loaded machine better than the absolute figures. Load averages are printed with
every figure. Prints figures; asserts nothing (targets: >= 0.92 of ideal, <= 2.5 ms per call).
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


def loadavg() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def bare_openai(args) -> None:
    """Runs inside the measured process: `args.n` calls of `chat.completions.create`, `concurrency` at a time."""
    import asyncio

    import httpx
    import openai

    from wizardlab.evol.operations import evolve_messages

    seeds = [json.loads(line)["instruction"] for line in Path(args.seeds_file).read_text().splitlines()]
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)

    async def main() -> int:
        client = openai.AsyncOpenAI(base_url=args.base_url[0], api_key="not-needed", max_retries=0,
                                    http_client=openai.DefaultAsyncHttpxClient(limits=limits))
        todo = iter(range(args.n))

        async def loop():
            for i in todo:
                resp = await client.chat.completions.create(
                    model="fake", messages=evolve_messages("deepening", seeds[i % len(seeds)]), max_tokens=384,
                    temperature=0.7, timeout=30)
                assert resp.choices[0].message.content

        await asyncio.gather(*(loop() for _ in range(args.concurrency)))
        await client.close()
        return args.n

    cpu0, wall0 = time.process_time(), time.perf_counter()
    calls = asyncio.run(main())
    print(json.dumps({"calls": calls, "wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0}))


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
    profile = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile(time.process_time)
        profile.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = run_evolution(store, run_id, settings, show_progress=False)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if profile is not None:
        import io
        import pstats

        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.profile)
        print(out.getvalue(), file=sys.stderr)
    calls = result["session"]["calls"]
    print(json.dumps({"seeds": args.n, "rounds": args.rounds, "calls": calls, "wall_s": wall, "cpu_s": cpu,
                      "import_s": import_s, "failures": result["session"]["failures"],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "endpoints": result["session"].get("endpoints")}))


def measure(n: int, args, base_url: str, tmp: Path, extra: list[str] = (), tag: str = "") -> dict:
    seeds = tmp / f"seeds{n}.jsonl"
    write_seeds(seeds, n)
    db = tmp / f"bench{n}{tag}.db"
    cmd = [sys.executable, __file__, "--worker", "--db", str(db), "--seeds-file", str(seeds), "--n", str(n),
           "--base-url", base_url, "--concurrency", str(args.concurrency), "--rounds", "1", *extra]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"bench worker failed:\n{out.stderr[-3000:]}")
    if "--profile" in extra:
        print(out.stderr.strip())
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = loadavg()
    return result


def measure_bare(calls: int, args, base_url: str, tmp: Path) -> dict:
    seeds = tmp / "seeds_bare.jsonl"
    write_seeds(seeds, 200)
    cmd = [sys.executable, __file__, "--bare", "--seeds-file", str(seeds), "--n", str(calls), "--base-url", base_url,
           "--concurrency", str(args.concurrency)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"bare openai loop failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = loadavg()
    return result


def start_server(port: int, latency: str, *extra: str) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "tests.fakellm", "--port", str(port), "--latency", latency,
                               *extra],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    server.stdout.readline()
    return server


def report(label: str, r: dict, ideal: float) -> tuple[float, float]:
    rate, ms = r["calls"] / r["wall_s"], 1000 * r["cpu_s"] / r["calls"]
    print(f"{label:<22} {r['calls']:>6} calls in {r['wall_s']:6.1f} s  calls/s {rate:6.1f} = "
          f"{rate / ideal:.3f} of ideal"
          f"  CPU/call {ms:5.2f} ms  ({r['load']})")
    return rate, ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency", default="0.1:0.5", help="fake server latency LO:HI seconds (uniform)")
    p.add_argument("--port", type=int, default=0, help="first port for the fake server(s) (default: any free one)")
    p.add_argument("--memory-seeds", type=int, default=0, help="also run this many seeds and compare peak RSS")
    p.add_argument("--profile", type=int, nargs="?", const=25, default=0,
                   help="also print the engine's top N functions by CPU (cProfile; slows that run)")
    p.add_argument("--pool", type=int, default=0, help="also run the engine over a pool of this many fake endpoints")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db"), p.add_argument("--seeds-file"), p.add_argument("--n", type=int)
    p.add_argument("--base-url", action="append"), p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if args.bare:
        return bare_openai(args)
    lo, hi = (float(x) for x in args.latency.split(":"))
    ideal = args.concurrency / ((lo + hi) / 2)
    ports = [args.port + i if args.port else free_port() for i in range(max(1, args.pool))]
    servers = [start_server(port, args.latency) for port in ports]
    try:
        base_url = f"http://127.0.0.1:{ports[0]}/v1"
        print(f"machine: {os.cpu_count()} cores, {loadavg()}; fake server latency U({lo},{hi}) s in its own process; "
              f"{args.seeds} seeds, one round, concurrency {args.concurrency}, ideal {ideal:.1f} calls/s")
        with tempfile.TemporaryDirectory() as tmp:
            r = measure(args.seeds, args, base_url, Path(tmp))
            b = measure_bare(r["calls"], args, base_url, Path(tmp))
            _, engine_ms = report("engine (evolve)", r, ideal)
            _, bare_ms = report("bare openai loop", b, ideal)
            print(f"engine / bare openai: CPU per call x{engine_ms / bare_ms:.2f}, calls/s x"
                  f"{(r['calls'] / r['wall_s']) / (b['calls'] / b['wall_s']):.3f}   (targets: engine >= 0.92 of ideal, "
                  f"<= 2.5 ms CPU per call); {r['failures']} failed calls, seed import {r['import_s']:.2f} s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB")
            if args.profile:
                measure(args.seeds, args, base_url, Path(tmp), ["--profile", str(args.profile)], tag="profile")
            if args.pool:
                pool_url = " ".join(f"http://127.0.0.1:{port}/v1" for port in ports)
                pr = measure(args.seeds, args, pool_url, Path(tmp), tag="pool")
                report(f"engine, pool of {args.pool}", pr, ideal)
                for ep in pr.get("endpoints") or []:
                    print(f"    {ep['base_url']}: {ep['calls']} calls, {ep['errors']} errors, "
                          f"mean latency {ep['mean_latency_ms']:.0f} ms")
            if args.memory_seeds:
                m = measure(args.memory_seeds, args, base_url, Path(tmp))
                print(f"memory: peak RSS {r['peak_rss_mb']:.0f} MB at {r['seeds']} seeds, "
                      f"{m['peak_rss_mb']:.0f} MB at {m['seeds']} seeds ({m['calls']} calls in {m['wall_s']:.0f} s, "
                      f"{1000 * m['cpu_s'] / m['calls']:.2f} ms CPU per call, {m['load']})")
    finally:
        for server in servers:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
