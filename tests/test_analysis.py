"""Analysis: statistics on a real SQLite forest, LLM difficulty scoring over real HTTP (fake
server), the embeddings cache with the real all-MiniLM-L6-v2, UMAP and dispersion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fakellm import Fault, FakeLLM
from wizardlab.analysis import difficulty, diversity, embeddings, tables
from wizardlab.config import Settings
from wizardlab.errors import UserError

REPO = Path(__file__).resolve().parent.parent
SEEDS = ["Give three tips for staying healthy.", "Name the capital of Peru.", "Sort a list of numbers in Python.",
         "Describe how rain forms.", "UNPARSABLE write a haiku about cats.", "Summarise the plot of Hamlet."]
OPS = ["add_constraints", "deepening", "concretizing", "increase_reasoning", "complicate_input", "in_breadth"]


def make_forest(store) -> int:
    """6 seeds, 2 rounds written through the store's own methods; a fixed verdict pattern."""
    run_id = store.create_run("evolve", {}, status="done")
    store.insert_seeds(run_id, [{"instruction": s} for s in SEEDS])
    ops = iter(OPS * 4)
    for rnd in (1, 2):
        store.create_round(run_id, rnd, lambda: next(ops))
        with store.tx() as conn:
            for i, node in enumerate(store.iter_pending(run_id, rnd)):
                bad = (i + rnd) % 3 == 0
                store.write_node_result(
                    conn, node["id"], status="eliminated" if bad else "kept",
                    instruction=node["parent_instruction"] + " Explain your reasoning step by step" * rnd,
                    response="ok", fail_rules=["no_information_gain", "copied_prompt_words"][: 1 + i % 2] if bad else [],
                    error=None, raw={})
    return run_id


def test_statistics_per_round_operation_rule_and_length(store):
    run_id = make_forest(store)
    rounds = tables.round_table(store, run_id).set_index("round")
    assert rounds.loc[0, "seed"] == 6 and rounds.loc[0, "total"] == 6
    # round 1: i in 0..5, (i+1)%3==0 -> i=2,5 eliminated; round 2: (i+2)%3==0 -> i=1,4
    assert (rounds.loc[1, "kept"], rounds.loc[1, "eliminated"]) == (4, 2)
    assert rounds.loc[2, "elimination_rate"] == pytest.approx(2 / 6, abs=1e-3)

    ops = tables.operation_table(store, run_id).set_index("operation")
    assert ops["total"].sum() == 12 and ops["eliminated"].sum() == 4

    rules = tables.rule_table(store, run_id).set_index("rule")
    assert rules.loc["no_information_gain", "n"] == 4 and rules.loc["copied_prompt_words", "n"] == 2
    assert rules.loc["no_information_gain", "rate"] == pytest.approx(4 / 12, abs=1e-3)

    lengths = tables.length_table(store, run_id).set_index("round")
    assert lengths.loc[0, "mean_words"] == pytest.approx(np.mean([len(s.split()) for s in SEEDS]), abs=0.05)
    assert lengths.loc[2, "mean_words"] > lengths.loc[1, "mean_words"] > lengths.loc[0, "mean_words"]

    # a curator restores an eliminated node: effective counts move, the rule's count does not
    eliminated = store.query("SELECT id FROM nodes WHERE run_id = ? AND round = 1 AND status = 'eliminated'",
                             (run_id,))[0]["id"]
    store.add_overrides([eliminated], "restore", "fine after all", "alice")
    assert tables.round_table(store, run_id).set_index("round").loc[1, "kept"] == 5
    after = tables.rule_table(store, run_id).set_index("rule")
    assert after["n"].sum() == rules["n"].sum() and after["restored"].sum() == 1


def rating_responder(body: dict):
    """The rating is the number of words of the instruction, capped at 10; some hostile cases."""
    prompt = body["messages"][-1]["content"]
    instruction = prompt.split("## Instruction:\n", 1)[1].split("\n\n## ", 1)[0]
    if instruction.startswith("UNPARSABLE"):
        return "This one is hard to say, honestly."
    if instruction.startswith("FAIL"):
        return Fault(status=500)
    return f"Score: {min(10, len(instruction.split()))}/10"


def settings_for(store, fake, **kw) -> Settings:
    return Settings(db=store.path, base_url=fake.base_url, model="fake", concurrency=4, max_retries=0, **kw)


