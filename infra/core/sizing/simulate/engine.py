"""One vLLM V1 engine, step by step.

Each step the scheduler serves the running requests' decode tokens first (one each), then fills
what is left of `max_num_batched_tokens` with prompt chunks, greedily in admission order: the
requests already prefilling, then the waiting queue (FCFS), while fewer than `max_num_seqs` run
and KV blocks last. KV is held in 16-token blocks; when a step's decode tokens need a block the
pool lacks, the newest running request is preempted (its blocks freed; it goes back to the head
of the queue and recomputes prompt + generated tokens when it is admitted again). A prefix-cache
hit fraction skips that share of each prompt (whole blocks), with those blocks shared.

The step time is the calibrated step model (`ReplicaModel.step_formula`). Per-step state is
kept as aggregates (decoding count, the sum of their contexts, blocks per crossing phase, a
calendar of completion steps), so a step costs O(1) plus the requests that start, finish or are
preempted in it; a decoding request is never visited between its first token and its last.

Requests live in `Requests` (plain lists, shared by every engine of a fleet).
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from infra.core.sizing.memory import BLOCK_TOKENS
from infra.core.sizing.perf import ReplicaModel

WAITING, PREFILL, DECODE, DONE, REJECTED, FAILED = range(6)
_PHASES = BLOCK_TOKENS  # a decoding request needs a new block every BLOCK_TOKENS steps
_MASK = _PHASES - 1
assert _PHASES & _MASK == 0, "the phase trick needs a power-of-two block size"


class Requests:
    """Every request of a run, column-wise (index = request id)."""

    __slots__ = ("arrival", "prompt", "output", "cached", "todo", "done", "gen", "blocks", "state",
                 "first_t", "finish_t", "fin_step", "s0", "base", "phase", "replica")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, [])

    def __len__(self) -> int:
        return len(self.arrival)

    @classmethod
    def open_loop(cls, arrival_s: list[float], prompt: list[int], output: list[int], cached: list[int]) -> "Requests":
        """All requests of an open-loop run at once (ids in arrival order)."""
        R = cls()
        n = len(arrival_s)
        R.arrival, R.prompt, R.output, R.cached = list(arrival_s), list(prompt), list(output), list(cached)
        R.todo = [p - c for p, c in zip(prompt, cached)]
        R.done = list(cached)
        R.gen, R.blocks, R.s0, R.base, R.phase = ([0] * n for _ in range(5))
        R.fin_step = [-1] * n
        R.replica = [-1] * n
        R.state = [WAITING] * n
        R.first_t, R.finish_t = [-1.0] * n, [-1.0] * n
        return R

    def add(self, arrival_s: float, prompt: int, output: int, cached: int = 0) -> int:
        rid = len(self.arrival)
        self.arrival.append(arrival_s)
        self.prompt.append(prompt)
        self.output.append(output)
        self.cached.append(cached)
        self.todo.append(prompt - cached)
        self.done.append(cached)
        self.gen.append(0)
        self.blocks.append(0)
        self.state.append(WAITING)
        self.first_t.append(-1.0)
        self.finish_t.append(-1.0)
        self.fin_step.append(-1)
        self.s0.append(0)
        self.base.append(0)
        self.phase.append(0)
        self.replica.append(-1)
        return rid


def cached_tokens(prompt: int, hit_fraction: float) -> int:
    """Prefix-cache hit in whole blocks; the last prompt token is always computed."""
    if hit_fraction <= 0:
        return 0
    return min(int(hit_fraction * prompt) // BLOCK_TOKENS * BLOCK_TOKENS, (prompt - 1) // BLOCK_TOKENS * BLOCK_TOKENS)


class Engine:
    """One replica's scheduler and KV pool; the driver appends arrived requests to `waiting`."""

    __slots__ = ("R", "step_fn", "mns", "mbt", "pool", "waiting", "pf", "dec", "n_dec", "base_sum", "phase",
                 "cal", "blocks_used", "s", "t", "on_finish", "record", "step_dt", "step_dec", "index", "preemptions",
                 "reserve")

    def __init__(self, rm: ReplicaModel, requests: Requests, *, t0: float = 0.0, index: int = 0,
                 on_finish: Callable[[int, float], None] | None = None, record_steps: bool = False,
                 shared_prefix_blocks: int = 0) -> None:
        self.R = requests
        self.step_fn = rm.step_formula  # the step model, its constants bound once
        self.mns = rm.max_num_seqs
        self.mbt = rm.max_num_batched_tokens
        self.pool = rm.memory.kv_blocks - shared_prefix_blocks
        self.waiting: deque[int] = deque()
        self.pf: list[int] = []  # running, prompt not finished (admission order)
        self.dec: dict[int, None] = {}  # running, decoding (admission order)
        self.n_dec = 0
        self.base_sum = 0  # sum of (context at first token - its step): context sum = base_sum + n_dec * s
        self.phase = [0] * _PHASES  # decoding requests by the step phase at which they need a new block
        self.cal: dict[int, list[int]] = {}  # step -> requests whose last token comes out of it
        self.blocks_used = 0
        self.s = 0
        self.t = t0
        self.on_finish = on_finish
        self.record = record_steps
        self.step_dt: list[float] = []
        self.step_dec: list[int] = []
        self.index = index
        self.preemptions = 0
        self.reserve = rm.engine.reserve_full_context

    # --- state ---------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.pf or self.n_dec)

    @property
    def running(self) -> int:
        return len(self.pf) + self.n_dec

    @property
    def in_flight(self) -> int:
        return len(self.waiting) + len(self.pf) + self.n_dec

    def requests_in_flight(self) -> list[int]:
        return [*self.dec, *self.pf, *self.waiting]

    # --- preemption ----------------------------------------------------------------------------
    def _preempt_last(self) -> None:
        """vLLM's recompute preemption of the newest running request."""
        R, s = self.R, self.s
        self.preemptions += 1
        if self.pf:
            rid = self.pf.pop()
            self.blocks_used -= R.blocks[rid]
            R.todo[rid] += R.done[rid] - R.cached[rid]
        else:
            rid, _ = self.dec.popitem()
            self.n_dec -= 1
            self.base_sum -= R.base[rid]
            if R.phase[rid] < 0:
                self.blocks_used -= R.blocks[rid]
            else:
                self.phase[R.phase[rid]] -= 1
                ctx = R.base[rid] + s - 1  # KV held after the previous step
                self.blocks_used -= -(-ctx // BLOCK_TOKENS) - R.cached[rid] // BLOCK_TOKENS
            R.gen[rid] += s - 1 - R.s0[rid]
            R.fin_step[rid] = -1
            R.todo[rid] = R.prompt[rid] + R.gen[rid] - R.cached[rid]
        R.done[rid] = R.cached[rid]
        R.blocks[rid] = 0
        R.state[rid] = WAITING
        self.waiting.appendleft(rid)

    def drop_all(self, state: int, t: float) -> list[int]:
        """Every request in flight ends in `state` at `t` (the replica is gone); returns them."""
        R = self.R
        lost = self.requests_in_flight()
        for rid in lost:
            R.state[rid] = state
            R.finish_t[rid] = t
            R.fin_step[rid] = -1
        self.waiting.clear()
        self.pf.clear()
        self.dec.clear()
        self.cal.clear()
        self.n_dec = self.base_sum = self.blocks_used = 0
        self.phase = [0] * _PHASES
        return lost

    # --- one step ------------------------------------------------------------------------------
    def step(self) -> float:
        """Run the step that starts at `self.t`; returns its end time (also the new `self.t`)."""
        s = self.s
        ph = s & _MASK
        phase = self.phase
        admit = True
        if self.blocks_used + phase[ph] > self.pool:
            while self.blocks_used + phase[ph] > self.pool and (self.pf or self.n_dec):
                self._preempt_last()
            admit = False  # vLLM V1 admits no waiting request in a step that preempted
        n_dec = self.n_dec
        if self.pf or (admit and self.waiting and n_dec < self.mns):
            pf_tok, kv_tok, attn, sampled = self._prefill(n_dec, self.pool - self.blocks_used - phase[ph], admit)
            if pf_tok == 0 and n_dec == 0:
                return self._stalled()
        elif n_dec:
            pf_tok, kv_tok, attn, sampled = 0, 0.0, 0.0, 0
        elif not admit:  # everything running was preempted: the next step admits again
            return self.t
        else:
            return self._stalled()
        dt = self.step_fn(n_dec, self.base_sum + n_dec * s, pf_tok, kv_tok, attn, sampled)
        te = self.t + dt
        if self.record:
            self.step_dt.append(dt)
            self.step_dec.append(n_dec)
        self.blocks_used += phase[ph]
        done_now = self.cal.pop(s, None)
        if done_now:
            self._complete(done_now, s, te)
        if sampled:
            self._first_tokens(sampled, s, te)
        self.s = s + 1
        self.t = te
        return te

    def _prefill(self, n_dec: int, free: int, admit: bool = True) -> tuple[int, float, float, int]:
        """Prompt chunks, greedily in admission order, within the token budget and free blocks."""
        R = self.R
        todo, done, blocks, cached = R.todo, R.done, R.blocks, R.cached
        pf, waiting = self.pf, self.waiting
        budget = self.mbt - n_dec
        pf_tok = 0
        kv_tok = attn = 0.0
        sampled = 0
        i = 0
        while budget > 0:
            if i < len(pf):
                rid = pf[i]
            elif admit and waiting and len(pf) + n_dec < self.mns:
                rid = waiting[0]
            else:
                break
            c = todo[rid]
            if c > budget:
                c = budget
            pos = done[rid]
            have = blocks[rid]
            if self.reserve and i == len(pf):  # the whole context, up front
                need = -(-(R.prompt[rid] + R.output[rid]) // BLOCK_TOKENS) - cached[rid] // BLOCK_TOKENS
                if need > free:
                    break
            else:
                need = max(0, -(-(pos + c) // BLOCK_TOKENS) - cached[rid] // BLOCK_TOKENS - have)
            cut = need > free
            if cut:
                c = (have + free) * BLOCK_TOKENS + cached[rid] // BLOCK_TOKENS * BLOCK_TOKENS - pos
                if c <= 0:
                    break
                need = free
            if i == len(pf):
                waiting.popleft()
                pf.append(rid)
                R.state[rid] = PREFILL
            free -= need
            blocks[rid] = have + need
            self.blocks_used += need
            pf_tok += c
            half = pos + c * 0.5
            kv_tok += half
            attn += c * half
            done[rid] = pos + c
            todo[rid] -= c
            budget -= c
            if todo[rid] == 0:
                sampled += 1
            i += 1
            if cut:
                break
        return pf_tok, kv_tok, attn, sampled

    def _complete(self, rids: list[int], s: int, te: float) -> None:
        """Decoding requests whose last token came out of step `s`."""
        R = self.R
        phase = self.phase
        for rid in rids:
            if R.fin_step[rid] == s and R.state[rid] == DECODE:
                del self.dec[rid]
                self.n_dec -= 1
                self.base_sum -= R.base[rid]
                if R.phase[rid] < 0:
                    self.blocks_used -= R.blocks[rid]
                else:
                    phase[R.phase[rid]] -= 1
                    self.blocks_used -= -(-(R.base[rid] + s) // BLOCK_TOKENS) - R.cached[rid] // BLOCK_TOKENS
                self._finish(rid, te)

    def _first_tokens(self, sampled: int, s: int, te: float) -> None:
        """Prompts that finished in step `s`: the first `sampled` prefilling requests (greedy in order)."""
        R = self.R
        pf, phase, blocks, done = self.pf, self.phase, R.blocks, R.done
        for rid in pf[:sampled]:
            R.gen[rid] += 1
            if R.first_t[rid] < 0:
                R.first_t[rid] = te
            left = R.output[rid] - R.gen[rid]
            if left <= 0:
                self.blocks_used -= blocks[rid]
                self._finish(rid, te)
                continue
            ctx0 = done[rid]
            R.state[rid] = DECODE
            R.s0[rid] = s
            R.base[rid] = ctx0 - s
            if self.reserve:
                R.phase[rid] = -1  # its blocks were taken at admission
            else:
                p = (s + 1 - ctx0) & _MASK
                R.phase[rid] = p
                phase[p] += 1
            fin = s + left
            R.fin_step[rid] = fin
            self.cal.setdefault(fin, []).append(rid)
            self.dec[rid] = None
            self.n_dec += 1
            self.base_sum += ctx0 - s
        del pf[:sampled]

    def _finish(self, rid: int, t: float) -> None:
        R = self.R
        R.state[rid] = DONE
        R.finish_t[rid] = t
        R.blocks[rid] = 0
        if self.on_finish is not None:
            self.on_finish(rid, t)

    def _stalled(self) -> float:
        """Nothing could be scheduled: the oldest request's context does not fit the KV pool at all
        (vLLM refuses such a request); it fails and the engine moves on."""
        if self.pf:
            rid = self.pf.pop()
            self.blocks_used -= self.R.blocks[rid]
            self.R.blocks[rid] = 0
        else:
            rid = self.waiting.popleft()
        self.R.state[rid] = FAILED
        self.R.finish_t[rid] = self.t
        if self.on_finish is not None:
            self.on_finish(rid, self.t)
        return self.t
