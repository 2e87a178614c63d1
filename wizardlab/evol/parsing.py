"""Turn an evolution call's raw text into the evolved instruction.

Models often repeat the answer label ("#Rewritten Prompt#:") or wrap the prompt in
quotes; those are stripped at the start only. Anything copied elsewhere is left for
the `copied_prompt_words` rule to catch. Empty output raises `MalformedOutput`.
"""

from __future__ import annotations

import re

_LEADING_LABEL = re.compile(
    r"^\s*(?:\*\*|#+\s*)?(?:#?\s*(?:rewritten|created|new)\s+prompt\s*#?)\s*(?:\*\*)?\s*[:\-]?\s*(?:\*\*)?\s*",
    re.IGNORECASE)


class MalformedOutput(ValueError):
    pass


def parse_evolved(raw: str) -> str:
    text = (raw or "").strip()
    for _ in range(2):
        stripped = _LEADING_LABEL.sub("", text, count=1).strip()
        if stripped == text:
            break
        text = stripped
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    if not text:
        raise MalformedOutput("the evolution returned no prompt")
    return text
