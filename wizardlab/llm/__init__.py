"""LLM access: one small backend protocol, an OpenAI-compatible and an in-process backend,
and `LLMClient`, which adds concurrency limits, retries, caching and accounting to any of them."""

from wizardlab.llm.base import Backend, Completion, LLMError, PermanentError, TransientError
from wizardlab.llm.client import LLMClient, Result


def make_backend(settings) -> Backend:
    """The backend named by settings: an endpoint (or a pool of them), a local model directory,
    or the embedded model (these two in a model server that keeps them loaded between commands,
    unless `keep_model_s` is 0)."""
    if settings.base_url:
        from wizardlab.llm.pool import PoolBackend, parse_endpoints

        endpoints = parse_endpoints(settings.base_url, settings.model)
        if len(endpoints) == 1:  # one endpoint: no pool, the same cache identity as ever
            from wizardlab.llm.openai_backend import OpenAIBackend

            return OpenAIBackend(endpoints[0].base_url, endpoints[0].model, settings.api_key)
        return PoolBackend(endpoints, settings.api_key)
    from wizardlab.llm.embedded import EMBEDDED_NAMES
    from wizardlab.llm.local import LocalBackend

    model = EMBEDDED_NAMES[1] if settings.uses_embedded_llm else settings.model
    if settings.keep_model_s > 0:  # loaded once in a model server the next command finds
        from wizardlab.llm import model_server

        backend = model_server.ServedBackend(model, cache_dir=settings.cache_dir, keep_s=settings.keep_model_s)
        if backend.usable:
            return backend
    return LocalBackend(model, cache_dir=settings.cache_dir)


__all__ = ["Backend", "Completion", "LLMClient", "LLMError", "PermanentError", "Result", "TransientError",
           "make_backend"]
