"""`OpenAIBackend`: any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server, Ollama).

Uses the `openai` package's async client with its own retries switched off: retrying is
`LLMClient`'s job, the same for every backend. The request goes through the client's raw
`post` (its auth, headers and status-error mapping) with a plain dict body, and the JSON
answer is read directly: `chat.completions.create` validates the messages through
TypedDict transforms and builds pydantic models for every answer, which cost about 0.6 ms
of CPU per call (a third of the engine's total; see bench/evolve_throughput.py).
"""

from __future__ import annotations

import httpx
import openai

from wizardlab.llm.base import Completion, PermanentError, TransientError


class OpenAIBackend:
    few_shot = False
    max_concurrency = None
    in_process = False

    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_connections: int = 256):
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.identity = f"openai|{self.base_url}|{model}"
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key or "not-needed", max_retries=0,
                                          http_client=openai.DefaultAsyncHttpxClient(limits=limits))

    async def chat(self, messages, *, max_tokens, temperature, stop, timeout, top_p=None, seed=None) -> Completion:
        # `seed` is not sent: servers differ in what they do with it (and the body stays what it was)
        extra = {"top_p": top_p} if top_p is not None else {}
        try:
            body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature,
                    **extra}
            if stop:
                body["stop"] = stop
            raw = await self._client.post("/chat/completions", body=body, cast_to=httpx.Response,
                                          options={"timeout": timeout})
            resp = raw.json()
        except openai.RateLimitError as exc:
            raise TransientError(f"429 rate limited: {_short(exc)}", _retry_after(exc)) from exc
        except openai.InternalServerError as exc:
            raise TransientError(f"{exc.status_code} server error: {_short(exc)}", _retry_after(exc)) from exc
        except openai.APITimeoutError as exc:
            raise TransientError("timeout: no answer in time") from exc
        except openai.APIConnectionError as exc:
            raise TransientError(f"connection error: {_short(exc)}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code in (408, 409) or exc.status_code >= 500:
                raise TransientError(f"{exc.status_code}: {_short(exc)}", _retry_after(exc)) from exc
            raise PermanentError(f"{exc.status_code}: {_short(exc)}") from exc
        except openai.APIResponseValidationError as exc:
            raise TransientError(f"garbage answer: {_short(exc)}") from exc
        except ValueError as exc:  # undecodable body
            raise TransientError(f"garbage answer: {_short(exc)}") from exc
        try:
            text = resp["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise TransientError(f"garbage answer: no choices in {str(resp)[:200]}") from exc
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        usage = resp.get("usage") if isinstance(resp.get("usage"), dict) else {}
        finish = resp["choices"][0].get("finish_reason")
        return Completion(text, usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0,
                          finish if isinstance(finish, str) else None)

    async def aclose(self) -> None:
        await self._client.close()


def _retry_after(exc) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _short(exc) -> str:
    return str(exc).replace("\n", " ")[:200]
