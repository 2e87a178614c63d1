"""Scale: a database written by the previous release migrates without loss; the columns the
statistics read (override status, word counts, difficulty answered) agree with the source of truth."""

import json

from wizardlab import curation
from wizardlab.store import Store, base
from wizardlab.store.analysis import count_words
from wizardlab.store.schema import MIGRATIONS


def _old_release_db(path, monkeypatch):
    """A file as the release before m009_scale wrote it: old schema, raw SQL of that release."""
    scale = next(i for i, m in enumerate(MIGRATIONS) if m.__name__ == "m009_scale")
    monkeypatch.setattr(base, "MIGRATIONS", MIGRATIONS[:scale])  # the release before, whatever came later
    s = Store(path)
    assert "m009_scale" not in s.applied_migrations()
    run = s.create_run("evolve", {})
    with s.tx() as c:
        for i in range(4):
            c.execute("INSERT INTO nodes (run_id, round, instruction, response, status) VALUES (?, 0, ?, 'r', 'seed')",
                      (run, f"seed  number\n{i}"))
        c.execute("UPDATE nodes SET root_id = id")
        for root in (1, 2, 3, 4):
            c.execute("INSERT INTO nodes (run_id, parent_id, root_id, round, operation, instruction, response, status, "
                      "fail_rules, raw) VALUES (?, ?, ?, 1, 'deepening', ?, 'resp', ?, ?, ?)",
                      (run, root, root, "evolved " * root, "kept" if root % 2 else "eliminated",
                       "[]" if root % 2 else '["no_information_gain"]', json.dumps({"respond": "resp"})))
        c.execute("UPDATE nodes SET difficulty = 7, raw = json_set(raw, '$.difficulty_raw', '7') WHERE id = 5")
        c.execute("UPDATE nodes SET raw = json_set(raw, '$.difficulty_raw', 'no idea') WHERE id = 7")
        c.execute("INSERT INTO overrides (node_id, action, reason, user) VALUES (6, 'restore', 'ok', 'ana')")
        c.execute("INSERT INTO overrides (node_id, action, reason, user) VALUES (5, 'eliminate', 'bad', 'ana')")
        c.execute("INSERT INTO overrides (node_id, action, reason, user, undone_at, undone_by) "
                  "VALUES (8, 'restore', 'x', 'ana', '2026-01-01', 'bo')")
    before = s.query("SELECT * FROM nodes_effective ORDER BY id")
    s.close()
    monkeypatch.setattr(base, "MIGRATIONS", MIGRATIONS)
    return run, before


def test_database_of_the_previous_release_migrates_without_loss(tmp_path, monkeypatch):
    run, before = _old_release_db(tmp_path / "old.db", monkeypatch)
    s = Store(tmp_path / "old.db")
    assert "m009_scale" in s.applied_migrations()
    after = s.query("SELECT * FROM nodes_effective ORDER BY id")
    for old, new in zip(before, after, strict=True):
        assert {k: new[k] for k in old} == old  # every column and the effective status unchanged
        assert new["words"] == count_words(old["instruction"])
    assert [n["effective_status"] for n in after[4:]] == ["eliminated", "kept", "kept", "eliminated"]
    assert s.difficulty_summary(run) == {"scored": 1, "mean_data": None, "unparsable": 1, "unscored": 6}
    assert s.check_override_status() == []
    assert {r["rule"]: r["n"] for r in s.counts_by_rule(run)} == {"no_information_gain": 2}
    texts = "SELECT id, run_id, root_id, instruction, input FROM {} ORDER BY id"
    assert s.query(texts.format("node_text")) == s.query(texts.format("nodes"))  # m011's copy of the text
    assert [r["matches"] for r in s.find_roots(run, {"text": "ev"})] == [1, 1, 1, 1]  # scan of node_text
    assert [r["root_id"] for r in s.find_roots(run, {"text": "number\n3"})] == [4]  # the rebuilt trigram index


