"""The thread tuner (mbdpo_fast/cpu_threads.py): keeps every core while they deliver, moves to
one thread when a core is taken and back when it is free again, probes only when due, and is
inactive where nothing is to be chosen. A fake clock and probe stand for the machine; one test
runs the real probe against a real busy process."""
import subprocess
import sys
import time

import pytest
import torch

from mbdpo_fast.cpu_threads import ThreadTuner

from conftest import tiny_config


class FakeMachine:
    """A clock, a probe and torch.set_num_threads stand-in: the probe takes `cost[busy][count]` s."""

    COST = {False: {2: 0.0045, 1: 0.0080}, True: {2: 0.0084, 1: 0.0077}}  # measured on 2 cores

    def __init__(self):
        self.now, self.count, self.busy, self.probes = 0.0, 2, False, 0

    def clock(self) -> float:
        return self.now

    def set_threads(self, n: int) -> None:
        self.count = n

    def probe(self) -> None:
        self.probes += 1
        self.now += self.COST[self.busy][self.count]


def tuner_on(m: FakeMachine, **kw) -> ThreadTuner:
    return ThreadTuner(2, clock=m.clock, probe=m.probe, set_threads=m.set_threads, **kw)


def run(m: FakeMachine, t: ThreadTuner, seconds: float, step: float = 0.05) -> None:
    """Calls (plans, updates) of `step` seconds each, the tuner polled before each."""
    end = m.now + seconds
    while m.now < end:
        t.poll()
        m.now += step


def test_every_core_while_idle_one_thread_while_a_core_is_busy_and_back():
    m = FakeMachine()
    t = tuner_on(m, probe_every_s=20.0, first_probe_s=2.0)
    run(m, t, 60)
    assert t.current == 2 and m.count == 2 and t.switches == 0 and m.probes == 3 * 2 * 3
    m.busy = True
    run(m, t, 21)  # within one probe interval
    assert t.current == 1 and m.count == 1 and t.switches == 1
    run(m, t, 60)
    assert t.current == 1
    m.busy = False
    run(m, t, 21)
    assert t.current == 2 and m.count == 2 and t.switches == 2


def test_polls_between_probes_only_read_the_clock():
    m = FakeMachine()
    t = tuner_on(m, probe_every_s=20.0, first_probe_s=2.0)
    run(m, t, 1.9)
    assert m.probes == 0 and m.count == 2
    run(m, t, 1.0)
    assert m.probes == 6  # 3 rounds x 2 counts, alternating
    run(m, t, 15)
    assert m.probes == 6


def test_a_little_parallel_gain_is_not_enough():
    """2 threads 20% faster than one (below 65% of the ideal 2x): one thread, which a busy or
    oversubscribed machine's many small parallel regions favour."""
    m = FakeMachine()
    m.COST = {False: {2: 0.0067, 1: 0.0080}}
    t = tuner_on(m, first_probe_s=0.0)
    run(m, t, 1)
    assert t.current == 1


def test_inactive_for_one_thread_explicit_threads_and_non_cpu_devices():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert ThreadTuner.for_run(tiny_config(), torch.device("cpu")).active
        assert not ThreadTuner.for_run(tiny_config(threads=2), torch.device("cpu")).active
        assert not ThreadTuner.for_run(tiny_config(), torch.device("meta")).active
        torch.set_num_threads(1)
        t = ThreadTuner.for_run(tiny_config(), torch.device("cpu"))
        t.next_probe = 0.0
        t.poll()
        assert not t.active and torch.get_num_threads() == 1 and t.describe() == "1 threads"
    finally:
        torch.set_num_threads(before)


def test_the_agent_polls_before_its_plans_and_updates(monkeypatch):
    from mbdpo_fast.agent import MBDPO
    from mbdpo_fast.batch import Batch

    polls = []
    monkeypatch.setattr(ThreadTuner, "poll", lambda self: polls.append(1))
    agent = MBDPO(tiny_config())
    agent.act(torch.randn(1, 7), agent.planner.initial_plan(1))
    H, B = agent.cfg.horizon, 8
    agent.update(Batch(obs=torch.randn(H + 1, B, 7), action=torch.zeros(H, B, 3), reward=torch.zeros(H, B, 1),
                       terminated=torch.zeros(H, B, 1)))
    assert len(polls) == 2


@pytest.mark.extended
@pytest.mark.skipif(len(__import__("os").sched_getaffinity(0)) != 2, reason="a 2-core machine's measurement")
def test_the_real_probe_picks_one_thread_while_a_core_is_busy():
    """On 2 cores, with another process spinning on one of them, the probe on two threads is not
    1.3x faster than on one, and the tuner takes one thread. A measurement: it needs the machine
    to itself apart from the spinning process (make test-extended; the suite's two workers would
    take the cores). That the tuner keeps both threads when idle is measured by
    benchmarks/cpu_roofline.py --sections busy."""
    before = torch.get_num_threads()
    busy_proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        tuner = ThreadTuner(2, first_probe_s=0.0)
        tuner.poll()
        assert tuner.last[1] / tuner.last[2] < 1.3 and tuner.current == 1, tuner.last
    finally:
        busy_proc.kill()
        busy_proc.wait()
        torch.set_num_threads(before)
