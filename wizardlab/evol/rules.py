"""The elimination rules of Evol-Instruct, as pure functions.

Each check returns a `Verdict` (rule code and a human-readable reason) when the rule
fires, else None. Rule codes are part of the data format:

    no_information_gain      the LLM judged parent and child Equal
    sorry_short_response     the response says "sorry" and has fewer than 80 words
    stopwords_only_response  the response is empty or only punctuation and stop words
    copied_prompt_words      the evolved prompt copies words of the evolving prompt
    malformed                empty or unparsable evolution, or the call failed for good

Two named modes. `paper` (the default) applies the rules as the WizardLM paper words them:
words are whitespace-separated tokens, apostrophes are Unicode-normalised, the equality
answer's final verdict counts ("Equal or Not Equal? Not Equal." is Not Equal), and the
copied-words rule reads the raw evolution, so a leading copied "#Rewritten Prompt#:" label
fires it. `lenient` counts `[\\w']+` words (hyphens, decimals and URLs split into more words)
and strips a leading answer label before the copied-words rule runs.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from wizardlab.evol.operations import TEMPLATE_PLACEHOLDERS

RULES = ("no_information_gain", "sorry_short_response", "stopwords_only_response", "copied_prompt_words", "malformed")
COPIED_PHRASES = ("given prompt", "rewritten prompt", "created prompt", "#rewritten prompt#", "#given prompt#",
                  *(p.lower() for p in TEMPLATE_PLACEHOLDERS))
SORRY_MAX_WORDS = 80
PAPER, LENIENT = "paper", "lenient"
RULE_MODES = (PAPER, LENIENT)

_WORD = re.compile(r"[\w']+", re.UNICODE)
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2018\u2019\u201b\u02bc\u02b9\u2032\uff07\u00b4"})
_VERDICT = re.compile(r"\bnot\s+equal\b|\bunequal\b|\bnot the same\b|\bequal\b")


@dataclass(frozen=True)
class Verdict:
    rule: str
    reason: str


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    text = files("wizardlab.evol").joinpath("stopwords.txt").read_text(encoding="utf-8")
    return frozenset(text.split())


def check_mode(mode: str) -> str:
    if mode not in RULE_MODES:
        raise ValueError(f"unknown rule mode {mode!r}; choose from {', '.join(RULE_MODES)}")
    return mode


def normalise(text: str) -> str:
    """NFKC, with every apostrophe-like character (’ ‘ ʼ ...) turned into ASCII '."""
    return unicodedata.normalize("NFKC", text or "").translate(_APOSTROPHES)


def words(text: str, mode: str = PAPER) -> list[str]:
    """`paper`: whitespace-separated tokens ("state-of-the-art", "3.14", a URL: one word each)."""
    text = normalise(text)
    return text.split() if check_mode(mode) == PAPER else _WORD.findall(text)


def _strip_punct(token: str) -> str:
    start, end = 0, len(token)
    while start < end and unicodedata.category(token[start])[0] in "PS":
        start += 1
    while end > start and unicodedata.category(token[end - 1])[0] in "PS":
        end -= 1
    return token[start:end]


def copied_prompt_words(instruction: str) -> Verdict | None:
    low = " ".join(normalise(instruction).lower().split())
    for phrase in COPIED_PHRASES:
        if phrase in low:
            return Verdict("copied_prompt_words", f"evolved prompt contains {phrase!r}")
    return None


def evolved_prompt_rules(raw: str, instruction: str, mode: str = PAPER) -> Verdict | None:
    """The copied-words rule on an evolution: `paper` reads the raw output (a leading copied
    "Rewritten Prompt:" label fires it), `lenient` the parsed prompt with that label stripped."""
    return copied_prompt_words(raw if check_mode(mode) == PAPER else instruction)


def sorry_short_response(response: str, mode: str = PAPER) -> Verdict | None:
    n = len(words(response, mode))
    if "sorry" in normalise(response).lower() and n < SORRY_MAX_WORDS:
        return Verdict("sorry_short_response", f"response says sorry and has {n} words (< {SORRY_MAX_WORDS})")
    return None


def stopwords_only_response(response: str, mode: str = PAPER) -> Verdict | None:
    tokens = [t for t in (_strip_punct(w).lower() for w in words(response, mode)) if t]
    if not tokens:
        return Verdict("stopwords_only_response", "response is empty or only punctuation")
    if all(t in stopwords() for t in tokens):
        return Verdict("stopwords_only_response", f"response has only stop words: {' '.join(tokens[:8])!r}")
    return None


class UnparsableJudgement(ValueError):
    pass


def parse_equal(answer: str) -> bool:
    """True for Equal, False for Not Equal: the answer's final verdict, so an echoed question
    ("Equal or Not Equal? Not Equal.") counts as its last word. 'Not Equal' is matched before 'Equal'."""
    low = " ".join(normalise(answer).lower().replace("*", " ").split())
    verdicts = _VERDICT.findall(low)
    if verdicts:
        return verdicts[-1] == "equal"
    raise UnparsableJudgement(f"expected 'Equal' or 'Not Equal', got {answer[:80]!r}")


def no_information_gain(answer: str) -> Verdict | None:
    """Raises UnparsableJudgement when the answer is neither Equal nor Not Equal."""
    if parse_equal(answer):
        return Verdict("no_information_gain", "the judge found the evolved prompt Equal to its parent")
    return None


def response_rules(response: str, mode: str = PAPER) -> list[Verdict]:
    return [v for v in (sorry_short_response(response, mode), stopwords_only_response(response, mode)) if v]
