"""An evolution run: create or find it, drive the engine over it, summarise it.

The same seeds, LLM, random seed and limit on the same database are the same run: a run
is identified by a hash of those (`prepare_run`), so starting it again resumes it
(finished nodes are not redone, cached calls are not paid again), a finished run is
recognised (`is_finished`), and asking for more rounds extends it.

`run_evolution` drives `wizardlab.evol.engine.Engine` inside `wizardlab.jobs.job_run`
(the run is marked running with this process, its end state recorded once), with an
optional tqdm bar. The command line (`pipeline.evolve`) and the Evolve tab both call
this module; neither holds run logic of its own.

The run config keeps the user's generation settings (`sampling`, per stage, see
`wizardlab.llm.params`), the rules' mode (`rules`) and, once started, the settings
actually used (`sampling_used`). A run that ends with retryable failed calls ends
`failed` with a reason that says so (`failed_calls_message`); running it again retries
them, `give_up_failed` turns them into `malformed` eliminations.
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
from wizardlab.evol import rules as evol_rules
from wizardlab.evol.engine import Engine
from wizardlab.evol.seeds import iter_seeds
from wizardlab.jobs import StopFlag, job_run
from wizardlab.llm import LLMClient, make_backend, params
from wizardlab.store import BatchWriter, Store
from wizardlab.store.runs import write_progress


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
                limit: int | None = None, created_by: str | None = None, sampling: dict | None = None,
                rules: str = evol_rules.PAPER) -> int:
    """Find the same run or create one, importing its seeds in one transaction. Non-default
    generation settings or rules make it another run (the default key is the one of earlier versions)."""
    sampling = params.check_overrides(sampling)
    if rules not in evol_rules.RULE_MODES:
        raise UserError(f"--rules must be one of {', '.join(evol_rules.RULE_MODES)}, got {rules!r}")
    if rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {rounds}")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    digest, n_seeds = _seeds_digest(iter_seeds(seeds_path, limit=limit))
    identity = [digest, _llm_key(settings), seed, limit]
    if sampling or rules != evol_rules.PAPER:
        identity += [sampling, rules]
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    existing = store.find_run("evolve", key)
    if existing is not None:
        extend_rounds(store, existing, rounds)
        return existing["id"]
    config = {"seeds": str(seeds_path), "seeds_sha256": digest, "n_seeds": n_seeds, "rounds": rounds,
              "seed": seed, "limit": limit, "base_url": settings.base_url, "model": settings.model,
              "concurrency": settings.concurrency, "request_timeout": settings.request_timeout,
              "max_retries": settings.max_retries, "max_new_tokens": settings.max_new_tokens,
              "llm": settings.llm_label, "sampling": sampling, "rules": rules}
    name = f"{os.path.basename(str(seeds_path))} x{rounds}"
    with store.tx():
        run_id = store.create_run("evolve", config, name=name, config_key=key, created_by=created_by)
        store.insert_seeds(run_id, iter_seeds(seeds_path, limit=limit))
    return run_id


def extend_rounds(store: Store, run: dict, rounds: int | None) -> dict:
    """Raise the run's number of rounds to `rounds` (never lowers it); returns the run as stored."""
    if rounds and rounds > run["config"]["rounds"]:
        store.update_run(run["id"], config={**run["config"], "rounds": rounds})
        return store.get_run(run["id"])
    return run


def evolve_run(store: Store, run_id: int) -> dict:
    run = store.get_run(run_id)
    if run is None or run["kind"] != "evolve":
        raise UserError(f"run {run_id} is not an evolution run in {store.path}")
    return run


def run_settings(run: dict, base: Settings) -> Settings:
    """The settings a run was created with (its LLM), on the database and caches of `base`."""
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
    run = evolve_run(store, run_id)
    settings = run_settings(run, base)
    started = time.monotonic()
    session: dict = {}
    with job_run(store, run_id, stop=stop) as job:
        status, session = asyncio.run(_drive(store, run, settings, show_progress, job.stop))
        if status == "failed_calls":
            job.fail(failed_calls_message(store, run_id))
        else:
            job.status = status
    return summary(store, run_id, wall_s=time.monotonic() - started, session=session,
                   status=store.get_run(run_id)["status"])


async def _drive(store: Store, run: dict, settings: Settings, show_progress: bool, stop: StopFlag):
    backend = make_backend(settings)
    writer = BatchWriter(store)
    client = LLMClient(backend, store=store, writer=writer, run_id=run["id"], concurrency=settings.concurrency,
                       timeout=settings.request_timeout, max_retries=settings.max_retries)
    bar = tqdm(total=0, unit="node", disable=not show_progress, dynamic_ncols=True, file=sys.stderr)
    cfg = run["config"]
    engine = Engine(store, writer, client, run_id=run["id"], rounds=cfg["rounds"], seed=cfg["seed"],
                    stop_requested=lambda: stop.stop, sampling=cfg.get("sampling"),
                    max_new_tokens=settings.max_new_tokens, rules=cfg.get("rules") or evol_rules.PAPER)
    used = {stage: s.kwargs() for stage, s in engine.sampling.items()}
    if cfg.get("sampling_used") != used:
        store.update_run(run["id"], config={**cfg, "sampling_used": used})
    engine.on_node = _progress_reporter(engine, client, writer, bar, run["id"])
    engine.stop_grace_s = settings.stop_grace_s
    try:
        status = await engine.run()
    finally:
        bar.close()
        progress = engine.progress.as_dict(client)
        writer.submit(lambda conn: write_progress(conn, run["id"], progress))
        writer.close()
        await client.aclose()
    return status, client.stats_dict()


