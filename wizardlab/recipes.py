"""Data recipes: a named, stored filter over the instruction forest that yields a training set.

A `Recipe` says which nodes go into training: evolution run(s) (default: the newest),
rounds <= k, evolved nodes of some operations only (seeds are always in), the effective
status (human overrides applied) or the rules' own verdict, without responses cut off at
max_tokens, seeds only (the Alpaca baseline), and a sample of N with a seed (drawn as
`wizardlab.export` draws `--sample`, with its own `random.Random(seed)`).

`export_recipe` writes the training set (Alpaca or ShareGPT JSON, through
`wizardlab.export`), a `<file>.selection.json` with the chosen ids, and records the
export in the store with its recipe, row count, content hash (sha256 of the file) and
profile: counts per round and per operation, mean difficulty (scored nodes), and the
dispersion (mean pairwise cosine distance) of the instructions that have cached
embeddings. `profile` computes the same without writing a file, so two recipes can be
compared before anyone trains (`compare`).

The command line is `pipeline.recipe`; the Experiments tab calls the same functions.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from wizardlab import export
from wizardlab.errors import UserError

RECIPE_FORMATS = ("alpaca", "sharegpt")


@dataclass(frozen=True)
class Recipe:
    """Which nodes of the forest make the training set."""

    runs: tuple[int, ...] = ()  # evolution runs (empty: the newest one)
    max_round: int | None = None  # keep rounds <= max_round (None: all)
    operations: tuple[str, ...] = ()  # evolved nodes of these operations only (empty: all); seeds always
    overrides: bool = True  # apply human overrides (effective status); False: the rules' verdict
    drop_truncated: bool = False  # leave out responses cut off at max_tokens
    seeds_only: bool = False  # round 0 only: the Alpaca baseline
    sample: int | None = None  # N records drawn at random (None: all)
    seed: int = 0  # random seed of the sample
    stratify: str | None = None  # None or "round" (as `export --stratify`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(int(r) for r in self.runs))
        object.__setattr__(self, "operations", tuple(str(o) for o in self.operations))
        if self.max_round is not None and (int(self.max_round) != self.max_round or self.max_round < 0):
            raise UserError(f"recipe: max_round must be a whole number >= 0, got {self.max_round}")
        self.selection  # validates sample / stratify

    @property
    def selection(self) -> export.Selection:
        return export.Selection(sample=self.sample, seed=self.seed, stratify=self.stratify)

    def to_dict(self) -> dict:
        return {**asdict(self), "runs": list(self.runs), "operations": list(self.operations)}

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"recipe: unknown field(s) {', '.join(unknown)}")
        return cls(**data)

    def describe(self) -> str:
        """One line, e.g. 'run 3, rounds <= 1, overrides applied, 70 sampled (seed 0)'."""
        parts = [f"run {', '.join(map(str, self.runs))}" if self.runs else "newest run"]
        parts.append("seeds only" if self.seeds_only else
                     f"rounds <= {self.max_round}" if self.max_round is not None else "all rounds")
        if self.operations:
            parts.append("operations " + "/".join(self.operations))
        parts.append("overrides applied" if self.overrides else "rules' verdict only")
        if self.drop_truncated:
            parts.append("without truncated responses")
        if self.sample is not None:
            parts.append(f"{self.sample} sampled (seed {self.seed}{', by round' if self.stratify else ''})")
        return ", ".join(parts)


# -- stored recipes -----------------------------------------------------------------------------
def create_recipe(store, name: str, recipe: Recipe, created_by: str | None = None) -> int:
    if not name or not name.strip():
        raise UserError("a recipe needs a name")
    check_runs(store, recipe)
    return store.create_recipe(name.strip(), recipe.to_dict(), created_by)


def require_recipe(store, ref) -> tuple[dict, Recipe]:
    row = store.recipe(ref)
    if row is None:
        raise UserError(f"recipe {ref!r} does not exist")
    return row, Recipe.from_dict(row["spec"])


def check_runs(store, recipe: Recipe) -> list[int]:
    """The evolution runs the recipe reads (the newest one when none is named)."""
    runs = list(recipe.runs) or [store.latest_run_id("evolve")]
    for run_id in runs:
        run = store.get_run(run_id) if run_id else None
        if run is None or run["kind"] != "evolve":
            raise UserError(f"recipe: no evolution run {run_id or ''} in {store.path}".replace("  ", " "))
    return runs


def select_ids(store, recipe: Recipe) -> list[int]:
    """The ids of the training set the recipe yields (sampled when it says so), in export order."""
    population = store.recipe_population(check_runs(store, recipe), max_round=recipe.max_round,
                                         operations=list(recipe.operations), overrides=recipe.overrides,
                                         drop_truncated=recipe.drop_truncated, seeds_only=recipe.seeds_only)
    if recipe.sample is not None and recipe.sample > len(population):
        raise UserError(f"recipe: sample {recipe.sample} is more than the {len(population)} records it selects")
    return export.choose_ids(population, recipe.selection)


def count(store, recipe: Recipe) -> int:
    """Live row count (what the export would hold)."""
    return len(select_ids(store, recipe))


# -- profile ------------------------------------------------------------------------------------
def profile(store, recipe: Recipe, ids: list[int] | None = None) -> dict:
    """Counts per round and operation, mean difficulty, and dispersion of the cached embeddings."""
    ids = select_ids(store, recipe) if ids is None else ids
    rounds, ops, diffs, texts = Counter(), Counter(), [], []
    for row in store.profile_rows(ids):
        rounds[str(row["round"])] += 1
        ops[row["operation"]] += 1
        if row["difficulty"] is not None:
            diffs.append(float(row["difficulty"]))
        texts.append(row["instruction"])
    return {"rows": len(ids), "per_round": dict(sorted(rounds.items(), key=lambda kv: int(kv[0]))),
            "per_operation": dict(sorted(ops.items())), "n_scored": len(diffs),
            "mean_difficulty": round(sum(diffs) / len(diffs), 3) if diffs else None, **_dispersion(store, texts)}


def _dispersion(store, texts: list[str]) -> dict:
    """Mean pairwise cosine distance of the instructions whose embedding is cached (none computed here)."""
    import numpy as np

    from wizardlab.analysis.diversity import mean_pairwise_cosine_distance
    from wizardlab.analysis.embeddings import EMBED_MODEL, text_hash

    hashes = [text_hash(t) for t in texts]
    found = store.get_embeddings(list(dict.fromkeys(hashes)), EMBED_MODEL) if hashes else {}
    vectors = [np.frombuffer(found[h], dtype="<f4") for h in hashes if h in found]
    d = mean_pairwise_cosine_distance(np.stack(vectors)) if len(vectors) >= 2 else None
    return {"n_embedded": len(vectors), "dispersion": None if d is None else round(d, 4)}


def compare(profiles: dict[str, dict]) -> list[dict]:
    """Side-by-side rows (metric, one column per name) of several profiles."""
    metrics = ["rows", "mean_difficulty", "n_scored", "dispersion", "n_embedded"]
    rows = [{"metric": m, **{name: p.get(m) for name, p in profiles.items()}} for m in metrics]
    for key, label in (("per_round", "round"), ("per_operation", "operation")):
        keys = sorted({k for p in profiles.values() for k in p.get(key, {})},
                      key=lambda k: (int(k) if k.isdigit() else 0, k))
        rows += [{"metric": f"{label} {k}", **{n: p.get(key, {}).get(k, 0) for n, p in profiles.items()}}
                 for k in keys]
    return rows


# -- export -------------------------------------------------------------------------------------
def export_recipe(store, ref, out_path: str | Path, fmt: str = "alpaca", *, run_id: int | None = None) -> dict:
    """Write the recipe's training set to `out_path`, record the export; returns the export row."""
    if fmt not in RECIPE_FORMATS:
        raise UserError(f"recipe export format must be one of {', '.join(RECIPE_FORMATS)}, got {fmt!r}")
    row, recipe = require_recipe(store, ref)
    ids = select_ids(store, recipe)
    if not ids:
        raise UserError(f"recipe {row['name']!r} selects no records")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = list(export.training_records(store, 0, ids, recipe.drop_truncated))
    digest = _write(out, fmt, records)
    _write_selection(out, row, recipe, ids)
    prof = profile(store, recipe, [r["id"] for r in records])
    export_id = store.add_recipe_export(row["id"], recipe.to_dict(), path=str(out.resolve()), fmt=fmt,
                                        n_rows=len(records), content_hash=digest, profile=prof, run_id=run_id)
    return store.recipe_export(export_id)


