"""`python -m pipeline recipe`: data recipes, named stored filters over the forest (`wizardlab.recipes`).

    recipe create NAME [--run R ...] [--max-round K] [--operations OP ...] [--no-overrides]
                       [--drop-truncated] [--seeds-only] [--sample N] [--seed S] [--stratify round]
    recipe list
    recipe show NAME               (the recipe, its live row count and profile, its exports)
    recipe export NAME --out FILE [--format alpaca|sharegpt]
    recipe compare NAME NAME [...] (profiles side by side, before anyone trains)
    recipe delete NAME
    recipe which NODE              (the recipes whose training set holds this node)
Every export records the recipe, row count, content hash and profile in the store.
"""

from __future__ import annotations

import argparse
import json

from wizardlab import recipes
from wizardlab.export import STRATA

HELP = "Data recipes: named filters over the forest that yield a training set; export and compare them."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=None, help="SQLite database (default: settings / WIZARDLAB_DB)")
    sub = parser.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="store a recipe")
    c.add_argument("name")
    c.add_argument("--run", type=int, action="append", default=[], help="evolution run (repeat; default: newest)")
    c.add_argument("--max-round", type=int, default=None, help="keep rounds <= K (0 = seeds)")
    c.add_argument("--operations", nargs="+", default=[], help="evolved nodes of these operations only")
    c.add_argument("--no-overrides", action="store_true", help="the rules' verdict, ignoring human overrides")
    c.add_argument("--drop-truncated", action="store_true", help="leave out responses cut off at max_tokens")
    c.add_argument("--seeds-only", action="store_true", help="the seeds only (the Alpaca baseline)")
    c.add_argument("--sample", type=int, default=None, metavar="N", help="N records drawn at random")
    c.add_argument("--seed", type=int, default=0, help="random seed of --sample (default 0)")
    c.add_argument("--stratify", choices=STRATA, default=None, help="sample each round in proportion")
    sub.add_parser("list", help="list recipes with their live row counts")
    for name in ("show", "delete"):
        sub.add_parser(name).add_argument("name")
    sub.add_parser("which", help="recipes whose training set holds a node").add_argument("node", type=int)
    e = sub.add_parser("export", help="write the recipe's training set and record the export")
    e.add_argument("name")
    e.add_argument("--out", required=True, help="output JSON file")
    e.add_argument("--format", choices=recipes.RECIPE_FORMATS, default="alpaca")
    e.add_argument("--run-id", type=int, default=None, help=argparse.SUPPRESS)  # an experiment's export job
    cmp_ = sub.add_parser("compare", help="profiles of two or more recipes side by side")
    cmp_.add_argument("names", nargs="+")
    cmp_.add_argument("--json", action="store_true")


def main(args) -> int:
    from wizardlab.config import Settings
    from wizardlab.store import Store

    store = Store(Settings.from_env(db=args.db).db)
    return {"create": _create, "list": _list, "show": _show, "delete": _delete, "export": _export,
            "compare": _compare, "which": _which}[args.action](store, args)


def _which(store, args) -> int:
    names = recipes.recipes_including(store, args.node)
    print("\n".join(names) if names else f"no recipe includes node {args.node}")
    return 0


def _create(store, args) -> int:
    recipe = recipes.Recipe(runs=tuple(args.run), max_round=args.max_round, operations=tuple(args.operations),
                            overrides=not args.no_overrides, drop_truncated=args.drop_truncated,
                            seeds_only=args.seeds_only, sample=args.sample, seed=args.seed, stratify=args.stratify)
    rid = recipes.create_recipe(store, args.name, recipe)
    print(f"recipe {rid} {args.name!r}: {recipe.describe()}; {recipes.count(store, recipe)} rows")
    return 0


def _list(store, args) -> int:
    for row in store.list_recipes():
        v = recipes.recipe_view(store, row)
        print(f"{v['id']:>4}  {v['name']:<24} {v['rows']!s:>8} rows  {v['recipe']}  ({v['exports']} exports)")
    return 0


def _show(store, args) -> int:
    row, recipe = recipes.require_recipe(store, args.name)
    out = {**recipes.recipe_view(store, row), "spec": recipe.to_dict(), "profile": recipes.profile(store, recipe),
           "exports": [{k: e[k] for k in ("id", "path", "format", "n_rows", "content_hash", "created_at")}
                       for e in store.recipe_exports(row["id"])]}
    print(json.dumps(out, indent=2))
    return 0


def _delete(store, args) -> int:
    row, _ = recipes.require_recipe(store, args.name)
    store.delete_recipe(row["id"])
    print(f"deleted recipe {row['name']!r}")
    return 0


def _export(store, args) -> int:
    if args.run_id is not None:
        return _export_job(store, args)
    e = recipes.export_recipe(store, args.name, args.out, args.format)
    print(f"wrote {e['path']}: {e['n_rows']} rows, sha256 {e['content_hash'][:16]}, export {e['id']}")
    return 0


def _export_job(store, args) -> int:
    from wizardlab.jobs import job_run

    with job_run(store, args.run_id) as job:
        e = recipes.export_recipe(store, args.name, args.out, args.format, run_id=args.run_id)
        job.progress({"phase": "exported", "export_id": e["id"], "rows": e["n_rows"]}, force=True)
    print(f"wrote {e['path']}: {e['n_rows']} rows (export {e['id']})")
    return 0


def _compare(store, args) -> int:
    profiles = {}
    for name in args.names:
        row, recipe = recipes.require_recipe(store, name)
        profiles[row["name"]] = recipes.profile(store, recipe)
    rows = recipes.compare(profiles)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(12, *(len(n) for n in profiles))
    first = max(len(r["metric"]) for r in rows) + 2
    print(f"{'metric':<{first}}" + "".join(f"{n:>{width + 2}}" for n in profiles))
    for r in rows:
        print(f"{r['metric']:<{first}}" + "".join(f"{'-' if r[n] is None else r[n]!s:>{width + 2}}" for n in profiles))
    return 0
