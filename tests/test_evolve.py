"""The evolve and export stages end to end, against the fake OpenAI-compatible server."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline.__main__ import main as cli
from tests.fakellm import FakeLLM, evol_responder, faulty
from wizardlab.store import Store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def kind_of(body):
    text = body["messages"][-1]["content"]
    if "Equal or Not Equal" in text:
        return "equal"
    if "#Given Prompt#:" in text:
        return "evolve"
    return "respond"


def scripted_responder(body):
    """Seeds mention what should happen to their evolutions; everything else evolves fine."""
    kind, text = kind_of(body), body["messages"][-1]["content"]
    if kind == "evolve" and "COPY" in text:
        return "#Given Prompt# made longer"
    if kind == "evolve" and "EMPTY" in text:
        return "   "
    if kind == "respond" and "SORRY" in text:
        return "Sorry, I cannot do that."
    if kind == "equal" and "SAME" in text:
        return "Equal"
    return evol_responder(body)


def write_seeds(path, instructions):
    path.write_text("".join(json.dumps({"instruction": i, "output": f"answer to {i}"}) + "\n" for i in instructions))
    return path


def evolve(db, seeds, fake, *extra):
    return cli(["evolve", "--db", str(db), "--seeds", str(seeds), "--base-url", fake.base_url, "--model", "fake",
                "--quiet", *extra])


def lineage(db, tmp_path):
    out = tmp_path / "lineage.jsonl"
    assert cli(["export", "--db", str(db), "--out", str(out), "--format", "jsonl"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_forest_rules_and_pool(tmp_path, capsys):
    seeds = write_seeds(tmp_path / "s.jsonl", ["Explain rainbows.", "COPY the text.", "EMPTY please.",
                                                "SORRY topic.", "SAME thing.", "Name a planet."])
    db = tmp_path / "w.db"
    with FakeLLM(scripted_responder) as fake:
        assert evolve(db, seeds, fake, "--rounds", "4") == 0
        paid = fake.count
        assert evolve(db, seeds, fake, "--rounds", "4") == 0  # finished: does nothing
        assert fake.count == paid
    out = capsys.readouterr().out
    assert "already finished" in out and "eliminated by rule" in out
    nodes = lineage(db, tmp_path)
    by_id = {n["id"]: n for n in nodes}
    seeds_ = [n for n in nodes if n["round"] == 0]
    assert len(seeds_) == 6 and all(n["status"] == "seed" for n in seeds_)
    for r in (1, 2, 3, 4):
        assert sorted(n["root_id"] for n in nodes if n["round"] == r) == sorted(n["id"] for n in seeds_)
    rules_by_seed = {}
    for n in nodes:
        if n["round"]:
            root = by_id[n["root_id"]]["instruction"]
            rules_by_seed.setdefault(root, set()).update(n["fail_rules"])
            assert (n["status"] == "kept") == (n["fail_rules"] == [])
            # the pool: the parent is the root's newest kept node of an earlier round, else the seed
            earlier = [m for m in nodes if m["root_id"] == n["root_id"] and m["round"] < n["round"]
                       and m["status"] in ("seed", "kept")]
            assert n["parent_id"] == max(earlier, key=lambda m: m["round"])["id"]
    assert rules_by_seed["COPY the text."] == {"copied_prompt_words"}
    assert rules_by_seed["EMPTY please."] == {"malformed"}
    assert rules_by_seed["SAME thing."] == {"no_information_gain"}
    assert rules_by_seed["Explain rainbows."] == set()
    # SORRY seeds: the evolved prompt keeps the word, so its response is a short apology
    assert rules_by_seed["SORRY topic."] == {"sorry_short_response"}
    kept_chain = [n for n in nodes if by_id[n["root_id"]]["instruction"] == "Explain rainbows."]
    assert [n["parent_id"] for n in sorted(kept_chain, key=lambda n: n["round"])][1:] == \
        [n["id"] for n in sorted(kept_chain, key=lambda n: n["round"])][:-1]


def test_cheap_rules_save_calls(tmp_path):
    seeds = write_seeds(tmp_path / "s.jsonl", ["COPY a.", "COPY b."])
    with FakeLLM(scripted_responder) as fake:
        assert evolve(tmp_path / "w.db", seeds, fake, "--rounds", "1") == 0
        kinds = [kind_of(b) for b in fake.requests]
    assert kinds == ["evolve", "evolve"]  # no response or Equal call for a copied prompt


def test_seeds_without_output_get_a_response(tmp_path):
    seeds = tmp_path / "s.jsonl"
    seeds.write_text('{"instruction": "Name a colour."}\n')
    with FakeLLM(scripted_responder) as fake:
        assert evolve(tmp_path / "w.db", seeds, fake, "--rounds", "1") == 0
    seed = lineage(tmp_path / "w.db", tmp_path)[0]
    assert seed["round"] == 0 and seed["response"].startswith("Here is a careful answer")


def test_seed_answers_run_alongside_round_one(tmp_path):
    """Evolving a seed does not need its answer: round 1's evolutions start at once and the seed
    answers fill the pool beside them (before, every seed answer came first, then a barrier)."""
    seeds = tmp_path / "s.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": f"Name a colour number {i}."}) + "\n" for i in range(4)))
    arrivals = []  # the fake server's clock when each request came in (answers take 0.5 s)

    def latency():
        arrivals.append(time.monotonic())
        return 0.5

    with FakeLLM(scripted_responder, latency=latency) as fake:
        assert evolve(tmp_path / "w.db", seeds, fake, "--rounds", "1", "--concurrency", "8") == 0
        kinds = [kind_of(b) for b in fake.requests]
    assert sorted(kinds[:8]) == ["evolve"] * 4 + ["respond"] * 4
    assert arrivals[7] - arrivals[0] < 0.4  # all 8 in flight together, before the first answer came back
    assert len(kinds) == 4 + 4 * 3
    rows = lineage(tmp_path / "w.db", tmp_path)
    assert all(r["response"] for r in rows) and sorted(r["round"] for r in rows) == [0] * 4 + [1] * 4
    progress = Store(tmp_path / "w.db").list_runs()[0]["progress"]
    assert progress["phase"] == "done" and progress["seed_answers"] == 4 and progress["done"] == progress["total"] == 8


def test_response_and_equality_check_are_asked_together_with_room_for_both(tmp_path):
    """The equality check does not need the response: at concurrency > 1 both calls of a node go out
    at once; at concurrency 1 one after the other. The verdicts are the same either way, a response
    the rules eliminate winning over the check (SORRY: eliminated by its response, not by SAME)."""
    seeds = write_seeds(tmp_path / "s.jsonl", ["Explain tides.", "SAME SORRY name a river."])
    outcomes = {}
    for concurrency in ("1", "4"):
        arrivals = []

        def latency():
            arrivals.append(time.monotonic())
            return 0.5

        db = tmp_path / f"c{concurrency}.db"
        with FakeLLM(scripted_responder, latency=latency) as fake:
            assert evolve(db, seeds, fake, "--rounds", "1", "--concurrency", concurrency) == 0
            kinds = [kind_of(b) for b in fake.requests]
        arrivals.sort()
        if concurrency == "4":  # both evolutions, then both nodes' responses and checks together
            assert sorted(kinds) == ["equal"] * 2 + ["evolve"] * 2 + ["respond"] * 2  # SORRY's check is paid too
            assert arrivals[1] - arrivals[0] < 0.4 and arrivals[5] - arrivals[2] < 0.4, arrivals
        else:  # one call at a time, and no check for a response the rules eliminate
            assert sorted(kinds) == ["equal"] + ["evolve"] * 2 + ["respond"] * 2
            assert all(b - a > 0.45 for a, b in zip(arrivals, arrivals[1:])), arrivals
        outcomes[concurrency] = [(n["status"], n["fail_rules"], n["response"]) for n in lineage(db, tmp_path)
                                 if n["round"] == 1]
    assert outcomes["1"] == outcomes["4"]
    assert [o[:2] for o in outcomes["4"]] == [("kept", []), ("eliminated", ["sorry_short_response"])]


def test_more_rounds_extends_a_finished_run(tmp_path):
    seeds = write_seeds(tmp_path / "s.jsonl", ["Explain tides.", "Name a river."])
    db = tmp_path / "w.db"
    with FakeLLM(scripted_responder) as fake:
        evolve(db, seeds, fake, "--rounds", "1")
        first = fake.count
        evolve(db, seeds, fake, "--rounds", "2")
        assert fake.count == first + 2 * 3
    store = Store(db)
    assert len(store.list_runs()) == 1 and store.count_nodes(1, 2) == 2


def test_faults_every_node_accounted_for(tmp_path):
    seeds = write_seeds(tmp_path / "s.jsonl", [f"Explain topic number {i}." for i in range(20)])
    db = tmp_path / "w.db"
    responder = faulty(scripted_responder, p429=0.1, p500=0.1, phang=0.03, pgarbage=0.02, hang_s=3, seed=1)
    with FakeLLM(responder) as fake:
        codes = [evolve(db, seeds, fake, "--rounds", "2", "--timeout", "1", "--concurrency", "8") for _ in range(3)]
    assert codes[-1] == 0 and set(codes) <= {0, 4}  # what failed for good stays retryable; a rerun retries it
    nodes = lineage(db, tmp_path)
    assert [sum(1 for n in nodes if n["round"] == r) for r in (0, 1, 2)] == [20, 20, 20]
    assert all(n["status"] in ("seed", "kept", "eliminated") for n in nodes)
    assert all(n["fail_rules"] != ["malformed"] or "unparsable" in (n["error"] or "") for n in nodes)
    assert sum(n["status"] == "kept" for n in nodes) >= 36


def test_bad_seeds_exit_2_one_line_nothing_written(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok"}\n{"instruction": 3\n')
    db = tmp_path / "w.db"
    code = cli(["evolve", "--db", str(db), "--seeds", str(bad), "--base-url", "http://127.0.0.1:9/v1",
                "--model", "x", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: bad.jsonl line 2: invalid JSON") and "\n" not in err
    store = Store(db)
    assert store.list_runs() == [] and store.scalar("SELECT count(*) FROM nodes") == 0


def test_export_training_formats_follow_overrides(tmp_path):
    seeds = write_seeds(tmp_path / "s.jsonl", ["Explain rainbows.", "SAME thing."])
    db = tmp_path / "w.db"
    with FakeLLM(scripted_responder) as fake:
        evolve(db, seeds, fake, "--rounds", "1")
    nodes = lineage(db, tmp_path)
    eliminated = next(n for n in nodes if n["status"] == "eliminated")
    kept = next(n for n in nodes if n["status"] == "kept")

    def alpaca():
        out = tmp_path / "a.json"
        assert cli(["export", "--db", str(db), "--out", str(out), "--format", "alpaca"]) == 0
        return json.loads(out.read_text())

    before = alpaca()
    assert len(before) == 3 and {r["instruction"] for r in before} >= {"Explain rainbows.", kept["instruction"]}
    Store(db).add_overrides([eliminated["id"]], "restore", "judge too strict", "curator")
    Store(db).add_overrides([kept["id"]], "eliminate", "off topic", "curator")
    after = alpaca()
    assert eliminated["instruction"] in {r["instruction"] for r in after}
    assert kept["instruction"] not in {r["instruction"] for r in after}
    restored = next(n for n in lineage(db, tmp_path) if n["id"] == eliminated["id"])
    assert restored["status"] == "kept" and restored["overridden"] and restored["fail_rules"] == []

    sg = tmp_path / "sg.json"
    cli(["export", "--db", str(db), "--out", str(sg), "--format", "sharegpt"])
    conv = json.loads(sg.read_text())
    assert len(conv) == 3 and [t["from"] for t in conv[0]["conversations"]] == ["human", "gpt"]
    import datasets

    hf = tmp_path / "hf"
    cli(["export", "--db", str(db), "--out", str(hf), "--format", "hf"])
    ds = datasets.load_from_disk(str(hf))
    assert sorted(ds["instruction"]) == sorted(r["instruction"] for r in after)


def test_exports_stream_the_records_the_node_dicts_give(tmp_path):
    """The exports read plain tuples of the columns they need, page by page (at 260,000 nodes a dict of
    every column per row was a third of a jsonl export): what they write is still `lineage_record` /
    the training record of each node as `iter_nodes` reads it, overrides included, across pages."""
    from wizardlab.export import lineage_lines, lineage_record, training_records

    seeds = write_seeds(tmp_path / "s.jsonl", ["Explain rainbows.", "SAME thing.", "SORRY topic.", "Name a planet."])
    db = tmp_path / "w.db"
    with FakeLLM(scripted_responder) as fake:
        evolve(db, seeds, fake, "--rounds", "2")
    store = Store(db)
    run = store.latest_run_id()
    nodes = list(store.iter_nodes(run))
    eliminated = [n["id"] for n in nodes if n["status"] == "eliminated"]
    kept = [n["id"] for n in nodes if n["status"] == "kept"]
    assert eliminated and kept
    store.add_overrides(eliminated[:1], "restore", "judge too strict", "curator")
    store.add_overrides(kept[:1], "eliminate", "off topic", "curator")
    nodes = list(store.iter_nodes(run))
    assert [json.loads(line) for line in lineage_lines(store, run)] == [lineage_record(n) for n in nodes]
    assert [json.loads(line) for line in lineage_lines(store, run)] == lineage(db, tmp_path)
    records = list(training_records(store, run))
    assert [r["id"] for r in records] == [n["id"] for n in nodes if n["effective_status"] in ("seed", "kept")
                                          and (n["response"] or "").strip()]
    assert eliminated[0] in {r["id"] for r in records} and kept[0] not in {r["id"] for r in records}
    cols = ("id", "round", "instruction")
    paged = list(store.iter_node_rows(run, cols, chunk=3))
    assert paged == [(n["id"], n["round"], n["instruction"], n["effective_status"]) for n in nodes]
    assert len(paged) > 3


def test_sigkill_then_resume_no_duplicates_no_repaid_calls(tmp_path):
    seeds = write_seeds(tmp_path / "s.jsonl", [f"Describe item {i} in detail." for i in range(40)])
    db = tmp_path / "w.db"
    concurrency = 4
    with FakeLLM(scripted_responder, latency=lambda: 0.05) as fake:
        argv = [sys.executable, "-m", "pipeline", "evolve", "--db", str(db), "--seeds", str(seeds), "--rounds", "2",
                "--base-url", fake.base_url, "--model", "fake", "--concurrency", str(concurrency), "--quiet"]
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.2)
            if os.path.exists(db) and Store(db).scalar(
                    "SELECT count(*) FROM nodes WHERE round = 1 AND status != 'pending'") >= 15:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = fake.count
        assert 0 < killed_at < 40 * 3 * 2
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        total_requests = fake.count
    store = Store(db)
    per_round = store.query("SELECT round, count(*) AS n, count(DISTINCT root_id) AS roots FROM nodes GROUP BY round")
    assert [(r["round"], r["n"], r["roots"]) for r in per_round] == [(0, 40, 40), (1, 40, 40), (2, 40, 40)]
    assert store.count_nodes(1, status="pending") == 0
    stored_calls = store.scalar("SELECT count(*) FROM llm_calls")
    repaid = total_requests - stored_calls
    assert 0 <= repaid <= 2 * concurrency, (total_requests, stored_calls)


def test_sigterm_cancels_cleanly_and_resume_finishes(tmp_path):
    seeds = write_seeds(tmp_path / "s.jsonl", [f"Describe thing {i}." for i in range(30)])
    db = tmp_path / "w.db"
    with FakeLLM(scripted_responder, latency=lambda: 0.05) as fake:
        argv = [sys.executable, "-m", "pipeline", "evolve", "--db", str(db), "--seeds", str(seeds), "--rounds", "1",
                "--base-url", fake.base_url, "--model", "fake", "--concurrency", "2", "--quiet"]
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while fake.count < 10:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 3 and "cancelled" in out
        assert Store(db).get_run(1)["status"] == "cancelled"
        before = fake.count
        assert Store(db).scalar("SELECT count(*) FROM llm_calls") == before  # nothing paid was lost
        assert subprocess.run(argv, cwd=REPO, capture_output=True, timeout=60).returncode == 0
    assert Store(db).get_run(1)["status"] == "done"


def test_cancel_does_not_wait_for_a_hanging_endpoint(tmp_path):
    from tests.fakellm import Fault

    seeds = write_seeds(tmp_path / "s.jsonl", [f"Describe thing {i}." for i in range(10)])
    db = tmp_path / "w.db"
    with FakeLLM(lambda body: Fault(hang=60)) as fake:
        argv = [sys.executable, "-m", "pipeline", "evolve", "--db", str(db), "--seeds", str(seeds), "--rounds", "1",
                "--base-url", fake.base_url, "--model", "fake", "--timeout", "50", "--quiet"]
        env = {**os.environ, "WIZARDLAB_STOP_GRACE_S": "1"}
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        while fake.count < 10:
            time.sleep(0.05)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert time.monotonic() - start < 8
    store = Store(db)
    assert store.get_run(1)["status"] == "cancelled"
    assert store.count_nodes(1, 1, "pending") == 10  # cut off, not failed: the resume does them


# -- issue 11: the official generation settings, outages that cost nothing, truncated responses -----------------

def test_requests_carry_the_official_settings_by_default(tmp_path):
    seeds = write_seeds(tmp_path / "s.jsonl", ["Explain rainbows.", "Name a planet."])
    db = tmp_path / "w.db"
    with FakeLLM(scripted_responder) as fake:
        assert evolve(db, seeds, fake, "--rounds", "1") == 0
        assert evolve(db, seeds, fake, "--rounds", "1", "--sampling", "equal:temperature=0",
                      "--max-tokens", "300") == 0  # other settings: another run
    first, second = fake.requests[:6], fake.requests[6:]
    assert {kind_of(b) for b in first} == {"evolve", "respond", "equal"}
    assert all((b["temperature"], b["top_p"], b["max_tokens"]) == (1, 0.95, 2048) for b in first)
    assert {(kind_of(b), b["temperature"], b["max_tokens"]) for b in second} == {
        ("evolve", 1, 300), ("respond", 1, 300), ("equal", 0, 300)}
    runs = Store(db).list_runs("evolve")
    assert len(runs) == 2
    used = {r["id"]: r["config"]["sampling_used"] for r in runs}
    assert used[1]["equal"] == {"temperature": 1.0, "top_p": 0.95, "max_tokens": 2048}
    assert used[2]["equal"] == {"temperature": 0.0, "top_p": 0.95, "max_tokens": 300}


def test_outage_leaves_failed_calls_retryable_and_a_rerun_eliminates_nothing_for_them(tmp_path, capsys):
    seeds = write_seeds(tmp_path / "s.jsonl", [f"Explain topic number {i}." for i in range(6)] + ["SORRY topic."])
    db = tmp_path / "w.db"
    with FakeLLM(scripted_responder) as fake:
        def down_after(body, served={"n": 0}):  # the endpoint goes down after 5 answers
            served["n"] += 1
            if served["n"] >= 5:
                fake.down = True
            return scripted_responder(body)

        fake.responder = down_after
        assert evolve(db, seeds, fake, "--rounds", "2", "--max-retries", "0", "--concurrency", "2") == 4
        store = Store(db)
        assert store.count_nodes(1, 2) == 0  # round 2 waits for round 1's failed calls
        failed = store.failed_calls(1)
        assert failed and all(f["attempts"] == 1 and "503" in f["last_error"] for f in failed)
        assert store.get_run(1)["status"] == "failed" and "retryable" in store.get_run(1)["error"]
        assert "malformed" not in json.dumps(store.counts_by_rule(1))
        assert evolve(db, seeds, fake, "--rounds", "2", "--max-retries", "0") == 4  # still down: attempts grow
        assert {f["attempts"] for f in store.failed_calls(1)} == {2}
        fake.down, fake.responder = False, scripted_responder
        assert evolve(db, seeds, fake, "--rounds", "2") == 0
    nodes = lineage(db, tmp_path)
    assert [sum(n["round"] == r for n in nodes) for r in (0, 1, 2)] == [7, 7, 7]
    evolved = [n for n in nodes if n["round"]]
    assert all(n["status"] == "kept" or n["fail_rules"] == ["sorry_short_response"] for n in evolved)
    assert sum(n["status"] == "eliminated" for n in evolved) == 2
    assert "retryable, not eliminated" not in capsys.readouterr().out.split("run 1: done")[-1]


def test_give_up_failed_makes_them_malformed_with_the_reason(tmp_path):
    seeds = write_seeds(tmp_path / "s.jsonl", ["Explain rainbows.", "Name a planet."])
    with open(seeds, "a") as fh:
        fh.write(json.dumps({"instruction": "A seed without its output."}) + "\n")
    db = tmp_path / "w.db"
    with FakeLLM(scripted_responder) as fake:
        fake.down = True
        assert evolve(db, seeds, fake, "--rounds", "2", "--max-retries", "0") == 4
        fake.down = False
        assert evolve(db, seeds, fake, "--rounds", "2", "--give-up-failed") == 0
    nodes = lineage(db, tmp_path)
    no_output = next(n for n in nodes if n["instruction"] == "A seed without its output.")
    assert no_output["response"] == "" and "gave up after 1 failed attempts" in no_output["error"]
    out = tmp_path / "train.json"
    assert cli(["export", "--db", str(db), "--out", str(out), "--format", "alpaca"]) == 0
    assert "A seed without its output." not in [r["instruction"] for r in json.loads(out.read_text())]
    first = [n for n in nodes if n["round"] == 1]
    assert all(n["fail_rules"] == ["malformed"] and "gave up after 1 failed attempts" in n["error"] for n in first)
    assert all(n["status"] == "kept" for n in nodes if n["round"] == 2)
    assert {n["parent_id"] for n in nodes if n["round"] == 2} == {n["id"] for n in nodes if n["round"] == 0}


def test_truncated_responses_are_marked_and_can_be_dropped_from_the_export(tmp_path):
    from tests.fakellm import Fault

    def responder(body):
        if kind_of(body) == "respond" and "LONG" in body["messages"][-1]["content"]:
            return Fault(finish_reason="length", text="A very long answer that was cut off in the midd")
        return scripted_responder(body)

    seeds = write_seeds(tmp_path / "s.jsonl", ["Explain rainbows.", "LONG essay on tides."])
    db = tmp_path / "w.db"
    with FakeLLM(responder) as fake:
        assert evolve(db, seeds, fake, "--rounds", "1") == 0
    nodes = lineage(db, tmp_path)
    cut = [n for n in nodes if n["truncated"]]
    assert len(cut) == 1 and cut[0]["round"] == 1 and cut[0]["status"] == "kept"
    out = tmp_path / "train.json"
    assert cli(["export", "--db", str(db), "--out", str(out), "--format", "alpaca"]) == 0
    assert len(json.loads(out.read_text())) == 4
    assert cli(["export", "--db", str(db), "--out", str(out), "--format", "alpaca", "--drop-truncated"]) == 0
    assert "cut off" not in out.read_text() and len(json.loads(out.read_text())) == 3


def test_choose_ids_uniform_stratified_shuffled_and_replayable():
    from wizardlab.export import Selection, choose_ids

    population = [(i, 0) for i in range(100)] + [(i, 1) for i in range(100, 400)]
    uniform = choose_ids(population, Selection(sample=40, seed=3))
    assert len(set(uniform)) == 40 and uniform == sorted(uniform) == choose_ids(population, Selection(sample=40, seed=3))
    assert uniform != choose_ids(population, Selection(sample=40, seed=4))
    strat = choose_ids(population, Selection(sample=41, seed=3, stratify="round"))
    assert (sum(i < 100 for i in strat), sum(i >= 100 for i in strat)) == (10, 31)  # 10.25 / 30.75: largest remainder
    shuffled = choose_ids(population, Selection(shuffle=True, seed=1))
    assert sorted(shuffled) == [i for i, _ in population] and shuffled != sorted(shuffled)
    with pytest.raises(Exception, match="more than the 400"):
        choose_ids(population, Selection(sample=401))


def test_export_sample_records_the_chosen_ids(tmp_path):
    seeds = write_seeds(tmp_path / "s.jsonl", [f"Explain topic number {i}." for i in range(10)])
    db = tmp_path / "w.db"
    with FakeLLM(scripted_responder) as fake:
        assert evolve(db, seeds, fake, "--rounds", "2") == 0
    out = tmp_path / "train.json"
    args = ["export", "--db", str(db), "--out", str(out), "--format", "alpaca", "--sample", "12", "--seed", "5"]
    assert cli([*args, "--stratify", "round", "--shuffle"]) == 0
    chosen = json.loads((tmp_path / "train.json.selection.json").read_text())
    assert (chosen["population"], chosen["chosen"], chosen["seed"], chosen["shuffle"]) == (30, 12, 5, True)
    by_id = {n["id"]: n for n in lineage(db, tmp_path)}
    assert [by_id[i]["round"] for i in chosen["ids"]].count(0) == 4  # 12 x 10/30 per round
    records = json.loads(out.read_text())
    assert [r["instruction"] for r in records] == [by_id[i]["instruction"] for i in chosen["ids"]]
    assert cli(["export", "--db", str(db), "--out", str(tmp_path / "l.jsonl"), "--sample", "3"]) == 2


def test_truncated_responses_can_be_found_in_curation(tmp_path):
    from tests.fakellm import Fault
    from wizardlab import curation

    def responder(body):
        if kind_of(body) == "respond" and "LONG" in body["messages"][-1]["content"]:
            return Fault(finish_reason="length", text="cut off in the midd")
        return scripted_responder(body)

    seeds = write_seeds(tmp_path / "s.jsonl", ["Explain rainbows.", "LONG essay on tides.", "LONG list of rivers."])
    db = tmp_path / "w.db"
    with FakeLLM(responder) as fake:
        assert evolve(db, seeds, fake, "--rounds", "1") == 0
    store = Store(db)
    filters = curation.Filters.parse(truncated=True)
    assert store.count_roots(1, filters.as_dict()) == 2 and "truncated=True" in filters.describe()
    assert cli(["override", "--db", str(db), "--run", "1", "--truncated", "--action", "eliminate",
                "--reason", "cut off", "--user", "ana"]) == 0
    assert sum(n["status"] == "eliminated" for n in lineage(db, tmp_path)) == 2


def test_rules_mode_paper_by_default_lenient_on_request(tmp_path):
    def responder(body):
        if kind_of(body) == "evolve" and "LABEL" in body["messages"][-1]["content"]:
            return "Rewritten Prompt: Explain how tides work, with one worked example."
        return scripted_responder(body)

    seeds = write_seeds(tmp_path / "s.jsonl", ["LABEL tides.", "Name a planet."])
    db = tmp_path / "w.db"
    with FakeLLM(responder) as fake:
        assert evolve(db, seeds, fake, "--rounds", "1") == 0
        assert evolve(db, seeds, fake, "--rounds", "1", "--rules", "lenient") == 0
    store = Store(db)
    runs = {r["config"]["rules"]: r["id"] for r in store.list_runs("evolve")}
    verdicts = {mode: [n["fail_rules"] for n in store.iter_nodes(run) if n["round"] == 1 and "tides" in n["instruction"]]
                for mode, run in runs.items()}
    assert verdicts == {"paper": [["copied_prompt_words"]], "lenient": [[]]}
