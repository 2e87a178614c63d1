"""Generation settings per stage: temperature, top-p and max tokens of each kind of LLM call.

Stages: `evolve`, `respond`, `equal` (the three calls of an evolution), `score` (difficulty),
`generate` (outputs for evaluation) and `judge` (the pairwise LLM judge).

Defaults depend on where the model runs:
- an endpoint gets the official WizardLM code's settings for every stage (`Evol_Instruct/
  openai_access.py`: temperature 1, top_p 0.95, max_tokens 2048);
- an in-process model keeps short budgets (a small base model rambles to the limit on a CPU):
  the embedded base model `IN_PROCESS_FEW_SHOT`, a local chat model `IN_PROCESS_CHAT`.
A user's overrides (`{"equal": {"temperature": 0}}`, from the CLI or the Evolve tab) win over
the defaults; `cap` (the `--max-new-tokens` setting) caps max_tokens last.

    >>> for_stage("evolve", in_process=False, few_shot=False)
    Sampling(temperature=1.0, top_p=0.95, max_tokens=2048)

This module does not call any model; `LLMClient.complete` takes the values as keywords.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, replace

from wizardlab.errors import UserError

STAGES = ("evolve", "respond", "equal", "score", "generate", "judge")
EVOLVE_STAGES = ("evolve", "respond", "equal")
KEYS = ("temperature", "top_p", "max_tokens")


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float | None  # None: not sent (the backend's default, 1.0)
    max_tokens: int

    def __post_init__(self) -> None:
        if not 0 <= self.temperature <= 2:
            raise UserError(f"temperature must be between 0 and 2, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if int(self.max_tokens) != self.max_tokens or self.max_tokens < 1:
            raise UserError(f"max_tokens must be a whole number of at least 1, got {self.max_tokens}")

    def kwargs(self) -> dict:
        """Keywords for `LLMClient.complete`."""
        return asdict(self)


OFFICIAL = Sampling(temperature=1.0, top_p=0.95, max_tokens=2048)
ENDPOINT = {stage: OFFICIAL for stage in STAGES}
IN_PROCESS_FEW_SHOT = {"evolve": Sampling(0.7, None, 96), "respond": Sampling(0.7, None, 192),
                       "equal": Sampling(0.0, None, 4), "score": Sampling(0.0, None, 16),
                       "generate": Sampling(0.7, None, 1024), "judge": Sampling(0.0, None, 512)}
IN_PROCESS_CHAT = {"evolve": Sampling(0.7, None, 384), "respond": Sampling(0.7, None, 768),
                   "equal": Sampling(0.0, None, 8), "score": Sampling(0.0, None, 16),
                   "generate": Sampling(0.7, None, 1024), "judge": Sampling(0.0, None, 512)}


def defaults(stage: str, *, in_process: bool, few_shot: bool) -> Sampling:
    if stage not in STAGES:
        raise UserError(f"unknown generation stage {stage!r}; choose from {', '.join(STAGES)}")
    if not in_process:
        return ENDPOINT[stage]
    return (IN_PROCESS_FEW_SHOT if few_shot else IN_PROCESS_CHAT)[stage]


def for_stage(stage: str, *, in_process: bool, few_shot: bool, overrides: dict | None = None,
              cap: int | None = None) -> Sampling:
    """The defaults of `stage`, then the user's overrides for it, then the token cap."""
    sampling = defaults(stage, in_process=in_process, few_shot=few_shot)
    mine = (overrides or {}).get(stage) or {}
    if mine:
        sampling = replace(sampling, **{k: mine[k] for k in KEYS if k in mine})
    if cap:
        sampling = replace(sampling, max_tokens=min(sampling.max_tokens, cap))
    return sampling


def for_backend(stage: str, backend, overrides: dict | None = None, cap: int | None = None) -> Sampling:
    return for_stage(stage, in_process=bool(getattr(backend, "in_process", False)),
                     few_shot=bool(getattr(backend, "few_shot", False)), overrides=overrides, cap=cap)


def check_overrides(overrides: dict | None) -> dict:
    """Validate `{stage: {key: value}}` (unknown stage or key, bad value: one-line UserError)."""
    clean: dict = {}
    for stage, values in (overrides or {}).items():
        if stage not in STAGES:
            raise UserError(f"unknown generation stage {stage!r}; choose from {', '.join(STAGES)}")
        for key in values:
            if key not in KEYS:
                raise UserError(f"unknown generation setting {key!r} for {stage}; choose from {', '.join(KEYS)}")
        if values:
            for_stage(stage, in_process=False, few_shot=False, overrides={stage: values})  # validates
            clean[stage] = dict(values)
    return clean


# -- command line -----------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser, stages: tuple[str, ...]) -> None:
    """`--temperature`, `--top-p`, `--max-tokens` (every stage of the command) and
    `--sampling STAGE:KEY=VALUE` (one stage; repeatable)."""
    names = ", ".join(stages)
    parser.add_argument("--temperature", type=float, default=None,
                        help=f"sampling temperature of {names} (default: 1 for an endpoint, as the official code)")
    parser.add_argument("--top-p", type=float, default=None,
                        help=f"nucleus sampling top-p of {names} (default: 0.95 for an endpoint)")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help=f"max tokens per answer of {names} (default: 2048 for an endpoint)")
    if len(stages) > 1:
        parser.add_argument("--sampling", action="append", default=[], metavar="STAGE:KEY=VALUE",
                            help=f"one stage's setting, e.g. equal:temperature=0 (stages {names}; "
                                 f"keys {', '.join(KEYS)})")


def from_arguments(args, stages: tuple[str, ...]) -> dict:
    """The overrides the command line asked for: `{stage: {key: value}}`, validated."""
    overrides: dict = {}
    common = {k: getattr(args, k, None) for k in KEYS}
    for stage in stages:
        values = {k: v for k, v in common.items() if v is not None}
        if values:
            overrides[stage] = values
    for item in getattr(args, "sampling", None) or []:
        stage, key, value = _parse_item(item, stages)
        overrides.setdefault(stage, {})[key] = value
    return check_overrides(overrides)


def _parse_item(item: str, stages: tuple[str, ...]) -> tuple[str, str, float | int]:
    stage, _, rest = item.partition(":")
    key, _, raw = rest.partition("=")
    key = key.strip().replace("-", "_")
    if stage not in stages or key not in KEYS or not raw.strip():
        raise UserError(f"--sampling {item!r}: expected STAGE:KEY=VALUE with STAGE in {', '.join(stages)} "
                        f"and KEY in {', '.join(KEYS)}")
    try:
        return stage, key, int(raw) if key == "max_tokens" else float(raw)
    except ValueError:
        raise UserError(f"--sampling {item!r}: {raw!r} is not a number") from None
