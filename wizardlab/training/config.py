"""Training settings: the `TrainConfig` dataclass, presets, the DeepSpeed config and the launch argv.

`make_config(preset, **overrides)` gives a validated config; `deepspeed_config(cfg)` the
ZeRO-2/3 JSON; `build_argv(cfg, hardware)` the command that runs `pipeline/train_sft.py`
under `deepspeed` (GPUs, nodes from a hostfile), `torchrun` (several CPU processes, or any
DeepSpeed run on a CPU) or plain `python`. The same argv is the UI's command preview.

This module starts nothing and imports no torch at import time (the UI imports it).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from wizardlab.errors import UserError

SCRIPT = Path(__file__).resolve().parents[2] / "pipeline" / "train_sft.py"
STOP_GRACE_S = 600
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")

PRESETS: dict[str, dict] = {
    # WizardLM paper (sec. 4.1): Adam, lr 2e-5, 2048 tokens, batch 8 per GPU, 3 epochs, DeepSpeed ZeRO-3.
    "wizardlm": dict(epochs=3.0, learning_rate=2e-5, max_length=2048, batch_size=8, grad_accum=1,
                     warmup_ratio=0.03, scheduler="cosine", max_steps=-1, deepspeed=3,
                     gradient_checkpointing=True, precision="auto", save_steps=500, logging_steps=10),
    # A few steps on a CPU: checks the whole path end to end in a minute.
    "cpu-smoke": dict(epochs=1.0, learning_rate=1e-4, max_length=256, batch_size=2, grad_accum=1,
                      warmup_ratio=0.0, scheduler="constant", max_steps=10, deepspeed=None,
                      gradient_checkpointing=False, precision="fp32", save_steps=5, logging_steps=1),
}


@dataclass
class TrainConfig:
    """One SFT run's settings; saved as JSON beside the run's output."""

    data: str
    output_dir: str
    model: str = "tiny-llama"
    preset: str = "cpu-smoke"
    epochs: float = 1.0
    learning_rate: float = 1e-4
    max_length: int = 256
    batch_size: int = 2
    grad_accum: int = 1
    warmup_ratio: float = 0.0
    scheduler: str = "constant"
    max_steps: int = -1  # -1: run the epochs
    seed: int = 42
    deepspeed: int | None = None  # ZeRO stage 2 or 3, or None
    offload: bool = False  # ZeRO CPU offload of optimizer (and parameters under ZeRO-3)
    gradient_checkpointing: bool = False
    precision: str = "auto"  # auto: bf16 on GPUs that have it, else fp16 on GPUs, fp32 on CPU
    save_steps: int = 10
    save_total_limit: int = 2
    logging_steps: int = 1
    weight_decay: float = 0.0
    nproc: int = 1  # processes per node; on a GPU machine: GPUs to use (1 = all of them)
    hostfile: str | None = None  # DeepSpeed hostfile for several nodes

    def __post_init__(self) -> None:
        _check(bool(str(self.data).strip()), "data: give the exported data file (Alpaca JSON)")
        _check(bool(str(self.output_dir).strip()), "output_dir: give a directory for the run")
        _check(bool(str(self.model).strip()), "model: give a base model")
        _check(self.preset in PRESETS or self.preset == "custom",
               f"preset: {self.preset!r} is not one of {', '.join([*PRESETS, 'custom'])}")
        _check(self.epochs > 0, f"epochs must be positive, got {self.epochs}")
        _check(0 < self.learning_rate < 1, f"learning_rate must be in (0, 1), got {self.learning_rate}")
        _check(8 <= self.max_length <= 131072, f"max_length must be in [8, 131072], got {self.max_length}")
        for name in ("batch_size", "grad_accum", "save_steps", "logging_steps", "nproc", "save_total_limit"):
            _check(getattr(self, name) >= 1, f"{name} must be at least 1, got {getattr(self, name)}")
        _check(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _check(self.scheduler in SCHEDULERS, f"scheduler: {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
        _check(self.max_steps == -1 or self.max_steps >= 1, f"max_steps must be -1 or >= 1, got {self.max_steps}")
        _check(self.deepspeed in (None, 2, 3), f"deepspeed: ZeRO stage must be 2, 3 or none, got {self.deepspeed}")
        _check(not self.offload or self.deepspeed is not None, "offload needs DeepSpeed (ZeRO-2 or ZeRO-3)")
        _check(self.precision in PRECISIONS, f"precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(not self.hostfile or Path(self.hostfile).is_file(), f"hostfile: {self.hostfile} does not exist")

    def to_dict(self) -> dict:
        return asdict(self)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(f"training config: {message}")


def make_config(preset: str = "cpu-smoke", **overrides) -> TrainConfig:
    """The preset's values, then every override that is not None; validated."""
    if preset not in PRESETS and preset != "custom":
        raise UserError(f"training config: preset: {preset!r} is not one of {', '.join([*PRESETS, 'custom'])}")
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"training config: unknown setting(s) {', '.join(unknown)}")
    values = {**PRESETS.get(preset, {}), **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(preset=preset, **values)


def config_from_dict(data: dict) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in data.items() if k in names})


