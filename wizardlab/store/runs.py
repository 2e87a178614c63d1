"""Runs: one row per evolution, scoring, training, generation or judging run (or job)."""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Callable

from wizardlab.store.base import dumps, now_iso

ACTIVE = ("pending", "queued", "running")


class RunQueries:
    def create_run(self, kind: str, config: dict, *, name: str | None = None, config_key: str | None = None,
                   status: str = "pending", created_by: str | None = None, log_path: str | None = None) -> int:
        with self.tx() as conn:
            cur = conn.execute(
                "INSERT INTO runs (kind, name, config, config_key, status, created_by, log_path) VALUES (?,?,?,?,?,?,?)",
                (kind, name, dumps(config), config_key, status, created_by, log_path),
            )
            return cur.lastrowid

    def get_run(self, run_id: int) -> dict | None:
        row = self.query_one("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _decode_run(row) if row else None

    def find_run(self, kind: str, config_key: str) -> dict | None:
        row = self.query_one("SELECT * FROM runs WHERE kind = ? AND config_key = ? ORDER BY id DESC LIMIT 1",
                             (kind, config_key))
        return _decode_run(row) if row else None

    def list_runs(self, kind: str | None = None, limit: int = 100) -> list[dict]:
        if kind:
            rows = self.query("SELECT * FROM runs WHERE kind = ? ORDER BY id DESC LIMIT ?", (kind, limit))
        else:
            rows = self.query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_decode_run(r) for r in rows]

    def update_run(self, run_id: int, **fields) -> None:
        if not fields:
            return
        for key in ("config", "progress"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = dumps(fields[key])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as conn:
            conn.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    def mark_run(self, run_id: int, status: str, *, error: str | None = None, exit_code: int | None = None) -> None:
        fields: dict = {"status": status}
        if status == "running":
            fields["started_at"] = now_iso()
        if status in ("done", "failed", "cancelled"):
            fields["finished_at"] = now_iso()
        if error is not None:
            fields["error"] = error
        if exit_code is not None:
            fields["exit_code"] = exit_code
        self.update_run(run_id, **fields)

    def active_runs(self, status: str | None = None) -> list[dict]:
        """Runs that are pending, queued or running (or only `status`), oldest first."""
        if status:
            rows = self.query("SELECT * FROM runs WHERE status = ? ORDER BY id", (status,))
        else:
            rows = self.query("SELECT * FROM runs WHERE status IN ('pending', 'queued', 'running') ORDER BY id")
        return [_decode_run(r) for r in rows]

    def claim_queued_run(self, run_id: int, alive: Callable[[dict], bool], stale_s: float = 60.0) -> bool:
        """Atomically move a queued run to running when no other live run holds its queue.

        One write transaction: the queue check and `UPDATE ... WHERE status = 'queued'`;
        the updated row count says whether this caller won the claim. A run claimed but not
        yet given a pid counts as holding its queue for `stale_s` seconds.
        """
        with self.tx() as conn:
            row = conn.execute("SELECT json_extract(config, '$._job.queue') FROM runs WHERE id = ? AND "
                               "status = 'queued'", (run_id,)).fetchone()
            if row is None:
                return False
            if row[0] is not None:
                holders = conn.execute(
                    "SELECT * FROM runs WHERE status = 'running' AND id != ? AND "
                    "json_extract(config, '$._job.queue') = ?", (run_id, row[0])).fetchall()
                for holder in map(_decode_run, map(dict, holders)):
                    claimed_s = _age_s(holder.get("started_at"))
                    if alive(holder) or (holder["pid"] is None and claimed_s < stale_s):
                        return False
            cur = conn.execute("UPDATE runs SET status = 'running', started_at = ?, pid = NULL, pid_started = NULL "
                               "WHERE id = ? AND status = 'queued'", (now_iso(), run_id))
            return cur.rowcount == 1

    def set_progress(self, run_id: int, progress: dict) -> None:
        self.update_run(run_id, progress=progress)

    def delete_run(self, run_id: int) -> None:
        with self.tx() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))


def _decode_run(row: dict) -> dict:
    row = dict(row)
    row["config"] = json.loads(row.get("config") or "{}")
    row["progress"] = json.loads(row.get("progress") or "{}")
    return row


def _age_s(iso: str | None) -> float:
    """Seconds since an ISO timestamp written by `now_iso` (inf when missing)."""
    if not iso:
        return float("inf")
    return time.time() - calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S"))


def write_progress(conn, run_id: int, progress: dict) -> None:
    """For a BatchWriter: update a run's progress inside the writer's transaction."""
    conn.execute("UPDATE runs SET progress = ? WHERE id = ?", (dumps(progress), run_id))
