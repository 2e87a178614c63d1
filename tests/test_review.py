"""Review tasks on a real SQLite store: queues, a scripted two-curator task whose Fleiss kappa and
per-rule overturn rates are checked against a hand computation, and applying by policy."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.uihelpers import make_forest
from wizardlab import review
from wizardlab.errors import UserError

NIG, SORRY = "no_information_gain", "sorry_short_response"
# round-1 node of seed i: (rules' status, rules fired)
NODES = [("eliminated", [NIG]), ("eliminated", [NIG]), ("eliminated", [NIG]), ("eliminated", [NIG, SORRY]),
         ("eliminated", [SORRY]), ("eliminated", [SORRY]), ("kept", []), ("kept", [])]
ANA = ["keep", "keep", "eliminate", "keep", "eliminate", "eliminate", "keep", "eliminate"]
BEN = ["keep", "eliminate", "eliminate", "unsure", "eliminate", "keep", "keep", "eliminate"]


def forest(store) -> tuple[int, list[int]]:
    seeds = [{"instruction": f"Seed task {i}", "input": "", "response": f"answer {i}"} for i in range(len(NODES))]
    run = make_forest(store, seeds, [[{"status": s, "instruction": f"Harder task {i}", "response": f"longer {i}",
                                       "rules": r} for i, (s, r) in enumerate(NODES)]])
    return run, [n["id"] for n in store.iter_nodes(run) if n["round"] == 1]


def scripted(store, k: int = 2) -> tuple[dict, list[int]]:
    run, nodes = forest(store)
    task = review.create_task(store, run, "two curators", {"round": 1}, k=k, user="lead")
    for name, verdicts in (("ana", ANA), ("ben", BEN)):
        for node, verdict in zip(nodes, verdicts):
            review.answer_node(store, task["id"], name, node, verdict)
    return task, nodes


def fleiss_by_hand(table: list[list[int]]) -> float:
    """Fleiss (1971): items x categories counts, n raters per item."""
    n_items, n = len(table), sum(table[0])
    p_i = [(sum(c * c for c in row) - n) / (n * (n - 1)) for row in table]
    p_bar = sum(p_i) / n_items
    p_j = [sum(row[j] for row in table) / (n_items * n) for j in range(len(table[0]))]
    p_e = sum(p * p for p in p_j)
    return (p_bar - p_e) / (1 - p_e)


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_queue_gives_each_node_to_k_curators_with_skip_and_undo(store):
    run, nodes = forest(store)
    task = review.create_task(store, run, "queue", {"rule": NIG}, k=2, user="lead")
    assert task["n_items"] == 4 and task["filters"] == {"rule": NIG}
    first = review.next_item(store, task["id"], "ana")
    assert first["node_id"] == nodes[0] and first["parent_instruction"] == "Seed task 0"
    assert first["fail_rules"] == [NIG] and "model" not in first and first["progress"]["total"] == 4
    assert review.next_item(store, task["id"], "ana")["assignment_id"] == first["assignment_id"]  # same until answered
    assert review.answer(store, task["id"], "ana", first["assignment_id"], "keep", 1.5)
    assert not review.answer(store, task["id"], "ana", first["assignment_id"], "eliminate")  # a repeat is ignored
    second = review.next_item(store, task["id"], "ana")
    assert review.skip(store, "ana", second["assignment_id"])
    third = review.next_item(store, task["id"], "ana")
    assert third["node_id"] == nodes[2]
    review.answer(store, task["id"], "ana", third["assignment_id"], "eliminate")
    assert review.undo(store, task["id"], "ana")  # reopens node 2 for ana
    assert review.next_item(store, task["id"], "ana")["node_id"] == nodes[2]
    for who in ("ben", "cy"):  # node 0 reaches k=2 with ana and ben; cy never gets it
        item = review.next_item(store, task["id"], who)
        review.answer(store, task["id"], who, item["assignment_id"], "keep")
    assert store.review_verdicts(task["id"])[0]["verdicts"] == {"ana": "keep", "ben": "keep"}
    assert store.review_verdicts(task["id"])[1]["verdicts"] == {"cy": "keep"}
    with pytest.raises(UserError, match="verdict must be one of"):
        review.answer(store, task["id"], "ana", third["assignment_id"], "maybe")
    with pytest.raises(UserError, match="already exists"):
        review.create_task(store, run, "queue", {}, k=2)
    with pytest.raises(UserError, match="no finished evolution"):
        review.create_task(store, run, "none", {"round": 3})


def test_scripted_task_fleiss_and_rule_overturn_rates_match_a_hand_computation(store):
    task, _ = scripted(store)
    rep = review.report(store, task["id"])
    cats = ("keep", "eliminate", "unsure")
    table = [[(a == c) + (b == c) for c in cats] for a, b in zip(ANA, BEN)]
    assert rep["agreement"]["fleiss_kappa"] == pytest.approx(fleiss_by_hand(table), abs=1e-9)
    assert rep["agreement"]["percent_agreement"] == pytest.approx(5 / 8)
    assert [p["kappa"] is not None for p in rep["agreement"]["cohen_kappa_pairs"]] == [True]
    rules = {r["rule"]: r for r in rep["rules"]}
    # NIG: nodes 0-3; decided 0 (keep) and 2 (eliminate): 1 of 2 upheld, overturned 1/2
    assert (rules[NIG]["n_decided"], rules[NIG]["humans_agree"], rules[NIG]["overturn_rate"]) == (2, 1, 0.5)
    assert rules[NIG]["ci"] == pytest.approx(list(wilson(1, 2)), abs=1e-9)
    # sorry: nodes 3-5; only node 4 decided (eliminate): upheld 1/1
    assert (rules[SORRY]["n_decided"], rules[SORRY]["humans_agree"], rules[SORRY]["overturn_rate"]) == (1, 1, 0.0)
    assert rules[SORRY]["ci"] == pytest.approx(list(wilson(1, 1)), abs=1e-9)
    kept = rules[review.KEPT_BY_RULES]  # nodes 6 (keep) and 7 (eliminate)
    assert (kept["n_decided"], kept["humans_agree"]) == (2, 1)
    assert rules[NIG]["votes_unsure"] == 1 and rep["n_decided"] == 5 and rep["n_complete"] == 8


def test_apply_writes_exactly_the_overrides_the_policy_selects(store):
    task, nodes = scripted(store)
    dry = review.apply(store, task["id"], "majority", "lead", dry_run=True)
    assert (dry["overrides"], dry["restore"], dry["eliminate"]) == (2, 1, 1)
    assert review.apply(store, task["id"], "majority", "lead") == dry
    written = {n: store.node_overrides(n) for n in nodes}
    assert {n: [o["action"] for o in rows] for n, rows in written.items() if rows} == {
        nodes[0]: ["restore"], nodes[7]: ["eliminate"]}
    reason = written[nodes[0]][0]["reason"]
    assert written[nodes[0]][0]["user"] == "lead" and "two curators" in reason and "ana: keep, ben: keep" in reason
    assert store.get_node(nodes[0])["effective_status"] == "kept"
    with pytest.raises(UserError, match="already applied"):
        review.apply(store, task["id"], "majority", "lead")
    with pytest.raises(UserError, match="closed"):
        review.next_item(store, task["id"], "ana")


def test_majority_and_unanimous_differ_with_three_curators(store):
    run, nodes = forest(store)
    task = review.create_task(store, run, "three", {"rule": SORRY}, k=3)  # nodes 3, 4, 5 (eliminated)
    votes = {"ana": ["keep", "keep", "keep"], "ben": ["keep", "keep", "eliminate"],
             "cy": ["keep", "eliminate", "unsure"]}
    for name, vs in votes.items():
        for node, v in zip(nodes[3:6], vs):
            review.answer_node(store, task["id"], name, node, v)
    with pytest.raises(UserError, match="at k=3"):
        review.answer_node(store, task["id"], "dee", nodes[3], "keep")
    assert [r["action"] for r in review.plan(store, task["id"], "unanimous")] == ["restore", None, None]
    assert [r["action"] for r in review.plan(store, task["id"], "majority")] == ["restore", "restore", None]
    review.apply(store, task["id"], "unanimous", "lead")
    assert [len(store.node_overrides(n)) for n in nodes[3:6]] == [1, 0, 0]
    assert store.review_task(task["id"])["policy"] == "unanimous"


def test_review_cli_creates_answers_reports_json_and_applies(tmp_path):
    from wizardlab.store import Store

    db = tmp_path / "r.db"
    _, nodes = forest(Store(db))

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "pipeline", "review", "--db", str(db), *args], cwd=REPO,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "4 nodes, k=2" in cli("create", "--run", "1", "--name", "nig", "--rule", NIG, "--sample", "4")
    assert "ana: keep on node" in cli("answer", "--task", "nig", "--curator", "ana", "--node", str(nodes[0]),
                                      "--verdict", "keep")
    store = Store(db)
    for name, verdicts in (("ana", ANA), ("ben", BEN)):
        for node, v in list(zip(nodes, verdicts))[:4]:
            if (name, node) != ("ana", nodes[0]):
                review.answer_node(store, "nig", name, node, v)
    rep = json.loads(cli("report", "--task", "nig", "--json"))
    assert rep["n_items"] == 4 and rep["rules"][0]["rule"] == NIG and rep["rules"][0]["overturn_rate"] == 0.5
    assert "Fleiss" in cli("report", "--task", "nig") and "nig" in cli("list")
    assert "wrote 1 override(s) (1 restore, 0 eliminate)" in cli("apply", "--task", "nig", "--policy", "majority",
                                                                   "--user", "lead")


def test_campaign_conflicts_flag_judges_who_curated_an_arms_data(store, tmp_path):
    from wizardlab import evaluation as ev

    run, nodes = forest(store)
    other, _ = forest(store)
    rows = [{"prompt_id": i, "prompt": f"Prompt {i}", "model": m, "output": f"reply {i} {m}"}
            for m in ("model-a", "model-b") for i in range(2)]
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sets = ev.import_outputs(store, path, testset="toy")
    campaign = store.campaign(ev.create_campaign(store, "a vs b", [s["id"] for s in sets], k=2))
    for name in ("ana", "ben"):
        item = ev.next_item(store, campaign, name)
        ev.submit(store, campaign, name, item["assignment_id"], "1", request_id=f"{name}-1")
    task = review.create_task(store, run, "t", {"round": 1}, k=1)
    review.answer_node(store, task["id"], "ana", nodes[0], "keep")  # ana reviewed run's data
    review.apply(store, task["id"], "majority", "lead")
    store.add_overrides([nodes[1]], "restore", "by hand", "ana")
    store.add_overrides([nodes[2]], "restore", "by hand", "cy")  # cy curated but never judged
    flagged = review.campaign_conflicts(store, "a vs b", [run])
    assert flagged == [{"annotator": "ana", "judgments": 1, "overrides": 1, "verdicts": 1}]
    assert review.campaign_conflicts(store, "a vs b", [other]) == []
    with pytest.raises(UserError, match="no evolution run 99"):
        review.campaign_conflicts(store, "a vs b", [99])


def test_sample_is_seeded_and_skips_seeds_and_pending(store):
    run, nodes = forest(store)
    picks = [[i["node_id"] for i in store.review_verdicts(review.create_task(store, run, f"s{n}", {}, k=1, sample=3,
                                                                             seed=7)["id"])] for n in range(2)]
    assert picks[0] == picks[1] and len(picks[0]) == 3 and set(picks[0]) <= set(nodes)
    assert review.create_task(store, run, "all", {}, k=1)["n_items"] == len(nodes)  # no seeds (round 0)
