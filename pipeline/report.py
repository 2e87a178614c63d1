"""`python -m pipeline report`: a campaign's win rates (per item and over all judgments), capacity
ratios of score-giving judges, ratings, breakdowns, agreement and judges.

    report --campaign NAME|ID [--json] [--csv DIR] [--bootstrap 2000] [--seed 0]
Prints the text report (or one JSON object with `--json`); `--csv DIR` also writes
pairs.csv, ratings.csv, breakdowns.csv, judgment_level.csv, capacity.csv, kappa_pairs.csv,
agreement.csv, annotators.csv, llm_judges.csv and progress.csv. See wizardlab.evaluation.report
for the conventions.
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "Win rates (per item and per judgment), capacity ratios, ratings and agreement for a campaign."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("--campaign", required=True, help="campaign name or id")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--csv", default=None, metavar="DIR", help="also write the tables as CSV files into DIR")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0)


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.errors import UserError
    from wizardlab.evaluation import report
    from wizardlab.store import Store

    if args.bootstrap < 10:
        raise UserError(f"--bootstrap must be at least 10, got {args.bootstrap}")
    store = Store(Settings.from_env(db=args.db).db)
    rep = report.build_report(store, args.campaign, n_boot=args.bootstrap, seed=args.seed)
    print(json.dumps(rep, ensure_ascii=False, default=str) if args.json else report.render_text(rep))
    if args.csv:
        paths = report.write_csv(rep, args.csv)
        print(f"wrote {len(paths)} CSV files to {args.csv}", file=sys.stderr)
    return 0