def test_override_status_follows_the_audit_log_in_the_same_transaction(store):
    run = store.create_run("evolve", {})
    store.insert_seeds(run, [{"instruction": "a b", "response": "r"}])
    store.create_round(run, 1, lambda: "deepening")
    with store.tx() as c:
        store.write_node_result(c, 2, status="eliminated", instruction="x  y\tz", response="r",
                                fail_rules=["no_information_gain"], error=None, raw={})
    assert store.get_node(2)["words"] == 3
    curation.override_node(store, 2, "restore", "fine", "ana")
    curation.override_node(store, 1, "eliminate", "bad seed", "ana")
    assert [store.get_node(i)["effective_status"] for i in (1, 2)] == ["eliminated", "kept"]
    last = store.node_overrides(2)[-1]["id"]
    curation.undo(store, last, "bo")
    assert store.get_node(2)["effective_status"] == "eliminated"
    assert store.check_override_status(run) == []
    store.conn.execute("UPDATE nodes SET override_status = 'kept' WHERE id = 2")  # a broken column ...
    assert store.check_override_status(run) == [2]
    assert store.check_override_status(run, repair=True) == [2]  # ... is found and rebuilt from the log
    assert store.check_override_status(run) == [] and store.get_node(2)["effective_status"] == "eliminated"


def test_statistics_read_only_the_covering_index(store):
    """No Data tab query touches the large rows (instruction, response, raw)."""
    run = store.create_run("evolve", {})
    queries = {"counts_by_round": store.counts_by_round, "counts_by_operation": store.counts_by_operation,
               "length_histogram": store.length_histogram, "difficulty_summary": store.difficulty_summary,
               "difficulty_by_round": store.difficulty_by_round, "difficulty_histogram": store.difficulty_histogram}
    plans = []
    real_query = store.query

    def spy(sql, params=()):
        plans.extend(r["detail"] for r in real_query("EXPLAIN QUERY PLAN " + sql, params))
        return real_query(sql, params)

    store.query = spy
    store.query_one = lambda sql, params=(): (spy(sql, params) or [None])[0]
    for fn in queries.values():
        fn(run)
    scans = [p for p in plans if p.startswith(("SCAN", "SEARCH"))]
    assert scans and all("COVERING INDEX nodes_stats" in p for p in scans), plans


def test_failed_calls_are_counted_from_their_partial_index(store):
    """The Evolve tab's count of retryable nodes (an evolution whose call failed, a seed still without
    its response) reads the partial index of nodes with failed attempts, never the run's wide rows."""
    run = store.create_run("evolve", {})
    store.insert_seeds(run, [{"instruction": f"seed {i}"} for i in range(4)])
    store.create_round(run, 1, lambda: "deepening")
    seeds = [r["id"] for r in store.query("SELECT id FROM nodes WHERE run_id = ? AND round = 0 ORDER BY id", (run,))]
    pending = [n["id"] for n in store.iter_pending(run, 1)]
    with store.tx() as conn:
        store.write_seed_response(conn, seeds[0], None, "timeout")  # a seed answer that failed
        store.write_seed_response(conn, seeds[1], "fine", None)  # answered
        store.write_call_failure(conn, pending[0], "429", {})  # an evolution that failed
    assert store.count_failed_calls(run) == 2 and store.count_failed_calls(run, 1) == 1
    assert [(f["id"], f["round"]) for f in store.failed_calls(run)] == [(seeds[0], 0), (pending[0], 1)]
    for sql, params in ((f"SELECT count(*) FROM nodes WHERE run_id = ? AND {store._FAILED}", (run,)),
                        (f"SELECT id FROM nodes WHERE run_id = ? AND {store._FAILED} ORDER BY round, id LIMIT 8",
                         (run,))):
        plan = [r["detail"] for r in store.query("EXPLAIN QUERY PLAN " + sql, params)]
        assert plan == ["SEARCH nodes USING INDEX nodes_failed_calls (run_id=?)"], plan
