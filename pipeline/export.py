"""`python -m pipeline export`: the forest as a lineage file, or the training set (`wizardlab.export`)."""

from __future__ import annotations

from pathlib import Path

from wizardlab.config import Settings
from wizardlab.errors import UserError
from wizardlab.export import FORMATS, export_dataset
from wizardlab.store import Store


def add_arguments(parser) -> None:
    parser.add_argument("--db", default=None, help="SQLite file (default: wizardlab.db or WIZARDLAB_DB)")
    parser.add_argument("--out", required=True, help="output file (a directory for --format hf)")
    parser.add_argument("--format", choices=FORMATS, default="jsonl", help="jsonl = lineage; others = training set")
    parser.add_argument("--run", type=int, default=None, help="evolution run id (default: the newest)")


def main(args) -> int:
    settings = Settings.from_env(db=args.db)
    if not Path(settings.db).exists():
        raise UserError(f"{settings.db}: no such database")
    store = Store(settings.db)
    path = export_dataset(store, args.run, args.out, args.format)
    print(f"wrote {path}")
    return 0
