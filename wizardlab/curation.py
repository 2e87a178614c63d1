"""Curation: human decisions on elimination, one node or a whole filter at a time, audited.

- `Filters` parses and validates a filter (text, round, operation, status, rule, and
  `truncated`: responses cut off at max_tokens) once, for the UI and the CLI alike.
- `override_node`, `bulk_override` and `undo` write to the `overrides` audit log
  (who, when, what, why); nothing here edits a node's own verdict. The effective status
  (newest live override, else the verdict) is what exports, statistics and training read.
- `build_tree` turns one root's nodes into a nested structure for display.
Rendering is not done here (see `eval_ui.render`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from wizardlab.errors import UserError
from wizardlab.evol.operations import OPERATIONS
from wizardlab.evol.rules import RULES
STATUSES = ("seed", "pending", "kept", "eliminated")
ACTIONS = ("restore", "eliminate")


@dataclass(frozen=True)
class Filters:
    text: str | None = None
    round: int | None = None
    operation: str | None = None
    status: str | None = None
    rule: str | None = None
    truncated: bool | None = None  # True: only nodes whose response hit the token limit

    @classmethod
    def parse(cls, text=None, round=None, operation=None, status=None, rule=None, truncated=None) -> "Filters":
        """Validated filters from loose input (UI strings, '' or 'any' meaning no filter)."""
        def blank(v):
            return v is None or (isinstance(v, str) and v.strip().lower() in ("", "any", "all"))

        rnd = None
        if not blank(round):
            try:
                rnd = int(round)
            except (TypeError, ValueError):
                raise UserError(f"round must be a whole number, got {round!r}") from None
            if rnd < 0:
                raise UserError(f"round must be 0 or more, got {rnd}")
        for name, value, allowed in (("operation", operation, OPERATIONS), ("status", status, STATUSES),
                                     ("rule", rule, RULES)):
            if not blank(value) and value not in allowed:
                raise UserError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
        return cls(text=None if blank(text) else str(text).strip(), round=rnd,
                   operation=None if blank(operation) else operation, status=None if blank(status) else status,
                   rule=None if blank(rule) else rule, truncated=True if truncated else None)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        parts = [f"{k}={v!r}" if k == "text" else f"{k}={v}" for k, v in self.as_dict().items()]
        return ", ".join(parts) or "no filter"


def _check_action(action: str, reason: str) -> None:
    if action not in ACTIONS:
        raise UserError(f"action must be 'restore' or 'eliminate', got {action!r}")
    if not (reason or "").strip():
        raise UserError("give a reason for the override (it goes to the audit log)")


def override_node(store, node_id: int, action: str, reason: str, user: str) -> int:
    """One audited override on one node; returns the number written (1)."""
    _check_action(action, reason)
    if store.get_node(int(node_id)) is None:
        raise UserError(f"node {node_id} does not exist")
    return store.add_overrides([int(node_id)], action, reason, user)


def bulk_override(store, run_id: int, filters: Filters | dict, action: str, reason: str, user: str) -> int:
    """Override every finished node of `run_id` matching `filters` whose effective status would change.

    Example: restore every `no_information_gain` of round 2:
    `bulk_override(store, 3, {"round": 2, "rule": "no_information_gain"}, "restore", "reviewed", "ana")`.
    All or nothing (one transaction); returns how many nodes got an override.
    """
    _check_action(action, reason)
    if store.get_run(int(run_id)) is None:
        raise UserError(f"run {run_id} does not exist")
    filters = filters if isinstance(filters, Filters) else Filters.parse(**filters)
    ids = store.select_node_ids(int(run_id), filters.as_dict(), exclude_status=_already(action))
    if not ids:
        return 0
    return store.add_overrides(ids, action, reason, user)


def preview_bulk(store, run_id: int, filters: Filters, action: str) -> int:
    """How many nodes `bulk_override` would change now."""
    if action not in ACTIONS:
        raise UserError(f"action must be 'restore' or 'eliminate', got {action!r}")
    return len(store.select_node_ids(int(run_id), filters.as_dict(), exclude_status=_already(action)))


def _already(action: str) -> tuple[str, ...]:
    return ("seed", "kept") if action == "restore" else ("eliminated",)


def undo(store, override_id: int, user: str, *, own_only: bool = False) -> dict:
    """Undo one override (kept in the log, marked undone by `user`); returns the override row.

    `own_only` (curators): only an override that `user` made may be undone.
    """
    row = store.get_override(int(override_id))
    if row is None:
        raise UserError(f"override {override_id} does not exist")
    if own_only and row["user"] != user:
        raise UserError(f"override {override_id} was made by {row['user']}: curators may undo only their own")
    store.undo_override(int(override_id), user)
    return row


def build_tree(store, root_id: int) -> dict:
    """The root's tree as nested dicts: node fields plus `overrides` and `children`."""
    nodes = store.tree_nodes(int(root_id))
    if not nodes:
        raise UserError(f"root {root_id} does not exist")
    history = store.overrides_for_nodes([n["id"] for n in nodes])
    by_id = {n["id"]: {**n, "overrides": history[n["id"]], "children": []} for n in nodes}
    root = by_id.get(int(root_id))
    if root is None or root["round"] != 0:
        raise UserError(f"node {root_id} is not a root (seed); its root is {nodes[0]['root_id']}")
    for node in by_id.values():
        if node["id"] != root["id"]:
            parent = by_id.get(node["parent_id"]) or root
            parent["children"].append(node)
    return root
