"""The paper's own evaluation figures: judgment-level win / tie / loss (the human evaluation)
and the capacity ratio of Vicuna's GPT-4 score protocol, checked against independent
computations from the shared data files (Vicuna-80 GPT-4 reviews, PandaLM's three annotators)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from wizardlab import evaluation as ev
from wizardlab.evaluation import external, report, stats

V80 = "testsets/vicuna80"
REVIEW = V80 + "/review/vicuna-13b_20230322-clean-lang/review_gpt35_vicuna-13b.jsonl"


def _jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# -- statistics ------------------------------------------------------------------
def test_vote_rates_count_every_vote_and_resample_whole_items():
    per_item = [["a", "a", "b"], ["tie"], ["b", "both_bad"], ["a"]]
    got = stats.vote_rates(per_item, n_boot=500, seed=3)
    assert got["counts"] == {"a": 3, "b": 2, "tie": 2, "both_bad": 1} and (got["n"], got["n_items"]) == (7, 4)
    assert (got["win"], got["tie"], got["loss"]) == pytest.approx((3 / 7, 2 / 7, 2 / 7))
    # independent cluster bootstrap: resample items with numpy, pool their votes
    rng = np.random.default_rng(3)
    table = np.array([[2, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0]])
    idx = rng.integers(0, 4, (500, 4))
    pooled = table[idx].sum(axis=1)
    wins = pooled[:, 0] / pooled.sum(axis=1)
    assert got["ci"]["win"] == pytest.approx(list(np.percentile(wins, [2.5, 97.5])))
    assert stats.vote_rates([], n_boot=10)["win"] is None
    single = stats.vote_rates([["a", "b"]], n_boot=10)
    assert single["ci"]["win"] == [0.5, 0.5]


def test_capacity_ratio_is_a_ratio_of_totals_with_item_bootstrap():
    scores = [(8, 9), (7, 10), (9, 9), (3, 8)]
    got = stats.capacity_ratio(scores, n_boot=400, seed=1)
    assert got["ratio"] == pytest.approx(27 / 36) and (got["total_a"], got["total_b"], got["n"]) == (27, 36, 4)
    arr = np.array(scores, dtype=float)
    sums = arr[np.random.default_rng(1).integers(0, 4, (400, 4))].sum(axis=1)
    assert got["ci"] == pytest.approx(list(np.percentile(sums[:, 0] / sums[:, 1], [2.5, 97.5])))
    assert got["ci"][0] < got["ratio"] < got["ci"][1]
    assert stats.capacity_ratio([])["ratio"] is None and stats.capacity_ratio([(1, 0)])["ratio"] is None


# -- the report ------------------------------------------------------------------
def test_report_json_capacity_ratio_matches_the_vicuna_review_files(tmp_path, shared_data, capsys):
    """Vicuna-13B (model a) relative to ChatGPT from the shared GPT-4 reviews: overall (the Vicuna
    blog's 638 / 693 = 92%) and per category, recomputed here straight from the files."""
    from pipeline.__main__ import main

    db = str(tmp_path / "cli.db")
    a = shared_data / V80 / "answer"
    assert main(["import-outputs", "--db", db, str(a / "answer_vicuna-13b.jsonl"), str(a / "answer_gpt35.jsonl")]) == 0
    assert main(["campaign", "--db", db, "create", "--name", "v", "--sets", "1", "2"]) == 0
    assert main(["import-judgments", "--db", db, str(shared_data / REVIEW), "--campaign", "v",
                 "--format", "vicuna-review"]) == 0
    capsys.readouterr()
    assert main(["report", "--db", db, "--campaign", "v", "--json", "--bootstrap", "200"]) == 0
    rep = json.loads(capsys.readouterr().out)

    category = {q["question_id"]: q["category"] for q in _jsonl(shared_data / V80 / "question.jsonl")}
    model_of = {r["answer_id"]: r["model_id"] for f in a.glob("answer_*.jsonl") for r in _jsonl(f)}
    totals = defaultdict(lambda: [0.0, 0.0])  # category -> [vicuna, chatgpt]
    for r in _jsonl(shared_data / REVIEW):
        s = dict(zip((model_of[r["answer1_id"]], model_of[r["answer2_id"]]), r["score"]))
        for key in (category[r["question_id"]], "all"):
            totals[key][0] += s["vicuna-13b:20230322-clean-lang"]
            totals[key][1] += s["gpt-3.5-turbo:20230327"]
    (cap,) = rep["capacity"]
    assert cap["judge"] == "llm:gpt-4-review" and cap["model_a"].startswith("vicuna-13b")
    assert (cap["total_a"], cap["total_b"]) == (638.0, 693.0)  # the Vicuna blog's table
    assert cap["ratio"] == pytest.approx(totals["all"][0] / totals["all"][1])
    assert cap["ci"][0] < cap["ratio"] < cap["ci"][1]
    per_cat = {g["group"]: g for g in cap["groups"] if g["by"] == "category"}
    assert set(per_cat) == set(category.values())
    for name, g in per_cat.items():
        assert g["ratio"] == pytest.approx(totals[name][0] / totals[name][1]), name
    at_90 = sum(v[0] / v[1] >= 0.9 for k, v in totals.items() if k != "all")
    assert cap["at_least_90"]["category"] == {"n_groups": 9, "n_at_least": at_90}  # the paper's "17 of 29 skills"
    assert "Capacity of vicuna-13b" in report.render_text(rep)


def test_judgment_level_counts_in_every_report(store, shared_data, tmp_path):
    """PandaLM: every one of the 2,997 votes counted, per pair, as an independent count of the file gives."""
    external.import_judgments(store, shared_data / "human_judgments/pandalm/testset-v1.json", "pandalm")
    rep = report.build_report(store, "pandalm", n_boot=20)
    want = defaultdict(Counter)
    for e in json.loads((shared_data / "human_judgments/pandalm/testset-v1.json").read_text()):
        for k in ("annotator1", "annotator2", "annotator3"):
            want[tuple(e["cmp_key"].split("_"))][{0: "tie", 1: "a", 2: "b"}[e[k]]] += 1
    overall = {(j["model_a"], j["model_b"]): j for j in rep["judgment_level"] if j["by"] == "all"}
    assert set(overall) == set(want)
    for pair, counts in want.items():
        got = overall[pair]["counts"]
        assert (got["a"], got["tie"], got["b"]) == (counts["a"], counts["tie"], counts["b"]), pair
    assert sum(j["n"] for j in overall.values()) == 2997 and rep["notes"]["judgment_level"]
    assert {t for t in report.tables(rep)} >= {"judgment_level", "capacity"}
    # a campaign with no judgments still has the section (empty), and the explanation
    rows = [{"prompt_id": i, "prompt": f"q{i}", "model": m, "output": f"{m}{i}"} for m in "xy" for i in range(3)]
    out = tmp_path / "o.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cid = ev.create_campaign(store, "empty", [s["id"] for s in ev.import_outputs(store, out, testset="t")])
    empty = report.build_report(store, cid, n_boot=20)
    assert empty["judgment_level"] == [] and empty["capacity"] == [] and "judgment" in report.render_text(empty)


# -- the score-mode judge (Vicuna's protocol) against the fake server ----------------
def _reviewer(body):
    """Scores alpha 8 and beta 6 in either order; item 3 always favours Assistant 1 (position bias);
    item 4 gives no scores; the math reviewer answers with a tuple at the end, as Vicuna's asks."""
    user = body["messages"][-1]["content"]
    first = user.split("[The Start of Assistant 1's Answer]\n", 1)[1].split()[0]
    second = user.split("[The Start of Assistant 2's Answer]\n", 1)[1].split()[0]
    score = {"alpha": 8, "beta": 6}
    if "answers 3" in user:
        return "9 5\nThe first one is better."
    if "answers 4" in user:
        return "Both answers are fine."
    if "Python tuple" in user:
        return f"Solving it myself first.\nSo the scores are ({score[first]}, {score[second]})"
    return f"{score[first]} {score[second]}\nExplanation."


def test_score_judge_cli_both_orders_averaged_and_capacity_in_report(store, tmp_path, capsys):
    from pipeline.__main__ import main
    from tests.fakellm import FakeLLM

    rows = [{"prompt_id": i, "prompt": f"question {i}", "model": m, "output": f"{m} answers {i}"}
            for m in ("alpha", "beta") for i in range(1, 6)]
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = ev.import_outputs(store, out, testset="toy")
    with store.tx() as conn:
        conn.execute("UPDATE prompts SET category = CASE prompt_key WHEN '1' THEN 'coding' WHEN '2' THEN 'math'"
                     " ELSE 'generic' END")
    cid = ev.create_campaign(store, "toy", [s["id"] for s in sets], k=1)
    with FakeLLM(_reviewer) as fake:
        assert main(["judge", "--db", store.path, "--campaign", str(cid), "--base-url", fake.base_url,
                     "--model", "rev", "--mode", "score"]) == 0
        assert len(fake.requests) == 10 and {r["temperature"] for r in fake.requests} == {0.2}
        users = [r["messages"][-1]["content"] for r in fake.requests]
        assert sum("coding abilities" in u for u in users) == 2 and sum("Python tuple" in u for u in users) == 2
    run = store.list_runs("judge")[0]
    assert run["status"] == "done" and run["config"]["mode"] == "score"
    assert (run["progress"]["done"], run["progress"]["parse_failures"], run["progress"]["flips"]) == (4, 1, 1)
    rows = {r["prompt_key"]: r for r in store.campaign_judgments(cid) if r["annotator"] == "llm-score:rev"}
    assert set(rows) == {"1", "2", "3", "5"}
    assert (rows["2"]["score_a"], rows["2"]["score_b"], rows["2"]["label"]) == (8.0, 6.0, "a")
    assert (rows["3"]["score_a"], rows["3"]["score_b"], rows["3"]["label"]) == (7.0, 7.0, "tie")
    capsys.readouterr()
    assert main(["report", "--db", store.path, "--campaign", str(cid), "--json", "--bootstrap", "50"]) == 0
    rep = json.loads(capsys.readouterr().out)
    (cap,) = rep["capacity"]
    assert (cap["judge"], cap["model_a"], cap["n"]) == ("llm-score:rev", "alpha", 4)
    assert cap["ratio"] == pytest.approx(31 / 25)
    assert {g["group"]: g["n"] for g in cap["groups"] if g["by"] == "category"} == {"coding": 1, "math": 1,
                                                                                     "generic": 2}
    assert [j["judge"] for j in rep["llm_judges"]] == ["llm-score:rev"]
    (card,) = rep["judge_cards"]
    assert (card["n_swapped"], card["flip_rate"]) == (4, 0.25)  # item 3's position bias
    with FakeLLM(lambda body: "7 7") as fake:  # resumable: only the unreadable item is reviewed again
        assert main(["judge", "--db", store.path, "--campaign", str(cid), "--base-url", fake.base_url,
                     "--model", "rev", "--mode", "score"]) == 0
        assert len(fake.requests) == 2


def test_parse_scores_reads_first_line_or_final_tuple():
    from wizardlab.evaluation.score_judge import parse_scores

    assert parse_scores("8 9.5\nBecause...") == (8.0, 9.5)
    assert parse_scores("8, 9\n") == (8.0, 9.0)
    assert parse_scores("Let me solve it: 2+2=4.\nScores: (3, 10)") == (3.0, 10.0)
    assert parse_scores("Assistant 1 scored 8") is None
    assert parse_scores("11 3") is None and parse_scores("") is None


def test_review_sampling_defaults_and_overrides():
    from types import SimpleNamespace

    from wizardlab.evaluation.score_judge import review_sampling

    endpoint = SimpleNamespace(in_process=False, few_shot=False)
    assert review_sampling(endpoint).kwargs() == {"temperature": 0.2, "top_p": None, "max_tokens": 1024}
    mine = review_sampling(endpoint, {"judge": {"temperature": 0.0, "top_p": 0.9}}).kwargs()
    assert mine == {"temperature": 0.0, "top_p": 0.9, "max_tokens": 1024}
    local = SimpleNamespace(in_process=True, few_shot=True)
    assert review_sampling(local).max_tokens <= 1024  # the in-process judge budget