# -- hardware and precision -------------------------------------------------------------

@dataclass
class Hardware:
    """What the launcher runs on: GPUs on this node, whether they do bf16, CPU cores."""

    gpus: int = 0
    bf16: bool = False
    cpus: int = 1
    names: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.gpus:
            return f"{self.gpus} GPU(s): {', '.join(self.names) or 'unknown'}"
        return f"CPU only ({self.cpus} cores)"


def detect_hardware() -> Hardware:
    import os

    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    names = [torch.cuda.get_device_name(i) for i in range(gpus)]
    bf16 = bool(gpus) and torch.cuda.is_bf16_supported()
    return Hardware(gpus=gpus, bf16=bf16, cpus=os.cpu_count() or 1, names=names)


def resolve_precision(cfg: TrainConfig, hw: Hardware) -> str:
    """'auto' -> bf16 on GPUs that support it, fp16 on other GPUs, fp32 on a CPU."""
    if cfg.precision != "auto":
        if cfg.precision in ("bf16", "fp16") and not hw.gpus:
            raise UserError(f"training config: precision {cfg.precision} needs a GPU; use fp32 or auto on a CPU")
        if cfg.precision == "bf16" and not hw.bf16:
            raise UserError("training config: this GPU has no bf16; use fp16 or auto")
        return cfg.precision
    if hw.gpus:
        return "bf16" if hw.bf16 else "fp16"
    return "fp32"


# -- DeepSpeed --------------------------------------------------------------------------

def deepspeed_config(cfg: TrainConfig, precision: str = "fp32") -> dict:
    """DeepSpeed JSON for the HF Trainer ("auto" values are filled in from TrainingArguments).

    ZeRO-3 gathers 16-bit weights on save, so `save_model` writes a model that
    `from_pretrained` loads. Without offload the Trainer's own torch AdamW is used (no
    DeepSpeed op to compile); with offload DeepSpeed's CPU Adam is required.
    """
    if cfg.deepspeed is None:
        raise UserError("training config: DeepSpeed is off (deepspeed: none)")
    zero: dict = {"stage": cfg.deepspeed, "overlap_comm": True, "contiguous_gradients": True,
                  "reduce_bucket_size": "auto"}
    if cfg.deepspeed == 3:
        zero.update({"stage3_gather_16bit_weights_on_model_save": True,
                     "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto"})
    if cfg.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if cfg.deepspeed == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    ds: dict = {
        "zero_optimization": zero,
        # explicit, not "auto": DeepSpeed derives train_batch_size from these and its world size
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        "steps_per_print": 1000000,
        "wall_clock_breakdown": False,
    }
    if cfg.offload:
        ds["optimizer"] = {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto",
                                                        "weight_decay": "auto"}}
    return ds


# -- command line -------------------------------------------------------------------------

LAUNCHER_FIELDS = ("nproc", "hostfile")  # used by the launcher, not passed to the script


def config_to_argv(cfg: TrainConfig) -> list[str]:
    """Flags for train_sft.py: the preset, then only the settings that differ from it.

    `nproc`/`hostfile` stay with the launcher (torchrun would read `--nproc` as its own flag).
    """
    preset = PRESETS.get(cfg.preset, {})
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    argv = ["--data", str(cfg.data), "--model", str(cfg.model), "--out", str(cfg.output_dir), "--preset", cfg.preset]
    for f in fields(TrainConfig):
        if f.name in ("data", "model", "output_dir", "preset", *LAUNCHER_FIELDS):
            continue
        value = getattr(cfg, f.name)
        if value == preset.get(f.name, defaults[f.name]):
            continue
        argv += _flag(f.name, value)
    return argv