def test_difficulty_scoring_parses_keeps_raw_and_never_pays_twice(store):
    run_id = make_forest(store)
    with FakeLLM(rating_responder) as fake:
        settings = settings_for(store, fake)
        first = difficulty.run_scoring(store, settings, run_id, limit=5)
        assert first.done == 5 and len(fake.requests) <= 5
        assert {(b["temperature"], b["top_p"], b["max_tokens"]) for b in fake.requests} == {(1, 0.95, 2048)}
        rest = difficulty.run_scoring(store, settings, run_id)
        data = store.query("SELECT id, instruction, difficulty, raw FROM nodes_effective WHERE run_id = ? "
                           "AND effective_status IN ('seed','kept')", (run_id,))
        assert first.total == 5 and rest.total == rest.done == len(data) - 5
        # every distinct text asked exactly once over both passes (resume skipped scored nodes)
        asked = [m["messages"][-1]["content"] for m in fake.requests]
        assert len(asked) == len(set(asked)) == len({d["instruction"] for d in data})
        for d in data:
            raw = json.loads(d["raw"])["difficulty_raw"]
            if d["instruction"].startswith("UNPARSABLE"):
                assert d["difficulty"] is None and "hard to say" in raw
            else:
                assert d["difficulty"] == min(10, len(d["instruction"].split())) and raw.startswith("Score:")
        assert first.unparsable + rest.unparsable == sum(d["instruction"].startswith("UNPARSABLE") for d in data)
        again = difficulty.run_scoring(store, settings, run_id)
        assert again.total == 0 and len(fake.requests) == len(asked)
    summary = store.difficulty_summary(run_id)
    assert summary["unparsable"] >= 1 and summary["scored"] == len(data) - summary["unparsable"]
    hist = tables.difficulty_histogram(store, run_id)
    assert hist["n"].sum() == summary["scored"] and set(hist["difficulty"]) <= set(range(1, 11))


def test_failed_calls_are_left_unscored_and_retried_then_few_shot_prompt(store):
    run_id = store.create_run("evolve", {})
    store.insert_seeds(run_id, [{"instruction": "FAIL always"}, {"instruction": "Add two and two."},
                                {"instruction": "Add two and two."}])
    with FakeLLM(rating_responder) as fake:
        report = difficulty.run_scoring(store, settings_for(store, fake), run_id)
        assert (report.failed, report.scored, report.calls) == (1, 2, 1)  # duplicates asked once
        assert store.count_unscored(run_id) == 1
    messages = difficulty.difficulty_messages("Do X.", few_shot=True)
    assert [m["role"] for m in messages][:2] == ["user", "assistant"]
    assert len(messages) == 1 + 2 * len(difficulty.FEW_SHOT_EXAMPLES)
    assert all(difficulty.parse_difficulty(m["content"]) for m in messages if m["role"] == "assistant")


@pytest.mark.parametrize("text,expected", [("7", 7.0), ("Score: 8/10", 8.0), ("rated 3 out of 10", 3.0),
                                           ("On a scale of 1 to 10, this is a 4.", 4.0), ("Difficulty: 6.5", 6.5),
                                           ("15", None), ("no idea", None), ("", None), ("a 12-step plan", None)])
def test_parse_difficulty(text, expected):
    assert difficulty.parse_difficulty(text) == expected


def test_score_stage_refuses_a_missing_run_in_one_line(store, capsys):
    from pipeline.__main__ import main

    assert main(["score", "--db", store.path, "--run", "999"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no evolution run 999" in err


def test_dispersion_is_exact_and_zero_for_identical_vectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 16))
    from sklearn.metrics.pairwise import cosine_distances

    d = cosine_distances(x)
    oracle = d[~np.eye(40, dtype=bool)].mean()
    assert diversity.mean_pairwise_cosine_distance(x) == pytest.approx(oracle, abs=1e-9)
    assert diversity.mean_pairwise_cosine_distance(np.tile(x[:1], (10, 1))) == pytest.approx(0, abs=1e-9)
    assert diversity.mean_pairwise_cosine_distance(x[:1]) is None


def test_exact_knn_matches_sklearn_brute_force():
    from sklearn.neighbors import NearestNeighbors

    x = np.random.default_rng(2).normal(size=(300, 24)).astype(np.float32)
    idx, dist = diversity.knn_cosine(x, 7, block_floats=2000)  # many small blocks
    oracle_d, oracle_i = NearestNeighbors(n_neighbors=7, metric="cosine", algorithm="brute").fit(x).kneighbors(x)
    assert (idx == oracle_i).all() and np.allclose(dist, oracle_d, atol=1e-5)
    assert (idx[:, 0] == np.arange(300)).all()


