"""The asynchronous Evol-Instruct engine: rounds over a pool, three calls per evolution.

For each pending node: evolve the parent (one of six operations), then answer the
evolved instruction, then ask the LLM whether parent and child are Equal. Cheap rules
run as soon as their input exists, so a failed evolution never pays for the calls it
no longer needs. Results and raw LLM text go to the store through a `BatchWriter`;
the event loop never waits on a commit.

The shared worker pool (`wizardlab.llm.workers.pump`) takes nodes from a bounded queue
fed by a producer that streams pending nodes from the store, so memory does not grow
with the number of seeds. A stop request (SIGTERM) stops the producer; workers finish
the nodes in hand within a grace period, so nothing paid for is lost.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from wizardlab import evol
from wizardlab.llm import LLMClient, LLMError
from wizardlab.llm.workers import pump

MAX_TOKENS = {"evolve": 384, "respond": 768, "equal": 8}
# A small base model (few-shot) rambles to the limit; shorter budgets keep CPU runs bearable.
FEW_SHOT_MAX_TOKENS = {"evolve": 96, "respond": 192, "equal": 4}


def token_budgets(few_shot: bool, cap: int | None) -> dict:
    budgets = dict(FEW_SHOT_MAX_TOKENS if few_shot else MAX_TOKENS)
    return {k: min(v, cap) for k, v in budgets.items()} if cap else budgets


@dataclass
class Progress:
    phase: str = "starting"
    round: int = 0
    rounds: int = 0
    done: int = 0
    total: int = 0
    kept: int = 0
    eliminated: int = 0
    by_rule: Counter = field(default_factory=Counter)
    by_operation: dict = field(default_factory=lambda: defaultdict(Counter))
    started: float = field(default_factory=time.monotonic)
    round_started: float = field(default_factory=time.monotonic)

    def as_dict(self, client: LLMClient) -> dict:
        elapsed = time.monotonic() - self.started
        round_elapsed = time.monotonic() - self.round_started
        rate = self.done / round_elapsed if self.done and round_elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate else None
        s = client.stats
        d = {"phase": self.phase, "round": self.round, "rounds": self.rounds, "done": self.done,
             "total": self.total, "kept": self.kept, "eliminated": self.eliminated,
             "by_rule": dict(self.by_rule), "by_operation": {k: dict(v) for k, v in self.by_operation.items()},
             "calls": s.calls, "cache_hits": s.cache_hits, "prompt_tokens": s.prompt_tokens,
             "completion_tokens": s.completion_tokens, "errors": s.failures, "retries": s.retries,
             "elapsed_s": round(elapsed, 1), "eta_s": round(eta, 1) if eta is not None else None}
        endpoint_stats = getattr(client.backend, "endpoint_stats", None)
        if endpoint_stats is not None:  # a pool: per-endpoint calls, errors, latency
            d["endpoints"] = endpoint_stats()
        return d


@dataclass
class NodeOutcome:
    status: str
    instruction: str
    response: str | None
    fail_rules: list[str]
    error: str | None
    raw: dict


class Engine:
    def __init__(self, store, writer, client: LLMClient, *, run_id: int, rounds: int, seed: int,
                 stop_requested=lambda: False, on_node=None, temperature: float = 0.7,
                 max_new_tokens: int | None = None):
        self.store = store
        self.writer = writer
        self.client = client
        self.run_id = run_id
        self.rounds = rounds
        self.seed = seed
        self.stop_requested = stop_requested
        self.on_node = on_node or (lambda: None)
        self.temperature = temperature
        self.few_shot = client.backend.few_shot
        self.max_tokens = token_budgets(self.few_shot, max_new_tokens)
        self.progress = Progress(rounds=rounds)
        self.stopped = False
        self.stop_grace_s = 10.0

    # -- one evolution -------------------------------------------------------------
    async def evolve_node(self, node: dict) -> NodeOutcome:
        nid, op = node["id"], node["operation"]
        raw: dict = {}
        parent_text = evol.prompt_text(node["parent_instruction"], node["parent_input"])

        def fail(rule: str, error: str, instruction: str = "", response: str | None = None) -> NodeOutcome:
            return NodeOutcome("eliminated", instruction, response, [rule], error, raw)

        try:
            res = await self.client.complete(
                evol.evolve_messages(op, node["parent_instruction"], node["parent_input"], self.few_shot),
                purpose=f"evolve:{op}", max_tokens=self.max_tokens["evolve"], temperature=self.temperature,
                salt=f"node:{nid}:evolve")
        except LLMError as exc:
            return fail("malformed", f"evolve call failed: {exc}")
        raw["evolve"] = res.text
        try:
            instruction = evol.parse_evolved(res.text)
        except evol.MalformedOutput as exc:
            return fail("malformed", str(exc))
        if verdict := evol.copied_prompt_words(instruction):
            return fail(verdict.rule, verdict.reason, instruction)

        try:
            res = await self.client.complete(
                evol.respond_messages(instruction, "", self.few_shot), purpose="respond",
                max_tokens=self.max_tokens["respond"], temperature=self.temperature, salt=f"node:{nid}:respond")
        except LLMError as exc:
            return fail("malformed", f"response call failed: {exc}", instruction)
        response = raw["respond"] = res.text.strip()
        verdicts = evol.response_rules(response)
        if verdicts:
            return NodeOutcome("eliminated", instruction, response, [v.rule for v in verdicts],
                               "; ".join(v.reason for v in verdicts), raw)

        try:
            res = await self.client.complete(
                evol.equal_messages(parent_text, instruction, self.few_shot), purpose="equal",
                max_tokens=self.max_tokens["equal"], temperature=0.0, salt=f"node:{nid}:equal")
        except LLMError as exc:
            return fail("malformed", f"equality call failed: {exc}", instruction, response)
        raw["equal"] = res.text
        try:
            verdict = evol.no_information_gain(res.text)
        except evol.UnparsableJudgement as exc:
            return fail("malformed", f"equality judgement unparsable: {exc}", instruction, response)
        if verdict:
            return NodeOutcome("eliminated", instruction, response, [verdict.rule], verdict.reason, raw)
        return NodeOutcome("kept", instruction, response, [], None, raw)

    async def respond_seed(self, node: dict) -> None:
        try:
            res = await self.client.complete(
                evol.respond_messages(node["instruction"], node["input"], self.few_shot), purpose="respond:seed",
                max_tokens=self.max_tokens["respond"], temperature=self.temperature, salt=f"node:{node['id']}:respond")
            response, error = res.text.strip(), None
        except LLMError as exc:
            response, error = None, f"response call failed: {exc}"
        self.writer.submit(lambda conn: self.store.write_seed_response(conn, node["id"], response, error))

    def _record(self, node: dict, outcome: NodeOutcome) -> None:
        self.writer.submit(lambda conn: self.store.write_node_result(
            conn, node["id"], status=outcome.status, instruction=outcome.instruction, response=outcome.response,
            fail_rules=outcome.fail_rules, error=outcome.error, raw=outcome.raw))
        p = self.progress
        p.done += 1
        if outcome.status == "kept":
            p.kept += 1
        else:
            p.eliminated += 1
            p.by_rule.update(outcome.fail_rules)
        p.by_operation[node["operation"]][outcome.status] += 1

    # -- scheduling --------------------------------------------------------------------
    async def _pump(self, items, handle) -> None:
        """`handle` over `items` on the shared worker pool (`wizardlab.llm.workers.pump`): a stop
        request ends the feeding; nodes in hand get `stop_grace_s` to land their answers, then are
        cut off (they stay pending; finished steps are cached)."""
        stopped = await pump(items, handle, concurrency=self.client.concurrency, stop=self.stop_requested,
                             grace_s=self.stop_grace_s, on_done=self.on_node)
        self.stopped = self.stopped or stopped

    async def _handle_node(self, node: dict) -> None:
        self._record(node, await self.evolve_node(node))

    async def _handle_seed(self, node: dict) -> None:
        await self.respond_seed(node)
        self.progress.done += 1

    async def run(self) -> str:
        """Run or resume; returns 'done' or 'cancelled'."""
        p = self.progress
        missing = self.store.count_seeds_without_response(self.run_id)
        if missing:
            p.phase, p.round, p.done, p.total, p.round_started = "seed responses", 0, 0, missing, time.monotonic()
            await self._pump(self.store.iter_seeds_without_response(self.run_id), self._handle_seed)
            self.writer.flush()
            if self.stopped:
                return "cancelled"
        for r in range(1, self.rounds + 1):
            rng = random.Random(f"{self.seed}:{r}")
            self.store.create_round(self.run_id, r, lambda: evol.choose_operation(rng))
            total = self.store.count_nodes(self.run_id, r)
            pending = self.store.count_nodes(self.run_id, r, "pending")
            p.phase, p.round, p.total, p.done, p.round_started = "round", r, total, total - pending, time.monotonic()
            if pending:
                await self._pump(self.store.iter_pending(self.run_id, r), self._handle_node)
            self.writer.flush()
            if self.stopped:
                return "cancelled"
        p.phase = "done"
        return "done"
