"""Curation: single and bulk overrides, undo, filters, lineage queries, and the override/runs CLIs."""

from __future__ import annotations

import sqlite3

import pytest

from pipeline.__main__ import main as cli
from tests.uihelpers import make_forest
from wizardlab import curation
from wizardlab.errors import UserError


def _forest(store) -> int:
    seeds = [{"instruction": f"Seed {i}: explain topic {i}", "input": "", "response": f"answer {i}"} for i in range(4)]
    r1 = [{"status": "kept", "instruction": f"R1 {i} deeper", "response": "ok", "operation": "deepening"}
          for i in range(4)]
    r2 = [{"status": "eliminated", "instruction": f"R2 {i} same", "response": "ok", "rules": ["no_information_gain"],
           "operation": "in_breadth"} for i in range(3)]
    r2.append({"status": "eliminated", "instruction": "R2 3 sorry", "response": "Sorry", "operation": "concretizing",
               "rules": ["sorry_short_response"]})
    return make_forest(store, seeds, [r1, r2])


def _effective(store, run_id, round_):
    return sorted(n["effective_status"] for n in store.iter_nodes(run_id) if n["round"] == round_)


def test_bulk_restore_changes_training_set_and_undo_reverts(store):
    run = _forest(store)
    before = sum(1 for _ in store.iter_nodes(run, training_only=True))
    n = curation.bulk_override(store, run, {"round": 2, "rule": "no_information_gain"}, "restore", "reviewed", "ana")
    assert n == 3
    assert _effective(store, run, 2) == ["eliminated", "kept", "kept", "kept"]
    assert sum(1 for _ in store.iter_nodes(run, training_only=True)) == before + 3
    # nothing left to change: a second identical bulk writes nothing
    assert curation.bulk_override(store, run, {"round": 2, "rule": "no_information_gain"}, "restore", "x", "ana") == 0
    rows = store.recent_overrides(run)
    assert {r["user"] for r in rows} == {"ana"} and {r["reason"] for r in rows} == {"reviewed"}
    curation.undo(store, rows[0]["id"], "bob")
    assert _effective(store, run, 2).count("kept") == 2
    with pytest.raises(UserError, match="already undone"):
        curation.undo(store, rows[0]["id"], "bob")


def test_single_override_and_validation(store):
    run = _forest(store)
    node = next(n for n in store.iter_nodes(run) if n["round"] == 1)
    curation.override_node(store, node["id"], "eliminate", "off topic", "ana")
    assert store.get_node(node["id"])["effective_status"] == "eliminated"
    tree = curation.build_tree(store, node["root_id"])
    assert tree["round"] == 0 and tree["children"][0]["overrides"][0]["reason"] == "off topic"
    with pytest.raises(UserError, match="reason"):
        curation.override_node(store, node["id"], "restore", "  ", "ana")
    with pytest.raises(UserError, match="rule"):
        curation.Filters.parse(rule="no_such_rule")
    with pytest.raises(UserError, match="round"):
        curation.Filters.parse(round="two")
    with pytest.raises(UserError, match="not a root"):
        curation.build_tree(store, node["id"])


def test_find_roots_text_and_filters(store):
    run = _forest(store)
    assert len(store.find_roots(run, {})) == 4
    assert [r["instruction"] for r in store.find_roots(run, {"text": "sorry"})] == ["Seed 3: explain topic 3"]
    assert len(store.find_roots(run, {"round": 2, "rule": "no_information_gain"})) == 3
    assert store.find_roots(run, {"text": "%"}) == []  # LIKE wildcards are literal
    hit = store.find_roots(run, {"operation": "concretizing", "status": "eliminated"})
    assert len(hit) == 1 and hit[0]["eliminated"] == 1 and hit[0]["evolutions"] == 2


def test_override_cli_bulk_dry_run_node_and_undo(store, capsys):
    run = _forest(store)
    db = store.path
    assert cli(["override", "--db", db, "--run", str(run), "--round", "2", "--rule", "no_information_gain",
                "--action", "restore", "--dry-run"]) == 0
    assert "would restore 3 node(s)" in capsys.readouterr().out
    assert store.recent_overrides(run) == []
    assert cli(["override", "--db", db, "--run", str(run), "--round", "2", "--rule", "no_information_gain",
                "--action", "restore", "--reason", "ok after review", "--user", "ana"]) == 0
    ids = [r["id"] for r in store.recent_overrides(run)]
    assert len(ids) == 3
    assert cli(["override", "--db", db, "--undo", *map(str, ids), "--user", "ana"]) == 0
    assert _effective(store, run, 2) == ["eliminated"] * 4
    # bad input: one line, exit 2, nothing written
    assert cli(["override", "--db", db, "--node", "999999", "--action", "restore", "--reason", "x"]) == 2
    assert "node 999999" in capsys.readouterr().err
    assert cli(["override", "--db", db, "--node", str(ids[0]), "--action", "restore"]) == 2
    assert len(store.recent_overrides(run)) == 3


