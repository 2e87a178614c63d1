"""wizardlab.evaluation.stats: oracle tests against scikit-learn, statsmodels, krippendorff, scipy,
property tests on random judgment tables, and planted-effect tests."""

from __future__ import annotations

import itertools
import math
import warnings

import krippendorff
import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats import inter_rater

from wizardlab.evaluation import stats

LABELS = ["a", "b", "tie", "x"]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def none_if_nan(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def close(got, want, tol=1e-9):
    want = none_if_nan(want)
    if want is None:
        return got is None
    return got is not None and abs(got - want) <= tol


@st.composite
def tables(draw, missing=True):
    """item x annotator label tables as records; cells may be missing (None)."""
    n_items = draw(st.integers(1, 12))
    n_ann = draw(st.integers(1, 5))
    n_labels = draw(st.integers(1, 4))
    cell = st.sampled_from(LABELS[:n_labels])
    if missing:
        cell = st.one_of(st.none(), cell)
    table = [[draw(cell) for _ in range(n_ann)] for _ in range(n_items)]
    return [(f"i{i}", f"r{r}", table[i][r]) for i in range(n_items) for r in range(n_ann) if table[i][r] is not None]


def brute_percent(records, drop_ties):
    """Independent MT-bench oracle: enumerate every pair of judgments of the same item."""
    by_item = {}
    for item, _ann, label in records:
        by_item.setdefault(item, []).append(label)
    agree = total = 0
    for labels in by_item.values():
        for x, y in itertools.combinations(labels, 2):
            if drop_ties and "tie" in (x, y):
                continue
            total += 1
            agree += x == y
    return agree / total if total else None


@FAST
@given(tables())
def test_agreement_matches_reference_libraries(records):
    got = stats.agreement(records)
    assert tuple(got) == stats.AGREEMENT_KEYS
    assert got["n_judgments"] == len(records)
    assert close(got["percent_agreement"], brute_percent(records, False))
    assert close(got["percent_agreement_without_ties"], brute_percent(records, True))
    labels = {(i, a): lab for i, a, lab in records}
    annotators = sorted({a for _, a, _ in records})
    items = sorted({i for i, _, _ in records})
    expected_pairs = {}
    for a, b in itertools.combinations(annotators, 2):
        shared = [i for i in items if (i, a) in labels and (i, b) in labels]
        if len(shared) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                k = cohen_kappa_score([labels[i, a] for i in shared], [labels[i, b] for i in shared])
            expected_pairs[a, b] = (len(shared), none_if_nan(k))
    got_pairs = {tuple(sorted((p["a"], p["b"]))): (p["n"], p["kappa"]) for p in got["cohen_kappa_pairs"]}
    assert got_pairs.keys() == expected_pairs.keys()
    for key, (n, k) in expected_pairs.items():
        assert got_pairs[key][0] == n and close(got_pairs[key][1], k)
    # Krippendorff: annotators x items with NaN for missing cells.
    codes = {lab: float(k) for k, lab in enumerate(LABELS)}
    matrix = np.array([[codes[labels[i, a]] if (i, a) in labels else np.nan for i in items] for a in annotators])
    try:
        with np.errstate(all="ignore"):
            alpha = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    except ValueError:
        alpha = None
    assert close(got["krippendorff_alpha"], alpha)


@FAST
@given(tables(missing=False))
def test_fleiss_matches_statsmodels_on_complete_tables(records):
    got = stats.agreement(records)["fleiss_kappa"]
    annotators = sorted({a for _, a, _ in records})
    if len(annotators) < 2:
        assert got is None
        return
    labels = {(i, a): LABELS.index(lab) for i, a, lab in records}
    items = sorted({i for i, _, _ in records})
    raw = np.array([[labels[i, a] for a in annotators] for i in items])
    table, _ = inter_rater.aggregate_raters(raw)
    with np.errstate(all="ignore"):
        want = inter_rater.fleiss_kappa(table, method="fleiss")
    assert close(got, want)


@FAST
@given(tables(), st.permutations(["p", "q", "r"]), st.randoms(use_true_random=False))
def test_agreement_invariant_to_label_names_and_record_order(records, renamed, rnd):
    mapping = dict(zip(["a", "b", "x"], renamed), tie="tie")  # ties stay ties
    shuffled = [(i, a, mapping[lab]) for i, a, lab in records]
    rnd.shuffle(shuffled)
    x, y = stats.agreement(records), stats.agreement(shuffled)
    for key in ("percent_agreement", "percent_agreement_without_ties", "cohen_kappa_mean",
                "fleiss_kappa", "krippendorff_alpha"):
        assert close(y[key], x[key], 1e-9), key


def test_degenerate_inputs_give_none_not_errors():
    one_annotator = stats.agreement([(i, "solo", "a") for i in range(5)])
    assert one_annotator["cohen_kappa_pairs"] == []
    assert one_annotator["cohen_kappa_mean"] is None
    assert one_annotator["fleiss_kappa"] is None
    assert one_annotator["krippendorff_alpha"] is None
    assert one_annotator["percent_agreement"] is None
    same_label = stats.agreement([(i, r, "a") for i in range(4) for r in ("x", "y")])
    assert same_label["percent_agreement"] == 1.0
    assert same_label["cohen_kappa_pairs"] == [{"a": "x", "b": "y", "n": 4, "kappa": None}]
    assert same_label["fleiss_kappa"] is None and same_label["krippendorff_alpha"] is None
    only_ties = stats.agreement([(i, r, "TIE") for i in range(3) for r in ("x", "y")])
    assert only_ties["percent_agreement"] == 1.0
    assert only_ties["percent_agreement_without_ties"] is None
    empty = stats.agreement([])
    assert empty["n_items"] == 0 and empty["percent_agreement"] is None and empty["krippendorff_alpha"] is None


def test_any_hashable_items_and_duplicates():
    got = stats.agreement([((1, "p"), 7, 0), ((1, "p"), 8, 0), ((2, "q"), 7, 1), ((2, "q"), 8, 0)])
    assert got["n_items"] == 2 and got["percent_agreement"] == 0.5
    assert {(p["a"], p["b"]) for p in got["cohen_kappa_pairs"]} == {(7, 8)}
    with pytest.raises(ValueError, match="more than once"):
        stats.agreement([(1, "x", "a"), (1, "x", "b")])
    with pytest.raises(ValueError, match="record 2 has no item, annotator or label"):
        stats.agreement([(1, "x", "a"), (1, "y", None)])
    with pytest.raises(ValueError, match="record 1 has no"):
        stats.annotator_report([(float("nan"), "x", "a")])


def noisy_annotations(rng, n_items=120, good=5, accuracy=0.9, bad=("spam",)):
    truth = rng.choice(["a", "b", "tie"], size=n_items)
    records = []
    for i, t in enumerate(truth):
        for r in range(good):
            lab = t if rng.random() < accuracy else rng.choice(["a", "b", "tie"])
            records.append((i, f"good{r}", lab))
        for name in bad:
            records.append((i, name, rng.choice(["a", "b", "tie"])))
    return records


def test_annotator_report_flags_the_random_clicker():
    records = noisy_annotations(np.random.default_rng(1))
    report = {r["annotator"]: r for r in stats.annotator_report(records)}
    assert [name for name, r in report.items() if r["flag"]] == ["spam"]
    assert report["spam"]["agreement"] < 0.5 < report["good0"]["agreement"]
    assert report["good0"]["n"] == 120


def test_annotator_report_kappa_matches_sklearn_against_leave_one_out_majority():
    records = noisy_annotations(np.random.default_rng(2), n_items=40, good=3, accuracy=0.7, bad=())
    labels = {(i, a): lab for i, a, lab in records}
    for row in stats.annotator_report(records):
        mine, majority = [], []
        for i in range(40):
            others = [labels[i, a] for a in ("good0", "good1", "good2") if a != row["annotator"]]
            counts = sorted(((others.count(x), x) for x in set(others)), reverse=True)
            if len(counts) == 1 or counts[0][0] > counts[1][0]:
                mine.append(labels[i, row["annotator"]])
                majority.append(counts[0][1])
        assert row["n_compared"] == len(mine)
        assert close(row["agreement"], np.mean(np.array(mine) == np.array(majority)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = cohen_kappa_score(mine, majority)
        assert close(row["kappa"], want)
        assert row["flag"] is None


def test_judge_agreement_counts_every_judge_human_pair():
    humans = [(1, "h1", "a"), (1, "h2", "a"), (1, "h3", "b"), (2, "h1", "tie"), (2, "h2", "b"), (3, "h1", "b")]
    got = stats.judge_agreement(humans, {1: "a", 2: "b", 3: "a", 99: "a"})
    assert got["n_pairs"] == 6 and got["n_items"] == 3
    assert got["percent_agreement"] == pytest.approx(3 / 6)
    assert got["percent_agreement_without_ties"] == pytest.approx(3 / 5)
    assert got["n_majority"] == 2  # item 2 is split 1-1
    assert got["majority_agreement"] == pytest.approx(1 / 2)


# ---------------------------------------------------------------- win rates

def test_win_rates_counts_intervals_and_seed():
    labels = ["a"] * 600 + ["b"] * 250 + ["tie"] * 100 + ["both_bad"] * 50
    got = stats.win_rates(labels, n_boot=1000, seed=3)
    assert got["counts"] == {"a": 600, "b": 250, "tie": 150, "both_bad": 50}
    assert (got["win"], got["tie"], got["loss"]) == pytest.approx((0.6, 0.15, 0.25))
    assert got["win_rate_ties_half"] == pytest.approx(0.6 + 0.075)
    for key in ("win", "tie", "loss", "win_rate_ties_half"):
        low, high = got["ci"][key]
        assert low <= got[key] <= high
    for key in ("win", "tie", "loss"):  # percentile bootstrap ~ normal interval at n = 1000
        p = got[key]
        half = 1.96 * math.sqrt(p * (1 - p) / 1000)
        assert got["ci"][key] == pytest.approx([p - half, p + half], abs=0.01)
    assert stats.win_rates(labels, n_boot=1000, seed=3) == got
    assert stats.win_rates(labels, n_boot=1000, seed=4)["ci"] != got["ci"]


def test_win_rates_edge_cases():
    assert stats.win_rates([])["win"] is None
    one = stats.win_rates(["a"])
    assert one["win"] == 1.0 and one["ci"]["win"] == [1.0, 1.0]
    all_a = stats.win_rates(["a"] * 20, n_boot=200)
    assert all_a["ci"]["win"] == [1.0, 1.0] and all_a["ci"]["loss"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="left"):
        stats.win_rates(["a", "left"])


# ---------------------------------------------------------------- Bradley-Terry

def simulate(rng, strengths, n):
    models = list(strengths)
    out = []
    for _ in range(n):
        x, y = rng.choice(models, size=2, replace=False)
        p = 1 / (1 + 10 ** ((strengths[y] - strengths[x]) / 400))
        u = rng.random()
        out.append((x, y, "tie" if abs(u - p) < 0.05 else ("x" if u < p else "y")))
    return out


def test_bradley_terry_recovers_planted_order_and_matches_glm():
    strengths = {"m1": 1200, "m2": 1100, "m3": 1000, "m4": 700}
    comps = simulate(np.random.default_rng(5), strengths, 1500)
    got = stats.bradley_terry(comps, n_boot=60, seed=0)
    assert [r["model"] for r in got] == ["m1", "m2", "m3", "m4"]
    assert np.mean([r["rating"] for r in got]) == pytest.approx(1000)
    for r in got:
        assert r["ci_low"] <= r["rating"] <= r["ci_high"]
        assert r["n"] == sum(r["model"] in (x, y) for x, y, _ in comps)
    # Oracle: unpenalised binomial GLM (statsmodels) with ties as two half-weighted rows.
    models = sorted(strengths)
    rows, ys, ws = [], [], []
    for x, y, o in comps:
        v = np.zeros(len(models))
        v[models.index(x)], v[models.index(y)] = 1, -1
        for yy, ww in ([(1, .5), (0, .5)] if o == "tie" else [(int(o == "x"), 1.)]):
            rows.append(v[1:])  # m1 is the reference (strength 0)
            ys.append(yy)
            ws.append(ww)
    fit = sm.GLM(np.array(ys), np.array(rows), family=sm.families.Binomial(), var_weights=np.array(ws)).fit()
    elo = np.concatenate([[0.0], fit.params]) * 400 / math.log(10)
    elo = elo - elo.mean() + 1000
    ours = {r["model"]: r["rating"] for r in got}
    assert [ours[m] for m in models] == pytest.approx(list(elo), abs=3.0)


def test_bradley_terry_perfect_winner_gets_top_finite_rating():
    rng = np.random.default_rng(6)
    comps = [(x, y, o) for x, y, o in simulate(rng, {"b": 1000, "c": 1000, "d": 950}, 300)]
    comps += [("champ", m, "x") for m in "bcd" for _ in range(20)] + [(m, "champ", "y") for m in "bcd" for _ in range(5)]
    got = stats.bradley_terry(comps, n_boot=30, seed=1)
    assert got[0]["model"] == "champ" and math.isfinite(got[0]["rating"])
    assert got[0]["rating"] > got[1]["rating"] + 200
    assert got[0]["ci_low"] <= got[0]["rating"] <= got[0]["ci_high"]


def test_bradley_terry_rejects_bad_input():
    with pytest.raises(ValueError, match="outcome"):
        stats.bradley_terry([("a", "b", "left")], n_boot=0)
    with pytest.raises(ValueError, match="itself"):
        stats.bradley_terry([("a", "a", "x")], n_boot=0)


# ---------------------------------------------------------------- position bias

def test_position_bias_detects_planted_left_preference():
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(500):
        a_on_left = bool(rng.random() < 0.5)
        u = rng.random()
        if u < 0.1:
            rows.append(("tie", a_on_left))
            continue
        left_wins = u < 0.1 + 0.9 * 0.7  # the left response wins 70% of decided items
        rows.append(("a" if left_wins == a_on_left else "b", a_on_left))
    got = stats.position_bias(rows)
    left = sum(1 for lab, al in rows if (lab == "a") == al and lab != "tie")
    decided = sum(1 for lab, _ in rows if lab != "tie")
    assert (got["left_wins"], got["n"], got["n_ties"]) == (left, decided, 500 - decided)
    assert got["p_value"] == pytest.approx(sps.binomtest(left, decided).pvalue)
    assert got["p_value"] < 1e-6 and 0.6 < got["left_win_rate"] < 0.8
    assert got["ci"][0] <= got["left_win_rate"] <= got["ci"][1]


def test_position_bias_absent_when_sides_are_random():
    rng = np.random.default_rng(8)
    rows = [(str(rng.choice(["a", "b"], p=[0.8, 0.2])), bool(rng.random() < 0.5)) for _ in range(400)]
    got = stats.position_bias(rows)  # model a is much better, but it is shown left half the time
    assert got["p_value"] > 0.01
    assert stats.position_bias([("tie", True)])["p_value"] is None
