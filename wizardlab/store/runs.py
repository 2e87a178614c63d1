"""Runs: one row per evolution, scoring, training, generation or judging run (or job)."""

from __future__ import annotations

import json

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


def write_progress(conn, run_id: int, progress: dict) -> None:
    """For a BatchWriter: update a run's progress inside the writer's transaction."""
    conn.execute("UPDATE runs SET progress = ? WHERE id = ?", (dumps(progress), run_id))
