"""`python -m pipeline backup` and `restore`: a consistent copy of the database while people work.

    backup --db DB --out FILE [--overwrite]
    restore --db DB --from FILE [--force]      (stop the app first)
The work is `wizardlab.store.backup`.
"""

from __future__ import annotations

import argparse

HELP = "Back up the database consistently while the app runs (SQLite online backup)."
RESTORE_HELP = "Restore the database from a backup (checked: a WizardLab file, not a newer schema)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    parser.add_argument("--out", required=True, help="backup file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.store.backup import backup

    info = backup(Settings.from_env(db=args.db).db, args.out, overwrite=args.overwrite)
    print(f"backup {info['path']}: {info['bytes']} bytes in {info['seconds']} s, integrity {info['integrity']}, "
          f"schema {info['schema']}")
    return 0
