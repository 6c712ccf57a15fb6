"""torch's intra-op thread count on a CPU, chosen by timing the calls a run makes.

torch's OpenMP threads spin while they wait for each other. When another process holds one of
the cores, every parallel region waits for the thread that shares a core with it: on a 2-core
machine with one core busy, model size 1's plan took 124 ms on two threads against 52 ms on one
(50 and 39 ms with the machine idle, where two threads win; benchmarks/cpu_roofline.py, section
busy). No fixed count is right for both, so with `threads=0` (the default) the agent times its own
calls: every `probe_every_s` seconds it runs a few calls of each kind (plan, update) on every core
and on one thread, alternately, and keeps the faster count. A run moves to one thread within
about a probe interval of another process taking a core, and back once it leaves.
"""
from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager

import torch


class ThreadTuner:
    """Chooses between `threads` (every core the run may use) and one thread by timing the calls
    made under `timed(kind)`. Probes alternate the two counts call by call (each kind by itself,
    so that interleaved plans and updates both see both counts) until each has
    `probe_calls` timings of some kind, then compare them by the geometric mean over kinds of the
    median times; the other count must be `margin` faster to be taken. A count's first call of a
    kind is not timed (compiled graphs are specialised to the thread count: it may compile).
    Inactive (a no-op) for threads <= 1. `clock` and `set_threads` are injectable for tests."""

    def __init__(self, threads: int, probe_every_s: float = 20.0, first_probe_s: float = 5.0, probe_calls: int = 3,
                 margin: float = 0.1, clock=time.perf_counter, set_threads=torch.set_num_threads):
        self.choices = [int(threads), 1] if threads > 1 else []
        self.current = max(int(threads), 1)
        self.probe_every_s, self.probe_calls, self.margin = probe_every_s, probe_calls, margin
        self.clock, self.set_threads = clock, set_threads
        self.next_probe = clock() + first_probe_s
        self.probing: dict | None = None  # (count, kind) -> times, while a probe runs
        self.turns: dict[str, int] = {}  # probe calls per kind: each kind alternates the counts by itself
        # (count, kind) pairs that have run once: a compiled graph is specialised to the thread count
        # (torch.compile guards on it), so the first call at a count may compile and is not timed
        self.warm: set = set()
        self.switches = 0

    @classmethod
    def for_run(cls, spec, device: torch.device) -> "ThreadTuner":
        """The tuner of a run: active on a CPU with threads=0 when torch has more than one thread
        (config.apply_threads gave it the cores it may use); inactive otherwise."""
        auto = torch.device(device).type == "cpu" and int(spec.get("threads", 0)) == 0
        return cls(torch.get_num_threads() if auto else 1)

    @property
    def active(self) -> bool:
        return bool(self.choices)

    @contextmanager
    def timed(self, kind: str):
        """Time the block as a call of `kind` (e.g. "plan", "update"), on the count the tuner picks."""
        if not self.choices:
            yield
            return
        now = self.clock()
        if self.probing is None and now >= self.next_probe:
            self.probing, self.turns = {}, {}
        count = self.current
        if self.probing is not None:
            turn = self.turns.get(kind, 0)
            self.turns[kind] = turn + 1
            count = self.choices[turn % 2]
            self.set_threads(count)
        t0 = self.clock()
        try:
            yield
        finally:
            if self.probing is not None:
                if (count, kind) in self.warm:
                    self.probing.setdefault((count, kind), []).append(self.clock() - t0)
                self.warm.add((count, kind))
                self._maybe_decide()
            else:
                self.warm.add((count, kind))

    def _maybe_decide(self) -> None:
        kinds = {k for (_, k) in self.probing}
        done = [k for k in kinds if all(len(self.probing.get((c, k), [])) >= self.probe_calls for c in self.choices)]
        if not done and sum(self.turns.values()) < 8 * self.probe_calls * max(len(kinds), 1):
            return
        if done:
            score = {c: math.exp(statistics.fmean(math.log(statistics.median(self.probing[(c, k)])) for k in done))
                     for c in self.choices}
            other = next(c for c in self.choices if c != self.current)
            if score[other] < (1 - self.margin) * score[self.current]:
                self.current = other
                self.switches += 1
        self.set_threads(self.current)
        self.probing = None
        self.next_probe = self.clock() + self.probe_every_s

    def describe(self) -> str:
        """For the run's banner: the count in use and whether it is tuned."""
        return f"{self.current} threads, tuned between {self.choices[0]} and 1" if self.choices \
            else f"{torch.get_num_threads()} threads"