def test_runs_cli_lists_and_refuses_cancel_of_finished(store, capsys):
    run = _forest(store)
    assert cli(["runs", "--db", store.path, "--kind", "evolve"]) == 0
    assert f"{run:>5}  evolve" in capsys.readouterr().out
    assert cli(["runs", "--db", store.path, "--cancel", str(run)]) == 2
    assert "not running" in capsys.readouterr().err


def test_override_changes_next_alpaca_export(store, tmp_path):
    import json

    from wizardlab.export import export_dataset

    run = _forest(store)
    before = json.loads(export_dataset(store, run, tmp_path / "a.json", "alpaca").read_text())
    curation.bulk_override(store, run, {"round": 2, "operation": "concretizing"}, "restore", "fine", "ana")
    after = json.loads(export_dataset(store, run, tmp_path / "b.json", "alpaca").read_text())
    assert len(after) == len(before) + 1
    assert "R2 3 sorry" in {r["instruction"] for r in after} - {r["instruction"] for r in before}


def test_hf_export_streams_into_shards_that_load_in_order(store, tmp_path, monkeypatch):
    import datasets

    from wizardlab import export

    run = _forest(store)
    expected = list(export.training_records(store, run))
    monkeypatch.setattr(export, "SHARD_BYTES", 40)  # a new Arrow file every two or three records
    out = export.export_dataset(store, run, tmp_path / "hf", "hf")
    shards = sorted(p.name for p in out.glob("*.arrow"))
    assert len(shards) >= 3 and shards[-1] == f"data-{len(shards) - 1:05d}-of-{len(shards):05d}.arrow"
    ds = datasets.load_from_disk(str(out))
    assert ds.to_list() == expected  # every record once, in id order, across the shards
    assert ds.features["id"].dtype == "int64" and ds.features["output"].dtype == "string"
    assert not list(tmp_path.glob(".hf.*"))  # the temporary directory is gone

    curation.bulk_override(store, run, {}, "eliminate", "start over", "ana")  # nothing left to train on
    empty = datasets.load_from_disk(str(export.export_dataset(store, run, tmp_path / "hf", "hf")))
    assert len(empty) == 0 and list(empty.features) == list(export.HF_FEATURES)


def test_short_text_search_reads_the_narrow_text_table_with_and_without_filters(store):
    run = _forest(store)
    from wizardlab.store.lineage import _source, _where

    for filters, source in (({"text": "R2"}, "node_text e"), ({"text": "R2", "round": 0}, "node_text t JOIN")):
        assert _source(filters).startswith(source)
        where, params = _where(run, filters)
        plan = [r["detail"] for r in store.query(f"EXPLAIN QUERY PLAN SELECT e.root_id FROM {_source(filters)} "
                                                 f"WHERE {where}", params)]
        wide = [p for p in plan if " e " in f"{p} " and "COVERING INDEX" not in p and source.startswith("node_text t")]
        assert plan and not wide, plan  # the text table and narrow indexes only: never the wide node rows
    assert [r["matches"] for r in store.find_roots(run, {"text": "R2"})] == [1, 1, 1, 1]
    assert [r["root_id"] for r in store.find_roots(run, {"text": "R2", "operation": "concretizing"})] == [4]
    assert len(store.find_roots(run, {"text": "S", "round": 0})) == 4  # round 0 is a filter too
    assert store.find_roots(run, {"text": "S", "round": 1}) == []
    assert store.select_node_ids(run, {"text": "3", "status": "eliminated"}) == [12]
    node = store.query_one("SELECT id FROM nodes WHERE instruction = 'R2 3 sorry'")["id"]
    with store.tx() as c:  # an edited instruction is found by its new text, not its old one
        c.execute("UPDATE nodes SET instruction = 'R2 3 qz' WHERE id = ?", (node,))
    assert [r["root_id"] for r in store.find_roots(run, {"text": "qz"})] == [4]
    assert store.find_roots(run, {"text": "sorry"}) == []
    assert store.scalar("SELECT count(*) FROM node_text") == store.scalar("SELECT count(*) FROM nodes")
    assert store.query("SELECT id, run_id, root_id, instruction, input FROM node_text ORDER BY id") == store.query(
        "SELECT id, run_id, root_id, instruction, input FROM nodes ORDER BY id")


