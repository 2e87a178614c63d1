"""Judging latency under load: N annotators at once against the real app, over Gradio's HTTP API.

    python bench/judge_latency.py [--annotators 50] [--rounds 20] [--warmup 10000]
                                  [--analytics-cache 1000] [--keep DIR]

What it does, all on 127.0.0.1 and bounded (it stops by itself):
1. builds a database in a temp dir: the Vicuna-80 answers of ChatGPT and Vicuna-13B from
   ../shared/data (real texts) as two output sets, one campaign with k = annotators (so
   nobody runs out of items), an admin and N annotator accounts;
2. starts the real app (`python app.py`) in a subprocess, so client and server do not
   share a GIL; `--analytics-cache N` sets GRADIO_ANALYTICS_CACHE_FREQUENCY for the
   server (the app's default is 1000; Gradio's own, 1, rebuilds its analytics summary
   after every event);
3. warms the server up with `--warmup` events (a fetch of the current item, from 16
   sessions), so it has handled >= 10,000 events before anything is measured;
4. N annotators, each with its own login cookie and session, loop `--rounds` times:
   wait a reading time (`--think`, uniform; 0:0 makes it a saturation test), fetch the
   next item (`judge_next`), wait again, then submit a label (`judge_1`/`judge_2`/
   `judge_tie`, which also returns the following item). A call is
   POST /gradio_api/call/<api_name> with the session hash, then GET of its SSE result;
   the latency is the time until the "complete" event arrived (both requests);
5. prints p50 / p95 / p99 / max per kind and checks the store: judgments == submits.
This measures; it asserts nothing beyond the data check (see tests/ for tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("WIZARDLAB_SHARED_DATA", REPO.parent / "shared" / "data"))
PASSWORD = "bench-pass-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_db(db: Path, annotators: int) -> int:
    from wizardlab import auth
    from wizardlab import evaluation as ev
    from wizardlab.store import Store

    store = Store(db)
    answers = SHARED / "testsets/vicuna80/answer"
    a = ev.import_outputs(store, answers / "answer_gpt35.jsonl")[0]
    b = ev.import_outputs(store, answers / "answer_vicuna-13b.jsonl")[0]
    cid = ev.create_campaign(store, "bench", [a["id"], b["id"]], k=annotators)
    auth.add_user(store, "admin", PASSWORD, "admin")
    for i in range(annotators):
        auth.add_user(store, f"ann{i}", PASSWORD, "annotator")
    store.close()
    return cid


def start_server(db: Path, port: int, data_dir: Path, analytics_cache: int) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
                      # an (unused) endpoint, so the app does not load the embedded model in the background
           "WIZARDLAB_BASE_URL": "http://127.0.0.1:9/v1", "WIZARDLAB_MODEL": "unused"}
    env["GRADIO_ANALYTICS_CACHE_FREQUENCY"] = str(analytics_cache)
    log = open(data_dir / "server.log", "wb")
    return subprocess.Popen([sys.executable, str(REPO / "app.py"), "--db", str(db), "--port", str(port),
                             "--data-dir", str(data_dir)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


async def wait_up(base: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                if (await client.get("/")).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit("server did not start in time")


async def login(base: str, user: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=4))
    r = await client.post("/login", data={"username": user, "password": PASSWORD})
    r.raise_for_status()
    return client


async def call(client: httpx.AsyncClient, api: str, data: list, session: str) -> tuple[float, list]:
    """One event over the HTTP API; returns (milliseconds, output data)."""
    start = time.perf_counter()
    r = await client.post(f"/gradio_api/call/{api}", json={"data": data, "session_hash": session})
    r.raise_for_status()
    event_id = r.json()["event_id"]
    event = None
    async with client.stream("GET", f"/gradio_api/call/{api}/{event_id}") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "error":
                    raise RuntimeError(f"{api}: {line[5:200]}")
                return (time.perf_counter() - start) * 1000, json.loads(line[5:])
    raise RuntimeError(f"{api}: stream ended without a result")


async def warmup(base: str, cid: int, n_events: int, sessions: int) -> float:
    clients = [await login(base, f"ann{i}") for i in range(sessions)]
    per = n_events // sessions
    start = time.perf_counter()

    async def one(i: int):
        session = f"warm{i}"
        await call(clients[i], "judge_start", [cid], session)
        for _ in range(per - 1):
            await call(clients[i], "judge_next", [None], session)

    await asyncio.gather(*(one(i) for i in range(sessions)))
    for c in clients:
        await c.aclose()
    return time.perf_counter() - start


async def annotate(base: str, cid: int, i: int, rounds: int, lat: dict, rng: random.Random,
                   think: tuple[float, float]) -> int:
    client = await login(base, f"ann{i}")
    session = f"bench{i}"
    submits = 0
    try:
        _, data = await call(client, "judge_start", [cid], session)
        for _ in range(rounds):
            await asyncio.sleep(rng.uniform(*think))
            ms, data = await call(client, "judge_next", [None], session)
            lat["next"].append(ms)
            token = data[6]
            await asyncio.sleep(rng.uniform(*think))  # reading time between the fetch and the click
            ms, data = await call(client, rng.choice(["judge_1", "judge_2", "judge_tie"]), [None, token, ""], session)
            lat["submit"].append(ms)
            submits += 1
    finally:
        await client.aclose()
    return submits


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def main_async(args) -> int:
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wl-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.db"
    if db.exists():
        db.unlink()
    cid = build_db(db, args.annotators)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(db, port, work, args.analytics_cache)
    try:
        await wait_up(base, proc)
        warm_s = await warmup(base, cid, args.warmup, min(16, args.annotators)) if args.warmup else 0.0
        lat = {"next": [], "submit": []}
        rng = random.Random(0)
        start = time.perf_counter()
        think = tuple(float(x) for x in args.think.split(":"))
        submits = await asyncio.gather(*(annotate(base, cid, i, args.rounds, lat, random.Random(rng.random()), think)
                                         for i in range(args.annotators)))
        elapsed = time.perf_counter() - start
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    report(args, lat, sum(submits), elapsed, warm_s, db)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(args, lat: dict, submits: int, elapsed: float, warm_s: float, db: Path) -> None:
    from wizardlab.store import Store

    stored = Store(db).scalar("SELECT COUNT(*) FROM judgments")
    print(f"annotators={args.annotators} rounds={args.rounds} think={args.think}s warmup_events={args.warmup} ({warm_s:.0f}s) "
          f"analytics_cache={args.analytics_cache} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    for kind, values in lat.items():
        print(f"{kind:>7}: n={len(values)} p50={pct(values, 50):.1f} ms p95={pct(values, 95):.1f} ms "
              f"p99={pct(values, 99):.1f} ms max={max(values):.1f} ms")
    print(f"throughput: {2 * submits / elapsed:.0f} events/s; judgments stored {stored} for {submits} submits "
          f"({'OK' if stored == submits else 'MISMATCH'})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--annotators", type=int, default=50)
    p.add_argument("--rounds", type=int, default=20, help="fetch+submit loops per annotator (<= 80)")
    p.add_argument("--warmup", type=int, default=10_000, help="events the server handles before measuring")
    p.add_argument("--analytics-cache", type=int, default=1000,
                   help="GRADIO_ANALYTICS_CACHE_FREQUENCY for the server (the app's default 1000; "
                        "1 = Gradio's own default: rebuild after every event)")
    p.add_argument("--think", default="3:10", metavar="LOW:HIGH",
                   help="seconds an annotator waits before each call, uniform (default 3:10; 0:0 = stress test)")
    p.add_argument("--keep", default=None, help="work in this directory and keep it (db, server.log)")
    args = p.parse_args()
    if not 1 <= args.rounds <= 80:
        raise SystemExit("--rounds must be 1..80 (the Vicuna set has 80 items)")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
