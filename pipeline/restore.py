"""`python -m pipeline restore --db DB --from FILE [--force]`: put a backup back (stop the app first).

Refuses a file that is not a WizardLab database or comes from a newer schema, and never
replaces an existing database without `--force`. The work is `wizardlab.store.backup.restore`.
"""

from __future__ import annotations

import argparse

from pipeline.backup import RESTORE_HELP as HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database to write (default: settings / WIZARDLAB_DB)")
    parser.add_argument("--from", dest="source", required=True, help="backup file made by `backup`")
    parser.add_argument("--force", action="store_true", help="replace an existing database")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.store.backup import restore

    info = restore(args.source, Settings.from_env(db=args.db).db, force=args.force)
    print(f"restored {info['path']} (schema {info['schema']})")
    return 0