def _common_forest(store) -> int:
    seeds = [{"instruction": f"Explain the topic {i}", "input": "", "response": "a"} for i in range(4)]
    r1 = [{"status": "kept", "instruction": f"Explain the topic {i} deeper", "response": "ok",
           "operation": "deepening"} for i in range(4)]
    r2 = [{"status": "eliminated", "instruction": f"R2 {i} same", "response": "ok", "rules": ["no_information_gain"],
           "operation": "in_breadth"} for i in range(3)]
    return make_forest(store, seeds, [r1, r2])


def test_common_text_groups_in_root_order_with_the_same_answer(store, monkeypatch):
    """A trigram in most nodes ("the") is counted by one pass over the run's nodes (numpy over the
    matching ids; the SQL count by a pass in root order); a rare one by looking its few matches up.
    Both give what a scan of every node says, for each sort, with and without the run, and the count
    agrees."""
    run = _common_forest(store)
    other = _common_forest(store)  # a second run: the search of one run must not count the other's nodes
    nodes = store.query("SELECT id, run_id, root_id, instruction, input FROM nodes")

    def expected(text, run_id, sort):
        found = {}
        for n in nodes:
            if (run_id is None or n["run_id"] == run_id) and text.lower() in (n["instruction"] + n["input"]).lower():
                found[(n["run_id"], n["root_id"])] = found.get((n["run_id"], n["root_id"]), 0) + 1
        key = {"root": lambda k: k[1], "matches": lambda k: (-found[k], k[1]), "newest": lambda k: -k[1]}[sort]
        keys = sorted(found, key=key)
        if run_id is None:  # newest run first, then the sort
            keys = sorted(keys, key=lambda k: -k[0])
        return [(k[1], found[k]) for k in keys]

    assert store._dense_text({"text": "the"}) is True  # 16 of 22 nodes
    assert store._dense_text({"text": "the", "round": 1}) is False  # another filter: look the matches up
    assert store._dense_text({"text": "R2 "}) is False  # 6 of 22
    assert store._dense_text({"text": "th"}) is False  # too short for the trigram index: a text table scan
    assert store._dense_text({"text": "the "}) is False  # a phrase: not counted first, its matches looked up
    for text in ("the", "R2 ", "deeper", "th"):
        for run_id in (run, other, None):
            for sort in ("root", "matches", "newest"):
                assert store.match_roots(run_id, {"text": text}, sort) == expected(text, run_id, sort), \
                    (text, run_id, sort)
            assert store.count_roots(run_id, {"text": text}) == len(expected(text, run_id, "root"))
    for run_id in (run, other, None):  # the dense trigram's own pass (numpy), asked directly
        for sort in ("root", "matches", "newest"):
            assert store._dense_roots(run_id, "the", sort) == expected("the", run_id, sort)
    import wizardlab.store.lineage as lineage_queries

    monkeypatch.setattr(lineage_queries, "SPLIT_SCAN_ROWS", 1)  # 1-2 characters: the scan in two id ranges at once
    for text in ("th", "e", "R", "q"):
        for run_id in (run, other, None):
            for sort in ("root", "matches", "newest"):
                assert store._short_text_roots(run_id, text, sort) == expected(text, run_id, sort), (text, run_id)
    source_where, params = store._grouped(run, {"text": "the"})
    plan = " ".join(r["detail"] for r in store.query(
        f"EXPLAIN QUERY PLAN SELECT e.root_id, count(*) FROM {source_where} GROUP BY e.run_id, e.root_id", params))
    assert "nodes_search" in plan and "TEMP B-TREE" not in plan, plan  # in root order: nothing to sort


def test_parallel_reads_answer_as_the_connection_does(store):
    """`read_parallel` runs a store's read-only queries at once on connections of their own: each
    answer is what this thread's connection says, and a reader cannot write."""
    run = _common_forest(store)
    queries = [("SELECT count(*), group_concat(id) FROM nodes WHERE run_id = ? AND round = ?", (run, r))
               for r in (0, 1, 2)]
    assert store.read_parallel(queries) == [tuple(store.conn.execute(*q).fetchone()) for q in queries]
    total = store.scalar("SELECT count(*) FROM nodes")
    counts = [row[0] for row in store.read_parallel(queries)]
    assert all(counts) and sum(counts) == total
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.read_parallel([queries[0], ("DELETE FROM nodes", ())])
    assert store.scalar("SELECT count(*) FROM nodes") == total
