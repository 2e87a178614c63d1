"""`python -m pipeline tour --db PATH`: the first-run tour of the whole loop, offline, no prompts.

The 24 demo seeds evolve one round on the embedded model; a two-arm experiment (seeds only
vs seeds + evolved) trains the embedded Gemma a few CPU steps per arm and answers 10 test
questions; a small blind campaign opens. Prints each step as it starts and the campaign id
at the end. Run it again to resume after an interruption (`wizardlab.tour`).
"""

from __future__ import annotations

import argparse
import sys
import time

HELP = "The first-run tour: evolve, recipes, a two-arm experiment and a campaign on the embedded model."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("--base-model", default="embedded", help="base model of both arms (default: embedded)")
    parser.add_argument("--base-url", default=None, help="evolve on this endpoint (default: the embedded model)")
    parser.add_argument("--model", default=None, help="model name at --base-url")
    parser.add_argument("--run-id", type=int, default=None, help=argparse.SUPPRESS)  # the tour as a job


def main(args) -> int:
    from pathlib import Path

    from wizardlab import tour
    from wizardlab.config import Settings
    from wizardlab.jobs import job_run
    from wizardlab.store import Store

    settings = Settings.from_env(db=args.db)
    store = Store(settings.db)
    log_dir = Path(settings.data_dir).resolve() / "logs"
    start = time.monotonic()
    say = lambda text: print(f"[{time.monotonic() - start:6.0f}s] {text}", file=sys.stderr, flush=True)  # noqa: E731
    if args.run_id is None:
        options = tour.TourOptions(base_model=args.base_model, base_url=args.base_url, model=args.model)
        result = tour.run_tour(store, settings, log_dir=log_dir, say=say, options=options)
    else:
        run = store.get_run(args.run_id)
        with job_run(store, args.run_id) as job:
            result = tour.run_tour(store, settings, log_dir=log_dir, say=say, created_by=run["created_by"],
                                   options=tour.TourOptions(**{k: v for k, v in run["config"].items()
                                                                  if not k.startswith("_")}))
            job.progress({"phase": "done", **result}, force=True)
    say(f"done in {time.monotonic() - start:.0f} s; judge it in the app's Judge tab")
    print(f"campaign {result['campaign_id']}")
    return 0
