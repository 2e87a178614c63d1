"""Agreement and win-rate statistics for pairwise human (or LLM) judgments.

What it does: inter-annotator agreement (percent agreement in MT-bench's convention,
Cohen's kappa per annotator pair, Fleiss' kappa, Krippendorff's alpha), per-annotator
leave-one-out agreement with a flag, win rates with bootstrap intervals, Bradley-Terry
(Elo-scale) ratings with bootstrap intervals, and a left/right position-bias test.
The statistics come from scikit-learn, statsmodels, krippendorff and scipy; this module
only shapes the data for them and turns their NaN on degenerate input into None.

What it does not do: read files (see `wizardlab.evaluation.formats`), touch the store, or
print. Every function takes plain Python rows and returns plain dicts/lists (JSON-ready:
floats or None, never NaN). Randomness comes only from `np.random.default_rng(seed)`.

Label conventions: a judgment label is any hashable; the string "tie" (any case) is a tie.
In model terms (win rates, ratings, position bias) "a" means the first model of the pair
wins, "b" the second, "tie" a tie, and "both_bad" counts as a tie.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence

import krippendorff
import numpy as np
import pandas as pd
from scipy import sparse
from scipy import stats as sps
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats import inter_rater

TIE = "tie"
ELO_SCALE = 400.0 / math.log(10.0)
ELO_ANCHOR = 1000.0
FLAG_P_VALUE = 0.01
FLAG_MIN_GAP = 0.10
FLAG_MIN_SHARED = 5

AGREEMENT_KEYS = (
    "n_items", "n_annotators", "n_judgments", "percent_agreement",
    "percent_agreement_without_ties", "cohen_kappa_pairs", "cohen_kappa_mean",
    "fleiss_kappa", "krippendorff_alpha",
)


# ---------------------------------------------------------------- helpers

def is_tie(label) -> bool:
    """True for the tie label: the string "tie" in any case, or "both_bad"."""
    return isinstance(label, str) and label.strip().lower() in (TIE, "both_bad")


def _num(x) -> float | None:
    """A float, or None where the statistic is undefined (NaN, inf, None)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _py(x):
    """A numpy scalar (as pandas hands back) -> the plain Python value, for JSON."""
    return x.item() if isinstance(x, np.generic) else x


