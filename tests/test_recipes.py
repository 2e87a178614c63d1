"""Data recipes: filters over the forest, live counts, profiles, recorded exports, the recipe CLI."""

from __future__ import annotations

import hashlib
import json

import pytest

from pipeline.__main__ import main as cli
from tests.uihelpers import make_forest
from wizardlab import curation, recipes
from wizardlab.errors import UserError
from wizardlab.recipes import Recipe


def _forest(store) -> int:
    seeds = [{"instruction": f"Seed {i}: explain topic {i}", "input": "", "response": f"answer {i}"} for i in range(4)]
    r1 = [{"status": "kept", "instruction": f"R1 {i} deeper", "response": "ok", "operation": op}
          for i, op in enumerate(["deepening", "in_breadth", "deepening", "in_breadth"])]
    r2 = [{"status": "kept" if i < 2 else "eliminated", "instruction": f"R2 {i}", "response": "ok",
           "operation": "concretizing", "rules": [] if i < 2 else ["no_information_gain"]} for i in range(4)]
    return make_forest(store, seeds, [r1, r2])


def test_filters_counts_and_overrides(store):
    run = _forest(store)
    assert recipes.count(store, Recipe(seeds_only=True)) == 4
    assert recipes.count(store, Recipe(max_round=1)) == 8
    assert recipes.count(store, Recipe()) == 10
    assert recipes.count(store, Recipe(operations=("deepening",))) == 6  # seeds are always in
    eliminated = [n["id"] for n in store.iter_nodes(run) if n["status"] == "eliminated"]
    curation.override_node(store, eliminated[0], "restore", "fine after all", "ana")
    assert recipes.count(store, Recipe()) == 11
    assert recipes.count(store, Recipe(overrides=False)) == 10
    a, b = (recipes.select_ids(store, Recipe(sample=5, seed=s)) for s in (1, 1))
    assert a == b and len(a) == 5
    with pytest.raises(UserError, match="sample 50 is more than the 11"):
        recipes.count(store, Recipe(sample=50))
    with pytest.raises(UserError, match="max_round"):
        Recipe(max_round=-1)
    with pytest.raises(UserError, match="no evolution run 99"):
        recipes.create_recipe(store, "x", Recipe(runs=(99,)))


def test_export_records_hash_and_profile(store, tmp_path):
    _forest(store)
    recipes.create_recipe(store, "r1", Recipe(max_round=1))
    with pytest.raises(UserError, match="already exists"):
        recipes.create_recipe(store, "r1", Recipe())
    e = recipes.export_recipe(store, "r1", tmp_path / "r1.json")
    data = json.loads((tmp_path / "r1.json").read_text())
    assert len(data) == e["n_rows"] == 8 and set(data[0]) == {"instruction", "input", "output"}
    assert e["content_hash"] == hashlib.sha256((tmp_path / "r1.json").read_bytes()).hexdigest()
    assert e["profile"]["per_round"] == {"0": 4, "1": 4}
    assert e["profile"]["per_operation"] == {"deepening": 2, "in_breadth": 2, "seed": 4}
    assert e["spec"]["max_round"] == 1
    rows = recipes.compare({"a": e["profile"], "b": recipes.profile(store, Recipe())})
    assert {"metric": "round 2", "a": 0, "b": 2} in rows


def test_recipe_cli(store, tmp_path, capsys):
    _forest(store)
    db = str(store.path)
    assert cli(["recipe", "--db", db, "create", "seeds", "--seeds-only"]) == 0
    assert cli(["recipe", "--db", db, "create", "all"]) == 0
    assert "4 rows" in capsys.readouterr().out
    assert cli(["recipe", "--db", db, "list"]) == 0
    out = capsys.readouterr().out
    assert "seeds" in out and "10 rows" in out
    assert cli(["recipe", "--db", db, "export", "seeds", "--out", str(tmp_path / "s.json")]) == 0
    assert "4 rows" in capsys.readouterr().out
    assert cli(["recipe", "--db", db, "compare", "seeds", "all"]) == 0
    assert "round 2" in capsys.readouterr().out
    assert cli(["recipe", "--db", db, "show", "seeds"]) == 0
    assert json.loads(capsys.readouterr().out)["exports"][0]["n_rows"] == 4
    assert cli(["recipe", "--db", db, "show", "nope"]) == 2
    r2 = next(n["id"] for n in store.iter_nodes(1) if n["round"] == 2 and n["status"] == "kept")
    assert recipes.recipes_including(store, r2) == ["all"]
    from eval_ui.lineage import tree_html

    html = tree_html(store, 1)
    assert html.count("in recipes: seeds, all") == 1 and html.count("in recipes: all") == 2  # the seed; its kept r1 and r2
    assert cli(["recipe", "--db", db, "which", "1"]) == 0
    assert capsys.readouterr().out.split() == ["seeds", "all"]
