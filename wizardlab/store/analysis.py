"""Analysis data: statistics of a run's forest, difficulty scores, the embeddings cache, reference sets.

Statistics read the effective status (view `nodes_effective`: newest live override, else
the rules' verdict). Rule counts read `fail_rules`, the verdict itself, which overrides
do not change. Nothing here computes embeddings or calls an LLM (see wizardlab.analysis).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from wizardlab.store.base import count_words, now_iso  # noqa: F401 (count_words: part of this module's API)

_IN_CHUNK = 500  # placeholders per IN (...) query


def _counts(groups: list[dict], key: str, keep) -> list[dict]:
    """Sum status groups by `key` (round or operation), ordered as SQL would (NULL first)."""
    out: dict = {}
    for g in groups:
        if not keep(g):
            continue
        r = out.setdefault(g[key], {key: g[key], "total": 0, "seed": 0, "kept": 0, "eliminated": 0, "pending": 0,
                                    "eliminated_by_rules": 0})
        r["total"] += g["n"]
        if g["eff"] in ("seed", "kept", "eliminated", "pending"):
            r[g["eff"]] += g["n"]
        if g["status"] == "eliminated":
            r["eliminated_by_rules"] += g["n"]
    return [out[k] for k in sorted(out, key=lambda k: (k is not None, k if k is not None else 0))]


class AnalysisQueries:
    # -- statistics -------------------------------------------------------------------
    def evolve_runs(self) -> list[dict]:
        """Evolution runs, newest first, with their node counts (for run pickers)."""
        return self.query(
            "SELECT r.id, r.name, r.status, r.created_at, (SELECT count(*) FROM nodes n WHERE n.run_id = r.id) AS nodes "
            "FROM runs r WHERE r.kind = 'evolve' ORDER BY r.id DESC")

    def change_stamp(self, run_id: int) -> str | None:
        """When a node of the run last changed (written, scored or overridden): the key of cached figures."""
        return self.scalar("SELECT max(updated_at) FROM nodes WHERE run_id = ?", (run_id,))

    def status_groups(self, run_id: int) -> list[dict]:
        """One pass over the run (covering index nodes_stats): node counts and difficulty aggregates per
        (round, operation, verdict, effective status, difficulty answered, failed rules). The per-round,
        per-operation, per-rule and difficulty figures are all derived from these rows (pass them as
        `groups=` to reuse them)."""
        return self.query(
            """SELECT round, operation, status, coalesce(override_status, status) AS eff,
                      difficulty_answered AS answered, fail_rules, count(*) AS n, count(difficulty) AS scored,
                      total(difficulty) AS dsum, min(difficulty) AS dmin, max(difficulty) AS dmax
               FROM nodes WHERE run_id = ?
               GROUP BY round, status, override_status, operation, difficulty_answered, fail_rules""", (run_id,))

    def counts_by_round(self, run_id: int, groups: list[dict] | None = None) -> list[dict]:
        """Per round: total nodes and how many are seed / kept / eliminated / pending (effective), and
        eliminated_by_rules (the verdict)."""
        if groups is None:  # alone (the Evolve tab, every tick of a run): a narrower pass in index order
            groups = self.query("SELECT round, status, coalesce(override_status, status) AS eff, count(*) AS n "
                                "FROM nodes WHERE run_id = ? GROUP BY round, status, override_status", (run_id,))
        return _counts(groups, "round", lambda g: True)

    def counts_by_operation(self, run_id: int, groups: list[dict] | None = None) -> list[dict]:
        """Per operation (evolved nodes only): kept / eliminated (effective) and the rules' verdict."""
        rows = _counts(groups if groups is not None else self.status_groups(run_id), "operation",
                       lambda g: g["round"] > 0)
        for r in rows:
            del r["seed"]
        return rows

    def counts_by_rule(self, run_id: int, groups: list[dict] | None = None) -> list[dict]:
        """Per elimination rule: nodes it failed, how many of them are now kept (restored), and
        `finished`, the number of evolved nodes with a verdict (the denominator of its rate)."""
        groups = groups if groups is not None else self.status_groups(run_id)
        finished = sum(g["n"] for g in groups if g["round"] > 0 and g["status"] != "pending")
        out: dict[str, dict] = {}
        for g in groups:
            for rule in set(json.loads(g["fail_rules"] or "[]")):
                r = out.setdefault(rule, {"rule": rule, "n": 0, "restored": 0, "finished": finished})
                r["n"] += g["n"]
                r["restored"] += g["n"] if g["eff"] == "kept" else 0
        return sorted(out.values(), key=lambda r: (-r["n"], r["rule"]))

    def length_histogram(self, run_id: int, *, kept_only: bool = False) -> list[dict]:
        """(round, words, n): instruction length in words per round, as a compact histogram."""
        cond = "AND effective_status IN ('seed', 'kept')" if kept_only else "AND effective_status != 'pending'"
        return self.query(
            f"SELECT round, words, count(*) AS n FROM nodes_effective "
            f"WHERE run_id = ? {cond} GROUP BY round, words ORDER BY round, words", (run_id,))

    # -- difficulty ---------------------------------------------------------------------
    def _unscored_cond(self, *, data_only: bool, retry_unparsable: bool) -> str:
        cond = "difficulty IS NULL AND effective_status != 'pending' AND words > 0"
        if data_only:
            cond += " AND effective_status IN ('seed', 'kept')"
        if not retry_unparsable:
            cond += " AND difficulty_answered = 0"
        return cond

    def count_unscored(self, run_id: int, *, data_only: bool = True, retry_unparsable: bool = False) -> int:
        cond = self._unscored_cond(data_only=data_only, retry_unparsable=retry_unparsable)
        return self.scalar(f"SELECT count(*) FROM nodes_effective WHERE run_id = ? AND {cond}", (run_id,))

    def iter_unscored(self, run_id: int, *, data_only: bool = True, retry_unparsable: bool = False,
                      chunk: int = 256) -> Iterator[list[dict]]:
        """Chunks of nodes still to score (id order, keyset paging, so work done meanwhile is skipped)."""
        cond = self._unscored_cond(data_only=data_only, retry_unparsable=retry_unparsable)
        last = 0
        while True:
            rows = self.query(f"SELECT id, instruction, input FROM nodes_effective WHERE run_id = ? AND {cond} "
                              f"AND id > ? ORDER BY id LIMIT ?", (run_id, last, chunk))
            if not rows:
                return
            yield rows
            last = rows[-1]["id"]

    def set_difficulties(self, items: Iterable[tuple[int, float | None, str]]) -> int:
        """Store (node_id, difficulty or None, raw answer) in one short transaction; the raw
        text always goes to raw.difficulty_raw, so an unparsable answer is kept and counted."""
        n = 0
        with self.tx() as conn:
            for node_id, difficulty, raw_text in items:
                conn.execute(
                    "UPDATE nodes SET difficulty = ?, raw = json_set(coalesce(raw, '{}'), '$.difficulty_raw', ?), "
                    "difficulty_answered = 1, updated_at = ? WHERE id = ?", (difficulty, raw_text, now_iso(), node_id))
                n += 1
        return n

    def difficulty_summary(self, run_id: int, groups: list[dict] | None = None) -> dict:
        """Scored, unparsable and unscored counts of a run's finished nodes, and the mean difficulty
        of its data set (seeds and kept nodes, effective status); all None when nothing is finished."""
        rows = [g for g in (groups if groups is not None else self.status_groups(run_id)) if g["eff"] != "pending"]
        if not rows:
            return {"scored": None, "mean_data": None, "unparsable": None, "unscored": None}
        data = [g for g in rows if g["eff"] in ("seed", "kept")]
        data_scored = sum(g["scored"] for g in data)
        return {"scored": sum(g["scored"] for g in rows),
                "mean_data": sum(g["dsum"] for g in data) / data_scored if data_scored else None,
                "unparsable": sum(g["n"] - g["scored"] for g in rows if g["answered"]),
                "unscored": sum(g["n"] - g["scored"] for g in rows if not g["answered"])}

    @staticmethod
    def _data_cond(data_only: bool) -> str:
        return "effective_status IN ('seed', 'kept')" if data_only else "effective_status != 'pending'"

    def difficulty_histogram(self, run_id: int, *, data_only: bool = True) -> list[dict]:
        """(round, difficulty rounded to an integer, n) over scored nodes of the data set
        (seeds + kept, effective status), or every finished node."""
        return self.query(
            "SELECT round, CAST(round(difficulty) AS INTEGER) AS difficulty, count(*) AS n FROM nodes_effective "
            f"WHERE run_id = ? AND difficulty IS NOT NULL AND {self._data_cond(data_only)} "
            "GROUP BY round, 2 ORDER BY round, 2", (run_id,))

    def difficulty_by_round(self, run_id: int, *, data_only: bool = True,
                            groups: list[dict] | None = None) -> list[dict]:
        """Per round: scored, mean, min, max difficulty of the data set (seeds + kept, effective
        status), or of every finished node."""
        out: dict[int, list[dict]] = {}
        for g in groups if groups is not None else self.status_groups(run_id):
            if g["eff"] in ("seed", "kept") or (not data_only and g["eff"] != "pending"):
                out.setdefault(g["round"], []).append(g)
        rows = []
        for rnd in sorted(out):
            gs, scored = out[rnd], sum(g["scored"] for g in out[rnd])
            lows = [g["dmin"] for g in gs if g["dmin"] is not None]
            highs = [g["dmax"] for g in gs if g["dmax"] is not None]
            rows.append({"round": rnd, "scored": scored,
                         "mean": sum(g["dsum"] for g in gs) / scored if scored else None,
                         "min": min(lows) if lows else None, "max": max(highs) if highs else None})
        return rows

    # -- texts for maps -------------------------------------------------------------------
    def map_nodes(self, run_id: int, *, data_only: bool = True) -> list[dict]:
        """Finished nodes of a run with what a diversity map colours by."""
        cond = "effective_status IN ('seed', 'kept')" if data_only else "effective_status != 'pending'"
        return self.query(
            f"SELECT id, round, coalesce(operation, 'seed') AS operation, effective_status AS status, instruction, "
            f"difficulty FROM nodes_effective WHERE run_id = ? AND {cond} AND words > 0 ORDER BY id",
            (run_id,))

    def count_map_nodes(self, run_id: int, *, data_only: bool = True) -> int:
        """How many points `map_nodes` would return (a count on the covering index, no text read)."""
        cond = "effective_status IN ('seed', 'kept')" if data_only else "effective_status != 'pending'"
        return self.scalar(f"SELECT count(*) FROM nodes_effective WHERE run_id = ? AND {cond} AND words > 0",
                           (run_id,))

    # -- embeddings cache -------------------------------------------------------------------
    def get_embeddings(self, text_hashes: list[str], model: str) -> dict[str, bytes]:
        """Cached vectors (float32 blobs) for the hashes that have one."""
        found: dict[str, bytes] = {}
        for i in range(0, len(text_hashes), _IN_CHUNK):
            part = text_hashes[i:i + _IN_CHUNK]
            marks = ",".join("?" * len(part))
            for row in self.conn.execute(
                    f"SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN ({marks})",
                    (model, *part)):
                found[row[0]] = row[1]
        return found

    def put_embeddings(self, items: Iterable[tuple[str, bytes]], model: str) -> int:
        with self.tx() as conn:
            cur = conn.executemany("INSERT OR IGNORE INTO embeddings (text_hash, model, vector) VALUES (?, ?, ?)",
                                   [(h, model, v) for h, v in items])
            return cur.rowcount

    def count_embeddings(self, model: str | None = None) -> int:
        if model is None:
            return self.scalar("SELECT count(*) FROM embeddings")
        return self.scalar("SELECT count(*) FROM embeddings WHERE model = ?", (model,))

    # -- reference sets -----------------------------------------------------------------------
    def replace_reference_set(self, name: str, instructions: Iterable[str]) -> int:
        """Replace the reference set `name` with these instructions, all in one transaction."""
        with self.tx() as conn:
            conn.execute("DELETE FROM reference_items WHERE set_name = ?", (name,))
            cur = conn.executemany("INSERT INTO reference_items (set_name, instruction) VALUES (?, ?)",
                                   [(name, text) for text in instructions])
            return cur.rowcount

    def reference_sets(self) -> list[dict]:
        return self.query("SELECT set_name AS name, count(*) AS n FROM reference_items GROUP BY set_name "
                          "ORDER BY set_name")

    def reference_texts(self, name: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT instruction FROM reference_items WHERE set_name = ? ORDER BY id", (name,))]