def _quiet(fn, *args, **kwargs) -> float | None:
    """Call a library statistic; NaN, a zero division or a degenerate-domain ValueError -> None."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return _num(fn(*args, **kwargs))
        except (ValueError, ZeroDivisionError):
            return None


def judgments_frame(records: Iterable[Sequence]) -> pd.DataFrame:
    """(item, annotator, label) rows -> DataFrame with columns item, annotator, label and
    integer codes item_id, ann_id, code (first-appearance order; ties share one code).

    Codes keep pandas away from the raw values, which may be any hashable (tuples too).
    Raises ValueError on a row that is not a triple, a None/NaN in it, or an annotator
    judging the same item twice.
    """
    rows = [tuple(r) for r in records]
    if any(len(r) != 3 for r in rows):
        raise ValueError("each record must be (item, annotator, label)")
    df = pd.DataFrame({
        "item": pd.Series([r[0] for r in rows], dtype=object),
        "annotator": pd.Series([r[1] for r in rows], dtype=object),
        "label": pd.Series([TIE if is_tie(r[2]) else r[2] for r in rows], dtype=object),
    })
    missing = df[["item", "annotator", "label"]].isna().any(axis=1)
    if missing.any():
        raise ValueError(f"record {int(missing.idxmax()) + 1} has no item, annotator or label (None/NaN)")
    for col, code in (("item", "item_id"), ("annotator", "ann_id"), ("label", "code")):
        df[code] = pd.factorize(df[col])[0].astype(np.int64)
    dup = df.duplicated(["item_id", "ann_id"])
    if dup.any():
        item, annotator = df.loc[dup, ["item", "annotator"]].iloc[0]
        raise ValueError(f"annotator {annotator!r} judged item {item!r} more than once")
    return df


def _counts(df: pd.DataFrame) -> pd.DataFrame:
    """items x label codes table of how many judgments gave each label."""
    return pd.crosstab(df["item_id"], df["code"])


# ---------------------------------------------------------------- agreement

def _pair_agreement(counts: np.ndarray) -> float | None:
    """Share of agreeing pairs among all pairs of judgments of the same item (pooled)."""
    n = counts.sum(axis=1)
    total = (n * (n - 1) / 2).sum()
    agree = (counts * (counts - 1) / 2).sum()
    return float(agree / total) if total else None


def percent_agreement(df: pd.DataFrame) -> tuple[float | None, float | None]:
    """MT-bench percent agreement, with and without ties.

    Convention (Zheng et al. 2023, "Judging LLM-as-a-judge", human-human agreement):
    take every pair of judgments of the same item by two different annotators, count the
    pair as agreeing when the labels are equal, and average over all such pairs of all
    items (items with more raters weigh more: an item with k raters gives k(k-1)/2 pairs).
    "Without ties" drops every pair in which either vote is a tie.
    """
    if df.empty:
        return None, None
    counts = _counts(df)
    with_ties = _pair_agreement(counts.to_numpy())
    tie_codes = df.loc[df["label"] == TIE, "code"].unique()
    no_tie = counts.drop(columns=tie_codes)
    return with_ties, _pair_agreement(no_tie.to_numpy())


def cohen_kappa_pairs(df: pd.DataFrame, min_shared: int = 2) -> list[dict]:
    """Cohen's kappa (sklearn) for every annotator pair sharing >= `min_shared` items.

    Returns [{a, b, n, kappa}] with a < b in first-appearance order; kappa is None where
    sklearn gives NaN (both annotators used a single, identical label throughout).
    """
    wide = df.pivot(index="item_id", columns="ann_id", values="code")
    mask = wide.notna().to_numpy()
    values = wide.to_numpy()
    names = pd.unique(df["annotator"])  # ann_id k is names[k]; columns are sorted ann_ids
    shared = mask.T.astype(np.int64) @ mask.astype(np.int64)
    out = []
    for i, j in itertools.combinations(range(len(names)), 2):
        n = int(shared[i, j])
        if n < min_shared:
            continue
        both = mask[:, i] & mask[:, j]
        kappa = _quiet(cohen_kappa_score, values[both, i].astype(int), values[both, j].astype(int))
        out.append({"a": _py(names[i]), "b": _py(names[j]), "n": n, "kappa": kappa})
    return out


def fleiss(df: pd.DataFrame) -> float | None:
    """Fleiss' kappa (statsmodels), only when every item has the same number (>= 2) of raters."""
    per_item = df.groupby("item_id").size()
    if per_item.empty or per_item.nunique() != 1 or per_item.iloc[0] < 2:
        return None
    table = _counts(df).to_numpy()
    return _quiet(inter_rater.fleiss_kappa, table, method="fleiss")


def krippendorff_alpha(df: pd.DataFrame) -> float | None:
    """Krippendorff's alpha, nominal (krippendorff package); items with one rating drop out."""
    if df.empty:
        return None
    counts = _counts(df).to_numpy()
    return _quiet(krippendorff.alpha, value_counts=counts, level_of_measurement="nominal")


def agreement(records: Iterable[Sequence]) -> dict:
    """Inter-annotator agreement of (item, annotator, label) records, any hashable labels.

    Returns exactly the keys of AGREEMENT_KEYS: n_items, n_annotators, n_judgments,
    percent_agreement and percent_agreement_without_ties (MT-bench convention, see
    `percent_agreement`), cohen_kappa_pairs ([{a, b, n, kappa}] for pairs sharing >= 2
    items), cohen_kappa_mean (unweighted mean of the defined pair kappas), fleiss_kappa
    (None unless every item has the same number >= 2 of raters) and krippendorff_alpha
    (nominal, missing cells allowed). Undefined statistics are None, never NaN.

    >>> agreement([(1, "x", "a"), (1, "y", "a")])["percent_agreement"]
    1.0
    """
    df = judgments_frame(records)
    pct, pct_no_ties = percent_agreement(df)
    pairs = cohen_kappa_pairs(df) if not df.empty else []
    kappas = [p["kappa"] for p in pairs if p["kappa"] is not None]
    return {
        "n_items": int(df["item_id"].nunique()),
        "n_annotators": int(df["ann_id"].nunique()),
        "n_judgments": int(len(df)),
        "percent_agreement": pct,
        "percent_agreement_without_ties": pct_no_ties,
        "cohen_kappa_pairs": pairs,
        "cohen_kappa_mean": float(np.mean(kappas)) if kappas else None,
        "fleiss_kappa": fleiss(df),
        "krippendorff_alpha": krippendorff_alpha(df),
    }


