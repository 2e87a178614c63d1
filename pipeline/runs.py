"""`python -m pipeline runs`: list runs and background jobs, or cancel one.

Listing first calls `jobs.refresh`, so a job whose process vanished shows as failed.
"""

from __future__ import annotations

from wizardlab import jobs

HELP = "List runs and jobs in the store, or cancel one."


def add_arguments(parser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("--kind", help="only runs of this kind (evolve, score, embed, train, ...)")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--cancel", type=int, metavar="RUN_ID", help="stop this job (SIGTERM; it saves and exits)")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.store import Store

    store = Store(args.db or Settings.from_env().db)
    if args.cancel is not None:
        print(f"run {args.cancel}: {jobs.cancel(store, args.cancel)}")
        return 0
    jobs.refresh(store)
    runs = store.list_runs(args.kind, limit=args.limit)
    if not runs:
        print("no runs")
    for run in runs:
        print(f"{run['id']:>5}  {run['kind']:<9} {run['status']:<10} {run['created_at'][:19]}  "
              f"{run.get('created_by') or '-':<10} {jobs.progress_line(run)}")
    return 0
