"""`python -m pipeline score`: rate each instruction's difficulty 1-10 with the LLM (WizardLM paper).

Scores the data set of a run (seeds and kept nodes; `--all` adds eliminated ones) and stores
it per node (nodes.difficulty). Resumable: scored and unparsable nodes are skipped, and the
LLM-call cache means a restarted run pays nothing twice. SIGTERM/Ctrl-C stop after the
current chunk, with everything done so far stored. Launched as a job, the runs row named by
WIZARDLAB_RUN_ID gets progress and the final status; from a shell a `score` runs row is made.
"""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm

from wizardlab import analysis
from wizardlab.errors import UserError
from wizardlab.jobs import StopFlag

HELP = "Score instruction difficulty (1-10) with the LLM, as in the WizardLM paper."


def add_arguments(parser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("--run", type=int, default=None, help="evolution run to score (default: the newest)")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (default: embedded model)")
    parser.add_argument("--model", default=None, help="model name the endpoint serves")
    parser.add_argument("--concurrency", type=int, default=None, help="parallel requests (default 16)")
    parser.add_argument("--limit", type=int, default=None, help="score at most N nodes in this pass")
    parser.add_argument("--all", action="store_true", help="also score eliminated nodes")
    parser.add_argument("--retry-unparsable", action="store_true",
                        help="ask again for nodes whose earlier answer had no number (e.g. with another model)")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.store import Store

    settings = Settings.from_env(db=args.db, base_url=args.base_url, model=args.model, concurrency=args.concurrency)
    store = Store(settings.db)
    target = args.run or store.latest_run_id("evolve")
    if target is None or store.get_run(target) is None:
        raise UserError(f"{settings.db}: no evolution run {args.run or ''} to score".replace("  ", " "))
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    job_id = _job_run(store, target, settings, args)
    store.mark_run(job_id, "running")
    stop = StopFlag().install()
    return _score(store, settings, target, job_id, stop, args)


def _job_run(store, target: int, settings, args) -> int:
    env_id = os.environ.get("WIZARDLAB_RUN_ID")
    if env_id:
        return int(env_id)
    config = {"target_run": target, "base_url": settings.base_url, "model": settings.model,
              "concurrency": settings.concurrency, "limit": args.limit, "all": args.all}
    job_id = store.create_run("score", config, name=f"difficulty of run {target}")
    store.update_run(job_id, pid=os.getpid())
    return job_id


def _score(store, settings, target: int, job_id: int, stop: StopFlag, args) -> int:
    todo = store.count_unscored(target, data_only=not args.all, retry_unparsable=args.retry_unparsable)
    bar = tqdm(total=min(todo, args.limit or todo), unit="node", desc=f"scoring run {target}", file=sys.stderr,
               dynamic_ncols=True)
    last = [0.0]

    def progress(report: analysis.ScoreReport) -> None:
        bar.total = report.total
        bar.update(report.done - bar.n)
        bar.set_postfix(scored=report.scored, unparsable=report.unparsable, failed=report.failed,
                        calls=report.calls, cached=report.cache_hits)
        if time.monotonic() - last[0] >= 1.0 or report.done >= report.total:
            last[0] = time.monotonic()
            store.set_progress(job_id, {"phase": "scoring", "target_run": target, **report.as_dict()})

    try:
        report = analysis.run_scoring(store, settings, target, stop=stop, on_progress=progress, score_run_id=job_id,
                                      data_only=not args.all, retry_unparsable=args.retry_unparsable, limit=args.limit)
    except analysis.Cancelled as exc:
        bar.close()
        store.mark_run(job_id, "cancelled", error=str(exc))
        print(f"cancelled: {exc}; run the same command again to resume", file=sys.stderr)
        return 0
    except BaseException as exc:  # record why, then let it propagate (one line for a UserError)
        bar.close()
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        store.mark_run(job_id, status, error=f"{type(exc).__name__}: {exc}")
        raise
    bar.close()
    store.set_progress(job_id, {"phase": "done", "target_run": target, **report.as_dict()})
    store.mark_run(job_id, "done")
    summary = store.difficulty_summary(target)
    print(f"run {target}: scored {report.scored}, unparsable {report.unparsable}, failed {report.failed} in this "
          f"pass ({report.calls} paid calls, {report.cache_hits} cache hits); in the store: {summary['scored'] or 0} "
          f"scored, {summary['unparsable'] or 0} unparsable, {summary['unscored'] or 0} unscored")
    print(analysis.difficulty_table(store, target).to_string(index=False))
    return 0
