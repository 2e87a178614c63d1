"""Difficulty 1-10 scored by the LLM, as in the WizardLM paper.

The prompt is the data file `templates/difficulty.txt`, worded after the paper: rate the
"difficulty and complexity" of the question on 1-10 (higher = harder) and give only the
score; no anchor descriptions of our own, which would shift the scale. A base model gets
worked examples as earlier turns of the same prompt.

Through `LLMClient` (its cache means the same request is never paid twice; identical
texts inside a batch are asked once). Unparsable answers keep their raw text and leave
`difficulty` NULL. Resumable: scored (and unparsable) nodes are skipped.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources

from wizardlab.errors import Cancelled, UserError


def difficulty_template() -> str:
    """The prompt asking for a 1-10 rating (`templates/difficulty.txt`, placeholder `{instruction}`)."""
    return resources.files("wizardlab.analysis").joinpath("templates", "difficulty.txt").read_text("utf-8").strip()


FEW_SHOT_EXAMPLES = [
    ("What is the capital of France?", "", "1"),
    ("Write a short poem about autumn that rhymes, in four lines.", "", "3"),
    ("Explain how a hash table handles collisions and compare chaining with open addressing, "
     "giving the time complexity of each operation.", "", "6"),
    ("Prove that there are infinitely many primes of the form 4k+3, then write a Python function that "
     "lists the first n of them in O(n log n) time and justify its complexity.", "", "9"),
]


def difficulty_prompt(instruction: str, input_text: str = "") -> str:
    """The template filled with the instruction (its input, if any, follows it, as the LLM saw it)."""
    text = instruction.strip() + (f"\n\n{input_text.strip()}" if input_text and input_text.strip() else "")
    return difficulty_template().replace("{instruction}", text)


def difficulty_messages(instruction: str, input_text: str = "", *, few_shot: bool = False) -> list[dict]:
    """Chat messages asking for a 1-10 rating; a base model gets worked examples first."""
    messages: list[dict] = []
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
                           limit: int | None = None, stop=None, sampling: dict | None = None,
                           on_progress: Callable[[ScoreReport], None] | None = None) -> ScoreReport:
    """Score every unscored node of a run (the data set: seeds and kept nodes, unless
    data_only=False), chunk by chunk, each chunk stored in one short transaction. `sampling`:
    the user's generation settings for the "score" stage (`wizardlab.llm.params`)."""
    from wizardlab.llm import params

    settings = params.for_backend("score", client.backend, sampling)
    report = ScoreReport(run_id, total=store.count_unscored(run_id, data_only=data_only,
                                                            retry_unparsable=retry_unparsable))
    if limit is not None:
        report.total = min(report.total, limit)
    start, chunk = time.monotonic(), max(32, client.concurrency * 4)
    few_shot = bool(getattr(client.backend, "few_shot", False))
    stopping = (lambda: stop.stop) if stop is not None else (lambda: False)
    for rows in store.iter_unscored(run_id, data_only=data_only, retry_unparsable=retry_unparsable, chunk=chunk):
        if stopping():
            raise Cancelled(f"stopped after {report.done} of {report.total} nodes")
        rows = rows[: report.total - report.done] if limit is not None else rows
        if not rows:
            break
        await _score_chunk(store, client, rows, few_shot, report, stopping, settings)
        report.calls, report.cache_hits = client.stats.calls, client.stats.cache_hits
        report.elapsed_s = round(time.monotonic() - start, 2)
        if on_progress is not None:
            on_progress(report)
    return report


async def _score_chunk(store, client, rows: list[dict], few_shot: bool, report: ScoreReport, stopping,
                       settings) -> None:
    """Ask each distinct text of the chunk once (on the shared worker pool), then store the
    chunk's answers in one transaction; nodes whose call was cut off by a stop stay unscored."""
    from wizardlab.llm import LLMError
    from wizardlab.llm.workers import pump

    by_text: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        by_text.setdefault((row["instruction"], row["input"] or ""), []).append(row["id"])
    answers: dict[tuple[str, str], str | Exception] = {}

    async def ask(key) -> None:
        messages = difficulty_messages(key[0], key[1], few_shot=few_shot)
        try:
            answers[key] = (await client.complete(messages, purpose="difficulty", **settings.kwargs())).text
        except LLMError as exc:
            answers[key] = exc

    await pump(list(by_text), ask, concurrency=client.concurrency, stop=stopping)
    items = []
    for key, answer in answers.items():
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
    report.done += sum(len(by_text[k]) for k in answers)


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


def latest_job(store, run_id: int) -> dict | None:
    """The newest difficulty job of evolution run `run_id`."""
    return next((r for r in store.list_runs("score", limit=200) if r["config"].get("target_run") == run_id), None)


def launch_scoring(store, settings, run_id: int, *, include_eliminated: bool = False, created_by: str | None = None,
                   log_dir) -> tuple[int, str]:
    """Start a background `score` job for a run with the settings' LLM; returns (job id, status)."""
    from wizardlab import jobs

    jobs.refresh(store)
    job = latest_job(store, run_id)
    if job and job["status"] in jobs.ACTIVE:
        raise UserError(f"difficulty job {job['id']} is already {job['status']} for run {run_id}")
    args = ["--run", run_id, "--concurrency", settings.concurrency]
    if settings.base_url:
        args += ["--base-url", settings.base_url, *(["--model", settings.model] if settings.model else [])]
    if include_eliminated:
        args.append("--all")
    job_id = store.create_run("score", {"target_run": run_id, "all": include_eliminated},
                              name=f"difficulty of run {run_id}", created_by=created_by)
    return job_id, jobs.launch(store, job_id, "score", args, log_dir=log_dir, queue="score")