def judge_agreement(records: Iterable[Sequence], judge: dict) -> dict:
    """Agreement of one judge (e.g. GPT-4) with human annotators, MT-bench style.

    records: human (item, annotator, label); judge: item -> the judge's label. Every
    (judge vote, human vote) pair on the same item counts once (MT-bench's "GPT-4 vs
    human"), with and without ties (a pair drops when either vote is a tie). Also the
    judge vs the humans' strict majority label per item (items with a split top vote
    drop): share equal and sklearn Cohen's kappa. Returns {n_items, n_pairs,
    percent_agreement, percent_agreement_without_ties, n_majority, majority_agreement,
    majority_kappa}; undefined figures are None.
    """
    df = judgments_frame(records)
    norm = {k: (TIE if is_tie(v) else v) for k, v in judge.items()}
    df = df[df["item"].map(lambda i: i in norm)].copy()
    df["judge"] = df["item"].map(norm)
    equal = df["label"] == df["judge"]
    no_tie = (df["label"] != TIE) & (df["judge"] != TIE)
    majority = _majority_labels(df)
    hits = [norm[i] == lab for i, lab in majority.items()]
    kappa = None
    if len(majority) >= 2:
        kappa = _quiet(cohen_kappa_score, [str(norm[i]) for i in majority], [str(v) for v in majority.values()])
    return {
        "n_items": int(df["item_id"].nunique()), "n_pairs": int(len(df)),
        "percent_agreement": float(equal.mean()) if len(df) else None,
        "percent_agreement_without_ties": float(equal[no_tie].mean()) if no_tie.any() else None,
        "n_majority": len(majority),
        "majority_agreement": float(np.mean(hits)) if hits else None,
        "majority_kappa": kappa,
    }


def _majority_labels(df: pd.DataFrame) -> dict:
    """item -> its strict majority label (items whose top vote is split are left out)."""
    out = {}
    for _, group in df.groupby("item_id"):
        counts = group["label"].value_counts()
        if len(counts) == 1 or counts.iloc[0] > counts.iloc[1]:
            out[group["item"].iloc[0]] = counts.index[0]
    return out


# ---------------------------------------------------------------- annotators

def leave_one_out_majority(df: pd.DataFrame) -> pd.Series:
    """For each judgment, the code of the strict majority label among the OTHER annotators
    of its item; -1 where there are no others or their vote is split evenly at the top."""
    counts = _counts(df)
    cols = {c: k for k, c in enumerate(counts.columns)}
    item_counts = counts.loc[df["item_id"]].to_numpy().copy()
    own = df["code"].map(cols).to_numpy()
    item_counts[np.arange(len(df)), own] -= 1
    best = item_counts.max(axis=1)
    unique_top = (item_counts == best[:, None]).sum(axis=1) == 1
    majority = counts.columns.to_numpy()[item_counts.argmax(axis=1)]
    return pd.Series(np.where((best > 0) & unique_top, majority, -1), index=df.index)


def _flag(k: int, n: int, others_rate: float | None) -> tuple[str | None, float | None]:
    """The flag rule: 'low_agreement' when the annotator agrees with the others' majority
    significantly less often than the other annotators do (one-sided exact binomial test
    against the others' pooled rate, p < FLAG_P_VALUE) AND by at least FLAG_MIN_GAP, on at
    least FLAG_MIN_SHARED compared items."""
    if others_rate is None or n < FLAG_MIN_SHARED:
        return None, None
    p = float(sps.binomtest(k, n, p=min(max(others_rate, 1e-9), 1.0), alternative="less").pvalue)
    low = p < FLAG_P_VALUE and k / n < others_rate - FLAG_MIN_GAP
    return ("low_agreement" if low else None), p


