"""wizardlab.evaluation.trust: length-controlled win rates, fragility, the planner and the
anytime-valid "conclusive yet?", against independent computations and simulations."""

from __future__ import annotations

import csv
import itertools
import random

import numpy as np
import pytest
from scipy import integrate, optimize, special
from sklearn.linear_model import LogisticRegression

from wizardlab.evaluation import external, report, trust


def _answer(words: int, topic: str) -> str:
    return " ".join([topic] + ["detail"] * (words - 1))


def _length_biased_campaign(tmp_path, n_items=150, seed=0):
    """Two arms of equal quality; alpha's answer is longer on 70% of the items; three raters and an
    LLM judge pick the longer answer (raters 85% of the time, the judge 90%)."""
    rng = random.Random(seed)
    rows, judge_rows = [], []
    for i in range(n_items):
        long_, short = rng.randint(150, 300), rng.randint(20, 60)
        a_words, b_words = (long_, short) if rng.random() < 0.7 else (short, long_)
        base = {"item": f"q{i}", "model_a": "alpha", "model_b": "beta", "prompt": f"question {i}",
                "response_a": _answer(a_words, "alpha"), "response_b": _answer(b_words, "beta")}
        longer = "a" if a_words > b_words else "b"
        for rater in ("r1", "r2", "r3"):
            pick = longer if rng.random() < 0.85 else {"a": "b", "b": "a"}[longer]
            rows.append({**base, "annotator": rater, "label": pick})
        judge_rows.append({**base, "annotator": "lenjudge",
                           "label": longer if rng.random() < 0.9 else {"a": "b", "b": "a"}[longer]})
    paths = []
    for name, data in (("humans.csv", rows), ("judge.csv", judge_rows)):
        with open(tmp_path / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(data[0]))
            writer.writeheader()
            writer.writerows(data)
        paths.append(tmp_path / name)
    return paths


def test_length_controlled_win_rate_undoes_a_length_preference(store, tmp_path):
    humans, judge = _length_biased_campaign(tmp_path)
    external.import_judgments(store, humans, "lengthy")
    external.import_judgments(store, judge, "lengthy", llm=True)
    rep = report.build_report(store, "lengthy", n_boot=200)
    lc = {r["judges"]: r for r in rep["length_controlled"]}
    for who in ("humans", "llm:lenjudge"):
        r = lc[who]
        assert r["raw"] > 0.6, who  # raw favours the longer arm
        lo, hi = r["ci"]
        assert lo < 0.5 < hi and abs(r["controlled"] - 0.5) < 0.1, (who, r)  # controlled does not
        assert r["coefficients"]["length"] > 1.0
    assert rep["pairs"][0]["win_rate_ties_half"] > 0.6


def test_length_controlled_matches_an_independent_penalised_fit():
    rng = np.random.default_rng(4)
    rows = []
    for i in range(60):
        wa, wb = rng.integers(5, 200, 2)
        a = "# T\n- x\n" * int(rng.integers(0, 3)) + "w " * int(wa)
        b = "**bold** " * int(rng.integers(0, 2)) + "w " * int(wb)
        label = "tie" if rng.random() < 0.2 else ("a" if rng.random() < 0.4 + 0.3 * (wa > wb) else "b")
        rows.append((i, label, a, b))
    got = trust.length_controlled(rows, n_boot=50)
    X = trust.style_design([(a, b) for _, _, a, b in rows])
    labels = [lab for _, lab, _, _ in rows]
    Xr, y, w = trust._rows(labels, X, np.ones(len(rows)))

    def loss(beta):  # C x weighted log-loss + |coef|^2 / 2, written out here
        z = beta[0] + Xr @ beta[1:]
        return trust.STYLE_C * np.sum(w * (np.logaddexp(0, z) - y * z)) + 0.5 * beta[1:] @ beta[1:]

    best = optimize.minimize(loss, np.zeros(X.shape[1] + 1), method="BFGS", options={"gtol": 1e-8})
    assert got["controlled"] == pytest.approx(special.expit(best.x[0]), abs=1e-4)
    assert got["coefficients"]["length"] == pytest.approx(best.x[1], abs=1e-3)
    # the batched Newton fits used for the bootstrap equal scikit-learn's
    W = np.vstack([w, w * rng.integers(0, 3, len(w))])
    fits = trust.newton_fits(Xr, y, W)
    for k in range(2):
        sk = LogisticRegression(C=trust.STYLE_C, tol=1e-10, max_iter=2000).fit(Xr, y, sample_weight=W[k])
        assert fits[k, 0] == pytest.approx(sk.intercept_[0], abs=1e-5)
        assert fits[k, 1:] == pytest.approx(sk.coef_[0], abs=1e-4)


def _brute_force(items: dict) -> int:
    def margin(removed):
        total = 0
        for votes in items.values():
            lab = trust._item_label({k: sum(x == k for j, x in votes if j not in removed) for k in ("a", "tie", "b")})
            total += (lab == "a") - (lab == "b")
        return total

    start = margin(set())
    ids = [j for votes in items.values() for j, _ in votes]
    for size in range(len(ids) + 1):
        if any(np.sign(start) * margin(set(sub)) <= 0 for sub in itertools.combinations(ids, size)):
            return size
    raise AssertionError("unreachable")


