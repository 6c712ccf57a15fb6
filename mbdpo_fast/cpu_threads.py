"""torch's intra-op thread count on a CPU, chosen by measuring what the cores deliver now.

torch's OpenMP threads spin while they wait for each other. When another process holds one of
the cores, every parallel region waits for the thread that shares a core with it: on a 2-core
machine with one core busy, model size 1's plan took 124 ms on two threads against 52 ms on one
(39 and 50 ms with the machine idle, where two threads win; benchmarks/cpu_roofline.py, section
busy). No fixed count is right for both, so with `threads=0` (the default) the agent checks every
`probe_every_s` seconds what the cores deliver: a short matrix-multiply probe on every core and on
one thread, alternately, a few rounds. Idle, the probe runs 1.7-1.9x faster on 2 threads than on
one; with one of the 2 cores busy, 0.8-1.1x (the half of each product on the busy core runs at half
speed), while the plan and the update, made of many small parallel regions that each wait for the
slow thread, run 1.5-2.4x slower than on one thread. So every core is kept only while the probe
shows them `min_efficiency` (65%) of their ideal speed-up (1.3x on 2 cores), else one thread. A run
moves to one thread within about a probe interval of another process taking a core, and back once
it leaves; a probe takes about 40 ms.

Why a probe and not the run's own calls: a compiled plan or update is specialised to the thread
count (torch.compile guards on it), so timing the real calls at the other count would compile them
once more at the first probe (about a minute on 2 cores); the probe compiles nothing, and a run
compiles for a count only when it switches to it.
"""
from __future__ import annotations

import time

import torch


def matmul_probe(rows: int = 128, width: int = 384, products: int = 20) -> None:
    """The probe: `products` [rows, width] x [width, width] fp32 products, the planner's and the
    update's hidden-layer shape at model size 1 (0.75 GFLOP: about 8 ms on one core, longer than
    the scheduler's time slice, so that a thread sharing its core shows)."""
    a, b = _operands(rows, width)
    for _ in range(products):
        torch.mm(a, b)


_OPERANDS: dict = {}


def _operands(rows: int, width: int):
    if (rows, width) not in _OPERANDS:
        g = torch.Generator().manual_seed(0)
        _OPERANDS[(rows, width)] = (torch.randn(rows, width, generator=g), torch.randn(width, width, generator=g))
    return _OPERANDS[(rows, width)]


class ThreadTuner:
    """Chooses between `threads` (every core the run may use) and one thread. `poll()` (called by
    the agent before each plan and update) is a clock read, except every `probe_every_s` seconds
    (the first after `first_probe_s`), when it times `probe` on both counts, alternately for
    `rounds` rounds: every core is kept, or taken back, when its best time is at most that of one
    thread / (min_efficiency x threads), else one thread. Inactive (a no-op) for threads <= 1.
    `clock`, `probe` and `set_threads` are injectable for tests."""

    def __init__(self, threads: int, probe_every_s: float = 20.0, first_probe_s: float = 2.0, rounds: int = 3,
                 min_efficiency: float = 0.65, clock=time.perf_counter, probe=matmul_probe,
                 set_threads=torch.set_num_threads):
        self.choices = [int(threads), 1] if threads > 1 else []
        self.current = max(int(threads), 1)
        self.probe_every_s, self.rounds, self.min_efficiency = probe_every_s, rounds, min_efficiency
        self.clock, self.probe, self.set_threads = clock, probe, set_threads
        self.next_probe = clock() + first_probe_s
        self.switches = 0
        self.last: dict[int, float] = {}  # the latest probe's best seconds per count

    @classmethod
    def for_run(cls, spec, device: torch.device) -> "ThreadTuner":
        """The tuner of a run: active on a CPU with threads=0 when torch has more than one thread
        (config.apply_threads gave it the cores it may use); inactive otherwise."""
        auto = torch.device(device).type == "cpu" and int(spec.get("threads", 0)) == 0
        return cls(torch.get_num_threads() if auto else 1)

    @property
    def active(self) -> bool:
        return bool(self.choices)

    def poll(self) -> None:
        """Probe and choose when one is due; otherwise only a clock read."""
        if not self.choices or self.clock() < self.next_probe:
            return
        times: dict[int, list[float]] = {c: [] for c in self.choices}
        for _ in range(self.rounds):
            for c in self.choices:
                self.set_threads(c)
                t0 = self.clock()
                self.probe()
                times[c].append(self.clock() - t0)
        self.last = {c: min(t) for c, t in times.items()}
        n = self.choices[0]
        best = n if self.last[1] >= self.min_efficiency * n * self.last[n] else 1
        if best != self.current:
            self.current = best
            self.switches += 1
        self.set_threads(self.current)
        self.next_probe = self.clock() + self.probe_every_s

    def describe(self) -> str:
        """For the run's banner: the count in use and whether it is tuned."""
        return f"{self.current} threads, tuned between {self.choices[0]} and 1" if self.choices \
            else f"{torch.get_num_threads()} threads"
