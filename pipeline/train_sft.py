"""Standalone SFT script: fine-tune a causal LM on an exported Alpaca file with the HF Trainer.

Run by `python`, `torchrun` or `deepspeed` (see `wizardlab.training.config.build_argv`);
every rank runs this file. It

- tokenizes with the WizardLM prompt and the loss on the response only;
- writes `<out>/train_config.json` (the settings, resolved) and, under DeepSpeed, `ds_config.json`;
- appends progress to `<out>/progress.jsonl` (step, epoch, loss, learning_rate,
  tokens_per_s, eta_s, time) and, with `--db` and WIZARDLAB_RUN_ID, to the run's row;
- on SIGTERM/SIGINT (jobs.cancel) saves a checkpoint at the end of the current step, on
  every rank at the same step, and stops with status `cancelled`;
- `--resume` continues from the newest `checkpoint-N` in `<out>`;
- at the end saves model + tokenizer into `<out>` (16-bit weights gathered under ZeRO-3)
  and writes `<out>/DONE`.

It does not decide how many processes run: the launcher does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script by torchrun/deepspeed: make `wizardlab` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wizardlab.errors import UserError  # noqa: E402
from wizardlab.jobs import StopFlag  # noqa: E402
from wizardlab.training import launch as runfiles  # noqa: E402
from wizardlab.training.config import (add_config_arguments, config_from_args, deepspeed_config,  # noqa: E402
                                       detect_hardware, resolve_precision)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Supervised fine-tuning on an exported Alpaca file.")
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--db", default=None, help="SQLite store whose run (WIZARDLAB_RUN_ID) gets progress/status")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


class RunReporter:
    """Progress and final status into the run's row (main process only, throttled to 1/s)."""

    def __init__(self, db: str | None, run_id: str | None, enabled: bool) -> None:
        self.run_id = int(run_id) if enabled and db and run_id else None
        self.db = db
        self._store = None
        self._last = 0.0

    def store(self):
        if self._store is None:
            from wizardlab.store import Store

            self._store = Store(self.db)
        return self._store

    def progress(self, record: dict, force: bool = False) -> None:
        if self.run_id is None or (not force and time.time() - self._last < 1.0):
            return
        self._last = time.time()
        self.store().set_progress(self.run_id, record)

    def finish(self, status: str, error: str | None = None, model_dir: str | None = None) -> None:
        if self.run_id is None:
            return
        store = self.store()
        if model_dir:
            run = store.get_run(self.run_id)
            store.update_run(self.run_id, config={**run["config"], "model_dir": model_dir})
        store.mark_run(self.run_id, status, error=error)


def _peak_memory_gb() -> float | None:
    """This process's peak GPU memory so far (GiB), or None without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def _make_progress_callback(out_dir: Path, stop: StopFlag, reporter: RunReporter, collator):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """progress.jsonl + run row on each log; a stop request becomes save-and-stop at a step end."""

        stopped = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = self.t_last = time.time()
            self.step0 = state.global_step
            self.tokens = self.tok_last = self.local_seen = 0
            self._write(state, {"event": "start", "step": state.global_step, "max_steps": state.max_steps})

        def on_step_end(self, args, state, control, **kwargs):
            local = collator.tokens - self.local_seen
            self.local_seen = collator.tokens
            stop_now, tokens = _sync_step(stop.stop, local, args)
            self.tokens += tokens
            if stop_now:
                self.stopped = True
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            now, tokens = time.time(), self.tokens
            done = max(1, state.global_step - self.step0)
            record = {"step": state.global_step, "max_steps": state.max_steps, "epoch": round(state.epoch or 0, 4),
                      "loss": float(logs["loss"]), "learning_rate": float(logs.get("learning_rate", 0.0)),
                      "tokens_per_s": round((tokens - self.tok_last) / max(now - self.t_last, 1e-6), 1),
                      "avg_tokens_per_s": round(tokens / max(now - self.t0, 1e-6), 1),
                      "eta_s": round((state.max_steps - state.global_step) * (now - self.t0) / done, 1),
                      "tokens": tokens, "time": now}
            peak = _peak_memory_gb()
            if peak is not None:
                record["peak_mem_gb"] = peak
            self.t_last, self.tok_last = now, tokens
            self._write(state, record)
            if state.is_world_process_zero:
                reporter.progress(record)

        def on_save(self, args, state, control, **kwargs):
            if getattr(self, "saved_step", None) == state.global_step:
                return  # the Trainer may save the last step twice (step end and epoch end)
            self.saved_step = state.global_step
            self._write(state, {"event": "checkpoint", "step": state.global_step,
                                "path": str(Path(args.output_dir) / f"checkpoint-{state.global_step}")})

        def _write(self, state, record: dict) -> None:
            if not state.is_world_process_zero:
                return
            record.setdefault("time", time.time())
            with open(out_dir / runfiles.PROGRESS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    return ProgressCallback()


def _sync_step(stop: bool, tokens: int, args) -> tuple[bool, int]:
    """(stop, tokens of this step) over all ranks: every rank must stop at the same step
    (ZeRO collectives), and throughput counts every rank's tokens. One small all_reduce."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return stop, tokens
    both = torch.tensor([1 if stop else 0, tokens], dtype=torch.long, device=args.device)
    dist.all_reduce(both, op=dist.ReduceOp.SUM)
    return bool(both[0].item()), int(both[1].item())


