"""LLM access: one small backend protocol, an OpenAI-compatible and an in-process backend,
and `LLMClient`, which adds concurrency limits, retries, caching and accounting to any of them."""

from wizardlab.llm.base import Backend, Completion, LLMError, PermanentError, TransientError
from wizardlab.llm.client import LLMClient, Result


def make_backend(settings) -> Backend:
    """The backend named by settings: an endpoint, a local model directory, or the embedded model."""
    if settings.base_url:
        from wizardlab.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(settings.base_url, settings.model, settings.api_key)
    from wizardlab.llm.local import LocalBackend

    if settings.uses_embedded_llm:
        return LocalBackend.embedded(cache_dir=settings.cache_dir)
    return LocalBackend(settings.model)


__all__ = ["Backend", "Completion", "LLMClient", "LLMError", "PermanentError", "Result", "TransientError",
           "make_backend"]