def annotator_report(records: Iterable[Sequence]) -> list[dict]:
    """Per annotator: agreement with the leave-one-out majority of the other annotators.

    Returns [{annotator, n, n_compared, agreement, kappa, p_value, flag}] in order of
    first appearance. n = judgments by the annotator; n_compared = those on items where
    the other annotators have a strict majority label; agreement = share equal to that
    majority; kappa = sklearn Cohen's kappa of the annotator vs that majority (None if
    undefined or n_compared < 2); flag = "low_agreement" or None, see `_flag` (the
    others' rate is the pooled agreement of all other annotators with their own
    leave-one-out majorities).
    """
    df = judgments_frame(records)
    if df.empty:
        return []
    df["majority"] = leave_one_out_majority(df)
    df["compared"] = df["majority"] >= 0
    df["hit"] = df["compared"] & (df["code"] == df["majority"])
    total_k, total_n = int(df["hit"].sum()), int(df["compared"].sum())
    names = pd.unique(df["annotator"])
    return [_annotator_row(names[a], mine, total_k, total_n) for a, mine in df.groupby("ann_id")]


def _annotator_row(annotator, mine: pd.DataFrame, total_k: int, total_n: int) -> dict:
    """One annotator's line of `annotator_report` (mine = that annotator's judgments)."""
    cmp = mine[mine["compared"]]
    k, n = int(cmp["hit"].sum()), len(cmp)
    others_n = total_n - n
    others_rate = (total_k - k) / others_n if others_n else None
    kappa = _quiet(cohen_kappa_score, cmp["code"].to_numpy(), cmp["majority"].to_numpy()) if n >= 2 else None
    flag, p = _flag(k, n, others_rate)
    return {"annotator": _py(annotator), "n": len(mine), "n_compared": n,
            "agreement": k / n if n else None, "kappa": kappa, "p_value": p, "flag": flag}


# ---------------------------------------------------------------- win rates

def _model_label(label) -> str:
    if is_tie(label):
        return TIE
    if label in ("a", "b"):
        return label
    raise ValueError(f"label {label!r} is not one of a, b, tie, both_bad")


def _rates(codes: np.ndarray, axis: int = -1) -> np.ndarray:
    """codes 0=a, 1=tie, 2=b -> [win_a, tie, win_b, a_with_ties_as_half] along `axis`."""
    a, t, b = ((codes == k).mean(axis=axis) for k in range(3))
    return np.stack([a, t, b, a + t / 2])


def win_rates(labels: Iterable, n_boot: int = 2000, seed: int = 0) -> dict:
    """Win/tie/loss rates of model a vs model b, with 95% percentile bootstrap intervals.

    labels: one per item, "a", "b", "tie" or "both_bad" (counted as a tie). Intervals come
    from scipy.stats.bootstrap (percentile method) resampling items with
    np.random.default_rng(seed). Returns {n, counts{a, b, tie, both_bad}, win, tie, loss,
    win_rate_ties_half, ci{win, tie, loss, win_rate_ties_half: [low, high]}} where win =
    share of items model a wins, loss = share model b wins, and win_rate_ties_half =
    (wins + ties/2) / n, the papers' "win rate" (both_bad included in ties). With no
    labels every rate and interval is None.
    """
    raw = list(labels)
    mapped = [_model_label(x) for x in raw]
    counts = {k: mapped.count(k) for k in ("a", "b", TIE)}
    counts["both_bad"] = sum(1 for x in raw if isinstance(x, str) and x.strip().lower() == "both_bad")
    names = ("win", "tie", "loss", "win_rate_ties_half")
    result = {"n": len(mapped), "counts": counts}
    if not mapped:
        return {**result, **dict.fromkeys(names), "ci": dict.fromkeys(names)}
    codes = np.array([{"a": 0, TIE: 1, "b": 2}[x] for x in mapped])
    point = _rates(codes)
    if len(codes) > 1:
        boot = sps.bootstrap((codes,), _rates, n_resamples=n_boot, method="percentile",
                             vectorized=True, rng=np.random.default_rng(seed))
        lows, highs = boot.confidence_interval.low, boot.confidence_interval.high
    else:
        lows = highs = point
    result.update({k: float(v) for k, v in zip(names, point)})
    result["ci"] = {k: [float(lo), float(hi)] for k, lo, hi in zip(names, lows, highs)}
    return result


