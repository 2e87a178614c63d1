"""`python -m pipeline score`: rate each instruction's difficulty 1-10 with the LLM (WizardLM paper).

Scores the data set of a run (seeds and kept nodes; `--all` adds eliminated ones) and stores
it per node (nodes.difficulty), through `wizardlab.analysis.difficulty`. Resumable: scored
and unparsable nodes are skipped, and the LLM-call cache means a restarted run pays nothing
twice. SIGTERM/Ctrl-C stop after the current chunk, with everything done so far stored.
As a job (`wizardlab.jobs.launch`) it reports into its own `score` run; from a shell one
is made.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from wizardlab.analysis import difficulty, tables
from wizardlab.errors import UserError
from wizardlab.jobs import current_job_id, job_run
from wizardlab.llm import params

HELP = "Score instruction difficulty (1-10) with the LLM, as in the WizardLM paper."


def add_arguments(parser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("--run", type=int, default=None, help="evolution run to score (default: the newest)")
    parser.add_argument("--base-url", action="append",
                        help="OpenAI-compatible endpoint (default: embedded model); give it several times for a pool: "
                        "URL[,model=NAME][,weight=W]")
    parser.add_argument("--model", default=None, help="model name the endpoint serves")
    parser.add_argument("--concurrency", type=int, default=None, help="parallel requests (default 16)")
    parser.add_argument("--limit", type=int, default=None, help="score at most N nodes in this pass")
    parser.add_argument("--all", "--include-eliminated", dest="all", action="store_true",
                        help="also score (and show) eliminated nodes (default: the data set, seeds + kept)")
    parser.add_argument("--retry-unparsable", action="store_true",
                        help="ask again for nodes whose earlier answer had no number (e.g. with another model)")
    params.add_arguments(parser, ("score",))


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
    job_id = current_job_id() or store.create_run(
        "score", {"target_run": target, "base_url": settings.base_url, "model": settings.model,
                  "concurrency": settings.concurrency, "limit": args.limit, "all": args.all},
        name=f"difficulty of run {target}")
    report = None
    with job_run(store, job_id) as job:
        report = _score(store, settings, target, job, args)
    if report is not None and job.status is None and not job.stopping:
        _print_summary(store, target, report, args.all)
    return 0


def _score(store, settings, target: int, job, args) -> difficulty.ScoreReport:
    todo = store.count_unscored(target, data_only=not args.all, retry_unparsable=args.retry_unparsable)
    bar = tqdm(total=min(todo, args.limit or todo), unit="node", desc=f"scoring run {target}", file=sys.stderr,
               dynamic_ncols=True)

    def progress(report: difficulty.ScoreReport) -> None:
        bar.total = report.total
        bar.update(report.done - bar.n)
        bar.set_postfix(scored=report.scored, unparsable=report.unparsable, failed=report.failed,
                        calls=report.calls, cached=report.cache_hits)
        job.progress({"phase": "scoring", "target_run": target, **report.as_dict()},
                     force=report.done >= report.total)

    try:
        report = difficulty.run_scoring(store, settings, target, stop=job.stop, on_progress=progress,
                                        score_run_id=job.run_id, data_only=not args.all,
                                        retry_unparsable=args.retry_unparsable, limit=args.limit,
                                        sampling=params.from_arguments(args, ("score",)))
    finally:
        bar.close()
    job.progress({"phase": "done", "target_run": target, **report.as_dict()}, force=True)
    return report


def _print_summary(store, target: int, report: difficulty.ScoreReport, include_eliminated: bool = False) -> None:
    summary = store.difficulty_summary(target)
    print(f"run {target}: scored {report.scored}, unparsable {report.unparsable}, failed {report.failed} in this "
          f"pass ({report.calls} paid calls, {report.cache_hits} cache hits); in the store: {summary['scored'] or 0} "
          f"scored, {summary['unparsable'] or 0} unparsable, {summary['unscored'] or 0} unscored")
    print(tables.difficulty_table(store, target, include_eliminated=include_eliminated).to_string(index=False))
