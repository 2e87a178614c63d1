"""The chat-backend protocol every LLM (remote or in-process) implements.

A backend does one thing: turn a list of chat messages into a `Completion`, raising
`TransientError` for what is worth retrying (429, 5xx, timeouts, connection errors) and
`PermanentError` for what is not. Retries, concurrency, caching and accounting are the
job of `wizardlab.llm.client.LLMClient`, the same for every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None  # "stop", "length" (hit max_tokens: the answer is cut off) ...


class TransientError(Exception):
    """Worth retrying. `retry_after` (seconds) is honoured when the server sent one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """Not worth retrying (bad request, authentication, unknown model ...)."""


class LLMError(Exception):
    """A call that failed for good (after retries). The message says why."""


class Backend(Protocol):
    identity: str  # stable text for cache keys, e.g. "openai|http://host/v1|gpt-4o-mini"
    model: str  # the model name shown to users
    few_shot: bool  # a base model: tasks add worked examples; messages are rendered as plain text
    max_concurrency: int | None  # the backend's own cap (an in-process model: 1)
    in_process: bool  # runs in this process (short default budgets, see wizardlab.llm.params)

    async def chat(self, messages: list[dict], *, max_tokens: int, temperature: float,
                   stop: list[str] | None, timeout: float, top_p: float | None = None,
                   seed: int | None = None) -> Completion: ...
    # seed: the request's own random seed (the client derives it from the request key): an in-process
    # model samples with it, so a request's draws do not depend on what shares its batch

    async def aclose(self) -> None: ...
