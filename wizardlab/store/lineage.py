"""Lineage and curation queries: root search with filters, trees, bulk selections.

Every filter reads the effective status (newest live override, else the rules' verdict:
coalesce(override_status, status), see schema m005). Text is searched in instructions and inputs (the trigram index
`nodes_fts`; responses are not searched). Filters are plain keyword arguments; `wizardlab.curation`
validates them before they get here.
"""

from __future__ import annotations

import json

FILTER_KEYS = ("text", "round", "operation", "status", "rule", "truncated")


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _phrase(text: str) -> str:
    """`text` as one FTS5 phrase (any substring of 3+ characters, with the trigram tokenizer)."""
    return '"' + text.replace('"', '""') + '"'


EFFECTIVE = "coalesce(e.override_status, e.status)"  # the effective status of node `e` (see schema m005)
SORTS = {"root": "e.root_id", "matches": "matches DESC, e.root_id", "newest": "e.root_id DESC"}


def _source(filters: dict, node_columns: bool = False) -> str:
    """The FROM clause: `nodes e`, or for text the trigram index (3+ characters) or the narrow text
    table `node_text` (1-2 characters: a scan of ~150 MB, not the wide rows), joined to the narrow
    index nodes_by_id when other columns are needed (filters, or `node_columns`)."""
    text = filters.get("text")
    if text and len(text) >= 3:
        return "nodes_fts JOIN nodes e INDEXED BY nodes_by_id ON e.id = nodes_fts.rowid"
    if text and (node_columns or _node_filter(filters)):
        return "node_text t JOIN nodes e INDEXED BY nodes_by_id ON e.id = t.id"
    if text:
        return "node_text e"  # run_id, root_id, instruction and input: all a text-only search reads
    return "nodes e"


def _where(run_id: int | None, filters: dict, node_columns: bool = False) -> tuple[str, list]:
    """SQL conditions on `e` (a nodes row) for the given filters (with `_source`'s FROM clause)."""
    conds, params = ["1=1"], []
    text = filters.get("text")
    if text and len(text) >= 3:  # the trigram index finds any substring of 3+ characters
        conds.append("nodes_fts MATCH ?")
        params.append(_phrase(text))
    elif text:  # shorter: a scan of the narrow text table
        t = "t" if _source(filters, node_columns).startswith("node_text t") else "e"
        conds.append(f"({t}.instruction LIKE ? ESCAPE '\\' OR {t}.input LIKE ? ESCAPE '\\')")
        params += [_like(text)] * 2
    if run_id is not None:
        conds.append("e.run_id = ?")
        params.append(run_id)
    if filters.get("round") is not None:
        conds.append("e.round = ?")
        params.append(int(filters["round"]))
    if filters.get("operation"):
        conds.append("e.operation = ?")
        params.append(filters["operation"])
    if filters.get("status"):
        conds.append(f"{EFFECTIVE} = ?")
        params.append(filters["status"])
    if filters.get("rule"):  # rule codes are plain identifiers: their quoted form is exact in the JSON list
        conds.append("instr(e.fail_rules, ?) > 0")
        params.append(f'"{filters["rule"]}"')
    if filters.get("truncated"):
        conds.append("e.finish_reason = 'length'")
    return " AND ".join(conds), params


def _node_filter(filters: dict) -> bool:
    """Whether `filters` ask anything of a node besides its text."""
    return filters.get("round") is not None or any(filters.get(k) for k in FILTER_KEYS[2:])


def _only_text(filters: dict) -> bool:
    """A text search (3+ characters, the trigram index) with no other node filter."""
    return len(filters.get("text") or "") >= 3 and not _node_filter(filters)


DENSE = 0.5  # a trigram in at least this share of all nodes is counted over all the run's nodes (numpy)
SPLIT_SCAN_ROWS = 20_000  # a text scan over a wider id range than this is read in two halves at once


def _ints(csv: str | None):
    """A group_concat of integers as a numpy array."""
    import numpy as np

    return np.fromstring(csv, dtype=np.int64, sep=",") if csv else np.zeros(0, dtype=np.int64)


def _ranked(keys, sort: str) -> list[tuple[int, int]]:
    """(root, matches) per distinct (run << 40 | root) key, newest run first, then by `sort`."""
    import numpy as np

    keys, counts = np.unique(keys, return_counts=True)
    runs, roots = keys >> 40, keys & ((1 << 40) - 1)
    order = {"root": (roots, -runs), "matches": (roots, -counts, -runs), "newest": (-roots, -runs)}[sort]
    pick = np.lexsort(order)  # the last key first: newest run first, then the sort's own order
    return list(zip(roots[pick].tolist(), counts[pick].tolist()))