def _training_arguments(cfg, out_dir: Path, precision: str, hw, ds: dict | None):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out_dir), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.scheduler,
        warmup_steps=float(cfg.warmup_ratio),  # transformers 5: a float < 1 is a ratio of the total steps
        weight_decay=cfg.weight_decay, logging_steps=cfg.logging_steps, save_strategy="steps",
        save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit, seed=cfg.seed,
        bf16=precision == "bf16", fp16=precision == "fp16", gradient_checkpointing=cfg.gradient_checkpointing,
        deepspeed=ds, report_to="none",
        remove_unused_columns=False, disable_tqdm=True, use_cpu=not hw.gpus, dataloader_num_workers=0,
        ddp_backend="gloo" if not hw.gpus and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        logging_first_step=True,
    )


def _init_deepspeed_on_cpu() -> None:
    """DeepSpeed on CPUs: start its comm layer on gloo ourselves. Accelerate only does it
    for accelerators, and otherwise treats the run as one process (every rank then reads
    the same batches and every rank writes the output)."""
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)


def _write_run_config(out_dir: Path, cfg, extra: dict, ds: dict | None) -> None:
    (out_dir / runfiles.CONFIG_FILE).write_text(json.dumps({**cfg.to_dict(), **extra}, indent=2), encoding="utf-8")
    if ds is not None:
        (out_dir / "ds_config.json").write_text(json.dumps(ds, indent=2), encoding="utf-8")


def train(args, cfg, stop: StopFlag, reporter: RunReporter, is_main: bool) -> str:
    """Run the Trainer; returns 'done' or 'cancelled'."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer

    from wizardlab.config import default_cache_dir
    from wizardlab.training.base_models import resolve_model
    from wizardlab.training.data import CHAT_TEMPLATE, SFTCollator, encode_all, iter_examples

    hw = detect_hardware()
    precision = resolve_precision(cfg, hw)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = resolve_model(cfg.model, default_cache_dir())
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.chat_template = CHAT_TEMPLATE  # saved with checkpoints and the model: the format it learns
    encoded, dropped = encode_all(tokenizer, iter_examples(cfg.data), cfg.max_length)  # streamed, compact
    if not encoded:
        raise UserError(f"{cfg.data}: every prompt is longer than max_length {cfg.max_length}")
    ds = deepspeed_config(cfg, precision) if cfg.deepspeed else None
    if ds is not None and not hw.gpus and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _init_deepspeed_on_cpu()
    targs = _training_arguments(cfg, out_dir, precision, hw, ds)  # before the model: ZeRO-3 init needs it
    world_size = targs.world_size  # sets up torch.distributed (and DeepSpeed's) on every rank
    if is_main:
        extra = {"model_path": model_path, "precision": precision, "hardware": hw.describe(),
                 "world_size": world_size, "examples": len(encoded), "dropped_too_long": dropped,
                 "started": time.time()}
        _write_run_config(out_dir, cfg, extra, ds)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if cfg.gradient_checkpointing:
        model.config.use_cache = False
    collator = SFTCollator(tokenizer.pad_token_id)
    callback = _make_progress_callback(out_dir, stop, reporter, collator)
    trainer = Trainer(model=model, args=targs, train_dataset=encoded, data_collator=collator,
                      processing_class=tokenizer, callbacks=[callback])
    checkpoint = runfiles.latest_checkpoint(out_dir) if args.resume else None
    if args.resume and checkpoint is None:
        print(f"no checkpoint in {out_dir}: starting from the base model", flush=True)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if callback.stopped:
        return "cancelled"
    trainer.save_model(str(out_dir))  # all ranks: ZeRO-3 gathers the 16-bit weights on rank 0
    if is_main:
        tokenizer.save_pretrained(str(out_dir))
        done = {"step": trainer.state.global_step, "time": time.time(), "model_dir": str(out_dir.resolve())}
        (out_dir / runfiles.DONE_FILE).write_text(json.dumps(done), encoding="utf-8")
    return "done"


def _ignore_further_sigterm() -> None:
    """After the first SIGTERM the run is saving: a launcher forwarding it again must not kill it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    is_main = int(os.environ.get("RANK", "0")) == 0
    reporter = RunReporter(args.db, os.environ.get("WIZARDLAB_RUN_ID"), is_main)
    stop = StopFlag().install()
    stop.callbacks.append(_ignore_further_sigterm)
    try:
        cfg = config_from_args(args)
        status = train(args, cfg, stop, reporter, is_main)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        reporter.finish("failed", error=str(exc))
        return 2
    except KeyboardInterrupt:
        reporter.finish("cancelled", error="interrupted before a checkpoint was saved")
        return 130
    except BaseException as exc:
        traceback.print_exc()
        reporter.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if is_main:
        _finish_progress(cfg, status)
    reporter.finish(status, model_dir=str(Path(cfg.output_dir).resolve()) if status == "done" else None)
    print(f"training {status}: {cfg.output_dir}", flush=True)
    return 0


def _finish_progress(cfg, status: str) -> None:
    with open(Path(cfg.output_dir) / runfiles.PROGRESS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": status, "time": time.time()}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
