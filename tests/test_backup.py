"""Backup and restore (issue 12.9): consistent while an evolution and two annotators write;
restore refuses foreign and newer files and never overwrites without --force; the Admin tab's
button over HTTP (annotators refused)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from pipeline.__main__ import main as cli
from tests.fakellm import FakeLLM, evol_responder
from tests.uihelpers import REPO, call_api, http_login, make_user, start_app, stop_app
from wizardlab import evaluation as ev
from wizardlab.store import Store


def _campaign(db, tmp_path, n=300) -> int:
    store = Store(db)
    rows = [{"prompt_id": i, "prompt": f"Q{i}?", "model": m, "output": f"{m} answers {i}"}
            for m in ("m-one", "m-two") for i in range(n)]
    path = tmp_path / "outs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = ev.import_outputs(store, path, testset="backup-ts")
    return ev.create_campaign(store, "backup test", [s["id"] for s in sets], k=2)


def _annotator(db, cid: int, name: str, stop: threading.Event, done: list) -> None:
    store = Store(db)
    campaign = store.campaign(cid)
    n = 0
    while not stop.is_set():
        item = ev.next_item(store, campaign, name)
        if item is None:
            return
        ev.submit(store, campaign, name, item["assignment_id"], "1" if n % 2 else "tie", request_id=f"{name}-{n}")
        done.append(n)
        n += 1
        time.sleep(0.005)


def _ids(path) -> set[int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM judgments")}
    finally:
        conn.close()


def test_backup_while_an_evolution_and_two_annotators_write(tmp_path):
    db, out = tmp_path / "live.db", tmp_path / "backup.db"
    cid = _campaign(db, tmp_path)
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": f"Describe item {i}.", "output": "x"}) + "\n"
                             for i in range(60)))
    stop, done = threading.Event(), []
    with FakeLLM(evol_responder, latency=lambda: 0.02) as fake:
        argv = [sys.executable, "-m", "pipeline", "evolve", "--db", str(db), "--seeds", str(seeds), "--rounds", "3",
                "--base-url", fake.base_url, "--model", "fake", "--concurrency", "4", "--quiet"]
        evolve = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        people = [threading.Thread(target=_annotator, args=(db, cid, name, stop, done)) for name in ("ann1", "ann2")]
        try:
            deadline = time.time() + 90
            while time.time() < deadline and fake.count < 20:  # the evolution is writing
                time.sleep(0.1)
            for t in people:
                t.start()
            while time.time() < deadline and len(done) < 40:  # and so are the annotators
                time.sleep(0.05)
            committed = _ids(db)  # every judgment committed before the backup begins
            nodes_before = Store(db).scalar("SELECT count(*) FROM nodes")
            assert cli(["backup", "--db", str(db), "--out", str(out)]) == 0
            time.sleep(0.3)  # writing goes on after the backup
        finally:
            stop.set()
            for t in people:
                if t.is_alive() or t.ident:
                    t.join()
            evolve.terminate()
            evolve.wait(timeout=60)
    assert evolve.returncode is not None and len(committed) >= 40 and nodes_before > 0
    conn = sqlite3.connect(out)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM nodes").fetchone()[0] >= nodes_before
    conn.close()
    saved = _ids(out)
    assert committed <= saved, sorted(committed - saved)[:5]
    assert len(_ids(db)) > len(committed)  # the annotators kept writing during and after it


def test_restore_refuses_foreign_newer_and_existing_files(tmp_path, capsys):
    db = tmp_path / "w.db"
    Store(db).create_run("evolve", {}, name="keep me", status="done")
    out = tmp_path / "b.db"
    assert cli(["backup", "--db", str(db), "--out", str(out)]) == 0
    assert cli(["backup", "--db", str(db), "--out", str(out)]) == 2  # never overwrites by surprise
    assert "exists already" in capsys.readouterr().err
    text = tmp_path / "notes.db"
    text.write_text("not a database at all")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    newer = tmp_path / "newer.db"
    newer.write_bytes(out.read_bytes())
    c = sqlite3.connect(newer)
    c.execute("INSERT INTO _migrations VALUES ('m999_from_the_future', '2030-01-01')")
    c.commit()
    c.close()
    target = tmp_path / "restored.db"
    for bad, says in ((text, "not a WizardLab database"), (other, "not a WizardLab database"),
                      (newer, "newer WizardLab")):
        assert cli(["restore", "--db", str(target), "--from", str(bad)]) == 2
        assert says in capsys.readouterr().err and not target.exists()
    assert cli(["restore", "--db", str(target), "--from", str(out)]) == 0
    assert Store(target).list_runs()[0]["name"] == "keep me"
    Store(target).create_run("evolve", {}, name="newer work", status="done")
    assert cli(["restore", "--db", str(target), "--from", str(out)]) == 2  # existing db: needs --force
    assert "--force" in capsys.readouterr().err
    assert cli(["restore", "--db", str(target), "--from", str(out), "--force"]) == 0
    assert [r["name"] for r in Store(target).list_runs()] == ["keep me"]


@pytest.fixture()
def app(tmp_path):
    base_url, admin, password, ctx = start_app(tmp_path)
    make_user(ctx, "ann", "ann-pass-123")
    yield base_url, admin, password, ctx
    stop_app(ctx)


def test_admin_backup_button_over_http(app):
    base_url, admin, password, ctx = app
    ann = http_login(base_url, "ann", "ann-pass-123")
    event, data = call_api(ann, "admin_backup", [])
    assert event == "error" and "Only admins" in json.dumps(data)
    assert not (ctx.data_dir / "backups").exists()
    adm = http_login(base_url, admin, password)
    event, data = call_api(adm, "admin_backup", [])
    assert event == "complete" and "integrity ok" in data[0], data
    saved = list((ctx.data_dir / "backups").glob("wizardlab-*.db"))
    assert len(saved) == 1 and data[1]["value"]["orig_name"] == saved[0].name
    assert sqlite3.connect(saved[0]).execute("SELECT count(*) FROM users").fetchone()[0] == 2


def test_scheduled_backups_keep_the_newest_n(tmp_path):
    from wizardlab.store.backup import start_scheduled

    db = tmp_path / "w.db"
    Store(db).create_run("evolve", {}, name="x", status="done")
    thread, stop = start_scheduled(db, tmp_path / "backups", every_minutes=0.2 / 60, keep=2)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and len(list((tmp_path / "backups").glob("wizardlab-*.db"))) < 2:
            time.sleep(0.1)
        time.sleep(0.7)  # a few more ticks: older ones are pruned
    finally:
        stop.set()
        thread.join(timeout=10)
    kept = sorted((tmp_path / "backups").glob("wizardlab-*.db"))
    assert len(kept) == 2 and not list((tmp_path / "backups").glob(".*.part"))
