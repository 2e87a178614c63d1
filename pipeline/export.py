"""`python -m pipeline export`: the forest as a lineage file, or the training set (`wizardlab.export`)."""

from __future__ import annotations

from pathlib import Path

from wizardlab.config import Settings
from wizardlab.errors import UserError
from wizardlab.export import FORMATS, STRATA, Selection, export_dataset, selection_path
from wizardlab.store import Store


def add_arguments(parser) -> None:
    parser.add_argument("--db", default=None, help="SQLite file (default: wizardlab.db or WIZARDLAB_DB)")
    parser.add_argument("--out", required=True, help="output file (a directory for --format hf)")
    parser.add_argument("--format", choices=FORMATS, default="jsonl", help="jsonl = lineage; others = training set")
    parser.add_argument("--run", type=int, default=None, help="evolution run id (default: the newest)")
    parser.add_argument("--sample", type=int, default=None, metavar="N",
                        help="export N records of the training set, drawn at random (e.g. 70000 of 250K, as WizardLM-7B)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of --sample and --shuffle (default 0)")
    parser.add_argument("--stratify", choices=STRATA, default=None,
                        help="sample each round in proportion to its size (default: uniform)")
    parser.add_argument("--shuffle", action="store_true", help="write records in a shuffled order (else id order)")
    parser.add_argument("--drop-truncated", action="store_true",
                        help="leave out responses cut off at the token limit")


def main(args) -> int:
    settings = Settings.from_env(db=args.db)
    if not Path(settings.db).exists():
        raise UserError(f"{settings.db}: no such database")
    store = Store(settings.db)
    selection = Selection(sample=args.sample, seed=args.seed, stratify=args.stratify, shuffle=args.shuffle,
                          drop_truncated=args.drop_truncated)
    path = export_dataset(store, args.run, args.out, args.format, selection)
    print(f"wrote {path}" + (f" (chosen ids in {selection_path(path)})" if selection.active else ""))
    return 0
