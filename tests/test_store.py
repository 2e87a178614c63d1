"""The store: migrations, transactions, the batch writer, effective status and overrides."""

import sqlite3
import threading

import pytest

from wizardlab.errors import UserError
from wizardlab.store import BatchWriter, Store


def test_migrations_apply_once_and_wal(tmp_path):
    s = Store(tmp_path / "a.db")
    names = s.applied_migrations()
    assert names[0] == "m001_core" and len(names) == len(set(names))
    s.close()
    s2 = Store(tmp_path / "a.db")
    assert s2.applied_migrations() == names
    assert s2.scalar("PRAGMA journal_mode") == "wal"
    assert s2.scalar("PRAGMA busy_timeout") >= 1000


def test_tx_rolls_back_on_error(store):
    with pytest.raises(RuntimeError):
        with store.tx():
            store.create_run("evolve", {})
            raise RuntimeError("boom")
    assert store.list_runs() == []


def test_insert_seeds_is_all_or_nothing(store):
    run = store.create_run("evolve", {})
    with pytest.raises(KeyError):
        store.insert_seeds(run, [{"instruction": "a"}, {"no": "instruction"}])
    assert store.count_nodes(run) == 0


def _forest(store, n=3):
    run = store.create_run("evolve", {"rounds": 2})
    store.insert_seeds(run, [{"instruction": f"seed {i}", "response": "r"} for i in range(n)])
    return run


def test_create_round_is_idempotent_and_one_node_per_root(store):
    run = _forest(store)
    assert store.create_round(run, 1, lambda: "deepening") == 3
    assert store.create_round(run, 1, lambda: "deepening") == 0
    with pytest.raises(sqlite3.IntegrityError):
        with store.tx() as conn:
            conn.execute("INSERT INTO nodes (run_id, root_id, parent_id, round, status) VALUES (?, 1, 1, 1, 'pending')",
                         (run,))


def test_pool_uses_newest_kept_descendant_else_seed(store):
    run = _forest(store, 2)
    store.create_round(run, 1, lambda: "deepening")
    r1 = {n["root_id"]: n["id"] for n in store.iter_pending(run, 1)}
    with store.tx() as conn:
        store.write_node_result(conn, r1[1], status="kept", instruction="evolved 1", response="x", fail_rules=[],
                                error=None, raw={})
        store.write_node_result(conn, r1[2], status="eliminated", instruction="bad", response=None,
                                fail_rules=["malformed"], error="e", raw={})
    store.create_round(run, 2, lambda: "concretizing")
    parents = {n["root_id"]: (n["parent_id"], n["parent_instruction"]) for n in store.iter_pending(run, 2)}
    assert parents[1] == (r1[1], "evolved 1")
    assert parents[2] == (2, "seed 1")


def test_override_changes_effective_status_and_undo_restores(store):
    run = _forest(store, 1)
    store.create_round(run, 1, lambda: "deepening")
    node = next(store.iter_pending(run, 1))["id"]
    with store.tx() as conn:
        store.write_node_result(conn, node, status="eliminated", instruction="i", response="r",
                                fail_rules=["no_information_gain"], error=None, raw={})
    store.add_overrides([node], "restore", "judge was wrong", "alice")
    assert store.get_node(node)["effective_status"] == "kept"
    ov = store.node_overrides(node)
    assert ov[0]["user"] == "alice" and ov[0]["reason"] == "judge was wrong"
    store.undo_override(ov[0]["id"], "bob")
    assert store.get_node(node)["effective_status"] == "eliminated"
    with pytest.raises(UserError):
        store.undo_override(ov[0]["id"], "bob")
    with pytest.raises(UserError, match="needs a reason"):
        store.add_overrides([node], "restore", " ", "alice")


def test_batch_writer_groups_commits_and_flushes(store):
    run = store.create_run("evolve", {})
    writer = BatchWriter(store, linger_s=0.01)
    for i in range(200):
        writer.submit(lambda conn, i=i: conn.execute(
            "INSERT INTO llm_calls (key, run_id, backend, model, request, completion) VALUES (?,?,?,?,?,?)",
            (f"k{i}", run, "b", "m", "{}", "c")))
    writer.flush()
    assert store.scalar("SELECT count(*) FROM llm_calls") == 200
    assert writer.commits < 200
    writer.close()


def test_batch_writer_isolates_a_failing_write(store):
    writer = BatchWriter(store, linger_s=0.01)
    writer.submit(lambda conn: conn.execute("INSERT INTO runs (kind) VALUES ('a')"))
    writer.submit(lambda conn: conn.execute("INSERT INTO no_such_table VALUES (1)"))
    writer.submit(lambda conn: conn.execute("INSERT INTO runs (kind) VALUES ('b')"))
    with pytest.raises(sqlite3.OperationalError):
        writer.flush()
    assert sorted(r["kind"] for r in store.list_runs()) == ["a", "b"]
    writer.close()


def test_concurrent_writers_from_threads(tmp_path):
    path = tmp_path / "c.db"
    Store(path)
    errors = []

    def work(k):
        s = Store(path)
        try:
            for i in range(25):
                s.create_run("evolve", {"k": k, "i": i})
        except sqlite3.Error as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert len(Store(path).list_runs(limit=1000)) == 150