def _write(out: Path, fmt: str, records: list[dict]) -> str:
    """Write atomically (temporary name, then rename); returns the sha256 of the file."""
    convert = export._sharegpt if fmt == "sharegpt" else (
        lambda r: {"instruction": r["instruction"], "input": r["input"], "output": r["output"]})
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            export._write_json_list(fh, (convert(r) for r in records))
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def _write_selection(out: Path, row: dict, recipe: Recipe, ids: list[int]) -> None:
    path = export.selection_path(out)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"recipe": row["name"], **recipe.to_dict(), "chosen": len(ids), "ids": ids}) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def recipes_for_nodes(store, node_ids) -> dict[int, list[str]]:
    """node id -> names of the stored recipes whose training set holds it (samples drawn as exported);
    one selection per recipe, so a whole tree costs as much as one node."""
    wanted = set(node_ids)
    out: dict[int, list[str]] = {i: [] for i in wanted}
    for row in store.list_recipes():
        try:
            chosen = set(select_ids(store, Recipe.from_dict(row["spec"]))) & wanted
        except UserError:
            continue  # a recipe whose run is gone includes nothing
        for i in sorted(chosen):
            out[i].append(row["name"])
    return out


def recipes_including(store, node_id: int) -> list[str]:
    """Names of the stored recipes whose training set holds node `node_id`."""
    return recipes_for_nodes(store, [node_id])[node_id]


def recipe_view(store, row: dict) -> dict:
    """What the CLI and the tab show for a stored recipe: its line, live count, newest export."""
    recipe = Recipe.from_dict(row["spec"])
    try:
        n = count(store, recipe)
    except UserError as exc:
        n = f"error: {exc}"
    exports = store.recipe_exports(row["id"])
    last = exports[0] if exports else None
    return {"id": row["id"], "name": row["name"], "recipe": recipe.describe(), "rows": n,
            "exports": len(exports), "last_export": last and {k: last[k] for k in ("id", "path", "n_rows",
                                                                                     "content_hash", "created_at")}}