class LineageQueries:
    def _dense_text(self, filters: dict) -> bool:
        """Whether a text-only search for one trigram (3 characters: "tor", "the") matches so many
        nodes that counting them over all the run's nodes (`_dense_roots`; for `count_roots`, one SQL
        pass in root order, each id tested against the matches) is cheaper than a lookup per match and
        a sort (260K-node forest, nearly every node matching, the SQL pass alone, 10 runs alternated:
        median 0.445 s against 0.532 s). One trigram's count is one doclist's length (~20 ms for the densest); a longer
        text is a phrase, as costly to count as to find (~70 ms for a rare word), so it keeps the lookups."""
        if not _only_text(filters) or len(filters["text"]) != 3:
            return False
        total = self.scalar("SELECT max(rowid) FROM node_text") or 0
        hits = self.scalar("SELECT count(*) FROM nodes_fts WHERE nodes_fts MATCH ?", (_phrase(filters["text"]),))
        return total > 0 and hits >= DENSE * total

    def _grouped(self, run_id: int | None, filters: dict, dense: bool | None = None) -> tuple[str, list]:
        """FROM ... WHERE ... of a root search (rows `e` to group by run and root); `dense`: what
        `_dense_text` says of `filters`, when the caller already asked."""
        if self._dense_text(filters) if dense is None else dense:
            conds, params = ["e.id IN (SELECT rowid FROM nodes_fts WHERE nodes_fts MATCH ?)"], [_phrase(filters["text"])]
            if run_id is not None:
                conds.insert(0, "e.run_id = ?")
                params.insert(0, run_id)
            return "nodes e INDEXED BY nodes_search WHERE " + " AND ".join(conds), params
        where, params = _where(run_id, filters)
        return f"{_source(filters)} WHERE {where}", params

    def match_roots(self, run_id: int | None, filters: dict, sort: str = "root") -> list[tuple[int, int]]:
        """(root id, matching nodes) of every root with a node matching `filters`: one pass over the
        narrow indexes (or the text index), newest run first, then by `sort` (root | matches | newest)."""
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
        dense = self._dense_text(filters)
        if dense:
            found = self._dense_roots(run_id, filters["text"], sort)
            if found is not None:
                return found
        text = filters.get("text")
        if text and len(text) < 3 and not _node_filter(filters):
            return self._short_text_roots(run_id, text, sort)
        source_where, params = self._grouped(run_id, filters, dense)
        order = SORTS[sort] if run_id is not None else "e.run_id DESC, " + SORTS[sort]
        return [(r[0], r[1]) for r in self.conn.execute(
            f"SELECT e.root_id, count(*) AS matches FROM {source_where} GROUP BY e.run_id, e.root_id "
            f"ORDER BY {order}", params)]

    def _dense_roots(self, run_id: int | None, text: str, sort: str) -> list[tuple[int, int]] | None:
        """`match_roots` for a trigram in most nodes ("tor", "the"), counted outside SQL: the matching
        ids and the run's (id, root, run) columns each come back as one string (group_concat, in C; the
        two read at once), and numpy marks and counts them. On the 260K-node forest with 99.96% of nodes
        matching: 0.16-0.21 s, where SQL's `id IN (matches)` builds a 260K-entry temporary index first
        (0.34-0.42 s)."""
        import numpy as np

        one_run = run_id is not None  # then its roots are the keys: the run column is not read
        (hits,), (ids, roots, *runs) = ((_ints(v) for v in row) for row in self.read_parallel([
            ("SELECT group_concat(rowid) FROM nodes_fts WHERE nodes_fts MATCH ?", (_phrase(text),)),
            ("SELECT group_concat(id), group_concat(root_id) FROM nodes INDEXED BY nodes_search WHERE run_id = ?",
             (run_id,)) if one_run else
            ("SELECT group_concat(id), group_concat(root_id), group_concat(run_id) FROM nodes INDEXED BY nodes_search",
             ())]))
        runs = runs[0] if runs else np.full(len(ids), run_id, dtype=np.int64)
        if not (len(ids) == len(roots) == len(runs)):
            return None  # a node without a root (never committed so): the SQL path groups it as SQL does
        if not len(ids) or not len(hits):
            return []
        hit = np.zeros(int(max(ids.max(), hits.max())) + 1, dtype=bool)
        hit[hits] = True
        return _ranked(runs[hit[ids]] * (1 << 40) + roots[hit[ids]], sort)

    def _short_text_roots(self, run_id: int | None, text: str, sort: str) -> list[tuple[int, int]]:
        """`match_roots` for a text of 1-2 characters and no other filter: a scan of the narrow text table
        `node_text` (too short for the trigram index), split in two id ranges read at once on the two
        cores; each returns its matches' (run, root) keys as one string and numpy counts them. 260K-node
        forest, "ka" (in nearly every node): ~0.13 s, one SQL pass grouping and sorting them ~0.24-0.36 s."""
        span = self.conn.execute(  # one aggregate a subquery: each an index lookup (min and max together scan)
            "SELECT (SELECT min(id) FROM nodes WHERE run_id = ?1), (SELECT max(id) FROM nodes WHERE run_id = ?1)",
            (run_id,)) if run_id is not None else self.conn.execute(
            "SELECT (SELECT min(rowid) FROM node_text), (SELECT max(rowid) FROM node_text)")
        lo, hi = span.fetchone()
        if lo is None:
            return []
        parts = 2 if hi - lo >= SPLIT_SCAN_ROWS else 1
        step = (hi - lo) // parts + 1
        key = "root_id" if run_id is not None else "(run_id << 40) | root_id"  # one run: its roots are its keys
        sql = (f"SELECT group_concat({key}) FROM node_text WHERE id BETWEEN ? AND ? "
               "AND (instruction LIKE ? ESCAPE '\\' OR input LIKE ? ESCAPE '\\')"
               + (" AND run_id = ?" if run_id is not None else ""))
        extra = (run_id,) if run_id is not None else ()
        rows = self.read_parallel([(sql, (lo + i * step, min(hi, lo + (i + 1) * step - 1), _like(text), _like(text),
                                          *extra)) for i in range(parts)])
        import numpy as np

        keys = np.concatenate([_ints(row[0]) for row in rows])
        return _ranked(keys + (run_id << 40) if run_id is not None else keys, sort)

    def find_roots(self, run_id: int | None, filters: dict, *, limit: int = 100, offset: int = 0,
                   sort: str = "root") -> list[dict]:
        """Roots with at least one node matching `filters` (see `match_roots`), with tree counts."""
        return self.root_rows(self.match_roots(run_id, filters, sort)[offset:offset + limit])

    def root_rows(self, page: list[tuple[int, int]]) -> list[dict]:
        """Seed text and tree counts for a page of (root id, matches): computed for that page only."""
        if not page:
            return []
        ids = [root for root, _ in page]
        marks = ",".join("?" * len(ids))
        trees = {r["root_id"]: r for r in self.query(
            f"""SELECT e.root_id, sum(e.round > 0) AS evolutions,
                       sum(e.round > 0 AND {EFFECTIVE} = 'kept') AS kept,
                       sum({EFFECTIVE} = 'eliminated') AS eliminated
                FROM nodes e WHERE e.root_id IN ({marks}) GROUP BY e.root_id""", ids)}
        overrides = {r["root_id"]: r["n"] for r in self.query(
            f"SELECT t.root_id, count(*) AS n FROM overrides o JOIN nodes t ON t.id = o.node_id "
            f"WHERE t.root_id IN ({marks}) AND o.undone_at IS NULL GROUP BY t.root_id", ids)}
        seeds = {r["id"]: r for r in self.query(
            f"SELECT id, run_id, instruction, input FROM nodes WHERE id IN ({marks})", ids)}
        return [{"root_id": root, "run_id": seeds[root]["run_id"], "instruction": seeds[root]["instruction"],
                 "input": seeds[root]["input"], "matches": matches, "evolutions": trees[root]["evolutions"],
                 "kept": trees[root]["kept"], "eliminated": trees[root]["eliminated"],
                 "overrides": overrides.get(root, 0)} for root, matches in page]

    def count_roots(self, run_id: int | None, filters: dict) -> int:
        source_where, params = self._grouped(run_id, filters)
        return self.scalar(f"SELECT count(*) FROM (SELECT 1 FROM {source_where} GROUP BY e.run_id, e.root_id)",
                           tuple(params))

    def select_node_ids(self, run_id: int, filters: dict, *, exclude_status: tuple[str, ...] = ()) -> list[int]:
        """Ids of the finished nodes of a run matching `filters` (pending nodes never match)."""
        source = _source(filters, node_columns=True)
        where, params = _where(run_id, filters, node_columns=True)
        where += " AND e.status != 'pending'"
        if exclude_status:
            where += f" AND {EFFECTIVE} NOT IN ({','.join('?' * len(exclude_status))})"
            params += list(exclude_status)
        return sorted(r[0] for r in self.conn.execute(f"SELECT e.id FROM {source} WHERE {where}", params))

    def tree_nodes(self, root_id: int) -> list[dict]:
        """Every node of one root's tree, by round then id, with decoded fail rules."""
        rows = self.query("SELECT * FROM nodes_effective WHERE root_id = ? OR id = ? ORDER BY round, id",
                          (root_id, root_id))
        for row in rows:
            row["fail_rules"] = json.loads(row.get("fail_rules") or "[]")
        return rows

    def overrides_for_nodes(self, node_ids: list[int]) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {i: [] for i in node_ids}
        for start in range(0, len(node_ids), 500):
            chunk = node_ids[start:start + 500]
            rows = self.query(f"SELECT * FROM overrides WHERE node_id IN ({','.join('?' * len(chunk))}) ORDER BY id",
                              tuple(chunk))
            for row in rows:
                out[row["node_id"]].append(row)
        return out

    def get_override(self, override_id: int) -> dict | None:
        return self.query_one("SELECT * FROM overrides WHERE id = ?", (override_id,))

    def recent_overrides(self, run_id: int | None = None, limit: int = 50) -> list[dict]:
        sql = ("SELECT o.*, n.run_id, n.round, n.root_id FROM overrides o JOIN nodes n ON n.id = o.node_id "
               + ("WHERE n.run_id = ? " if run_id is not None else "") + "ORDER BY o.id DESC LIMIT ?")
        return self.query(sql, (run_id, limit) if run_id is not None else (limit,))
