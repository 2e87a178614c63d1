"""`python -m pipeline agreement`: inter-annotator agreement of a judgments file.

Reads a generic CSV (columns item, annotator, label; labels are any strings, "tie" is a
tie) or a PandaLM / llmfao / open-instruct file (see wizardlab.evaluation.formats), and
prints `wizardlab.evaluation.stats.agreement` of it: with --json ONE JSON object with exactly the
keys of `agreement()`, else a readable table (summary, annotator pairs, flagged
annotators). It does not touch the store.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.evaluation.formats import FORMATS, load_judgments, to_records

MAX_PAIRS_SHOWN = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judgments", required=True, type=Path, metavar="FILE",
                        help="judgments file: CSV with item, annotator, label, or a PandaLM/llmfao/open-instruct file")
    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                        help="file format (default: detect from the content)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def main(args: argparse.Namespace) -> int:
    judgments = load_judgments(args.judgments, args.format, keep_labels=True)
    records = to_records(judgments)
    from wizardlab.evaluation import stats  # scipy/sklearn/statsmodels: ~1 s, so only once the input is read
    try:
        result = stats.agreement(records)
    except ValueError as exc:
        raise UserError(f"{args.judgments.name}: {exc}") from None
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(format_table(result, stats.annotator_report(records)))
    return 0


def _fmt(x, pct: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def format_table(result: dict, annotators: list[dict]) -> str:
    """The readable report: summary lines, Cohen's kappa per pair, flagged annotators."""
    lines = [
        f"items {result['n_items']}  annotators {result['n_annotators']}  judgments {result['n_judgments']}",
        f"percent agreement (MT-bench, pairs of judgments)  {_fmt(result['percent_agreement'], True)}",
        f"percent agreement without ties                    {_fmt(result['percent_agreement_without_ties'], True)}",
        f"Cohen's kappa, mean over pairs                    {_fmt(result['cohen_kappa_mean'])}",
        f"Fleiss' kappa                                     {_fmt(result['fleiss_kappa'])}"
        + ("" if result["fleiss_kappa"] is not None else "  (needs the same number >= 2 of raters per item)"),
        f"Krippendorff's alpha (nominal)                    {_fmt(result['krippendorff_alpha'])}",
        "",
    ]
    pairs = sorted(result["cohen_kappa_pairs"], key=lambda p: -p["n"])
    lines.append(f"{'annotator a':<20} {'annotator b':<20} {'shared':>7} {'kappa':>7}")
    for p in pairs[:MAX_PAIRS_SHOWN]:
        lines.append(f"{str(p['a']):<20} {str(p['b']):<20} {p['n']:>7} {_fmt(p['kappa']):>7}")
    if len(pairs) > MAX_PAIRS_SHOWN:
        lines.append(f"... {len(pairs) - MAX_PAIRS_SHOWN} more pairs (use --json for all)")
    flagged = [a for a in annotators if a["flag"]]
    lines.append("")
    lines.append(f"annotators flagged for low agreement with the others' majority: {len(flagged)}")
    for a in flagged:
        lines.append(f"  {a['annotator']}: {_fmt(a['agreement'], True)} on {a['n_compared']} items, "
                     f"kappa {_fmt(a['kappa'])}")
    return "\n".join(lines)
