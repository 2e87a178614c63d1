"""Pure Evol-Instruct logic: operations and prompts, output parsing, elimination rules.

Pure modules do no I/O beyond reading their template data files; `engine` (the async pool) and
`run` (prepare, resume, finished) orchestrate a run over the store; `seeds` reads seed files.
"""

from wizardlab.evol.operations import (IN_BREADTH, IN_DEPTH, OPERATIONS, choose_operation, equal_messages,
                                       evolve_messages, prompt_text, respond_messages)
from wizardlab.evol.parsing import MalformedOutput, parse_evolved
from wizardlab.evol.rules import (LENIENT, PAPER, RULE_MODES, RULES, UnparsableJudgement, Verdict, copied_prompt_words,
                                  evolved_prompt_rules, no_information_gain, parse_equal, response_rules,
                                  sorry_short_response, stopwords_only_response)

__all__ = ["IN_BREADTH", "IN_DEPTH", "LENIENT", "OPERATIONS", "PAPER", "RULES", "RULE_MODES", "MalformedOutput", "UnparsableJudgement", "Verdict",
           "choose_operation", "copied_prompt_words", "equal_messages", "evolved_prompt_rules", "evolve_messages", "no_information_gain",
           "parse_equal", "parse_evolved", "prompt_text", "respond_messages", "response_rules",
           "sorry_short_response", "stopwords_only_response"]
