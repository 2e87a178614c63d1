"""Training runs as jobs: launch, stop, resume, delete, and read what a run has written.

A training run is a `runs` row (kind "train") whose config holds the `TrainConfig`, the
argv and, once finished, `model_dir`; its files live in the config's `output_dir`:
`train.log`, `progress.jsonl` (one JSON object per logged step or event),
`train_config.json`, `checkpoint-N/` and, at the end, the model and `DONE`.
Jobs go through `wizardlab.jobs` on the queue "train", so a second launch waits.

This module starts processes only through `wizardlab.jobs`; the training itself is
`pipeline/train_sft.py`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from wizardlab import jobs
from wizardlab.errors import UserError
from wizardlab.training.base_models import resolve_model
from wizardlab.training.data import count_examples
from wizardlab.training.config import Hardware, TrainConfig, build_argv, config_from_dict, detect_hardware

KIND = "train"
QUEUE = "train"
PROGRESS_FILE = "progress.jsonl"
LOG_FILE = "train.log"
CONFIG_FILE = "train_config.json"
DONE_FILE = "DONE"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def progress_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / PROGRESS_FILE


def read_progress(out_dir: str | Path) -> list[dict]:
    """Every record of progress.jsonl; a torn last line (being written) is skipped."""
    path = progress_path(out_dir)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def loss_points(records: list[dict]) -> list[dict]:
    return [r for r in records if "loss" in r and "step" in r]


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete `checkpoint-N` directory (highest N holding trainer_state.json)."""
    out = Path(out_dir)
    if not out.is_dir():
        return None
    found = []
    for child in out.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir() and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def launch_training(store, cfg: TrainConfig, *, cache_dir: str | Path, hardware: Hardware | None = None,
                    created_by: str | None = None, name: str | None = None) -> int:
    """Create the run row and start (or queue) the job; returns the run id."""
    count_examples(cfg.data)  # bad data fails here, with file and item, not in the background
    resolve_model(cfg.model, cache_dir)  # build tiny-llama / convert Gemma once, here, not in each rank
    out = Path(cfg.output_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"output directory {out} is not empty: choose a new one, or resume its run")
    out.mkdir(parents=True, exist_ok=True)
    hardware = hardware or detect_hardware()
    argv = build_argv(cfg, hardware, db=str(store.path))
    config = {**cfg.to_dict(), "argv": argv, "hardware": hardware.describe()}
    run_id = store.create_run(KIND, config, name=name or f"{Path(cfg.model).name} on {Path(cfg.data).name}",
                              created_by=created_by, log_path=str(out / LOG_FILE))
    _launch_job(store, run_id, out, cache_dir)
    return run_id


def _launch_job(store, run_id: int, out: Path, cache_dir: str | Path) -> str:
    """The job is `python -m pipeline train --exec-run N`, which replaces itself with the
    launcher command stored in the run's config (same process, so stop signals reach it)."""
    return jobs.launch(store, run_id, "train", ["--exec-run", run_id], log_path=out / LOG_FILE, queue=QUEUE,
                       env=_job_env(cache_dir))


def _job_env(cache_dir: str | Path) -> dict:
    return {"WIZARDLAB_CACHE": str(cache_dir), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
            "TOKENIZERS_PARALLELISM": "false"}


def train_run(store, run_id: int) -> dict:
    run = store.get_run(run_id)
    if run is None or run["kind"] != KIND:
        raise UserError(f"run {run_id}: no such training run")
    return run


def stop_training(store, run_id: int) -> str:
    """SIGTERM to the job: it saves a checkpoint and marks itself cancelled."""
    train_run(store, run_id)
    return jobs.cancel(store, run_id)


def resume_training(store, run_id: int, *, cache_dir: str | Path, hardware: Hardware | None = None,
                    **overrides) -> str:
    """Start the same run again from its newest checkpoint (the run row is reused).

    `overrides` may change settings for the rest of the run (e.g. more `max_steps`).
    """
    run = train_run(store, run_id)
    if run["status"] == "queued" or jobs.process_alive(run):
        # also while a stopped run's process is still exiting: its reaper must not see the new job
        raise UserError(f"run {run_id} is still {run['status'] if run['status'] != 'cancelled' else 'stopping'}; "
                        "try again in a few seconds")
    if run["status"] == "done":
        raise UserError(f"run {run_id} already finished; start a new run to train more")
    data = {**run["config"], **{k: v for k, v in overrides.items() if v is not None}}
    cfg = config_from_dict(data)
    hardware = hardware or detect_hardware()
    argv = build_argv(cfg, hardware, db=str(store.path)) + ["--resume"]
    config = {**run["config"], **cfg.to_dict(), "argv": argv}
    config.pop("model_dir", None)
    store.update_run(run_id, config=config, error=None, exit_code=None, finished_at=None)
    return _launch_job(store, run_id, Path(cfg.output_dir), cache_dir)


def delete_training(store, run_id: int) -> None:
    """Delete a finished/stopped run's row and its output directory."""
    run = train_run(store, run_id)
    if jobs.is_live(run):
        raise UserError(f"run {run_id} is {run['status']}: stop it first")
    out = Path(run["config"].get("output_dir", ""))
    ours = (out / CONFIG_FILE).is_file() or (out / LOG_FILE).is_file()
    if out.is_dir() and not ours and any(out.iterdir()):
        raise UserError(f"{out} does not look like a training output (no {CONFIG_FILE}); delete it by hand")
    store.delete_run(run_id)
    if out.is_dir():
        shutil.rmtree(out)


def run_view(run: dict) -> dict:
    """What the UI and the CLI show for a run: status, last step, loss, throughput, ETA."""
    out = run["config"].get("output_dir")
    records = read_progress(out) if out else []
    last = next((r for r in reversed(records) if "loss" in r), {})
    ckpt = latest_checkpoint(out) if out else None
    return {
        "id": run["id"], "status": run["status"], "step": last.get("step"), "max_steps": last.get("max_steps"),
        "loss": last.get("loss"), "tokens_per_s": last.get("tokens_per_s"), "eta_s": last.get("eta_s"),
        "checkpoint": ckpt.name if ckpt else None, "model_dir": run["config"].get("model_dir"),
        "error": run.get("error"), "exit_code": run.get("exit_code"),
    }
