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

A call that still fails after the client's retries is not a failed evolution: the node
stays pending with its attempts and last error (retryable), and the next round does not
start while a round has such nodes (`run` returns "failed_calls"); running again retries
them, `give_up_failed_calls` turns them into `malformed` eliminations.

Generation settings per stage (evolve, respond, equal) come from `wizardlab.llm.params`;
the rules' mode (`paper` or `lenient`) from `wizardlab.evol.rules`.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from wizardlab import evol
from wizardlab.llm import LLMClient, LLMError, params
from wizardlab.llm.workers import pump


def stage_sampling(backend, overrides: dict | None = None, cap: int | None = None) -> dict[str, params.Sampling]:
    """The settings of the three calls of an evolution for this backend (see `wizardlab.llm.params`)."""
    return {stage: params.for_backend(stage, backend, overrides, cap) for stage in params.EVOLVE_STAGES}


@dataclass
class Progress:
    phase: str = "starting"
    round: int = 0
    rounds: int = 0
    done: int = 0
    total: int = 0
    kept: int = 0
    eliminated: int = 0
    failed_calls: int = 0  # nodes whose call failed after all retries in this session (left retryable)
    truncated: int = 0  # responses cut off at max_tokens in this session
    seed_answers: int = 0  # seed answers counted in this round's total (round 1 runs them alongside)
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
             "failed_calls": self.failed_calls, "truncated": self.truncated, "seed_answers": self.seed_answers,
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
    finish_reason: str | None = None  # of the response call


