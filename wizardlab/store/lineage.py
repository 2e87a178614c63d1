"""Lineage and curation queries: root search with filters, trees, bulk selections.

Every filter reads the effective status (view `nodes_effective`: newest live override,
else the rules' verdict). Text is searched in instructions and inputs (the trigram index
`nodes_fts`; responses are not searched). Filters are plain keyword arguments; `wizardlab.curation`
validates them before they get here.
"""

from __future__ import annotations

import json

FILTER_KEYS = ("text", "round", "operation", "status", "rule")


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(run_id: int | None, filters: dict) -> tuple[str, list]:
    """SQL conditions on `e` (a nodes_effective row) for the given filters."""
    conds, params = ["1=1"], []
    if run_id is not None:
        conds.append("e.run_id = ?")
        params.append(run_id)
    text = filters.get("text")
    if text and len(text) >= 3:  # the trigram index finds any substring of 3+ characters
        conds.append("e.id IN (SELECT rowid FROM nodes_fts WHERE nodes_fts MATCH ?)")
        params.append('"' + text.replace('"', '""') + '"')
    elif text:  # shorter: a scan
        conds.append("(e.instruction LIKE ? ESCAPE '\\' OR e.input LIKE ? ESCAPE '\\')")
        params += [_like(text)] * 2
    if filters.get("round") is not None:
        conds.append("e.round = ?")
        params.append(int(filters["round"]))
    if filters.get("operation"):
        conds.append("e.operation = ?")
        params.append(filters["operation"])
    if filters.get("status"):
        conds.append("e.effective_status = ?")
        params.append(filters["status"])
    if filters.get("rule"):  # rule codes are plain identifiers: their quoted form is exact in the JSON list
        conds.append("instr(e.fail_rules, ?) > 0")
        params.append(f'"{filters["rule"]}"')
    return " AND ".join(conds), params


class LineageQueries:
    def find_roots(self, run_id: int | None, filters: dict, *, limit: int = 100, offset: int = 0) -> list[dict]:
        """Roots with at least one node matching `filters`, newest run first then by root id, with tree
        counts. The page of root ids is picked first (in index order, so it stops after `offset + limit`
        roots when a run is given); the tree counts are computed for that page only."""
        where, params = _where(run_id, filters)
        order = "e.root_id" if run_id is not None else "e.run_id DESC, e.root_id"
        page = self.query(f"SELECT e.root_id, count(*) AS matches FROM nodes_effective e WHERE {where} "
                          f"GROUP BY e.run_id, e.root_id ORDER BY {order} LIMIT ? OFFSET ?", (*params, limit, offset))
        if not page:
            return []
        ids = [r["root_id"] for r in page]
        marks = ",".join("?" * len(ids))
        trees = {r["root_id"]: r for r in self.query(
            f"""SELECT t.root_id, sum(t.round > 0) AS evolutions,
                       sum(t.round > 0 AND t.effective_status = 'kept') AS kept,
                       sum(t.effective_status = 'eliminated') AS eliminated
                FROM nodes_effective t WHERE t.root_id IN ({marks}) GROUP BY t.root_id""", ids)}
        overrides = {r["root_id"]: r["n"] for r in self.query(
            f"SELECT t.root_id, count(*) AS n FROM overrides o JOIN nodes t ON t.id = o.node_id "
            f"WHERE t.root_id IN ({marks}) AND o.undone_at IS NULL GROUP BY t.root_id", ids)}
        seeds = {r["id"]: r for r in self.query(
            f"SELECT id, run_id, instruction, input FROM nodes WHERE id IN ({marks})", ids)}
        return [{"root_id": r["root_id"], "run_id": seeds[r["root_id"]]["run_id"],
                 "instruction": seeds[r["root_id"]]["instruction"], "input": seeds[r["root_id"]]["input"],
                 "matches": r["matches"], "evolutions": trees[r["root_id"]]["evolutions"],
                 "kept": trees[r["root_id"]]["kept"], "eliminated": trees[r["root_id"]]["eliminated"],
                 "overrides": overrides.get(r["root_id"], 0)} for r in page]

    def count_roots(self, run_id: int | None, filters: dict) -> int:
        where, params = _where(run_id, filters)
        return self.scalar(f"SELECT count(*) FROM (SELECT 1 FROM nodes_effective e WHERE {where} "
                           f"GROUP BY e.run_id, e.root_id)", tuple(params))

    def select_node_ids(self, run_id: int, filters: dict, *, exclude_status: tuple[str, ...] = ()) -> list[int]:
        """Ids of the finished nodes of a run matching `filters` (pending nodes never match)."""
        where, params = _where(run_id, filters)
        where += " AND e.status != 'pending'"
        if exclude_status:
            where += f" AND e.effective_status NOT IN ({','.join('?' * len(exclude_status))})"
            params += list(exclude_status)
        return [r["id"] for r in self.query(f"SELECT e.id FROM nodes_effective e WHERE {where} ORDER BY e.id",
                                            tuple(params))]

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
