"""`python -m pipeline report`: a campaign's win rates (per item and over all judgments), capacity
ratios of score-giving judges, ratings, breakdowns, agreement and judges.

    report --campaign NAME|ID [--json] [--csv DIR] [--html FILE] [--exclude-flagged | --exclude NAME ...]
           [--bootstrap 2000] [--seed 0]
Prints the text report (or one JSON object with `--json`); `--csv DIR` also writes
pairs.csv, ratings.csv, breakdowns.csv, judgment_level.csv, capacity.csv, kappa_pairs.csv,
agreement.csv, annotators.csv, rater_cards.csv, rater_exclusion.csv, identity_leaks.csv, llm_judges.csv,
progress.csv and the trust tables; `--html FILE` a self-contained HTML page of the text report.
`--exclude-flagged` leaves the raters whose card has a flag out of every figure (the report always
shows what that changes). See wizardlab.evaluation.report for the conventions.
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
    parser.add_argument("--html", default=None, metavar="FILE", help="also write a self-contained HTML report")
    ex = parser.add_mutually_exclusive_group()
    ex.add_argument("--exclude-flagged", action="store_true", help="leave raters with a flag out of every figure")
    ex.add_argument("--exclude", nargs="+", default=None, metavar="NAME", help="leave these raters out")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.errors import UserError
    from wizardlab.evaluation import report
    from wizardlab.store import Store

    if args.bootstrap < 10:
        raise UserError(f"--bootstrap must be at least 10, got {args.bootstrap}")
    store = Store(Settings.from_env(db=args.db).db)
    exclude = "flagged" if args.exclude_flagged else args.exclude
    rep = report.build_report(store, args.campaign, n_boot=args.bootstrap, seed=args.seed, exclude=exclude)
    print(json.dumps(rep, ensure_ascii=False, default=str) if args.json else report.render_text(rep))
    if args.html:
        from pathlib import Path

        Path(args.html).write_text(report.render_html(rep), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if args.csv:
        paths = report.write_csv(rep, args.csv)
        print(f"wrote {len(paths)} CSV files to {args.csv}", file=sys.stderr)
    return 0
