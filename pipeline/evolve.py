"""`python -m pipeline evolve`: create or resume an evolution run and drive the engine.

The same command on the same database continues the same run: a run is identified by
the seeds' content, the LLM, the random seed and the limit. An interrupted run resumes
(finished nodes are not redone, cached calls are not paid again); a finished one says
so and does nothing; asking for more rounds extends it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time

from tqdm import tqdm

from wizardlab.config import EMBEDDED_MODEL, Settings
from wizardlab.errors import UserError
from wizardlab.jobs import StopFlag
from wizardlab.llm import LLMClient, make_backend
from wizardlab.seeds import iter_seeds
from wizardlab.store import BatchWriter, Store
from wizardlab.store.runs import write_progress

from pipeline.evolve_engine import Engine


def add_arguments(parser) -> None:
    parser.add_argument("--db", default=None, help="SQLite file (default: wizardlab.db or WIZARDLAB_DB)")
    parser.add_argument("--seeds", help="seed file (JSON, JSONL, CSV, Parquet), a saved datasets dir or a hub name")
    parser.add_argument("--run-id", type=int, help="continue this run (instead of --seeds)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of evolution (default 4)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint; none = the embedded model")
    parser.add_argument("--model", help="model name at the endpoint, or a local model directory")
    parser.add_argument("--concurrency", type=int, default=None, help="parallel LLM calls (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for operation choice (replayable)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N seeds")
    parser.add_argument("--timeout", type=float, default=None, help="per-request timeout in seconds (default 120)")
    parser.add_argument("--max-retries", type=int, default=None, help="retries per call on 429/5xx/timeouts")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="cap on tokens per LLM answer")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _seeds_digest(seeds) -> tuple[str, int]:
    """Content hash and count of the seeds, in one streaming pass (which also validates them)."""
    h, n = hashlib.sha256(), 0
    for s in seeds:
        h.update(json.dumps([s["instruction"], s["input"], s["response"]], ensure_ascii=False).encode())
        n += 1
    return h.hexdigest(), n


def _llm_key(settings: Settings) -> str:
    return settings.base_url + "|" + settings.model if settings.base_url else (settings.model or EMBEDDED_MODEL)


def prepare_run(store: Store, settings: Settings, seeds_path: str, *, rounds: int = 4, seed: int = 0,
                limit: int | None = None, created_by: str | None = None) -> int:
    """Find the same run or create one, importing its seeds in one transaction."""
    if rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {rounds}")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    digest, n_seeds = _seeds_digest(iter_seeds(seeds_path, limit=limit))
    key = hashlib.sha256(json.dumps([digest, _llm_key(settings), seed, limit]).encode()).hexdigest()
    existing = store.find_run("evolve", key)
    if existing is not None:
        if rounds > existing["config"]["rounds"]:
            store.update_run(existing["id"], config={**existing["config"], "rounds": rounds})
        return existing["id"]
    config = {"seeds": str(seeds_path), "seeds_sha256": digest, "n_seeds": n_seeds, "rounds": rounds,
              "seed": seed, "limit": limit, "base_url": settings.base_url, "model": settings.model,
              "concurrency": settings.concurrency, "request_timeout": settings.request_timeout,
              "max_retries": settings.max_retries, "max_new_tokens": settings.max_new_tokens,
              "llm": settings.llm_label}
    name = f"{os.path.basename(str(seeds_path))} x{rounds}"
    with store.tx():
        run_id = store.create_run("evolve", config, name=name, config_key=key, created_by=created_by)
        store.insert_seeds(run_id, iter_seeds(seeds_path, limit=limit))
    return run_id


def run_settings(run: dict, base: Settings) -> Settings:
    cfg = run["config"]
    return Settings.from_env(db=base.db, base_url=cfg.get("base_url"), model=cfg.get("model"),
                             concurrency=cfg.get("concurrency"), request_timeout=cfg.get("request_timeout"),
                             max_retries=cfg.get("max_retries"), cache_dir=base.cache_dir,
                             max_new_tokens=base.max_new_tokens or cfg.get("max_new_tokens"),
                             stop_grace_s=base.stop_grace_s)


def is_finished(store: Store, run: dict) -> bool:
    rounds = run["config"]["rounds"]
    return (run["status"] == "done" and store.count_nodes(run["id"], rounds) > 0
            and store.count_nodes(run["id"], status="pending") == 0)


def run_evolution(store: Store, run_id: int, base: Settings, *, show_progress: bool = True,
                  stop: StopFlag | None = None) -> dict:
    """Run or resume `run_id` to the end (or until stopped); returns the summary."""
    run = store.get_run(run_id)
    if run is None or run["kind"] != "evolve":
        raise UserError(f"run {run_id} is not an evolution run in {store.path}")
    settings = run_settings(run, base)
    store.update_run(run_id, pid=os.getpid())
    store.mark_run(run_id, "running")
    started = time.monotonic()
    status = "failed"
    try:
        status, session = asyncio.run(_drive(store, run, settings, show_progress, stop or StopFlag()))
    except KeyboardInterrupt:
        status = "cancelled"
        session = {}
        raise
    except BaseException as exc:
        store.mark_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if status != "failed":
            store.mark_run(run_id, status)
    return summary(store, run_id, wall_s=time.monotonic() - started, session=session, status=status)


async def _drive(store: Store, run: dict, settings: Settings, show_progress: bool, stop: StopFlag):
    backend = make_backend(settings)
    writer = BatchWriter(store)
    client = LLMClient(backend, store=store, writer=writer, run_id=run["id"], concurrency=settings.concurrency,
                       timeout=settings.request_timeout, max_retries=settings.max_retries)
    bar = tqdm(total=0, unit="node", disable=not show_progress, dynamic_ncols=True, file=sys.stderr)
    engine = Engine(store, writer, client, run_id=run["id"], rounds=run["config"]["rounds"],
                    seed=run["config"]["seed"], stop_requested=lambda: stop.stop,
                    max_new_tokens=settings.max_new_tokens)
    state = {"last": 0.0, "key": None}

    def on_node() -> None:
        p = engine.progress
        if state["key"] != (p.phase, p.round):
            state["key"] = (p.phase, p.round)
            bar.reset(total=p.total)
            bar.update(p.done)
            bar.set_description(f"round {p.round}/{p.rounds}" if p.phase == "round" else p.phase)
        else:
            bar.update(1)
        now = time.monotonic()
        if now - state["last"] >= 1.0:
            state["last"] = now
            bar.set_postfix(kept=p.kept, elim=p.eliminated, calls=client.stats.calls, refresh=False)
            progress = p.as_dict(client)
            writer.submit(lambda conn: write_progress(conn, run["id"], progress))

    engine.on_node = on_node
    engine.stop_grace_s = settings.stop_grace_s
    try:
        status = await engine.run()
    finally:
        bar.close()
        progress = engine.progress.as_dict(client)
        writer.submit(lambda conn: write_progress(conn, run["id"], progress))
        writer.close()
        await client.aclose()
    return status, client.stats.as_dict()


def summary(store: Store, run_id: int, *, wall_s: float, session: dict, status: str) -> dict:
    by_round: dict = {}
    for row in store.round_summary(run_id):
        by_round.setdefault(row["round"], {})[row["status"]] = row["n"]
    rules: dict = {}
    for row in store.rule_counts(run_id):
        rules[row["rule"]] = rules.get(row["rule"], 0) + row["n"]
    ops: dict = {}
    for row in store.operation_counts(run_id):
        ops.setdefault(row["operation"], {}).setdefault(row["status"], 0)
        ops[row["operation"]][row["status"]] += row["n"]
    return {"run_id": run_id, "status": status, "by_round": by_round, "eliminated_by_rule": rules,
            "by_operation": ops, "calls_total": store.call_stats(run_id), "session": session, "wall_s": wall_s}


def format_summary(s: dict) -> str:
    lines = [f"run {s['run_id']}: {s['status']} in {s['wall_s']:.1f}s"]
    for rnd, counts in sorted(s["by_round"].items()):
        lines.append(f"  round {rnd}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if s["eliminated_by_rule"]:
        lines.append("  eliminated by rule: " + ", ".join(f"{k} {v}" for k, v in sorted(s["eliminated_by_rule"].items())))
    for op, counts in sorted(s["by_operation"].items()):
        lines.append(f"  {op:<20} kept {counts.get('kept', 0):>5}  eliminated {counts.get('eliminated', 0):>5}"
                     + (f"  pending {counts['pending']}" if counts.get("pending") else ""))
    c, sess = s["calls_total"], s["session"]
    lines.append(f"  LLM calls paid (all sessions): {c['calls']}, tokens in/out {c['prompt_tokens']}/"
                 f"{c['completion_tokens']}")
    if sess:
        lines.append(f"  this session: {sess['calls']} calls, {sess['cache_hits']} cache hits, "
                     f"{sess['retries']} retries, {sess['failures']} failed calls")
    return "\n".join(lines)


def main(args) -> int:
    base = Settings.from_env(db=args.db, base_url=args.base_url, model=args.model, concurrency=args.concurrency,
                             request_timeout=args.timeout, max_retries=args.max_retries,
                             max_new_tokens=args.max_new_tokens)
    store = Store(base.db)
    run_id = args.run_id or (int(os.environ["WIZARDLAB_RUN_ID"]) if os.environ.get("WIZARDLAB_RUN_ID") else None)
    if run_id is None:
        if not args.seeds:
            raise UserError("give --seeds FILE (or --run-id N to continue a run)")
        run_id = prepare_run(store, base, args.seeds, rounds=args.rounds or 4, seed=args.seed, limit=args.limit)
    run = store.get_run(run_id)
    if run is None:
        raise UserError(f"run {run_id} does not exist in {base.db}")
    if args.rounds and args.run_id and args.rounds > run["config"]["rounds"]:
        store.update_run(run_id, config={**run["config"], "rounds": args.rounds})
        run = store.get_run(run_id)
    if is_finished(store, run):
        print(f"run {run_id} already finished ({run['config']['rounds']} rounds); nothing to do.")
        print(format_summary(summary(store, run_id, wall_s=0.0, session={}, status="done")))
        return 0
    print(f"run {run_id}: {run['config']['n_seeds']} seeds, {run['config']['rounds']} rounds, "
          f"LLM: {run['config'].get('llm')}", file=sys.stderr)
    stop = StopFlag().install()
    result = run_evolution(store, run_id, base, show_progress=not args.quiet, stop=stop)
    print(format_summary(result))
    return 0 if result["status"] == "done" else 3