# ---------------------------------------------------------------- Bradley-Terry

def _bt_design(groups: list[tuple], models: list[str]) -> tuple[np.ndarray, ...]:
    """Logistic-regression rows for distinct (model_x, model_y, outcome) groups: +1 for x,
    -1 for y; y=1 when x wins. A tie becomes two rows of weight 1/2, one won by each side
    (a tie counts as half a win). Also returns, per row, the index of its group, so that
    a group's count (how many comparisons it holds) multiplies its rows' weights."""
    index = {m: i for i, m in enumerate(models)}
    X, y, w, owner = [], [], [], []
    for k, (mx, my, outcome) in enumerate(groups):
        row = np.zeros(len(models))
        row[index[mx]], row[index[my]] = 1.0, -1.0
        wins = [(1, 0.5), (0, 0.5)] if outcome == TIE else [(int(outcome == "x"), 1.0)]
        for yy, ww in wins:
            X.append(row)
            y.append(yy)
            w.append(ww)
            owner.append(k)
    return np.array(X), np.array(y), np.array(w), np.array(owner)


def _bt_fit(X: np.ndarray, y: np.ndarray, w: np.ndarray, C: float) -> np.ndarray:
    """Elo-scale ratings (mean ELO_ANCHOR) from one L2-regularised logistic fit.

    The data are fitted together with their mirror image (-X, 1-y): the model has no
    intercept, so the estimate is unchanged, and both classes are always present even
    when one side won everything. Doubling the data doubles the loss, hence C / 2.
    """
    keep = w > 0
    X, y, w = X[keep], y[keep], w[keep]
    model = LogisticRegression(fit_intercept=False, C=C / 2, solver="newton-cholesky", tol=1e-8, max_iter=200)
    mirrored = sparse.csr_matrix(np.vstack([X, -X]))  # sparse: ~10x faster with many models
    model.fit(mirrored, np.concatenate([y, 1 - y]), sample_weight=np.concatenate([w, w]))
    strength = model.coef_[0] * ELO_SCALE
    return strength - strength.mean() + ELO_ANCHOR


def bradley_terry(comparisons: Iterable[Sequence], n_boot: int = 200, seed: int = 0,
                  C: float = 100.0) -> list[dict]:
    """Bradley-Terry ratings on the Elo scale with 95% bootstrap intervals.

    comparisons: (model_x, model_y, outcome) with outcome "x", "y" or "tie" ("both_bad"
    counts as a tie); a tie is half a win for each side. Fit: sklearn LogisticRegression
    without intercept on +1/-1 model indicators, with a weak L2 penalty (C=100, i.e. a
    Gaussian prior of sd 10 on the natural-log strength) so that a model that wins every
    comparison gets a large but finite rating. Ratings = 400/ln(10) x log-strength,
    shifted to mean 1000. Intervals: percentiles of n_boot refits on comparisons resampled
    with replacement (np.random.default_rng(seed)), each anchored to mean 1000 as well.
    Returns [{model, rating, ci_low, ci_high, n}] sorted by rating, best first
    (n = comparisons involving the model).
    """
    rows = _bt_rows(comparisons)
    models = sorted({m for x, yy, _ in rows for m in (x, yy)})
    groups, group_of = np.unique(np.array(rows, dtype=str), axis=0, return_inverse=True)
    group_of = group_of.ravel()
    X, y, w, owner = _bt_design([tuple(g) for g in groups], models)
    point = _bt_fit(X, y, w * np.bincount(group_of, minlength=len(groups))[owner], C)
    rng = np.random.default_rng(seed)
    boots = [point]
    if n_boot:  # a resample = each distinct group weighted by how often its comparisons were drawn
        draws = (np.bincount(group_of[rng.integers(0, len(rows), len(rows))], minlength=len(groups))
                 for _ in range(n_boot))
        boots = [_bt_fit(X, y, w * d[owner], C) for d in draws]
    low, high = np.percentile(np.array(boots), [2.5, 97.5], axis=0)
    n = {m: sum(1 for x, yy, _ in rows if m in (x, yy)) for m in models}
    out = [{"model": m, "rating": float(point[i]), "ci_low": float(low[i]), "ci_high": float(high[i]),
            "n": n[m]} for i, m in enumerate(models)]
    return sorted(out, key=lambda r: -r["rating"])


