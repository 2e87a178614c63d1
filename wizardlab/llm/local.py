"""`LocalBackend`: an in-process transformers model (the embedded Gemma or a local checkpoint).

The model loads lazily, once, on the first call (or earlier through `load()` / `warm()`),
and generates in a worker thread, one request at a time (`max_concurrency = 1`).
A tokenizer without a chat template means a base model (`few_shot = True`): messages
are then rendered as plain text in the Alpaca style (see `render_plain`) and generation
stops where the model starts the next "### Instruction". Caller stop strings end
generation too; the returned text is cut before the stop string.

It does not retry, cache or count calls: `LLMClient` does that for every backend.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path

from wizardlab.errors import UserError
from wizardlab.llm.base import Completion, PermanentError, TransientError
from wizardlab.llm.embedded import EMBEDDED_NAMES

log = logging.getLogger(__name__)

INSTRUCTION = "### Instruction:\n"
RESPONSE = "### Response:\n"
FEW_SHOT_STOP = "### Instruction"


def render_plain(messages: list[dict]) -> str:
    """Chat messages as one plain-text prompt for a base model, ending with an open response.

    >>> render_plain([{"role": "user", "content": "Say hi."}])
    '### Instruction:\\nSay hi.\\n\\n### Response:\\n'
    """
    parts = []
    for message in messages:
        content = str(message.get("content") or "").strip()
        role = message.get("role")
        if role == "system":
            parts.append(f"{content}\n\n")
        elif role == "assistant":
            parts.append(f"{RESPONSE}{content}\n\n")
        else:
            parts.append(f"{INSTRUCTION}{content}\n\n")
    return "".join(parts) + RESPONSE


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string, and whether one was found."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[:min(found)], True) if found else (text, False)


class _StopOnText:
    """A `StoppingCriteria`: stop once the new text contains any of `stops`."""

    def __init__(self, tokenizer, prompt_len: int, stops: list[str]):
        self.tokenizer, self.prompt_len, self.stops = tokenizer, prompt_len, stops

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        return torch.tensor([cut_at_stop(t, self.stops)[1] for t in texts], device=input_ids.device)


class LocalBackend:
    """A transformers causal LM running in this process."""

    max_concurrency = 1
    in_process = True

    def __init__(self, model_dir: str | Path, *, cache_dir: str | Path | None = None):
        self.model_dir = str(model_dir)
        self.cache_dir = cache_dir
        self.model = self.model_dir
        self.identity = f"local|{self.model_dir}" if self.is_embedded else f"local|{_fingerprint(Path(model_dir))}"
        self.generations = 0  # generate() calls made (a cached answer makes none)
        self._model = None
        self._tokenizer = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    @classmethod
    def embedded(cls, cache_dir: str | Path) -> "LocalBackend":
        """The embedded Gemma 3 270M (converted into `cache_dir` on first load)."""
        return cls(EMBEDDED_NAMES[1], cache_dir=cache_dir)

    @property
    def is_embedded(self) -> bool:
        return self.model_dir in EMBEDDED_NAMES

    @property
    def few_shot(self) -> bool:
        """A base model (no chat template): tasks add worked examples; prompts are plain text."""
        if self._tokenizer is not None:
            return not self._tokenizer.chat_template
        return self.is_embedded or not _has_chat_template(Path(self.model_dir))

    # -- loading ---------------------------------------------------------------
    def load(self) -> None:
        """Load model and tokenizer now (idempotent, thread-safe); a bad model dir -> PermanentError."""
        self._loaded()

    def _loaded(self):
        with self._load_lock:
            if self._model is None:
                start = time.perf_counter()
                path = self._resolve()
                self._tokenizer, self._model = _load_pretrained(path)
                log.info("loaded %s in %.1f s", path, time.perf_counter() - start)
            return self._tokenizer, self._model

    def warm(self) -> threading.Thread:
        """Start loading in a background thread (errors are logged; the first call reports them again)."""
        def run():
            try:
                self.load()
            except PermanentError as exc:
                log.warning("could not preload %s: %s", self.model_dir, exc)

        thread = threading.Thread(target=run, name=f"load {self.model}", daemon=True)
        thread.start()
        return thread

    def _resolve(self) -> Path:
        try:
            from wizardlab.training.base_models import resolve_model

            return Path(resolve_model(self.model_dir, self.cache_dir or _default_cache_dir(), allow_hub=False))
        except UserError as exc:
            raise PermanentError(str(exc)) from None
        except OSError as exc:  # converting the embedded model failed (disk full, permissions ...)
            raise PermanentError(f"model {self.model_dir}: {_one_line(exc)}") from exc

    # -- generation ------------------------------------------------------------
    async def chat(self, messages, *, max_tokens, temperature, stop, timeout, top_p=None) -> Completion:
        return await asyncio.to_thread(self._chat_sync, messages, max_tokens, temperature, stop, timeout, top_p)

    def _chat_sync(self, messages, max_tokens, temperature, stop, timeout, top_p=None) -> Completion:
        deadline = time.monotonic() + timeout
        tokenizer, model = self._loaded()
        with self._generate_lock:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError("timeout: the model was still loading or busy")
            return self._generate(tokenizer, model, messages, max_tokens, temperature, list(stop or []), remaining,
                                  top_p)

    def _generate(self, tokenizer, model, messages, max_tokens, temperature, stops, max_time,
                  top_p=None) -> Completion:
        import torch
        from transformers import StoppingCriteriaList

        few_shot = not tokenizer.chat_template
        if few_shot:
            stops = [FEW_SHOT_STOP, *stops]
        input_ids = _encode(tokenizer, messages, few_shot)
        prompt_len = input_ids.shape[1]
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        if temperature > 0 and top_p is not None:
            sampling["top_p"] = top_p
        criteria = StoppingCriteriaList([_StopOnText(tokenizer, prompt_len, stops)]) if stops else None
        try:
            with torch.inference_mode():
                output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                        max_new_tokens=max_tokens, max_time=max_time, stopping_criteria=criteria,
                                        pad_token_id=_pad_id(tokenizer), **sampling)
        except (RuntimeError, ValueError) as exc:
            raise PermanentError(f"local model {self.model}: generation failed: {_one_line(exc)}") from exc
        self.generations += 1
        new_ids = output[0, prompt_len:]
        text, stopped = cut_at_stop(tokenizer.decode(new_ids, skip_special_tokens=True), stops)
        n_new = int(new_ids.shape[0])
        finish = "length" if n_new >= max_tokens and not stopped and new_ids[-1] != tokenizer.eos_token_id else "stop"
        return Completion(text.strip() if few_shot else text, prompt_len, n_new, finish)

    async def aclose(self) -> None:
        with self._load_lock:
            self._model = self._tokenizer = None


def _encode(tokenizer, messages: list[dict], few_shot: bool):
    """Prompt ids: plain text for a base model, else the tokenizer's chat template with a generation prompt."""
    if few_shot:
        return tokenizer(render_plain(messages), return_tensors="pt").input_ids
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids


def _load_pretrained(path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise PermanentError(f"local model {path}: no config.json (not a transformers checkpoint directory)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise PermanentError(f"local model {path}: cannot load: {_one_line(exc)}") from exc
    model.eval()
    return tokenizer, model


def _has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((path / "tokenizer_config.json").read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def _fingerprint(path: Path) -> str:
    """Directory and newest weight/config mtime: a retrained checkpoint gets a new cache identity."""
    resolved = path.expanduser().resolve()
    files = [*resolved.glob("*.safetensors"), *resolved.glob("*.bin"), resolved / "config.json"]
    stamps = [f.stat().st_mtime_ns for f in files if f.is_file()]
    return f"{resolved}|{max(stamps) if stamps else 0}"


def _pad_id(tokenizer) -> int | None:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _default_cache_dir() -> Path:
    from wizardlab.config import default_cache_dir

    return default_cache_dir()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
