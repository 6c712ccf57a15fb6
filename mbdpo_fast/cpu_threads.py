"""torch's intra-op thread count on a CPU, following what other processes leave free.

torch's OpenMP threads spin while they wait for each other. When another process holds one of
the cores, every parallel region waits for the thread that shares a core with it: on a 2-core
machine with one core busy, model size 1's plan took 231 ms on two threads against 63 ms on one
(41 and 55 ms with the machine idle, where two threads win; benchmarks/cpu_roofline.py, section
busy). No fixed count is right for both, so with `threads=0` (the default) the agent measures every
`interval_s` seconds how many of its cores other processes kept busy (the CPU time of the cores in
its affinity, from /proc/stat, less its own and its child processes', e.g. environment workers)
and uses the rest: every core when the machine is otherwise idle, one fewer per core that another
process fills, at least one. A run moves to fewer threads within about two intervals of another
process taking a core, and back once it leaves.

Why measure the load rather than time the threads: a short timed probe on every core and on one
thread (tried first) could not tell a busy core apart reliably. Under the scheduler's fair share
a parallel matrix product on 2 threads still ran about 1.3x faster than on one with the other core
busy (each thread getting two thirds of a core), while the plan and the update, many small parallel
regions each waiting for the slowest thread, ran 1.5-4x slower; and timing the run's own calls at
another count would compile a compiled plan or update once more (torch.compile specialises to the
thread count). Reading /proc costs about a millisecond and compiles nothing: a run compiles for a
count only when it switches to it. Linux only (elsewhere the count stays as set).
"""
from __future__ import annotations

import os
import time

import torch

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_cpu_seconds(cpus: set[int]) -> float | None:
    """CPU seconds the listed cores have spent not idle since boot (user, nice, system, irq,
    softirq and steal time, /proc/stat); None where /proc/stat cannot be read."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
            total += user + nice + system + irq + softirq + steal
    return total / _TICK


def own_cpu_seconds(pid: int | None = None) -> float | None:
    """CPU seconds of this process (all its threads) and of its live descendants (environment
    workers), plus those of its finished children; from /proc. None where /proc cannot be read."""
    pid = os.getpid() if pid is None else pid
    try:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        text = f.read()
                except OSError:  # the process ended meanwhile
                    continue
                fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
                stats[int(entry)] = (int(fields[1]), fields)  # ppid
    except OSError:
        return None
    if pid not in stats:
        return None
    children: dict[int, list[int]] = {}
    for p, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(p)
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        fields = stats[p][1]
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if p == pid:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime: children already reaped
        todo.extend(children.get(p, []))
    return total / _TICK


class ThreadTuner:
    """Sets torch's threads to `threads` (every core the run may use) less the cores that other
    processes kept busy over the last interval. `poll()` (called by the agent before each plan and
    update) is a clock read except every `interval_s` seconds, when it reads the CPU times and
    chooses. A core counts as taken when others used more than `taken` of one on average.
    Inactive (a no-op) for threads <= 1 or without /proc. `clock`, `busy` (cores -> seconds),
    `own` (-> seconds) and `set_threads` are injectable for tests."""

    def __init__(self, threads: int, interval_s: float = 2.0, taken: float = 0.5, clock=time.monotonic,
                 busy=busy_cpu_seconds, own=own_cpu_seconds, set_threads=torch.set_num_threads,
                 cpus: set[int] | None = None):
        self.max = max(int(threads), 1)
        self.current = self.max
        self.cpus = cpus if cpus is not None else (set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                   else set())
        self.interval_s, self.taken = interval_s, taken
        self.clock, self.busy, self.own, self.set_threads = clock, busy, own, set_threads
        self.switches = 0
        self.others = 0.0  # cores other processes kept busy over the last interval
        self.last = self._sample() if self.max > 1 else None

    def _sample(self):
        busy, own = self.busy(self.cpus), self.own()
        return None if busy is None or own is None else (self.clock(), busy, own)

    @classmethod
    def for_run(cls, spec, device: torch.device) -> "ThreadTuner":
        """The tuner of a run: active on a CPU with threads=0 when torch has more than one thread
        (config.apply_threads gave it the cores it may use); inactive otherwise."""
        auto = torch.device(device).type == "cpu" and int(spec.get("threads", 0)) == 0
        return cls(torch.get_num_threads() if auto else 1)

    @property
    def active(self) -> bool:
        return self.max > 1 and self.last is not None

    def poll(self) -> None:
        """Choose the count when an interval has passed; otherwise only a clock read."""
        if self.last is None or self.clock() - self.last[0] < self.interval_s:
            return
        now = self._sample()
        if now is None:
            return
        (t0, busy0, own0), (t1, busy1, own1) = self.last, now
        self.last = now
        self.others = max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-9))
        taken = int(self.others + 1 - self.taken)  # cores others fill: rounds at `taken` of a core
        best = min(self.max, max(1, len(self.cpus) - taken)) if self.cpus else self.max
        if best != self.current:
            self.current = best
            self.switches += 1
            self.set_threads(best)

    def describe(self) -> str:
        """For the run's banner: the count in use and whether it is tuned."""
        return f"{self.current} threads, fewer while other processes use the cores" if self.active \
            else f"{torch.get_num_threads()} threads"
