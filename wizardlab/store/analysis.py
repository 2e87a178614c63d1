"""Analysis data: statistics of a run's forest, difficulty scores, the embeddings cache, reference sets.

Statistics read the effective status (view `nodes_effective`: newest live override, else
the rules' verdict). Rule counts read `fail_rules`, the verdict itself, which overrides
do not change. Nothing here computes embeddings or calls an LLM (see wizardlab.analysis).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from wizardlab.store.base import now_iso

_WORD = re.compile(r"\S+")
_IN_CHUNK = 500  # placeholders per IN (...) query


def count_words(text: str | None) -> int:
    """Words of a text, split on any whitespace: count_words("a  b\\nc") == 3."""
    return len(_WORD.findall(text or ""))


class AnalysisQueries:
    # -- statistics -------------------------------------------------------------------
    def evolve_runs(self) -> list[dict]:
        """Evolution runs, newest first, with their node counts (for run pickers)."""
        return self.query(
            "SELECT r.id, r.name, r.status, r.created_at, (SELECT count(*) FROM nodes n WHERE n.run_id = r.id) AS nodes "
            "FROM runs r WHERE r.kind = 'evolve' ORDER BY r.id DESC")

    def counts_by_round(self, run_id: int) -> list[dict]:
        """Per round: total nodes and how many are seed / kept / eliminated / pending (effective)."""
        return self.query(
            """SELECT round, count(*) AS total,
                      sum(effective_status = 'seed') AS seed, sum(effective_status = 'kept') AS kept,
                      sum(effective_status = 'eliminated') AS eliminated, sum(effective_status = 'pending') AS pending,
                      sum(status = 'eliminated') AS eliminated_by_rules
               FROM nodes_effective WHERE run_id = ? GROUP BY round ORDER BY round""", (run_id,))

    def counts_by_operation(self, run_id: int) -> list[dict]:
        """Per operation (evolved nodes only): kept / eliminated (effective) and the rules' verdict."""
        return self.query(
            """SELECT operation, count(*) AS total,
                      sum(effective_status = 'kept') AS kept, sum(effective_status = 'eliminated') AS eliminated,
                      sum(effective_status = 'pending') AS pending, sum(status = 'eliminated') AS eliminated_by_rules
               FROM nodes_effective WHERE run_id = ? AND round > 0 GROUP BY operation ORDER BY operation""",
            (run_id,))

    def counts_by_rule(self, run_id: int) -> list[dict]:
        """Per elimination rule: nodes it failed, how many of them are now kept (restored), and
        `finished`, the number of evolved nodes with a verdict (the denominator of its rate)."""
        return self.query(
            """SELECT r.value AS rule, count(DISTINCT n.id) AS n,
                      count(DISTINCT CASE WHEN n.effective_status = 'kept' THEN n.id END) AS restored,
                      (SELECT count(*) FROM nodes f WHERE f.run_id = ? AND f.round > 0 AND f.status != 'pending')
                        AS finished
               FROM nodes_effective n, json_each(n.fail_rules) r
               WHERE n.run_id = ? GROUP BY r.value ORDER BY n DESC, rule""", (run_id, run_id))

    def length_histogram(self, run_id: int, *, kept_only: bool = False) -> list[dict]:
        """(round, words, n): instruction length in words per round, as a compact histogram."""
        self.conn.create_function("wl_words", 1, count_words, deterministic=True)
        cond = "AND effective_status IN ('seed', 'kept')" if kept_only else "AND effective_status != 'pending'"
        return self.query(
            f"SELECT round, wl_words(instruction) AS words, count(*) AS n FROM nodes_effective "
            f"WHERE run_id = ? {cond} GROUP BY round, words ORDER BY round, words", (run_id,))

    # -- difficulty ---------------------------------------------------------------------
    def _unscored_cond(self, *, data_only: bool, retry_unparsable: bool) -> str:
        cond = "difficulty IS NULL AND effective_status != 'pending' AND trim(instruction) != ''"
        if data_only:
            cond += " AND effective_status IN ('seed', 'kept')"
        if not retry_unparsable:
            cond += " AND json_extract(raw, '$.difficulty_raw') IS NULL"
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
                    "updated_at = ? WHERE id = ?", (difficulty, raw_text, now_iso(), node_id))
                n += 1
        return n

    def difficulty_summary(self, run_id: int) -> dict:
        """Scored, unparsable and unscored counts of a run's finished nodes, and the mean difficulty
        of its data set (seeds and kept nodes, effective status)."""
        return self.query_one(
            """SELECT sum(difficulty IS NOT NULL) AS scored,
                      avg(CASE WHEN effective_status IN ('seed', 'kept') THEN difficulty END) AS mean_data,
                      sum(difficulty IS NULL AND json_extract(raw, '$.difficulty_raw') IS NOT NULL) AS unparsable,
                      sum(difficulty IS NULL AND json_extract(raw, '$.difficulty_raw') IS NULL) AS unscored
               FROM nodes_effective WHERE run_id = ? AND effective_status != 'pending'""", (run_id,))

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

    def difficulty_by_round(self, run_id: int, *, data_only: bool = True) -> list[dict]:
        return self.query(
            "SELECT round, count(difficulty) AS scored, avg(difficulty) AS mean, min(difficulty) AS min, "
            f"max(difficulty) AS max FROM nodes_effective WHERE run_id = ? AND {self._data_cond(data_only)} "
            "GROUP BY round ORDER BY round", (run_id,))

    # -- texts for maps -------------------------------------------------------------------
    def map_nodes(self, run_id: int, *, data_only: bool = True) -> list[dict]:
        """Finished nodes of a run with what a diversity map colours by."""
        cond = "effective_status IN ('seed', 'kept')" if data_only else "effective_status != 'pending'"
        return self.query(
            f"SELECT id, round, coalesce(operation, 'seed') AS operation, effective_status AS status, instruction, "
            f"difficulty FROM nodes_effective WHERE run_id = ? AND {cond} AND trim(instruction) != '' ORDER BY id",
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

