"""Evolution data: seeds, nodes (the instruction forest), the LLM-call cache, overrides.

The effective status of a node is its newest live override, else the rules' verdict
(view `nodes_effective`); pools, exports and statistics all read it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator

from wizardlab.errors import UserError
from wizardlab.store.base import count_words, dumps, now_iso

CHUNK = 1000
KEPT = ("seed", "kept")


class EvolQueries:
    # -- seeds and rounds ----------------------------------------------------------
    def insert_seeds(self, run_id: int, seeds: Iterable[dict]) -> int:
        """Insert all seeds as round-0 roots in one transaction (all or nothing)."""
        n = 0
        with self.tx() as conn:
            for seed in seeds:
                cur = conn.execute(
                    "INSERT INTO nodes (run_id, round, instruction, input, response, status, source_ref, words) "
                    "VALUES (?, 0, ?, ?, ?, 'seed', ?, ?)",
                    (run_id, seed["instruction"], seed.get("input") or "", seed.get("response"), seed.get("source_ref"),
                     count_words(seed["instruction"])),
                )
                conn.execute("UPDATE nodes SET root_id = id WHERE id = ?", (cur.lastrowid,))
                n += 1
        return n

    def count_nodes(self, run_id: int, round_: int | None = None, status: str | None = None) -> int:
        sql, params = "SELECT count(*) FROM nodes WHERE run_id = ?", [run_id]
        if round_ is not None:
            sql += " AND round = ?"
            params.append(round_)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        return self.scalar(sql, tuple(params))

    def count_seeds_without_response(self, run_id: int) -> int:
        return self.scalar("SELECT count(*) FROM nodes WHERE run_id = ? AND round = 0 AND response IS NULL", (run_id,))

    def iter_seeds_without_response(self, run_id: int, chunk: int = CHUNK) -> Iterator[dict]:
        last = 0
        while True:
            rows = self.query(
                "SELECT id, instruction, input FROM nodes WHERE run_id = ? AND round = 0 AND response IS NULL "
                "AND id > ? ORDER BY id LIMIT ?", (run_id, last, chunk))
            if not rows:
                return
            yield from rows
            last = rows[-1]["id"]

    def create_round(self, run_id: int, round_: int, choose_operation: Callable[[], str]) -> int:
        """Create the pending node of every root for `round_`; idempotent.

        The parent is the root's newest kept (effective status) node of an earlier round,
        or the seed itself. `choose_operation` is called once per root in root order,
        whether or not the node exists already, so a resumed run draws the same sequence.
        """
        created, last = 0, 0
        with self.tx() as conn:
            while True:
                rows = conn.execute(
                    """SELECT s.id AS root_id,
                              (SELECT e.id FROM nodes_effective e
                               WHERE e.root_id = s.id AND e.round < ? AND e.effective_status IN ('seed', 'kept')
                               ORDER BY e.round DESC LIMIT 1) AS parent_id
                       FROM nodes s WHERE s.run_id = ? AND s.round = 0 AND s.id > ? ORDER BY s.id LIMIT ?""",
                    (round_, run_id, last, CHUNK),
                ).fetchall()
                if not rows:
                    break
                for root_id, parent_id in rows:
                    op = choose_operation()
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO nodes (run_id, parent_id, root_id, round, operation, status, words) "
                        "VALUES (?, ?, ?, ?, ?, 'pending', 0)",
                        (run_id, parent_id or root_id, root_id, round_, op),
                    )
                    created += cur.rowcount
                last = rows[-1][0]
        return created

    def iter_pending(self, run_id: int, round_: int, chunk: int = CHUNK) -> Iterator[dict]:
        """Pending nodes of a round with their parent's text, streamed in id order."""
        last = 0
        while True:
            rows = self.query(
                """SELECT n.id, n.root_id, n.parent_id, n.round, n.operation,
                          p.instruction AS parent_instruction, p.input AS parent_input
                   FROM nodes n JOIN nodes p ON p.id = n.parent_id
                   WHERE n.run_id = ? AND n.round = ? AND n.status = 'pending' AND n.id > ?
                   ORDER BY n.id LIMIT ?""",
                (run_id, round_, last, chunk))
            if not rows:
                return
            yield from rows
            last = rows[-1]["id"]

    @staticmethod
    def write_node_result(conn: sqlite3.Connection, node_id: int, *, status: str, instruction: str,
                          response: str | None, fail_rules: list[str], error: str | None, raw: dict,
                          finish_reason: str | None = None) -> None:
        conn.execute(
            "UPDATE nodes SET status = ?, instruction = ?, words = ?, response = ?, fail_rules = ?, error = ?, "
            "raw = ?, finish_reason = ?, updated_at = ? WHERE id = ?",
            (status, instruction, count_words(instruction), response, dumps(fail_rules), error, dumps(raw),
             finish_reason, now_iso(), node_id),
        )

    @staticmethod
    def write_seed_response(conn: sqlite3.Connection, node_id: int, response: str | None, error: str | None,
                            finish_reason: str | None = None) -> None:
        failed = 1 if response is None else 0
        conn.execute("UPDATE nodes SET response = ?, error = ?, finish_reason = ?, attempts = attempts + ?, "
                     "last_error = coalesce(?, last_error), updated_at = ? WHERE id = ?",
                     (response, error, finish_reason, failed, error, now_iso(), node_id))

    # -- failed calls (retryable) ----------------------------------------------------
    @staticmethod
    def write_call_failure(conn: sqlite3.Connection, node_id: int, error: str, raw: dict) -> None:
        """A call failed after all retries: the node stays pending (retryable), its attempts and error kept."""
        conn.execute("UPDATE nodes SET attempts = attempts + 1, last_error = ?, raw = ?, updated_at = ? "
                     "WHERE id = ? AND status = 'pending'", (error, dumps(raw), now_iso(), node_id))

    _FAILED = "attempts > 0 AND (status = 'pending' OR (round = 0 AND response IS NULL))"

    def count_failed_calls(self, run_id: int, round_: int | None = None) -> int:
        """Nodes left retryable by a failed call (a seed without its response counts too)."""
        sql, args = f"SELECT count(*) FROM nodes WHERE run_id = ? AND {self._FAILED}", [run_id]
        if round_ is not None:
            sql, args = sql + " AND round = ?", args + [round_]
        return self.scalar(sql, tuple(args))

    def failed_calls(self, run_id: int, limit: int = 20) -> list[dict]:
        return self.query(f"SELECT id, round, operation, attempts, last_error, updated_at FROM nodes "
                          f"WHERE run_id = ? AND {self._FAILED} ORDER BY round, id LIMIT ?", (run_id, limit))

    def give_up_failed_calls(self, run_id: int, user: str | None = None) -> int:
        """Turn the run's retryable evolved nodes into `malformed` eliminations, with the reason; a seed
        whose response kept failing gets an empty one (never exported, never asked again)."""
        reason = "'gave up' || ? || ' after ' || attempts || ' failed attempts: ' || coalesce(last_error, '')"
        args = (f" by {user}" if user else "", now_iso(), run_id)
        with self.tx() as conn:
            cur = conn.execute(
                f"UPDATE nodes SET status = 'eliminated', fail_rules = '[\"malformed\"]', error = {reason}, "
                "updated_at = ? WHERE run_id = ? AND round > 0 AND status = 'pending' AND attempts > 0", args)
            seeds = conn.execute(
                f"UPDATE nodes SET response = '', error = {reason}, updated_at = ? "
                "WHERE run_id = ? AND round = 0 AND response IS NULL AND attempts > 0", args)
            return cur.rowcount + seeds.rowcount

    def get_node(self, node_id: int) -> dict | None:
        row = self.query_one("SELECT * FROM nodes_effective WHERE id = ?", (node_id,))
        return _decode_node(row) if row else None

    # -- LLM-call cache --------------------------------------------------------------
    def cache_get(self, key: str) -> dict | None:
        return self.query_one("SELECT completion, prompt_tokens, completion_tokens, latency_ms, finish_reason "
                              "FROM llm_calls WHERE key = ?", (key,))

    @staticmethod
    def cache_put(conn: sqlite3.Connection, row: dict) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO llm_calls (key, run_id, backend, model, purpose, request, completion, "
            "prompt_tokens, completion_tokens, latency_ms, attempts, finish_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (row["key"], row.get("run_id"), row["backend"], row["model"], row.get("purpose"), row["request"],
             row["completion"], row.get("prompt_tokens", 0), row.get("completion_tokens", 0),
             row.get("latency_ms", 0.0), row.get("attempts", 1), row.get("finish_reason")),
        )

    def call_stats(self, run_id: int) -> dict:
        return self.query_one(
            "SELECT count(*) AS calls, coalesce(sum(prompt_tokens),0) AS prompt_tokens, "
            "coalesce(sum(completion_tokens),0) AS completion_tokens, coalesce(avg(latency_ms),0) AS mean_latency_ms "
            "FROM llm_calls WHERE run_id = ?", (run_id,))

    # -- overrides ---------------------------------------------------------------------
    def add_overrides(self, node_ids: Iterable[int], action: str, reason: str, user: str) -> int:
        if action not in ("restore", "eliminate"):
            raise UserError(f"override action must be 'restore' or 'eliminate', got {action!r}")
        if not reason or not reason.strip():
            raise UserError("an override needs a reason")
        n = 0
        with self.tx() as conn:
            for node_id in node_ids:
                if conn.execute("SELECT 1 FROM nodes WHERE id = ? AND status != 'pending'", (node_id,)).fetchone() is None:
                    raise UserError(f"node {node_id} does not exist or is still pending")
                conn.execute("INSERT INTO overrides (node_id, action, reason, user) VALUES (?,?,?,?)",
                             (node_id, action, reason.strip(), user))
                n += 1
        return n

    def undo_override(self, override_id: int, user: str) -> None:
        with self.tx() as conn:
            cur = conn.execute("UPDATE overrides SET undone_at = ?, undone_by = ? WHERE id = ? AND undone_at IS NULL",
                               (now_iso(), user, override_id))
            if cur.rowcount == 0:
                raise UserError(f"override {override_id} does not exist or is already undone")

    def check_override_status(self, run_id: int | None = None, *, repair: bool = False) -> list[int]:
        """Ids of nodes whose `override_status` column disagrees with the audit log (the source of
        truth); with `repair`, recompute those from the log in the same transaction."""
        from wizardlab.store.schema import _OVERRIDE_STATUS

        scope = "AND nodes.run_id = ?" if run_id is not None else ""
        with self.tx() as conn:
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM nodes WHERE override_status IS NOT {_OVERRIDE_STATUS} {scope}",
                (run_id,) if run_id is not None else ())]
            if repair:
                for i in range(0, len(ids), 500):
                    part = ids[i:i + 500]
                    conn.execute(f"UPDATE nodes SET override_status = {_OVERRIDE_STATUS} "
                                 f"WHERE id IN ({','.join('?' * len(part))})", part)
        return ids

    def node_overrides(self, node_id: int) -> list[dict]:
        return self.query("SELECT * FROM overrides WHERE node_id = ? ORDER BY id", (node_id,))

    # -- export --------------------------------------------------------------------------
    def latest_run_id(self, kind: str = "evolve") -> int | None:
        return self.scalar("SELECT max(id) FROM runs WHERE kind = ?", (kind,))

    def iter_nodes(self, run_id: int, *, training_only: bool = False, with_raw: bool = False,
                   chunk: int = CHUNK) -> Iterator[dict]:
        """All nodes of a run in id order (keyset paging on index nodes_run_id), with effective status;
        or only the training set. `raw` (the LLM texts) is decoded only `with_raw`."""
        cond = "AND effective_status IN ('seed', 'kept')" if training_only else ""
        last = 0
        while True:
            rows = self.query(f"SELECT * FROM nodes_effective WHERE run_id = ? {cond} AND id > ? ORDER BY id LIMIT ?",
                              (run_id, last, chunk))
            if not rows:
                return
            for r in rows:
                if with_raw:
                    yield _decode_node(r)
                else:
                    r.pop("raw", None)
                    r["fail_rules"] = json.loads(r.get("fail_rules") or "[]")
                    yield r
            last = rows[-1]["id"]


    def iter_node_rows(self, run_id: int, columns: tuple[str, ...], *, training_only: bool = False,
                       chunk: int = 2 * CHUNK) -> Iterator[tuple]:
        """Plain tuples of `columns` then the effective status, for every node of a run in id order (or
        only the training set): what an export streams. Only the named columns are decoded; no dict per
        row (at 260,000 nodes the rows of `iter_nodes` cost about a third of a jsonl export)."""
        cond = "AND coalesce(override_status, status) IN ('seed', 'kept')" if training_only else ""
        sql = (f"SELECT {', '.join(columns)}, coalesce(override_status, status) FROM nodes "
               f"WHERE run_id = ? {cond} AND id > ? ORDER BY id LIMIT ?")
        at = columns.index("id")
        last = 0
        while True:
            cur = self.conn.cursor()
            cur.row_factory = None
            rows = cur.execute(sql, (run_id, last, chunk)).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][at]

    def training_ids(self, run_id: int, *, drop_truncated: bool = False) -> list[tuple[int, int]]:
        """(id, round) of every exportable training node (seed or kept, with a response), in id order."""
        cut = "AND coalesce(finish_reason, '') != 'length'" if drop_truncated else ""
        return [(r["id"], r["round"]) for r in self.query(
            f"SELECT id, round FROM nodes_effective WHERE run_id = ? AND effective_status IN ('seed', 'kept') "
            f"AND response IS NOT NULL AND trim(response) != '' {cut} ORDER BY id", (run_id,))]

    def iter_nodes_by_ids(self, ids: list[int], chunk: int = 500) -> Iterator[dict]:
        """The nodes (effective status) with these ids, in the order given."""
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            rows = {r["id"]: r for r in self.query(
                f"SELECT * FROM nodes_effective WHERE id IN ({','.join('?' * len(part))})", tuple(part))}
            yield from (_decode_node(rows[i]) for i in part if i in rows)


def _decode_node(row: dict) -> dict:
    row = dict(row)
    row["fail_rules"] = json.loads(row.get("fail_rules") or "[]")
    row["raw"] = json.loads(row.get("raw") or "{}")
    return row