def test_fragility_is_exact_against_brute_force():
    rng = random.Random(7)
    checked = 0
    for _ in range(150):
        items, jid = {}, 0
        for i in range(rng.randint(1, 5)):
            items[i] = [(jid + n, rng.choice("aab") if rng.random() < 0.8 else "tie") for n in range(rng.randint(1, 4))]
            jid += len(items[i])
        got = trust.fragility(items)["per_item"]
        if got["leader"] is None:
            continue
        assert got["n_to_flip"] == _brute_force(items) == len(got["judgment_ids"]), items
        checked += 1
    assert checked > 50


def test_fragility_in_the_report_names_judgments_that_flip_it(store, tmp_path):
    humans, _ = _length_biased_campaign(tmp_path, n_items=12, seed=2)
    external.import_judgments(store, humans, "small")
    rep = report.build_report(store, "small", n_boot=20)
    (frag,) = rep["fragility"]
    per_item = frag["per_item"]
    assert per_item["n_to_flip"] == len(per_item["judgment_ids"]) > 0
    with store.tx() as conn:
        conn.executemany("DELETE FROM judgments WHERE id = ?", [(j,) for j in per_item["judgment_ids"]])
    after = report.build_report(store, "small", n_boot=20)["pairs"][0]
    lead = "win" if per_item["leader"] == "a" else "loss"
    other = "loss" if lead == "win" else "win"
    assert after[lead] <= after[other]
    assert frag["judgment_level"]["n_to_flip"] == frag["judgment_level"]["margin"]


@pytest.mark.parametrize("margin, tie_rate, k, icc", [(0.2, 0.2, 1, 0.0), (0.12, 0.3, 3, 0.3), (-0.15, 0.1, 5, 0.5)])
def test_planner_agrees_with_a_simulation_of_the_design(margin, tie_rate, k, icc):
    p = trust.plan(margin, tie_rate, k, icc=icc, power=0.8)
    simulated = trust.simulate_power(p["n_items"], k, margin, tie_rate, icc=icc, n_sim=3000, seed=1)
    assert abs(simulated - 0.8) <= 0.08, (p, simulated)
    smaller = trust.simulate_power(int(p["n_items"] * 0.6), k, margin, tie_rate, icc=icc, n_sim=3000, seed=2)
    assert smaller < 0.72  # and it is not just any number of items
    with pytest.raises(ValueError):
        trust.plan(0.0, 0.2)


def test_conclusive_bayes_factor_and_anytime_validity():
    got = trust.conclusive(["a"] * 30 + ["b"] * 10 + ["tie"] * 7)
    marginal, _ = integrate.quad(lambda p: p ** 30 * (1 - p) ** 10, 0, 1)
    assert got["bayes_factor"] == pytest.approx(marginal / 0.5 ** 40, rel=1e-6)
    assert got["conclusive"] and got["leader"] == "a" and got["n_nontie"] == 40
    assert not trust.conclusive(["a", "b", "a"])["conclusive"]
    rng = np.random.default_rng(0)  # under no difference, peeking after every item keeps alpha
    false = 0
    for _ in range(300):
        labels = rng.choice(["a", "b"], 300)
        wins = np.cumsum(labels == "a")
        n = np.arange(1, 301)
        log_bf = special.betaln(wins + 1, n - wins + 1) + n * np.log(2)
        false += bool((log_bf >= np.log(20)).any())
    assert false / 300 <= 0.05


def test_campaign_plan_cli(capsys):
    import json

    from pipeline.__main__ import main

    assert main(["campaign", "plan", "--margin", "0.12", "--tie-rate", "0.3", "--k", "3", "--icc", "0.3",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == trust.plan(0.12, 0.3, 3, icc=0.3)
    assert main(["campaign", "plan", "--margin", "0"]) == 2
    assert "campaign plan: need" in capsys.readouterr().err


def test_judge_card_length_preference_flip_rate_and_self_preference(store, tmp_path):
    humans, judge = _length_biased_campaign(tmp_path, n_items=60, seed=3)
    external.import_judgments(store, humans, "card")
    external.import_judgments(store, judge, "card", llm=True)
    rep = report.build_report(store, "card", n_boot=20)
    rows = store.campaign_judgments(rep["campaign"]["id"])
    (card,) = rep["judge_cards"]
    texts = {i["item_id"]: (i["response_a"], i["response_b"]) for i in store.campaign_items(rep["campaign"]["id"])}
    picks = [(r["label"] == "a") == (len(texts[r["item_id"]][0].split()) > len(texts[r["item_id"]][1].split()))
             for r in rows if r["annotator"] == "llm:lenjudge"]
    assert card["longer_preference"]["share"] == pytest.approx(sum(picks) / len(picks)) and card["n"] == 60
    assert card["longer_preference"]["share"] > 0.8 and card["humans_longer_preference"]["share"] > 0.7
    assert card["flip_rate"] is None and card["human_ceiling"] > 0.5  # imported verdicts: no swap record
    assert trust.swap_outcome("order 1: [[A]], order 2 (swapped): [[A]] -> flip") == "flip"
    assert trust.swap_outcome("order 1: 8 / 6, order 2 (swapped): 9 / 5 -> a 7, b 7") == "flip"
    assert trust.swap_outcome("order 1: 8 / 6, order 2 (swapped): 6 / 8 -> a 8, b 6") == "consistent"
    assert trust.family("llm:gpt-4-review") == trust.family("gpt-3.5-turbo:20230327") == "gpt"
    assert trust.family("vicuna-13b") == "vicuna"
