"""Review tasks: nodes picked for human review, curators' queues and verdicts, applying a task.

A task holds items (one per node); a curator claims the next item that has fewer than k
live assignments and that they have not seen (`claim_review_item`, one short transaction,
so two curators never exceed k); answers, skips and undo change only the caller's own
assignment. `apply_review` writes the audited overrides and marks the task, all at once.
The rules (`wizardlab.review`) decide what to apply; this module only reads and writes.
"""

from __future__ import annotations

import json
import sqlite3

from wizardlab.errors import UserError
from wizardlab.store.base import now_iso
from wizardlab.store.lineage import _where

_TASK_COUNTS = """
    (SELECT count(*) FROM review_items i WHERE i.task_id = t.id) AS n_items,
    (SELECT count(*) FROM review_assignments a WHERE a.task_id = t.id AND a.status = 'done') AS n_verdicts,
    (SELECT count(DISTINCT a.curator) FROM review_assignments a WHERE a.task_id = t.id AND a.status = 'done')
        AS n_curators"""


class ReviewQueries:
    def create_review_task(self, name: str, run_id: int, filters: dict, k: int, nodes: list[tuple[int, str]],
                           created_by: str | None) -> int:
        """A task over `nodes` [(node_id, effective status now)]; all or nothing."""
        try:
            with self.tx() as conn:
                cur = conn.execute("INSERT INTO review_tasks (name, run_id, filters, k, created_by) VALUES (?,?,?,?,?)",
                                   (name, run_id, json.dumps(filters), k, created_by))
                conn.executemany("INSERT INTO review_items (task_id, node_id, status_before) VALUES (?,?,?)",
                                 [(cur.lastrowid, n, s) for n, s in nodes])
                return cur.lastrowid
        except sqlite3.IntegrityError:
            raise UserError(f"a review task named {name!r} already exists") from None

    def review_candidates(self, run_id: int, filters: dict) -> list[tuple[int, str]]:
        """(id, effective status) of the run's finished evolutions (round >= 1) matching `filters`."""
        where, params = _where(run_id, filters)
        rows = self.query(f"SELECT e.id, e.effective_status FROM nodes_effective e WHERE {where} AND e.round > 0 "
                          f"AND e.status != 'pending' ORDER BY e.id", tuple(params))
        return [(r["id"], r["effective_status"]) for r in rows]

    def review_task(self, key) -> dict | None:
        """A task by id or name, with its filters decoded and its counts."""
        text = str(key).strip().lstrip("#")
        where, param = ("t.id = ?", int(text)) if text.isdigit() else ("t.name = ?", text)
        row = self.query_one(f"SELECT t.*, {_TASK_COUNTS} FROM review_tasks t WHERE {where}", (param,))
        if row:
            row["filters"] = json.loads(row["filters"] or "{}")
        return row

    def list_review_tasks(self, status: str | None = None) -> list[dict]:
        sql = f"SELECT t.*, {_TASK_COUNTS} FROM review_tasks t"
        rows = self.query(sql + (" WHERE t.status = ?" if status else "") + " ORDER BY t.id DESC",
                          (status,) if status else ())
        for row in rows:
            row["filters"] = json.loads(row["filters"] or "{}")
        return rows

    def open_review_assignment(self, task_id: int, curator: str) -> int | None:
        return self.scalar("SELECT id FROM review_assignments WHERE task_id = ? AND curator = ? AND status = 'open' "
                           "ORDER BY id LIMIT 1", (task_id, curator))

    def claim_review_item(self, task_id: int, curator: str, k: int, node_id: int | None = None) -> int | None:
        """The caller's open assignment, else a new one on the first item with < k live assignments
        that they have not had; with `node_id`, only that node's item (scripted answers)."""
        with self.tx() as conn:
            mine = "AND i.node_id = ?" if node_id is not None else ""
            extra = (node_id,) if node_id is not None else ()
            row = conn.execute(f"SELECT a.id FROM review_assignments a JOIN review_items i ON i.id = a.item_id "
                               f"WHERE a.task_id = ? AND a.curator = ? AND a.status = 'open' {mine} "
                               f"ORDER BY a.id LIMIT 1", (task_id, curator, *extra)).fetchone()
            if row:
                return row[0]
            item = conn.execute(
                f"""SELECT i.id FROM review_items i WHERE i.task_id = ? {mine}
                     AND NOT EXISTS (SELECT 1 FROM review_assignments a WHERE a.item_id = i.id AND a.curator = ?)
                     AND (SELECT count(*) FROM review_assignments a WHERE a.item_id = i.id
                          AND a.status != 'skipped') < ?
                   ORDER BY i.id LIMIT 1""", (task_id, *extra, curator, k)).fetchone()
            if item is None:
                return None
            return conn.execute("INSERT INTO review_assignments (task_id, item_id, curator) VALUES (?,?,?)",
                                (task_id, item[0], curator)).lastrowid

    def review_item_view(self, assignment_id: int) -> dict | None:
        """What a curator sees: the node, its parent, the rules' verdict and why (no run config)."""
        row = self.query_one(
            """SELECT a.id AS assignment_id, a.task_id, a.curator, a.status AS assignment_status,
                      n.id AS node_id, n.round, n.operation, n.instruction, n.input, n.response, n.status,
                      n.fail_rules, n.error, p.instruction AS parent_instruction, p.input AS parent_input
               FROM review_assignments a JOIN review_items i ON i.id = a.item_id
               JOIN nodes n ON n.id = i.node_id LEFT JOIN nodes p ON p.id = n.parent_id
               WHERE a.id = ?""", (assignment_id,))
        if row:
            row["fail_rules"] = json.loads(row["fail_rules"] or "[]")
        return row

    def answer_review(self, assignment_id: int, curator: str, verdict: str, seconds: float | None) -> bool:
        """Store a verdict on the caller's open assignment; False when it is not open (a repeat)."""
        with self.tx() as conn:
            cur = conn.execute("UPDATE review_assignments SET status = 'done', verdict = ?, seconds = ?, "
                               "answered_at = ? WHERE id = ? AND curator = ? AND status = 'open'",
                               (verdict, seconds, now_iso(), assignment_id, curator))
            return cur.rowcount == 1

    def skip_review(self, assignment_id: int, curator: str) -> bool:
        with self.tx() as conn:
            return conn.execute("UPDATE review_assignments SET status = 'skipped' WHERE id = ? AND curator = ? "
                                "AND status = 'open'", (assignment_id, curator)).rowcount == 1

    def undo_review(self, task_id: int, curator: str) -> int | None:
        """Reopen the caller's latest verdict in the task (their other open item is released)."""
        with self.tx() as conn:
            last = conn.execute("SELECT id FROM review_assignments WHERE task_id = ? AND curator = ? "
                                "AND status = 'done' ORDER BY answered_at DESC, id DESC LIMIT 1", (task_id, curator)).fetchone()
            if last is None:
                return None
            conn.execute("DELETE FROM review_assignments WHERE task_id = ? AND curator = ? AND status = 'open'",
                         (task_id, curator))
            conn.execute("UPDATE review_assignments SET status = 'open', verdict = NULL, answered_at = NULL "
                         "WHERE id = ?", (last[0],))
            return last[0]

    def review_progress(self, task_id: int, curator: str) -> dict:
        row = self.query_one(
            """SELECT (SELECT count(*) FROM review_items WHERE task_id = :t) AS total,
                      (SELECT count(*) FROM review_assignments WHERE task_id = :t AND curator = :c
                         AND status = 'done') AS done,
                      (SELECT count(*) FROM review_assignments WHERE task_id = :t AND curator = :c
                         AND status = 'skipped') AS skipped""", {"t": task_id, "c": curator})
        return dict(row)

    def review_verdicts(self, task_id: int) -> list[dict]:
        """Every item of the task with its node's rules verdict, effective status and the verdicts given."""
        items = self.query(
            """SELECT i.id AS item_id, i.node_id, i.status_before, i.override_id, e.status AS rules_status,
                      e.effective_status, e.fail_rules
               FROM review_items i JOIN nodes_effective e ON e.id = i.node_id WHERE i.task_id = ? ORDER BY i.id""",
            (task_id,))
        votes = self.query("SELECT item_id, curator, verdict FROM review_assignments WHERE task_id = ? "
                           "AND status = 'done' ORDER BY id", (task_id,))
        by_item = {i["item_id"]: {**i, "fail_rules": json.loads(i["fail_rules"] or "[]"), "verdicts": {}}
                   for i in items}
        for v in votes:
            by_item[v["item_id"]]["verdicts"][v["curator"]] = v["verdict"]
        return list(by_item.values())

    def curators_of_runs(self, run_ids: list[int]) -> dict[str, dict]:
        """user -> {overrides, verdicts}: live overrides on the runs' nodes and review verdicts on them."""
        marks = ",".join("?" * len(run_ids))
        out: dict[str, dict] = {}
        for key, sql in (
                ("overrides", f"SELECT o.user AS who, count(*) AS n FROM overrides o JOIN nodes n ON n.id = o.node_id "
                              f"WHERE n.run_id IN ({marks}) AND o.undone_at IS NULL GROUP BY o.user"),
                ("verdicts", f"SELECT a.curator AS who, count(*) AS n FROM review_assignments a JOIN review_tasks t "
                             f"ON t.id = a.task_id WHERE t.run_id IN ({marks}) AND a.status = 'done' "
                             f"GROUP BY a.curator")):
            for row in self.query(sql, tuple(run_ids)):
                out.setdefault(row["who"], {"overrides": 0, "verdicts": 0})[key] = row["n"]
        return out

    def apply_review(self, task_id: int, policy: str, user: str, overrides: list[tuple[int, int, str, str]]) -> int:
        """Write `overrides` [(item_id, node_id, action, reason)] and mark the task applied; all or nothing."""
        with self.tx() as conn:
            cur = conn.execute("UPDATE review_tasks SET status = 'applied', policy = ?, applied_by = ?, applied_at = ? "
                               "WHERE id = ? AND status = 'open'", (policy, user, now_iso(), task_id))
            if cur.rowcount == 0:
                raise UserError(f"review task {task_id} is already applied")
            for item_id, node_id, action, reason in overrides:
                oid = conn.execute("INSERT INTO overrides (node_id, action, reason, user) VALUES (?,?,?,?)",
                                   (node_id, action, reason, user)).lastrowid
                conn.execute("UPDATE review_items SET override_id = ? WHERE id = ?", (oid, item_id))
        return len(overrides)