def test_projection_small_n_falls_back_and_umap_gives_finite_coordinates():
    rng = np.random.default_rng(1)
    for n in (0, 1, 3):
        coords, method = diversity.project_2d(rng.normal(size=(n, 8)))
        assert coords.shape == (n, 2) and np.isfinite(coords).all() and "umap" not in method
    x = rng.normal(size=(50, 32)).astype(np.float32)
    coords, method = diversity.project_2d(x, seed=3)
    assert coords.shape == (50, 2) and np.isfinite(coords).all() and method.startswith("umap")
    assert np.allclose(coords, diversity.project_2d(x, seed=3)[0])  # fixed random_state: same map


def test_embeddings_cached_map_with_reference_and_dispersion(store, shared_data, tmp_path):
    run_id = make_forest(store)
    name, n = diversity.import_reference(store, shared_data / "testsets" / "vicuna80" / "question.jsonl", "vicuna")
    assert (name, n) == ("vicuna", 80)  # plain JSONL with a `text` column
    first = diversity.build_map(store, run_id, reference="vicuna")
    assert first.embed.embedded == first.embed.texts > 80 and first.embed.cached == 0
    pts = first.points
    data_set = store.scalar("SELECT count(*) FROM nodes_effective WHERE run_id = ? AND effective_status IN "
                            "('seed', 'kept')", (run_id,))
    assert data_set < store.count_nodes(run_id)  # the default: the data set, as the paper compares data sets
    assert len(pts) == data_set + 80 and np.isfinite(pts[["x", "y"]].to_numpy(float)).all()
    assert set(pts["status"]) == {"seed", "kept", "reference"}
    everything = diversity.build_map(store, run_id, reference="vicuna", data_only=False)
    assert len(everything.points) == store.count_nodes(run_id) + 80
    assert set(first.dispersion["group"]) >= {"round 0", "round 1", "round 2", "ref: vicuna", "all nodes"}
    second = diversity.build_map(store, run_id, reference="vicuna")
    assert second.embed.embedded == 0 and second.embed.cached == first.embed.texts
    assert store.count_embeddings(embeddings.EMBED_MODEL) == everything.embed.texts
    same, _ = embeddings.embed_texts(store, ["The cat sat on the mat."] * 5)
    other, _ = embeddings.embed_texts(store, ["The cat sat on the mat.", "Quarterly tax law for shipping firms.",
                                            "Write a sorting algorithm in Rust.", "Best soup for a cold day?"])
    assert diversity.mean_pairwise_cosine_distance(same) == pytest.approx(0, abs=1e-5)
    assert diversity.mean_pairwise_cosine_distance(other) > 0.5
    saved = diversity.DiversityMap.load(first.save(tmp_path / "map.json"))
    assert saved.points[["x", "y"]].equals(first.points[["x", "y"]])
    png = diversity.render_map_png(first.points, tmp_path / "map.png", color_by="operation")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_reference_import_errors_name_file_and_line(store, tmp_path):
    bad = tmp_path / "ref.jsonl"
    bad.write_text('{"instruction": "ok"}\n{"question_id": 3}\n')
    with pytest.raises(UserError, match=r"ref.jsonl line 2: missing field 'instruction'"):
        diversity.import_reference(store, bad)
    assert store.reference_sets() == []  # nothing half-written
    good = tmp_path / "ref.csv"
    good.write_text("instruction,other\nFirst one,x\nSecond one,y\n")
    assert diversity.import_reference(store, good) == ("ref", 2)
    assert store.reference_texts("ref") == ["First one", "Second one"]


