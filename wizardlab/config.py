"""Settings: one dataclass, filled from defaults, `WIZARDLAB_*` environment variables and flags.

Validation happens in `__post_init__`, so a bad value fails at start-up with one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from wizardlab.errors import UserError

EMBEDDED_MODEL = "embedded:gemma-3-270m"


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 matmuls natively (AVX512-BF16 or AMX): then bf16 models are faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_cache_dir() -> Path:
    return Path(os.environ.get("WIZARDLAB_CACHE", Path.home() / ".cache" / "wizardlab"))


@dataclass
class Settings:
    """Everything a WizardLab process needs to know about its surroundings."""

    db: str = "wizardlab.db"
    host: str = "127.0.0.1"
    port: int = 7860
    base_url: str | None = None  # one endpoint, or a pool: "URL[,model=NAME][,weight=W]" entries, space-separated
    model: str | None = None
    api_key: str | None = None
    concurrency: int = 16
    request_timeout: float = 120.0
    max_retries: int = 6
    max_new_tokens: int | None = None  # cap on tokens per LLM answer (None: per-task defaults)
    stop_grace_s: float = 10.0  # on cancel, how long calls in flight may finish before being cut off
    data_dir: str = "wizardlab_data"
    cache_dir: str = field(default_factory=lambda: str(default_cache_dir()))
    # a local model stays loaded in a background model server this long after its last answer, for the
    # next command (wizardlab.llm.model_server); 0: each process loads it itself
    keep_model_s: float = 300.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UserError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.request_timeout <= 0:
            raise UserError(f"request timeout must be positive, got {self.request_timeout}")
        if self.keep_model_s < 0:
            raise UserError(f"keep model seconds must be >= 0, got {self.keep_model_s}")
        if self.max_retries < 0:
            raise UserError(f"max retries must be >= 0, got {self.max_retries}")
        if isinstance(self.base_url, (list, tuple)):  # `--base-url` given several times
            self.base_url = " ".join(self.base_url)
        self.base_url = " ".join((self.base_url or "").split()) or None
        if self.base_url:
            from wizardlab.llm.pool import parse_endpoints

            if not self.model and "," not in self.base_url:
                raise UserError("--base-url needs --model (the model name the endpoint serves)")
            parse_endpoints(self.base_url, self.model)  # a bad entry fails here, naming it
        if self.api_key is None:
            self.api_key = os.environ.get("WIZARDLAB_API_KEY") or os.environ.get("OPENAI_API_KEY")

    @property
    def uses_embedded_llm(self) -> bool:
        return not self.base_url and (self.model is None or self.model == EMBEDDED_MODEL)

    @property
    def llm_label(self) -> str:
        if self.base_url and len(self.base_url.split()) > 1:
            return f"a pool of {len(self.base_url.split())} endpoints ({self.base_url})"
        if self.base_url:
            return f"{self.model} at {self.base_url}"
        if self.uses_embedded_llm:
            return "embedded Gemma 3 270M (small base model: fine for demos, not for real data)"
        return f"local model {self.model}"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Defaults, then WIZARDLAB_<FIELD> env vars, then explicit non-None overrides."""
        values: dict = {}
        for f in fields(cls):
            env = os.environ.get(f"WIZARDLAB_{f.name.upper()}")
            if env is not None and env != "":
                values[f.name] = _coerce(f.type, env, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _coerce(type_name, raw: str, name: str):
    type_name = str(type_name)
    try:
        if type_name.startswith("int"):
            return int(raw)
        if type_name.startswith("float"):
            return float(raw)
    except ValueError:
        raise UserError(f"environment variable WIZARDLAB_{name.upper()}: expected a number, got {raw!r}") from None
    return raw