def _progress_reporter(engine: Engine, client: LLMClient, writer: BatchWriter, bar, run_id: int):
    """on_node callback: advance the bar; at most once a second, queue a progress write."""
    state = {"last": 0.0, "key": None}

    def on_node() -> None:
        p = engine.progress
        if state["key"] != (p.phase, p.round):
            state["key"] = (p.phase, p.round)
            bar.reset(total=p.total)
            bar.update(p.done)
            bar.set_description((f"round {p.round}/{p.rounds}" + (" + seed answers" if p.seed_answers else ""))
                                if p.phase == "round" else p.phase)
        else:
            bar.update(1)
        now = time.monotonic()
        if now - state["last"] >= 1.0:
            state["last"] = now
            bar.set_postfix(kept=p.kept, elim=p.eliminated, calls=client.stats.calls, refresh=False)
            progress = p.as_dict(client)
            writer.submit(lambda conn: write_progress(conn, run_id, progress))

    return on_node


def failed_calls_message(store: Store, run_id: int) -> str:
    n = store.count_failed_calls(run_id)
    return (f"{n} node(s) have LLM calls that failed after all retries (retryable, nothing eliminated): "
            f"run evolve on run {run_id} again to retry them, or give up on them (they become malformed)")


def give_up_failed(store: Store, run_id: int, user: str | None = None) -> int:
    """Give up on the run's retryable nodes: they become `malformed` eliminations with the reason
    (a seed whose response kept failing gets an empty one: never exported); returns how many."""
    evolve_run(store, run_id)
    return store.give_up_failed_calls(run_id, user)


def summary(store: Store, run_id: int, *, wall_s: float, session: dict, status: str) -> dict:
    """Counts per round, rule and operation (the store's one query for each, effective status)."""
    statuses = ("seed", "kept", "eliminated", "pending")
    by_round = {r["round"]: {k: r[k] for k in statuses if r[k]} for r in store.counts_by_round(run_id)}
    rules = {r["rule"]: r["n"] for r in store.counts_by_rule(run_id)}
    ops = {r["operation"]: {k: r[k] for k in statuses[1:] if r[k]} for r in store.counts_by_operation(run_id)}
    return {"run_id": run_id, "status": status, "by_round": by_round, "eliminated_by_rule": rules,
            "failed_calls": store.count_failed_calls(run_id),
            "by_operation": ops, "calls_total": store.call_stats(run_id), "session": session, "wall_s": wall_s}


def format_summary(s: dict) -> str:
    lines = [f"run {s['run_id']}: {s['status']} in {s['wall_s']:.1f}s"]
    for rnd, counts in sorted(s["by_round"].items()):
        lines.append(f"  round {rnd}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if s["eliminated_by_rule"]:
        lines.append("  eliminated by rule: " + ", ".join(f"{k} {v}" for k, v in sorted(s["eliminated_by_rule"].items())))
    if s.get("failed_calls"):
        lines.append(f"  failed calls (retryable, not eliminated): {s['failed_calls']} node(s)")
    for op, counts in sorted(s["by_operation"].items()):
        lines.append(f"  {op:<20} kept {counts.get('kept', 0):>5}  eliminated {counts.get('eliminated', 0):>5}"
                     + (f"  pending {counts['pending']}" if counts.get("pending") else ""))
    c, sess = s["calls_total"], s["session"]
    lines.append(f"  LLM calls paid (all sessions): {c['calls']}, tokens in/out {c['prompt_tokens']}/"
                 f"{c['completion_tokens']}")
    if sess:
        lines.append(f"  this session: {sess['calls']} calls, {sess['cache_hits']} cache hits, "
                     f"{sess['retries']} retries, {sess['failures']} failed calls"
                     + (f"; the local model loaded in {sess['model_load_s']:.1f} s" if sess.get("model_load_s") else "")
                     + _served_note(sess.get("model_server")))
    return "\n".join(lines)


def _served_note(server: dict | None) -> str:
    if not server:
        return ""
    return (f"; model server pid {server['pid']} "
            + ("(already loaded)" if server["was_loaded"] else "(started or still loading when this run began)"))


def start_batch(store: Store, settings: Settings, seeds_path: str, *, rounds: int, seed: int, limit: int | None,
                created_by: str | None, log_dir, sampling: dict | None = None,
                rules: str = evol_rules.PAPER) -> tuple[int, str]:
    """Create (or find) the run and start it as a background job; returns (run id, what happened)."""
    from wizardlab import jobs

    run_id = prepare_run(store, settings, seeds_path, rounds=rounds, seed=seed, limit=limit, created_by=created_by,
                         sampling=sampling, rules=rules)
    jobs.refresh(store)
    run = store.get_run(run_id)
    if jobs.is_live(run):
        return run_id, f"The same batch is already {run['status']} as run {run_id}; showing it."
    if is_finished(store, run):
        return run_id, f"The same batch already finished as run {run_id}; raise the rounds to extend it."
    launch_job(store, run_id, log_dir)
    return run_id, f"Started run {run_id}."


def launch_job(store: Store, run_id: int, log_dir) -> str:
    """Start (or resume) run `run_id` as a background job (`python -m pipeline evolve --run-id N`)."""
    from wizardlab import jobs

    run = evolve_run(store, run_id)
    if jobs.is_live(run):
        raise UserError(f"run {run_id} is already {run['status']}")
    return jobs.launch(store, run_id, "evolve", ["--run-id", run_id, "--quiet"], log_dir=log_dir)