def _bt_rows(comparisons: Iterable[Sequence]) -> list[tuple[str, str, str]]:
    """Validated (model_x, model_y, outcome) rows; both_bad -> tie; ValueError otherwise."""
    rows = [(str(x), str(yy), TIE if is_tie(o) else o) for x, yy, o in comparisons]
    bad = [o for _, _, o in rows if o not in ("x", "y", TIE)]
    if bad:
        raise ValueError(f"outcome {bad[0]!r} is not one of x, y, tie")
    if any(x == yy for x, yy, _ in rows):
        raise ValueError("a model cannot be compared with itself")
    if len({m for x, yy, _ in rows for m in (x, yy)}) < 2:
        raise ValueError("Bradley-Terry needs comparisons between at least 2 models")
    return rows


# ---------------------------------------------------------------- proportions

def proportion(k: int, n: int) -> dict:
    """k successes of n as {k, n, rate, ci: [low, high]} (Wilson, 95%, scipy); rate and ci None when n == 0."""
    if not n:
        return {"k": int(k), "n": 0, "rate": None, "ci": None}
    ci = sps.binomtest(int(k), int(n), p=0.5).proportion_ci(confidence_level=0.95, method="wilson")
    return {"k": int(k), "n": int(n), "rate": k / n, "ci": [float(ci.low), float(ci.high)]}


# ---------------------------------------------------------------- position bias

def position_bias(rows: Iterable[Sequence]) -> dict:
    """How often the response shown on the LEFT wins, ties excluded.

    rows: (label_in_model_terms, a_on_left) with label "a", "b", "tie" or "both_bad".
    The left response wins when (label == "a" and a_on_left) or (label == "b" and not
    a_on_left). Returns {n, n_ties, left_wins, left_win_rate, ci: [low, high] (Wilson,
    95%), p_value} where p_value is scipy.stats.binomtest(left_wins, n, 0.5) two-sided;
    rate, interval and p_value are None when every row is a tie.
    """
    left_wins = n = ties = 0
    for label, a_on_left in rows:
        label = _model_label(label)
        if label == TIE:
            ties += 1
            continue
        n += 1
        left_wins += int((label == "a") == bool(a_on_left))
    out = {"n": n, "n_ties": ties, "left_wins": left_wins}
    if not n:
        return {**out, "left_win_rate": None, "ci": None, "p_value": None}
    test = sps.binomtest(left_wins, n, p=0.5)
    ci = test.proportion_ci(confidence_level=0.95, method="wilson")
    return {**out, "left_win_rate": left_wins / n, "ci": [float(ci.low), float(ci.high)],
            "p_value": float(test.pvalue)}


# ---------------------------------------------------------------- paired test between two models

def paired_sign_test(pairs: Iterable[Sequence]) -> dict:
    """Exact two-sided sign test for paired judgments of models x and y on the same items.

    pairs: one (score_x, score_y) per item, where a score is what the model earned on that
    item (e.g. 1 win, 0.5 tie, 0 loss; against each other, or each against a common
    baseline). Items with equal scores are dropped (the sign test's convention); the rest
    go to scipy.stats.binomtest(x_better, n, 0.5). Returns {n_items, n_untied, x_better,
    y_better, p_value (None without untied items), test}.
    """
    rows = [(float(a), float(b)) for a, b in pairs]
    x_better = sum(1 for a, b in rows if a > b)
    y_better = sum(1 for a, b in rows if a < b)
    n = x_better + y_better
    p = float(sps.binomtest(x_better, n, p=0.5).pvalue) if n else None
    return {"n_items": len(rows), "n_untied": n, "x_better": x_better, "y_better": y_better, "p_value": p,
            "test": "exact sign test (two-sided binomial, equal scores dropped)"}


# ---------------------------------------------------------------- judgment level (the paper's figure)