def _flag(name: str, value) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + name.replace("_", "-")]
    if name == "deepspeed":
        return [flag, "none" if value is None else f"zero{value}"]
    return [flag, str(value)]


def add_config_arguments(parser) -> None:
    """argparse flags for every TrainConfig field (shared by `pipeline train` and train_sft.py)."""
    import argparse

    parser.add_argument("--data", required=False, help="exported data (Alpaca JSON list or JSONL)")
    parser.add_argument("--model", default=None, help="tiny-llama, embedded, a local HF dir, or a hub id (online)")
    parser.add_argument("--out", dest="output_dir", default=None, help="output directory of the run")
    parser.add_argument("--preset", default="cpu-smoke", choices=[*PRESETS, "custom"])
    skip = {"data", "model", "output_dir", "preset"}
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction)
        elif f.name == "deepspeed":
            parser.add_argument(flag, dest=f.name, default=None, type=_zero_stage,
                                help="zero2, zero3 or none (default: the preset's)")
        elif f.name in ("scheduler", "precision"):
            parser.add_argument(flag, dest=f.name, default=None, choices=SCHEDULERS if f.name == "scheduler"
                                else PRECISIONS, help="default: the preset's")
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
            parser.add_argument(flag, dest=f.name, default=None, type=kind, help="default: the preset's")


def _zero_stage(text: str):
    text = text.lower().strip()
    table = {"zero2": 2, "2": 2, "zero3": 3, "3": 3, "none": "none", "off": "none"}
    if text not in table:
        import argparse

        raise argparse.ArgumentTypeError(f"expected zero2, zero3 or none, got {text!r}")
    return table[text]


def config_from_args(args) -> TrainConfig:
    values = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)}
    preset = values.pop("preset") or "cpu-smoke"
    deepspeed_none = values.get("deepspeed") == "none"
    if deepspeed_none:
        values["deepspeed"] = None
    if not values.get("data"):
        raise UserError("--data is required (the exported Alpaca JSON file)")
    if not values.get("output_dir"):
        raise UserError("--out is required (the run's output directory)")
    if not values.get("model"):
        raise UserError("--model is required: tiny-llama, embedded, a checkpoint directory or a hub id")
    cfg = make_config(preset, **values)
    if deepspeed_none:
        cfg.deepspeed = None
        cfg.offload = False
        cfg.__post_init__()
    return cfg


# -- launcher -------------------------------------------------------------------------------

def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def build_argv(cfg: TrainConfig, hw: Hardware, *, db: str | None = None, python: str | None = None) -> list[str]:
    """The launch command: deepspeed on GPUs, torchrun for several CPU processes (or DeepSpeed), else python."""
    flags = config_to_argv(cfg) + (["--db", str(db)] if db else [])
    script = str(SCRIPT)
    if hw.gpus:
        argv = [_bin("deepspeed"), "--num_gpus", str(min(cfg.nproc, hw.gpus) if cfg.nproc > 1 else hw.gpus)]
        if cfg.hostfile:
            argv = [_bin("deepspeed"), "--hostfile", str(cfg.hostfile)]
        return argv + [script] + flags
    if cfg.nproc > 1 or cfg.deepspeed is not None:
        # on Stop, give the workers time to write their checkpoint before torchrun kills them (default 30 s)
        return [_bin("torchrun"), "--standalone", "--nproc_per_node", str(cfg.nproc), "--shutdown-timeout",
                str(STOP_GRACE_S), script] + flags
    return [python or sys.executable, script] + flags


def preview(argv: list[str], multiline: bool = False) -> str:
    """The argv shell-quoted, for display only (jobs never use a shell).

    multiline: the launcher and script on the first line, then one script flag per line.
    """
    script = next((i for i, arg in enumerate(argv) if arg.endswith(".py")), None)
    if not multiline or script is None:
        return shlex.join(argv)
    groups: list[list[str]] = [argv[: script + 1]]
    for arg in argv[script + 1:]:
        if arg.startswith("--") or len(groups) == 1:
            groups.append([])
        groups[-1].append(arg)
    return " \\\n    ".join(shlex.join(g) for g in groups)
