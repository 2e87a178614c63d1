"""Diversity of a run: a 2-D UMAP map of its embeddings beside a reference set, and dispersion.

- `project_2d`: UMAP (cosine, fixed seed) with an exact kNN graph up to EXACT_KNN_MAX points.
- Dispersion = mean pairwise cosine distance, exact in O(n*d) from the sum of unit
  vectors, so no sampling is needed even at 250K.
- Reference sets (e.g. the WizardLM test set) are imported for comparison on the same map.
- `build_map` embeds (cached), projects and measures; `DiversityMap` saves and loads it.
"""

from __future__ import annotations

import csv
import functools
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from wizardlab.analysis.embeddings import EMBED_MODEL, EmbedReport, embed_texts, text_hash
from wizardlab.errors import UserError


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


# numba versions whose private `Dispatcher._cache` / `NullCache` layout `_enable_kernel_cache` relies on;
# on any other version the kernels are compiled as umap-learn ships them (slower first call, same result)
_NUMBA_CACHE_TESTED = ((0, 59), (0, 68))
_KERNEL_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.distances", "umap.spectral", "umap.sparse",
                   "pynndescent.pynndescent_", "pynndescent.distances", "pynndescent.utils", "pynndescent.rp_trees",
                   "pynndescent.sparse")


@functools.lru_cache(maxsize=1)
def _umap():
    """Import umap-learn, with numba's on-disk kernel cache switched on where that is known to work."""
    import umap

    _enable_kernel_cache()
    return umap


def _numba_supported(version: str) -> bool:
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = _NUMBA_CACHE_TESTED
    return low <= major_minor <= high


def _enable_kernel_cache() -> int:
    """Switch on numba's on-disk cache for umap's and pynndescent's kernels, so they are compiled once per
    machine instead of once per process (about 20 s each time on 2 cores). This touches numba internals
    (`Dispatcher._cache`), so it runs only on the numba versions in `_NUMBA_CACHE_TESTED` and falls back to
    plain in-memory compilation on anything unexpected. Returns how many kernels now cache to disk."""
    import importlib

    import numba
    if not _numba_supported(numba.__version__):
        return 0
    try:
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return 0
    enabled = 0
    for name in _KERNEL_MODULES:
        for obj in vars(importlib.import_module(name)).values():
            if isinstance(obj, Dispatcher) and isinstance(getattr(obj, "_cache", None), NullCache):
                try:
                    obj.enable_caching()
                except (RuntimeError, AttributeError):  # no writable cache location, or internals moved
                    return enabled
                enabled += 1
    return enabled


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


_TEXT_FIELDS = ("instruction", "text", "question", "prompt")


def import_reference(store, path: str | Path, name: str | None = None) -> tuple[str, int]:
    """Import a reference set from any seed-format file (wizardlab.evol.seeds.load_seeds) or a plain
    JSONL/CSV with an instruction (or text / question / prompt) column; replaces a set of the same name."""
    path = Path(path)
    name = (name or path.stem).strip()
    if not name:
        raise UserError("a reference set needs a name")
    try:
        from wizardlab.evol.seeds import load_seeds

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


def _map_points(store, run_id: int, reference: str | None, data_only: bool = True) -> pd.DataFrame:
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


def map_workload(store, run_id: int, *, reference: str | None = None, data_only: bool = True,
                 embed_key: str = EMBED_MODEL) -> tuple[int, int]:
    """(points a map of this run would have, texts among them not embedded yet): what it would cost."""
    texts = _map_points(store, run_id, reference, data_only)["text"].tolist()
    hashes = list(dict.fromkeys(text_hash(t) for t in texts))
    return len(texts), len(hashes) - len(store.get_embeddings(hashes, embed_key))


def build_map(store, run_id: int, *, reference: str | None = None, data_only: bool = True, seed: int = 0,
              stop=None, on_progress: Callable[[str, int, int], None] | None = None, embedder=None) -> DiversityMap:
    """Embed (cached) the run's data set (seeds + kept after overrides, as the paper compares data
    sets; `data_only=False`: every finished node) and a reference set, project them together with
    UMAP, and measure dispersion per round and for the reference set. `embedder`: the embedded
    MiniLM by default, or an `embeddings.EndpointEmbedder`."""
    points = _map_points(store, run_id, reference, data_only)
    if points.empty:
        raise UserError(f"run {run_id} has no finished nodes to map")
    progress = on_progress or (lambda stage, done, total: None)
    t0 = time.monotonic()
    vectors, report = embed_texts(store, points["text"].tolist(), stop=stop, embedder=embedder,
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


IN_PROCESS_MAX = 10_000  # points projected inside a request (UMAP: about 1 min at 10K here)
IN_PROCESS_EMBED_MAX = 1_500  # texts embedded inside a request (about 40 texts/s on 2 shared cores)


def build_or_launch_map(store, run_id: int, *, out: str | Path, reference: str | None = None, data_only: bool = True,
                        created_by: str | None = None, log_dir, progress=None) -> "DiversityMap | None":
    """Build the map in this process when it is small (and save it to `out`), else start a
    background `embed` job writing `out` and return None."""
    from wizardlab import jobs

    refs = {r["name"]: r["n"] for r in store.reference_sets()}
    points = store.count_map_nodes(run_id, data_only=data_only) + refs.get(reference, 0)
    missing = 0
    if points <= IN_PROCESS_MAX:  # texts are loaded and hashed only for a map small enough to build here
        points, missing = map_workload(store, run_id, reference=reference, data_only=data_only)
    out = Path(out)
    if points <= IN_PROCESS_MAX and missing <= IN_PROCESS_EMBED_MAX:
        dmap = build_map(store, run_id, reference=reference, data_only=data_only, on_progress=progress)
        dmap.save(out)
        return dmap
    args = ["--run", run_id, "--out", out.resolve()]
    if reference:
        args += ["--reference-name", reference]
    if not data_only:
        args.append("--include-eliminated")
    job_id = store.create_run("embed", {"target_run": run_id}, name=f"diversity map of run {run_id}",
                              created_by=created_by)
    jobs.launch(store, job_id, "embed", args, log_dir=log_dir, queue="embed")
    return None
