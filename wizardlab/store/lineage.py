"""Lineage and curation queries: root search with filters, trees, bulk selections.

Every filter reads the effective status (view `nodes_effective`: newest live override,
else the rules' verdict). Filters are plain keyword arguments; `wizardlab.curation`
validates them before they get here.
"""

from __future__ import annotations

import json

FILTER_KEYS = ("text", "round", "operation", "status", "rule", "truncated")


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _where(run_id: int | None, filters: dict) -> tuple[str, list]:
    """SQL conditions on `e` (a nodes_effective row) for the given filters."""
    conds, params = ["1=1"], []
    if run_id is not None:
        conds.append("e.run_id = ?")
        params.append(run_id)
    if filters.get("text"):
        conds.append("(e.instruction LIKE ? ESCAPE '\\' OR e.input LIKE ? ESCAPE '\\' "
                     "OR coalesce(e.response, '') LIKE ? ESCAPE '\\')")
        params += [_like(filters["text"])] * 3
    if filters.get("round") is not None:
        conds.append("e.round = ?")
        params.append(int(filters["round"]))
    if filters.get("operation"):
        conds.append("e.operation = ?")
        params.append(filters["operation"])
    if filters.get("status"):
        conds.append("e.effective_status = ?")
        params.append(filters["status"])
    if filters.get("rule"):
        conds.append("EXISTS (SELECT 1 FROM json_each(e.fail_rules) r WHERE r.value = ?)")
        params.append(filters["rule"])
    if filters.get("truncated"):
        conds.append("e.finish_reason = 'length'")
    return " AND ".join(conds), params


class LineageQueries:
    def find_roots(self, run_id: int | None, filters: dict, *, limit: int = 100, offset: int = 0) -> list[dict]:
        """Roots with at least one node matching `filters`, newest run first, with tree counts."""
        where, params = _where(run_id, filters)
        return self.query(
            f"""WITH hits AS (SELECT e.root_id, count(*) AS matches FROM nodes_effective e
                              WHERE {where} GROUP BY e.root_id)
                SELECT s.id AS root_id, s.run_id, s.instruction, s.input, h.matches,
                       (SELECT count(*) FROM nodes t WHERE t.root_id = s.id AND t.round > 0) AS evolutions,
                       (SELECT count(*) FROM nodes_effective t WHERE t.root_id = s.id AND t.round > 0
                          AND t.effective_status = 'kept') AS kept,
                       (SELECT count(*) FROM nodes_effective t WHERE t.root_id = s.id
                          AND t.effective_status = 'eliminated') AS eliminated,
                       (SELECT count(*) FROM overrides o JOIN nodes t ON t.id = o.node_id
                          WHERE t.root_id = s.id AND o.undone_at IS NULL) AS overrides
                FROM hits h JOIN nodes s ON s.id = h.root_id
                ORDER BY s.run_id DESC, s.id LIMIT ? OFFSET ?""",
            (*params, limit, offset))

    def count_roots(self, run_id: int | None, filters: dict) -> int:
        where, params = _where(run_id, filters)
        return self.scalar(f"SELECT count(DISTINCT e.root_id) FROM nodes_effective e WHERE {where}", tuple(params))

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