def vote_rates(per_item: Iterable[Iterable], n_boot: int = 2000, seed: int = 0) -> dict:
    """Win/tie/loss over ALL judgments (every vote of every item counts once), as the
    WizardLM paper counts its human evaluation, with 95% item-cluster bootstrap intervals.

    per_item: one list of labels ("a", "b", "tie", "both_bad") per item. Votes on the same
    item are not independent, so the bootstrap resamples whole items (with all their votes)
    with np.random.default_rng(seed) and takes percentiles of the pooled rates. Returns
    {n, n_items, counts{a, b, tie, both_bad}, win, tie, loss, win_rate_ties_half,
    ci{win, tie, loss, win_rate_ties_half: [low, high]}}; with no votes the rates and
    intervals are None.
    """
    raw = [list(labels) for labels in per_item]
    raw = [labels for labels in raw if labels]
    flat = [x for labels in raw for x in labels]
    mapped = [_model_label(x) for x in flat]
    counts = {k: mapped.count(k) for k in ("a", "b", TIE)}
    counts["both_bad"] = sum(1 for x in flat if isinstance(x, str) and x.strip().lower() == "both_bad")
    names = ("win", "tie", "loss", "win_rate_ties_half")
    result = {"n": len(mapped), "n_items": len(raw), "counts": counts}
    if not mapped:
        return {**result, **dict.fromkeys(names), "ci": dict.fromkeys(names)}
    table = np.array([[sum(_model_label(x) == k for x in labels) for k in ("a", TIE, "b")] for labels in raw],
                     dtype=float)
    point = _pooled(table[None, :, :])[:, 0]
    if len(raw) > 1 and n_boot:
        rng = np.random.default_rng(seed)
        boots = _pooled(table[rng.integers(0, len(raw), (n_boot, len(raw)))])
        lows, highs = np.percentile(boots, [2.5, 97.5], axis=1)
    else:
        lows = highs = point
    result.update({k: float(v) for k, v in zip(names, point)})
    result["ci"] = {k: [float(lo), float(hi)] for k, lo, hi in zip(names, lows, highs)}
    return result


def _pooled(tables: np.ndarray) -> np.ndarray:
    """(resamples, items, [a, tie, b]) vote counts -> [win, tie, loss, win + tie/2] x resamples."""
    sums = tables.sum(axis=1)
    a, t, b = (sums[:, k] / sums.sum(axis=1) for k in range(3))
    return np.stack([a, t, b, a + t / 2])


# ---------------------------------------------------------------- capacity ratio (score mode)

def capacity_ratio(scores: Iterable[Sequence], n_boot: int = 2000, seed: int = 0) -> dict:
    """Vicuna's / WizardLM's "capacity": total score of model a over total score of model b.

    scores: (score_a, score_b) per item, e.g. GPT-4's 1-10 scores of both answers in one
    review. The ratio is sum(score_a) / sum(score_b) over the items (Vicuna's "relative
    response quality"; the WizardLM paper's "% of ChatGPT's capacity" per skill). Interval:
    95% percentile bootstrap over items (np.random.default_rng(seed)). Returns {n,
    total_a, total_b, mean_a, mean_b, ratio, ci: [low, high]}; ratio and ci are None with
    no items or a zero total for b.
    """
    arr = np.array([(float(a), float(b)) for a, b in scores], dtype=float).reshape(-1, 2)
    n = len(arr)
    out = {"n": n, "total_a": float(arr[:, 0].sum()), "total_b": float(arr[:, 1].sum()),
           "mean_a": float(arr[:, 0].mean()) if n else None, "mean_b": float(arr[:, 1].mean()) if n else None}
    if not n or out["total_b"] == 0:
        return {**out, "ratio": None, "ci": None}
    ratio = out["total_a"] / out["total_b"]
    ci = [ratio, ratio]
    if n > 1 and n_boot:
        idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
        sums = arr[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            boots = sums[:, 0] / sums[:, 1]
        boots = boots[np.isfinite(boots)]
        ci = [float(x) for x in np.percentile(boots, [2.5, 97.5])] if len(boots) else [None, None]
    return {**out, "ratio": float(ratio), "ci": ci}


def wilson_width(successes: float, n: int) -> float:
    """Width of the 95% Wilson interval of a proportion (statsmodels; successes may be fractional,
    e.g. ties counted half)."""
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(successes, n, alpha=0.05, method="wilson")
    return float(hi - lo)
