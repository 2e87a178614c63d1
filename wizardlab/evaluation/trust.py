"""How far a pairwise verdict can be trusted: length/style control, fragility, sample size.

What it does (plain rows in, JSON-ready dicts out, like `stats`):

- `length_controlled`: the win rate with answer length and markdown held equal. A
  logistic model of the verdict (a wins = 1, b wins = 0, a tie = half of each) on the
  length difference (AlpacaEval's `tanh(delta / sd(delta))`, words) and the normalised
  differences of markdown headers, list items and bold spans (Chatbot Arena's style
  control), with a weak L2 penalty (C=100, as Bradley-Terry here): scikit-learn's
  LogisticRegression objective, solved by batched Newton steps (`newton_fits`, one
  solve for the fit and all bootstrap refits; equal to scikit-learn's fit in the tests,
  which was 20x slower on campaigns with many small pairs).
  The controlled win rate is the model's win probability at zero difference,
  sigmoid(intercept); interval: 95% bootstrap over items (refits). A warning when the raw
  and the controlled win rate fall on different sides of 50%.
- `fragility`: the smallest number of judgments whose removal makes the leading model
  stop leading, for the per-item majority verdict (exact: a multiple-choice knapsack over
  items, each item offering "make it a tie" and "make it a loss" at a vote cost) and for
  the judgment-level verdict (the vote margin); with the ids of one such set.
- `plan`: how many items and judgments a sign test needs for a given power, from the
  expected margin, tie rate, k and intra-item correlation (normal approximation, design
  effect 1 + (k-1) icc); `simulate_power` checks it by simulation.
- `conclusive`: an anytime-valid "conclusive yet?" on the per-item majority labels: the
  Bayes factor of a uniform-prior binomial against p = 1/2 over the non-tie items, which
  by Ville's inequality may be checked after every judgment with its alpha kept
  (conclusive when BF >= 1/alpha).

What it does not do: touch the store or print (see `report`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import special
from scipy import stats as sps

from wizardlab.evaluation.stats import TIE, _model_label

HEADER = re.compile(r"^\s{0,3}#{1,6}\s", re.M)
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.M)
BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")
FEATURES = ("length", "headers", "lists", "bold")
STYLE_C = 100.0
STYLE_BOOT = 200  # refits are costly: at most this many bootstrap resamples


# ---------------------------------------------------------------- style features

def style_counts(text: str) -> dict:
    """{words, headers, lists, bold} of one answer (markdown counted per line / span).

    >>> style_counts("# Title\\n- one **two**\\n- three")
    {'words': 7, 'headers': 1, 'lists': 2, 'bold': 1}
    """
    return dict(zip(("words", "headers", "lists", "bold"), _counts(text or "")))


@functools.lru_cache(maxsize=65536)
def _counts(text: str) -> tuple[int, int, int, int]:
    """(words, headers, lists, bold) of a text; cached: an item's answers recur in every vote on it."""
    return len(text.split()), len(HEADER.findall(text)), len(LIST_ITEM.findall(text)), len(BOLD.findall(text))


