"""The elimination rules of Evol-Instruct, as pure functions.

Each check returns a `Verdict` (rule code and a human-readable reason) when the rule
fires, else None. Rule codes are part of the data format:

    no_information_gain      the LLM judged parent and child Equal
    sorry_short_response     the response says "sorry" and has fewer than 80 words
    stopwords_only_response  the response is empty or only punctuation and stop words
    copied_prompt_words      the evolved prompt copies words of the evolving prompt
    malformed                empty or unparsable evolution, or the call failed for good
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from wizardlab.evol.operations import TEMPLATE_PLACEHOLDERS

RULES = ("no_information_gain", "sorry_short_response", "stopwords_only_response", "copied_prompt_words", "malformed")
COPIED_PHRASES = ("given prompt", "rewritten prompt", "created prompt", "#rewritten prompt#", "#given prompt#",
                  *(p.lower() for p in TEMPLATE_PLACEHOLDERS))
SORRY_MAX_WORDS = 80

_WORD = re.compile(r"[\w']+", re.UNICODE)


@dataclass(frozen=True)
class Verdict:
    rule: str
    reason: str


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    text = files("wizardlab.evol").joinpath("stopwords.txt").read_text(encoding="utf-8")
    return frozenset(text.split())


def words(text: str) -> list[str]:
    return _WORD.findall(text or "")


def copied_prompt_words(instruction: str) -> Verdict | None:
    low = (instruction or "").lower()
    for phrase in COPIED_PHRASES:
        if phrase in low:
            return Verdict("copied_prompt_words", f"evolved prompt contains {phrase!r}")
    return None


def sorry_short_response(response: str) -> Verdict | None:
    n = len(words(response))
    if "sorry" in (response or "").lower() and n < SORRY_MAX_WORDS:
        return Verdict("sorry_short_response", f"response says sorry and has {n} words (< {SORRY_MAX_WORDS})")
    return None


def stopwords_only_response(response: str) -> Verdict | None:
    tokens = [w.lower() for w in words(response)]
    if not tokens:
        return Verdict("stopwords_only_response", "response is empty or only punctuation")
    if all(t in stopwords() for t in tokens):
        return Verdict("stopwords_only_response", f"response has only stop words: {' '.join(tokens[:8])!r}")
    return None


class UnparsableJudgement(ValueError):
    pass


def parse_equal(answer: str) -> bool:
    """True for Equal, False for Not Equal. 'Not Equal' contains 'Equal', so look for it first."""
    low = " ".join((answer or "").lower().replace("*", " ").split())
    not_equal = re.search(r"\bnot\s+equal\b|\bunequal\b|\bnot the same\b", low)
    equal = re.search(r"\bequal\b", low)
    if not_equal and (not equal or not_equal.start() <= equal.start()):
        return False
    if equal:
        return True
    raise UnparsableJudgement(f"expected 'Equal' or 'Not Equal', got {answer[:80]!r}")


def no_information_gain(answer: str) -> Verdict | None:
    """Raises UnparsableJudgement when the answer is neither Equal nor Not Equal."""
    if parse_equal(answer):
        return Verdict("no_information_gain", "the judge found the evolved prompt Equal to its parent")
    return None


def response_rules(response: str) -> list[Verdict]:
    return [v for v in (sorry_short_response(response), stopwords_only_response(response)) if v]
