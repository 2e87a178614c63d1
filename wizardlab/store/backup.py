"""Backup and restore of the SQLite file, consistent while people work.

`backup(db, out)` copies the database with SQLite's online backup API in one step: in WAL
mode that step reads one consistent snapshot (every transaction committed before it began,
none half-written) and does not block writers (evolution, judging, training go on). The copy
is written beside `out`, checked with `PRAGMA integrity_check`, and only then renamed to
`out`; an existing `out` is never overwritten unless `overwrite=True`.

`restore(backup_file, db)` refuses a file that is not a WizardLab database (no `_migrations`
table, or migrations this code does not know: a newer schema) or that fails the integrity
check, and never overwrites an existing database without `force=True`. Stop the app first.

`prune(folder, keep)` keeps the newest `keep` files named `wizardlab-*.db` (scheduled backups).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.store.schema import MIGRATIONS

PREFIX = "wizardlab-"


def _check(path: Path) -> dict:
    """{migrations, integrity} of a database file; UserError when it is not a WizardLab database."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{path.name}: not a WizardLab database ({exc})") from None
    known = [m.__name__ for m in MIGRATIONS]
    newer = [n for n in names if n not in known]
    if newer:
        raise UserError(f"{path.name}: made by a newer WizardLab (schema {newer[-1]}); update the code first")
    if integrity != "ok":
        raise UserError(f"{path.name}: integrity check failed: {integrity}")
    return {"migrations": names, "integrity": integrity}


def backup(db: str | Path, out: str | Path, *, overwrite: bool = False) -> dict:
    """Copy `db` to `out` consistently while others write; returns {path, bytes, seconds, integrity}."""
    db, out = Path(db), Path(out)
    if not db.is_file():
        raise UserError(f"{db}: no such database")
    if out.exists() and not overwrite:
        raise UserError(f"{out}: exists already; choose another name or allow overwriting")
    if out.resolve() == db.resolve():
        raise UserError(f"{out}: is the database itself")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    started = time.perf_counter()
    src = sqlite3.connect(db, timeout=30)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst, pages=-1)  # one step: one consistent snapshot of the WAL database
        dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
    finally:
        dst.close()
        src.close()
    try:
        info = _check(tmp)
    except UserError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return {"path": str(out), "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - started, 3),
            "integrity": info["integrity"], "schema": info["migrations"][-1] if info["migrations"] else None}


def restore(backup_file: str | Path, db: str | Path, *, force: bool = False) -> dict:
    """Replace `db` by a checked backup; refuses a foreign or newer file, and an existing db without force."""
    backup_file, db = Path(backup_file), Path(db)
    if not backup_file.is_file():
        raise UserError(f"{backup_file}: no such backup file")
    info = _check(backup_file)
    if db.exists() and not force:
        raise UserError(f"{db}: exists; restoring replaces everything in it (give --force to do so)")
    db.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    dst = sqlite3.connect(db, timeout=30)
    try:
        src.backup(dst, pages=-1)  # one transaction on the target: all or nothing
    finally:
        dst.close()
        src.close()
    return {"path": str(db), "schema": info["migrations"][-1] if info["migrations"] else None}


def timestamped(folder: str | Path) -> Path:
    """`folder/wizardlab-YYYYmmdd-HHMMSS-mmm.db` (UTC; names sort by time)."""
    now = time.time()
    return Path(folder) / f"{PREFIX}{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{int(now * 1000) % 1000:03d}.db"


def prune(folder: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups in `folder`; returns the deleted paths."""
    files = sorted(Path(folder).glob(f"{PREFIX}*.db"), key=lambda p: p.name, reverse=True)
    gone = files[max(0, keep):]
    for path in gone:
        path.unlink()
    return gone


def start_scheduled(db: str | Path, folder: str | Path, every_minutes: float, keep: int):
    """Back up `db` into `folder` every `every_minutes`, keeping the newest `keep`; a daemon thread.

    Returns (thread, stop_event). A failed backup is logged and retried at the next tick."""
    import logging
    import threading

    if every_minutes <= 0 or keep < 1:
        raise UserError("scheduled backups need a positive interval and keep >= 1")
    log, stop = logging.getLogger("wizardlab.backup"), threading.Event()

    def loop():
        while not stop.wait(every_minutes * 60):
            try:
                info = backup(db, timestamped(folder))
                prune(folder, keep)
                log.warning("scheduled backup %s (%d bytes)", info["path"], info["bytes"])
            except (UserError, OSError, sqlite3.Error) as exc:
                log.error("scheduled backup failed: %s", exc)

    thread = threading.Thread(target=loop, name="wizardlab-backups", daemon=True)
    thread.start()
    return thread, stop