def style_design(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """(answer a, answer b) per row -> feature matrix with the columns of FEATURES:
    tanh((words_a - words_b) / sd) (sd over the rows; 1 when it is 0) and, per markdown
    kind, (count_a - count_b) / (count_a + count_b + 1)."""
    ca = [style_counts(a) for a, _ in pairs]
    cb = [style_counts(b) for _, b in pairs]
    delta = np.array([x["words"] - y["words"] for x, y in zip(ca, cb)], dtype=float)
    sd = delta.std() if len(delta) and delta.std() > 0 else 1.0
    cols = [np.tanh(delta / sd)]
    for kind in FEATURES[1:]:
        cols.append(np.array([(x[kind] - y[kind]) / (x[kind] + y[kind] + 1) for x, y in zip(ca, cb)], dtype=float))
    return np.column_stack(cols) if len(pairs) else np.zeros((0, len(FEATURES)))


def _rows(labels: Sequence[str], X: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Logistic rows: a win y=1, b win y=0, a tie two rows of half weight, one of each."""
    xs, ys, ws = [], [], []
    for label, x, w in zip(labels, X, weights):
        outcomes = [(1, 0.5), (0, 0.5)] if label == TIE else [(int(label == "a"), 1.0)]
        for y, share in outcomes:
            xs.append(x)
            ys.append(y)
            ws.append(w * share)
    return np.array(xs), np.array(ys), np.array(ws)


def fit_style(labels: Sequence[str], X: np.ndarray, weights: np.ndarray | None = None,
              C: float = STYLE_C) -> tuple[float, np.ndarray] | None:
    """(intercept, coefficients) of the penalised logistic fit; None when only one outcome occurs."""
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    Xr, y, w = _rows(labels, X, weights)
    keep = w > 0
    if keep.sum() == 0 or len(set(y[keep])) < 2:
        return None
    beta = newton_fits(Xr[keep], y[keep], w[keep][None, :], C)[0]
    return float(beta[0]), beta[1:].astype(float)


def length_controlled(rows: Iterable[Sequence], n_boot: int = STYLE_BOOT, seed: int = 0) -> dict:
    """Raw and length/style-controlled win rate of model a (ties half), see the module docstring.

    rows: (item, label, answer_a, answer_b), one per judgment ("a", "b", "tie", "both_bad");
    several judgments of one item are resampled together. Returns {n, n_items, raw,
    controlled, ci: [low, high], coefficients {intercept, length, headers, lists, bold},
    warning}; controlled and ci are None when the fit is undefined (one outcome only).
    """
    rows = [(item, _model_label(label), a, b) for item, label, a, b in rows]
    labels = [r[1] for r in rows]
    raw = (sum(x == "a" for x in labels) + sum(x == TIE for x in labels) / 2) / len(labels) if labels else None
    items = list(dict.fromkeys(r[0] for r in rows))
    out = {"n": len(rows), "n_items": len(items), "raw": raw, "controlled": None, "ci": None,
           "coefficients": None, "warning": None}
    X = style_design([(r[2], r[3]) for r in rows])
    fit = fit_style(labels, X)
    if fit is None:
        return out
    intercept, coef = fit
    out["controlled"] = float(special.expit(intercept))
    out["coefficients"] = {"intercept": intercept, **{k: float(c) for k, c in zip(FEATURES, coef)}}
    out["ci"] = _style_ci(rows, labels, X, items, n_boot, seed) or [out["controlled"]] * 2
    if (raw - 0.5) * (out["controlled"] - 0.5) < 0:
        leader = "a" if raw > 0.5 else "b"
        out["warning"] = (f"raw and length-controlled results disagree: model {leader} leads raw "
                          f"({100 * raw:.1f}%) but not once length and markdown are held equal "
                          f"({100 * out['controlled']:.1f}%)")
    return out


def _style_ci(rows, labels, X, items, n_boot: int, seed: int) -> list[float] | None:
    """95% percentile interval of sigmoid(intercept) over item-cluster bootstrap refits (all
    resamples fitted at once by `newton_fits`)."""
    if len(items) < 2 or not n_boot:
        return None
    index = {item: k for k, item in enumerate(items)}
    owner = np.array([index[r[0]] for r in rows])
    rng = np.random.default_rng(seed)
    draws = np.stack([np.bincount(rng.integers(0, len(items), len(items)), minlength=len(items))
                      for _ in range(n_boot)])
    Xr, y, w = _rows(labels, X, np.ones(len(rows)))
    row_owner = np.repeat(owner, [2 if lab == TIE else 1 for lab in labels])
    weights = draws[:, row_owner] * w[None, :]
    both = np.array([((weights * (y == c)).sum(axis=1) > 0) for c in (0, 1)]).all(axis=0)
    if not both.any():
        return None
    intercepts = newton_fits(Xr, y, weights[both])[:, 0]
    return [float(x) for x in np.percentile(special.expit(intercepts), [2.5, 97.5])]


def newton_fits(X: np.ndarray, y: np.ndarray, W: np.ndarray, C: float = STYLE_C, iters: int = 60) -> np.ndarray:
    """Many weighted L2-penalised logistic fits at once (the same objective as scikit-learn's
    LogisticRegression(C): C x weighted log-loss + |coef|^2 / 2, intercept unpenalised), one per
    row of the weights W (resamples x rows). Damped Newton steps; returns [intercept, coef...]
    per resample."""
    Z = np.column_stack([np.ones(len(X)), X])
    penalty = np.eye(Z.shape[1]) / C
    penalty[0, 0] = 0.0
    beta = np.zeros((len(W), Z.shape[1]))
    for _ in range(iters):
        p = special.expit(beta @ Z.T)
        grad = (W * (p - y)) @ Z + beta @ penalty
        hess = np.einsum("bn,ni,nj->bij", W * p * (1 - p), Z, Z) + penalty + 1e-9 * np.eye(Z.shape[1])
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        size = np.linalg.norm(step, axis=1, keepdims=True)
        beta -= step * np.minimum(1.0, 5.0 / np.maximum(size, 1e-12))
        if size.max() < 1e-10:
            break
    return beta


# ---------------------------------------------------------------- fragility

def _item_label(counts: dict) -> str | None:
    """Strict plurality of {a, tie, b} counts (split -> tie); None for an item with no votes."""
    ranked = sorted(counts.values(), reverse=True)
    if ranked[0] == 0:
        return None
    if ranked[0] == ranked[1]:
        return TIE
    return max(counts, key=counts.get)


def _options(votes: list[tuple[object, str]], leader: str) -> list[tuple[int, int, list]]:
    """(cost, gain, judgment ids) ways to lower the leader's per-item margin on one item:
    the leader's item becomes a tie or a loss (gain 1 or 2), a tie becomes a loss (gain 1)."""
    other = "b" if leader == "a" else "a"
    by = {k: [jid for jid, lab in votes if lab == k] for k in ("a", TIE, "b")}
    c = {k: len(v) for k, v in by.items()}
    label = _item_label(c)
    out = []
    if label == leader:  # down to a split with the next label (or no votes left)
        drop = c[leader] - max(c[TIE], c[other])
        out.append((drop, 1, by[leader][:drop]))
    if label in (leader, TIE) and c[other] > 0:  # the other model's votes on top, strictly
        d_lead, d_tie = max(0, c[leader] - c[other] + 1), max(0, c[TIE] - c[other] + 1)
        out.append((d_lead + d_tie, 1 if label == TIE else 2, by[leader][:d_lead] + by[TIE][:d_tie]))
    return out


def fragility(items: dict, max_margin: int = 5000) -> dict:
    """The fewest judgments whose removal makes the leading model stop leading.

    items: item -> [(judgment id, label)] with labels in model terms. Per-item verdict:
    items labelled by strict plurality (split = tie), margin = items a wins - items b wins;
    exact minimum by dynamic programming over items (each offers at most two moves, see
    `_options`). Judgment-level verdict: margin = a votes - b votes, so the minimum is the
    margin itself (remove the leader's votes). Returns {per_item: {leader, margin,
    n_to_flip, judgment_ids}, judgment_level: {leader, margin, n_to_flip}}; leader None and
    n_to_flip 0 when nobody leads.
    """
    votes = {item: [(jid, _model_label(lab)) for jid, lab in vs] for item, vs in items.items()}
    labels = [_item_label({k: sum(lab == k for _, lab in vs) for k in ("a", TIE, "b")}) for vs in votes.values()]
    margin = labels.count("a") - labels.count("b")
    flat = [lab for vs in votes.values() for _, lab in vs]
    vote_margin = flat.count("a") - flat.count("b")
    vote_leader = None if vote_margin == 0 else "a" if vote_margin > 0 else "b"
    level = {"leader": vote_leader, "margin": abs(vote_margin), "n_to_flip": abs(vote_margin)}
    leader = None if margin == 0 else "a" if margin > 0 else "b"
    per_item = {"leader": leader, "margin": abs(margin), "n_to_flip": 0, "judgment_ids": []}
    if leader is not None:
        if abs(margin) > max_margin:
            raise ValueError(f"margin {abs(margin)} is too large for the exact search (max {max_margin})")
        cost, ids = _knapsack([_options(vs, leader) for vs in votes.values()], abs(margin))
        per_item.update(n_to_flip=cost, judgment_ids=ids)
    return {"per_item": per_item, "judgment_level": level}


def _knapsack(options: list[list[tuple[int, int, list]]], need: int) -> tuple[int, list]:
    """Least total cost choosing at most one option per item with total gain >= need; and the
    judgment ids of one optimal choice (back-pointers, no lists copied per state)."""
    best = np.full(need + 1, np.inf)
    best[0] = 0
    back = []  # per item: for each reached gain, (previous gain, option index) or None
    for opts in options:
        new, step = best.copy(), [None] * (need + 1)
        for g in np.flatnonzero(np.isfinite(best)):
            for k, (cost, gain, _) in enumerate(opts):
                h = min(need, int(g) + gain)
                if best[g] + cost < new[h]:
                    new[h], step[h] = best[g] + cost, (int(g), k)
        best = new
        back.append(step)
    ids, g = [], need
    for opts, step in zip(reversed(options), reversed(back)):
        if step[g] is not None:
            g, k = step[g]
            ids += opts[k][2]
    return int(best[need]), ids


# ---------------------------------------------------------------- sample size

def plan(margin: float, tie_rate: float, k: int = 1, *, icc: float = 0.0, alpha: float = 0.05,
         power: float = 0.8) -> dict:
    """Items and judgments a two-sided sign test on all non-tie votes needs to detect `margin`.

    margin = P(a) - P(b) per vote; tie_rate = P(tie); k judgments per item; icc = the
    correlation of two votes on the same item (design effect 1 + (k-1) icc). Normal
    approximation: non-tie votes n = ((z_(1-alpha/2) / 2 + z_power sqrt(p(1-p))) / (p - 1/2))^2
    with p = P(a | not a tie). Returns {p_a, p_b, p_nontie_a, n_nontie_votes, n_judgments,
    n_items, design_effect}.
    """
    if not 0 <= tie_rate < 1 or not 0 < abs(margin) <= 1 - tie_rate:
        raise ValueError("need 0 <= tie_rate < 1 and 0 < |margin| <= 1 - tie_rate")
    if k < 1 or not 0 <= icc <= 1:
        raise ValueError("need k >= 1 and 0 <= icc <= 1")
    pa, pb = (1 - tie_rate + margin) / 2, (1 - tie_rate - margin) / 2
    p = pa / (pa + pb)
    za, zb = sps.norm.ppf(1 - alpha / 2), sps.norm.ppf(power)
    n_nontie = ((za * 0.5 + zb * math.sqrt(p * (1 - p))) / (p - 0.5)) ** 2
    deff = 1 + (k - 1) * icc
    judgments = n_nontie / (1 - tie_rate) * deff
    items = math.ceil(judgments / k)
    return {"p_a": pa, "p_b": pb, "p_nontie_a": p, "n_nontie_votes": math.ceil(n_nontie),
            "design_effect": deff, "n_items": items, "n_judgments": items * k}


def simulate_power(n_items: int, k: int, margin: float, tie_rate: float, *, icc: float = 0.0,
                   alpha: float = 0.05, n_sim: int = 2000, seed: int = 0) -> float:
    """Share of simulated campaigns (n_items x k votes; with probability icc an item's k votes
    are one shared draw, else independent) in which the analysis `plan` assumes rejects
    p = 1/2: a two-sided z test on the non-tie vote share with the design-effect variance."""
    rng = np.random.default_rng(seed)
    probs = [(1 - tie_rate + margin) / 2, tie_rate, (1 - tie_rate - margin) / 2]
    shared = rng.random((n_sim, n_items)) < icc
    common = rng.choice(3, size=(n_sim, n_items), p=probs)
    own = rng.choice(3, size=(n_sim, n_items, k), p=probs)
    votes = np.where(shared[:, :, None], common[:, :, None], own)
    a, b = (votes == 0).sum(axis=(1, 2)), (votes == 2).sum(axis=(1, 2))
    n = a + b
    deff = 1 + (k - 1) * icc
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (a / n - 0.5) / np.sqrt(0.25 * deff / n)
    return float(np.mean(np.abs(np.nan_to_num(z)) > sps.norm.ppf(1 - alpha / 2)))


def conclusive(labels: Iterable[str], alpha: float = 0.05) -> dict:
    """Anytime-valid "conclusive yet?" on per-item labels (see the module docstring).

    Returns {n_nontie, wins_a, wins_b, bayes_factor, threshold, conclusive, leader}:
    BF = B(x+1, n-x+1) 2^n (uniform prior on P(a | not a tie) against 1/2), conclusive
    when BF >= 1/alpha; it may be looked at after every judgment without inflating alpha.
    """
    labs = [_model_label(x) for x in labels]
    x, y = labs.count("a"), labs.count("b")
    n = x + y
    log_bf = special.betaln(x + 1, y + 1) + n * math.log(2)
    bf = math.exp(min(log_bf, 700.0))
    done = bf >= 1 / alpha
    return {"n_nontie": n, "wins_a": x, "wins_b": y, "bayes_factor": bf, "threshold": 1 / alpha,
            "conclusive": done, "leader": ("a" if x > y else "b") if done else None}


# ---------------------------------------------------------------- judge report card

def preference(rows: Iterable[Sequence], kind: str = "words") -> dict:
    """How often a verdict picks the answer with more `kind` (words, headers, lists, bold).

    rows: (label, answer a, answer b). Ties and pairs with equal counts drop out. Returns
    {n, share, ci: [low, high] (Wilson 95%)}; share None with no such verdict. 0.5 = no
    preference (AlpacaEval reports the same for its evaluators' length and list bias).
    """
    picks = []
    for label, a, b in rows:
        label = _model_label(label)
        ca, cb = style_counts(a)[kind], style_counts(b)[kind]
        if label != TIE and ca != cb:
            picks.append((label == "a") == (ca > cb))
    if not picks:
        return {"n": 0, "share": None, "ci": None}
    test = sps.binomtest(sum(picks), len(picks))
    ci = test.proportion_ci(method="wilson")
    return {"n": len(picks), "share": sum(picks) / len(picks), "ci": [float(ci.low), float(ci.high)]}


def family(model: str) -> str:
    """A model's family for self-preference: its name's first word, lower case, without the
    "llm:" / "llm-score:" judge prefix ("llm:gpt-4-review" -> "gpt", "Llama-2-13b" -> "llama").

    >>> family("llm-score:gpt-4o")
    'gpt'
    """
    name = re.sub(r"^llm(-score)?:", "", str(model).strip().lower()).split("/")[-1]
    return re.split(r"[-_:.\s\d]", name, maxsplit=1)[0] or name


SWAP = re.compile(r"->\s*(consistent|flip|half_tie)\b")
SCORES = re.compile(r"order 1: ([\d.]+) / ([\d.]+), order 2 \(swapped\): ([\d.]+) / ([\d.]+)")


def swap_outcome(rationale: str | None) -> str | None:
    """"consistent", "flip" or "half_tie" from an LLM judge's rationale (both orders asked), else None."""
    text = rationale or ""
    found = SWAP.search(text)
    if found:
        return found.group(1)
    found = SCORES.search(text)
    if not found:
        return None
    a1, b1, b2, a2 = map(float, found.groups())
    one = "a" if a1 > b1 else "b" if b1 > a1 else TIE
    two = "a" if a2 > b2 else "b" if b2 > a2 else TIE
    return "consistent" if one == two else "half_tie" if TIE in (one, two) else "flip"