class Engine:
    def __init__(self, store, writer, client: LLMClient, *, run_id: int, rounds: int, seed: int,
                 stop_requested=lambda: False, on_node=None, sampling: dict | None = None,
                 max_new_tokens: int | None = None, rules: str = evol.PAPER):
        self.store = store
        self.writer = writer
        self.client = client
        self.run_id = run_id
        self.rounds = rounds
        self.seed = seed
        self.stop_requested = stop_requested
        self.on_node = on_node or (lambda: None)
        self.few_shot = client.backend.few_shot
        self.sampling = stage_sampling(client.backend, sampling, max_new_tokens)
        self.rules = evol.rules.check_mode(rules)
        self.progress = Progress(rounds=rounds)
        self.stopped = False
        self.stop_grace_s = 10.0

    # -- one evolution -------------------------------------------------------------
    async def _call(self, stage: str, messages: list[dict], purpose: str, node_id: int):
        return await self.client.complete(messages, purpose=purpose, salt=f"node:{node_id}:{stage}",
                                          **self.sampling[stage].kwargs())

    async def evolve_node(self, node: dict) -> NodeOutcome:
        nid, op = node["id"], node["operation"]
        raw: dict = {}
        parent_text = evol.prompt_text(node["parent_instruction"], node["parent_input"])

        def out(status: str, rules: list[str], error: str | None, instruction: str = "", response=None, finish=None):
            return NodeOutcome(status, instruction, response, rules, error, raw, finish)

        try:
            res = await self._call("evolve", evol.evolve_messages(
                op, node["parent_instruction"], node["parent_input"], self.few_shot), f"evolve:{op}", nid)
        except LLMError as exc:
            return out("failed_call", [], f"evolve call failed: {exc}")
        raw["evolve"] = res.text
        try:
            instruction = evol.parse_evolved(res.text)
        except evol.MalformedOutput as exc:
            return out("eliminated", ["malformed"], str(exc))
        if verdict := evol.evolved_prompt_rules(res.text, instruction, self.rules):
            return out("eliminated", [verdict.rule], verdict.reason, instruction)
        # The equality check reads the parent and the evolved prompt, not the response: with room for
        # more than one call at a time both are asked at once (a node then takes two calls' time, not
        # three). The outcome is the same as one after the other: a response the rules eliminate wins
        # over the check's verdict (its call is paid, then ignored).
        equal_messages = evol.equal_messages(parent_text, instruction, self.few_shot)
        equal = (asyncio.ensure_future(self._call("equal", equal_messages, "equal", nid))
                 if self.client.concurrency > 1 else None)
        try:
            try:
                res = await self._call("respond", evol.respond_messages(instruction, "", self.few_shot), "respond",
                                       nid)
            except LLMError as exc:
                return out("failed_call", [], f"response call failed: {exc}", instruction)
            response, finish = res.text.strip(), res.finish_reason
            if res.text != response:  # the response is stored once; raw keeps the text only when it differs
                raw["respond"] = res.text
            if verdicts := evol.response_rules(response, self.rules):
                return out("eliminated", [v.rule for v in verdicts], "; ".join(v.reason for v in verdicts),
                           instruction, response, finish)
            try:
                res = await (equal if equal is not None else self._call("equal", equal_messages, "equal", nid))
            except LLMError as exc:
                return out("failed_call", [], f"equality call failed: {exc}", instruction, response, finish)
        except asyncio.CancelledError:  # the node is cut off (a stop): so is its check
            if equal is not None:
                equal.cancel()
            raise
        finally:
            if equal is not None:  # an answer no longer needed still lands (in the request cache) before the node
                await _settled(equal)
        raw["equal"] = res.text
        try:
            verdict = evol.no_information_gain(res.text)
        except evol.UnparsableJudgement as exc:
            return out("eliminated", ["malformed"], f"equality judgement unparsable: {exc}", instruction, response,
                       finish)
        if verdict:
            return out("eliminated", [verdict.rule], verdict.reason, instruction, response, finish)
        return out("kept", [], None, instruction, response, finish)

    async def respond_seed(self, node: dict) -> None:
        try:
            res = await self._call("respond", evol.respond_messages(node["instruction"], node["input"], self.few_shot),
                                   "respond:seed", node["id"])
            response, error, finish = res.text.strip(), None, res.finish_reason
        except LLMError as exc:
            response, error, finish = None, f"response call failed: {exc}", None
        self.writer.submit(lambda conn: self.store.write_seed_response(conn, node["id"], response, error, finish))

    def _record(self, node: dict, outcome: NodeOutcome) -> None:
        p = self.progress
        p.done += 1
        if outcome.status == "failed_call":
            self.writer.submit(lambda conn: self.store.write_call_failure(conn, node["id"], outcome.error, outcome.raw))
            p.failed_calls += 1
            p.by_operation[node["operation"]]["failed_call"] += 1
            return
        self.writer.submit(lambda conn: self.store.write_node_result(
            conn, node["id"], status=outcome.status, instruction=outcome.instruction, response=outcome.response,
            fail_rules=outcome.fail_rules, error=outcome.error, raw=outcome.raw, finish_reason=outcome.finish_reason))
        p.truncated += outcome.finish_reason == "length"
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
        """Run or resume; returns 'done', 'cancelled', or 'failed_calls' (a round ended with nodes whose
        call failed after all retries: the next round waits until they are retried or given up).

        The seeds' own answers are not needed to evolve them, so round 1 and the seed answers share
        one pass over the worker pool (round 1's evolutions first: each takes up to three calls, two
        in a row when its response and check go out together; the single seed answers then fill the
        slots its last evolutions leave free)."""
        p = self.progress
        missing = self.store.count_seeds_without_response(self.run_id)
        if missing and self.rounds < 1:
            p.phase, p.round, p.done, p.total, p.round_started = "seed responses", 0, 0, missing, time.monotonic()
            await self._pump(((self._handle_seed, s) for s in self.store.iter_seeds_without_response(self.run_id)),
                             _dispatch)
            self.writer.flush()
            if self.stopped:
                return "cancelled"
        for r in range(1, self.rounds + 1):
            rng = random.Random(f"{self.seed}:{r}")
            self.store.create_round(self.run_id, r, lambda: evol.choose_operation(rng))
            total = self.store.count_nodes(self.run_id, r)
            pending = self.store.count_nodes(self.run_id, r, "pending")
            seeds = missing if r == 1 else 0
            p.phase, p.round, p.total, p.done, p.round_started = "round", r, total + seeds, total - pending, \
                time.monotonic()
            p.seed_answers = seeds
            if pending or seeds:
                items = ((self._handle_node, n) for n in self.store.iter_pending(self.run_id, r))
                if seeds:
                    items = itertools.chain(items, ((self._handle_seed, s) for s in
                                                    self.store.iter_seeds_without_response(self.run_id)))
                await self._pump(items, _dispatch)
            self.writer.flush()
            if self.stopped:
                return "cancelled"
            if self.store.count_failed_calls(self.run_id, r):
                p.phase = "failed calls"
                return "failed_calls"
        if self.store.count_failed_calls(self.run_id, 0):  # seeds still without their response
            p.phase = "failed calls"
            return "failed_calls"
        p.phase = "done"
        return "done"


async def _settled(call: asyncio.Future) -> None:
    """Wait for a call whose answer may not be needed; its failure is of no interest then."""
    try:
        await call
    except LLMError:
        pass


async def _dispatch(item) -> None:
    handle, node = item
    await handle(node)