def test_data_tab_over_http_admin_only_score_job_and_export(tmp_path, monkeypatch):
    import time

    import eval_ui.data

    from tests.uihelpers import call_api, http_login, make_user, start_app, stop_app

    with FakeLLM(rating_responder) as fake:
        base_url, admin, password, ctx = start_app(tmp_path, base_url=fake.base_url, model="fake")
        try:
            store = ctx.store()
            run_id = make_forest(store)
            make_user(ctx, "ann", "ann-pass-123", "annotator")
            ann = http_login(base_url, "ann", "ann-pass-123")
            for api in ("data_score", "data_export_alpaca", "data_show"):
                args = {"data_score": [run_id, False], "data_show": [run_id, "round"]}.get(api, [run_id, 0, 0, False,
                                                                                               False, False])
                event, _ = call_api(ann, api, args)
                assert event == "error", api
            assert store.list_runs("score") == []  # refused on the server: no job was started
            client = http_login(base_url, admin, password)
            event, _ = call_api(client, "data_score", [run_id, False])
            assert event == "complete"
            deadline = time.time() + 60
            while store.list_runs("score")[0]["status"] in ("pending", "queued", "running") and time.time() < deadline:
                time.sleep(0.3)
            assert store.list_runs("score")[0]["status"] == "done" and store.count_unscored(run_id) == 0
            event, payload = call_api(client, "data_export_alpaca", [run_id, 0, 0, False, False, False])
            assert event == "complete" and len(payload[0]) == 1 and payload[0][0]["path"].endswith(".json")
            records = json.loads(Path(payload[0][0]["path"]).read_text())
            assert len(records) == store.scalar("SELECT count(*) FROM nodes_effective WHERE run_id = ? AND "
                                                "effective_status IN ('seed', 'kept') AND response IS NOT NULL",
                                                (run_id,)) > 0
            event, payload = call_api(client, "data_export_alpaca", [run_id, 3, 7, True, True, False])
            assert event == "complete" and payload[0][1]["path"].endswith(".json.selection.json")
            chosen = json.loads(Path(payload[0][1]["path"]).read_text())
            assert chosen["chosen"] == 3 and chosen["population"] == len(records) and chosen["stratify"] == "round"
            assert len(json.loads(Path(payload[0][0]["path"]).read_text())) == 3
            # a "large" map goes to an embed job; the page then shows the map the job saved
            monkeypatch.setattr(diversity, "IN_PROCESS_MAX", 0)
            event, payload = call_api(client, "data_build_map", [run_id, "(none)", True, "round"])  # + eliminated
            assert event == "complete" and "background job" in payload[1]
            deadline = time.time() + 90
            while store.list_runs("embed")[0]["status"] in ("pending", "queued", "running") and time.time() < deadline:
                time.sleep(0.5)
            assert store.list_runs("embed")[0]["status"] == "done", store.list_runs("embed")[0]["error"]
            event, payload = call_api(client, "data_show", [run_id, "round"])
            assert event == "complete" and f"{store.count_nodes(run_id)} points" in json.dumps(payload)
        finally:
            stop_app(ctx)


def test_score_stage_stops_cleanly_on_sigterm_and_resumes_without_paying_twice(store):
    import signal
    import time

    run_id = store.create_run("evolve", {})
    store.insert_seeds(run_id, [{"instruction": f"Task number {i}: " + "word " * (i % 9)} for i in range(100)])
    job_id = store.create_run("score", {"target_run": run_id})  # as the Data tab makes it for a job
    with FakeLLM(rating_responder, latency=lambda: 0.05) as fake:
        argv = [sys.executable, "-m", "pipeline", "score", "--db", store.path, "--run", str(run_id),
                "--base-url", fake.base_url, "--model", "fake", "--concurrency", "2"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(argv, env={**env, "WIZARDLAB_RUN_ID": str(job_id)}, cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while store.count_unscored(run_id) == 100 and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "cancelled" in err
        job = store.get_run(job_id)
        left = store.count_unscored(run_id)
        assert job["status"] == "cancelled" and 0 < left < 100
        assert 0 < job["progress"]["done"] <= 100 - left  # progress reached the job's row
        paid = len(fake.requests)
        again = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        assert store.count_unscored(run_id) == 0 and store.list_runs("score")[0]["status"] == "done"
        asked = [b["messages"][-1]["content"] for b in fake.requests]
        assert len(asked) == len(set(asked)) == 100 and paid < 100


def test_numba_kernel_cache_is_guarded_by_version(monkeypatch):
    import numba

    assert diversity._numba_supported(numba.__version__)  # the pinned numba: caching is on
    assert not diversity._numba_supported("0.99.0") and not diversity._numba_supported("1.0") \
        and not diversity._numba_supported("dev")
    monkeypatch.setattr(numba, "__version__", "0.99.0")  # an untested numba: internals left alone
    assert diversity._enable_kernel_cache() == 0
    monkeypatch.undo()
    diversity._umap()
    from numba.core.caching import NullCache
    from umap import layouts
    kernels = [o for o in vars(layouts).values() if isinstance(o, numba.core.dispatcher.Dispatcher)]
    assert kernels and not any(isinstance(k._cache, NullCache) for k in kernels)


def test_difficulty_prompt_is_the_papers_template():
    template = difficulty.difficulty_template()
    assert "difficulty and complexity" in template and "1 to 10" in template and "just give a score" in template
    assert template.count("{instruction}") == 1
    for anchor in ("trivial", "1 is", "10 is", "5 is"):  # no anchor descriptions of our own
        assert anchor not in template
    [message] = difficulty.difficulty_messages("Sort a list.", "3, 1, 2")
    assert message["role"] == "user" and "Sort a list.\n\n3, 1, 2" in message["content"]
    assert "{instruction}" not in message["content"]
