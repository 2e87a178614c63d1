"""Recipes (stored filters over the forest), their exports, experiments and their arms."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

from wizardlab.errors import UserError
from wizardlab.store.base import dumps

_IN_CHUNK = 500


def _decode(row: dict | None, *keys: str) -> dict | None:
    if row is None:
        return None
    return {**row, **{k: json.loads(row[k]) for k in keys if row.get(k) is not None}}


class ExperimentQueries:
    # -- recipes ------------------------------------------------------------------------------
    def create_recipe(self, name: str, spec: dict, created_by: str | None = None) -> int:
        try:
            with self.tx() as conn:
                return conn.execute("INSERT INTO recipes (name, spec, created_by) VALUES (?,?,?)",
                                    (name, dumps(spec), created_by)).lastrowid
        except sqlite3.IntegrityError:
            raise UserError(f"a recipe named {name!r} already exists") from None

    def recipe(self, ref: int | str) -> dict | None:
        col = "id" if isinstance(ref, int) or str(ref).isdigit() else "name"
        return _decode(self.query_one(f"SELECT * FROM recipes WHERE {col} = ?", (ref,)), "spec")

    def list_recipes(self) -> list[dict]:
        return [_decode(r, "spec") for r in self.query("SELECT * FROM recipes ORDER BY id")]

    def delete_recipe(self, recipe_id: int) -> None:
        if self.scalar("SELECT count(*) FROM experiment_arms WHERE recipe_id = ?", (recipe_id,)):
            raise UserError(f"recipe {recipe_id} is used by an experiment's arm")
        with self.tx() as conn:
            conn.execute("DELETE FROM recipes WHERE id = ?", (recipe_id,))

    def recipe_population(self, runs: list[int], *, max_round: int | None, operations: list[str],
                          overrides: bool, drop_truncated: bool, seeds_only: bool) -> list[tuple[int, int]]:
        """(id, round) of the training nodes (seed or kept, with a response) the filter keeps, in id order.
        `overrides`: the effective status (a curator's override wins), else the rules' own verdict."""
        status = "effective_status" if overrides else "status"
        where = [f"run_id IN ({','.join('?' * len(runs))})", f"{status} IN ('seed', 'kept')",
                 "response IS NOT NULL", "trim(response) != ''"]
        params: list = list(runs)
        if seeds_only:
            where.append("round = 0")
        if max_round is not None:
            where.append("round <= ?")
            params.append(max_round)
        if operations:
            where.append(f"(round = 0 OR operation IN ({','.join('?' * len(operations))}))")
            params += operations
        if drop_truncated:
            where.append("coalesce(finish_reason, '') != 'length'")
        rows = self.conn.execute(f"SELECT id, round FROM nodes_effective WHERE {' AND '.join(where)} ORDER BY id",
                                 params).fetchall()
        return [(r[0], r[1]) for r in rows]

    def profile_rows(self, ids: list[int]) -> Iterator[dict]:
        """round, operation, difficulty and instruction of these nodes (for a recipe's profile)."""
        for start in range(0, len(ids), _IN_CHUNK):
            part = ids[start:start + _IN_CHUNK]
            yield from self.query(f"SELECT id, round, coalesce(operation, 'seed') AS operation, difficulty, "
                                  f"instruction FROM nodes WHERE id IN ({','.join('?' * len(part))})", tuple(part))

    def add_recipe_export(self, recipe_id: int, spec: dict, *, path: str, fmt: str, n_rows: int,
                          content_hash: str, profile: dict, run_id: int | None = None) -> int:
        with self.tx() as conn:
            return conn.execute(
                "INSERT INTO recipe_exports (recipe_id, spec, path, format, n_rows, content_hash, profile, run_id) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (recipe_id, dumps(spec), path, fmt, n_rows, content_hash, dumps(profile), run_id)).lastrowid

    def recipe_export(self, export_id: int) -> dict | None:
        return _decode(self.query_one("SELECT * FROM recipe_exports WHERE id = ?", (export_id,)), "spec", "profile")

    def recipe_export_by_run(self, run_id: int) -> dict | None:
        return _decode(self.query_one("SELECT * FROM recipe_exports WHERE run_id = ? ORDER BY id DESC LIMIT 1",
                                      (run_id,)), "spec", "profile")

    def recipe_exports(self, recipe_id: int | None = None) -> list[dict]:
        cond, params = ("WHERE recipe_id = ?", (recipe_id,)) if recipe_id is not None else ("", ())
        return [_decode(r, "spec", "profile") for r in self.query(
            f"SELECT * FROM recipe_exports {cond} ORDER BY id DESC", params)]

    # -- experiments ----------------------------------------------------------------------------
    def create_experiment(self, name: str, config: dict, arms: list[dict], created_by: str | None = None) -> int:
        """The experiment and its arms ({name, recipe_id, base_model, preset}) in one transaction."""
        try:
            with self.tx() as conn:
                exp_id = conn.execute("INSERT INTO experiments (name, config, created_by) VALUES (?,?,?)",
                                      (name, dumps(config), created_by)).lastrowid
                conn.executemany(
                    "INSERT INTO experiment_arms (experiment_id, name, recipe_id, base_model, preset) "
                    "VALUES (?,?,?,?,?)",
                    [(exp_id, a["name"], a["recipe_id"], a["base_model"], a["preset"]) for a in arms])
                return exp_id
        except sqlite3.IntegrityError as exc:
            what = "an experiment" if "experiments.name" in str(exc) else "two arms"
            raise UserError(f"{what} with the same name: {exc}") from None

    def experiment(self, ref: int | str) -> dict | None:
        col = "id" if isinstance(ref, int) or str(ref).isdigit() else "name"
        return _decode(self.query_one(f"SELECT * FROM experiments WHERE {col} = ?", (ref,)), "config")

    def list_experiments(self, status: str | None = None) -> list[dict]:
        cond, params = ("WHERE status = ?", (status,)) if status else ("", ())
        return [_decode(r, "config") for r in self.query(f"SELECT * FROM experiments {cond} ORDER BY id DESC", params)]

    def experiment_arms(self, experiment_id: int) -> list[dict]:
        return self.query("SELECT a.*, r.name AS recipe FROM experiment_arms a JOIN recipes r ON r.id = a.recipe_id "
                          "WHERE a.experiment_id = ? ORDER BY a.id", (experiment_id,))

    def update_experiment(self, experiment_id: int, **fields) -> None:
        self._update("experiments", experiment_id, fields)

    def update_arm(self, arm_id: int, **fields) -> None:
        self._update("experiment_arms", arm_id, fields)

    def _update(self, table: str, row_id: int, fields: dict) -> None:
        if not fields:
            return
        fields = {k: dumps(v) if k == "config" else v for k, v in fields.items()}
        with self.tx() as conn:
            conn.execute(f"UPDATE {table} SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                         (*fields.values(), row_id))
