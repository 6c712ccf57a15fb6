"""The thread tuner (mbdpo_fast/cpu_threads.py): probes both counts, keeps the faster, comes back,
stays put inside the margin, and is inactive where nothing is to be chosen. A fake clock stands
for the machine: each call's duration depends on the thread count in force."""
import torch

from mbdpo_fast.cpu_threads import ThreadTuner

from conftest import tiny_config


class FakeMachine:
    """A clock and torch.set_num_threads stand-in: a call takes `cost[count]` seconds of its kind."""

    def __init__(self, cost: dict):
        self.now, self.count, self.cost, self.calls = 0.0, 2, cost, []

    def clock(self) -> float:
        return self.now

    def set_threads(self, n: int) -> None:
        self.count = n

    def call(self, tuner: ThreadTuner, kind: str) -> None:
        with tuner.timed(kind):
            self.calls.append(self.count)
            self.now += self.cost[kind][self.count]


def tuner_on(machine: FakeMachine, **kw) -> ThreadTuner:
    return ThreadTuner(2, clock=machine.clock, set_threads=machine.set_threads, **kw)


def run(machine, tuner, seconds: float) -> None:
    end = machine.now + seconds
    while machine.now < end:
        machine.call(tuner, "plan")
        machine.call(tuner, "update")


def test_keeps_every_core_while_it_is_faster_and_moves_to_one_when_a_core_is_taken():
    idle = {"plan": {2: 0.039, 1: 0.050}, "update": {2: 0.046, 1: 0.074}}
    busy = {"plan": {2: 0.124, 1: 0.052}, "update": {2: 0.110, 1: 0.072}}
    m = FakeMachine(idle)
    t = tuner_on(m, probe_every_s=20.0, first_probe_s=5.0)
    run(m, t, 60)
    assert t.current == 2 and t.switches == 0 and m.count == 2
    assert 1 in m.calls  # it did probe one thread
    m.cost = busy  # another process takes a core
    run(m, t, 25)  # within one probe interval
    assert t.current == 1 and m.count == 1 and t.switches == 1
    ones = len(m.calls)
    run(m, t, 60)
    assert m.calls[ones:].count(2) <= 4 * 3 * 2  # after the switch only probes run on two threads
    m.cost = idle  # the other process ends
    run(m, t, 25)
    assert t.current == 2 and t.switches == 2


def test_a_difference_inside_the_margin_does_not_switch():
    close = {"plan": {2: 0.050, 1: 0.053}, "update": {2: 0.050, 1: 0.047}}  # 1 thread 0.5% faster overall
    m = FakeMachine(close)
    t = tuner_on(m, probe_every_s=5.0, first_probe_s=0.0)
    run(m, t, 60)
    assert t.current == 2 and t.switches == 0


def test_one_kind_of_call_is_enough_probes_alternate_and_first_calls_are_not_timed():
    m = FakeMachine({"plan": {2: 0.1, 1: 0.02}})
    t = tuner_on(m, first_probe_s=0.0, probe_calls=3)
    for _ in range(7):  # the first call at each count may compile: 3 timed calls each need 8 calls
        m.call(t, "plan")
    assert m.calls == [2, 1, 2, 1, 2, 1, 2] and t.current == 2 and t.probing is not None
    m.call(t, "plan")
    assert t.current == 1 and m.count == 1 and t.probing is None


def test_a_compiling_first_call_does_not_decide():
    """The first call at one thread takes 30 s (a compile); the tuner does not count it."""
    m = FakeMachine({"plan": {2: 0.05, 1: 0.06}})
    t = tuner_on(m, first_probe_s=0.0, probe_calls=2)
    m.call(t, "plan")  # 2 threads, warm-up
    m.cost["plan"][1] = 30.0
    m.call(t, "plan")  # 1 thread, compiling
    m.cost["plan"][1] = 0.06
    run_kind(m, t, "plan", 6)
    assert t.current == 2 and t.switches == 0


def run_kind(m, t, kind, n):
    for _ in range(n):
        m.call(t, kind)


def test_inactive_for_one_thread_explicit_threads_and_non_cpu_devices():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert ThreadTuner.for_run(tiny_config(), torch.device("cpu")).active
        assert not ThreadTuner.for_run(tiny_config(threads=2), torch.device("cpu")).active
        assert not ThreadTuner.for_run(tiny_config(), torch.device("meta")).active
        torch.set_num_threads(1)
        t = ThreadTuner.for_run(tiny_config(), torch.device("cpu"))
        assert not t.active
        with t.timed("plan"):
            pass
        assert torch.get_num_threads() == 1 and t.describe() == "1 threads"
    finally:
        torch.set_num_threads(before)


def test_the_agent_times_its_plans_and_updates(monkeypatch):
    from mbdpo_fast.agent import MBDPO
    from mbdpo_fast.batch import Batch

    seen = []
    monkeypatch.setattr(ThreadTuner, "timed", lambda self, kind: (seen.append(kind), _null())[1])
    agent = MBDPO(tiny_config())
    agent.act(torch.randn(1, 7), agent.planner.initial_plan(1))
    H, B = agent.cfg.horizon, 8
    agent.update(Batch(obs=torch.randn(H + 1, B, 7), action=torch.zeros(H, B, 3), reward=torch.zeros(H, B, 1),
                       terminated=torch.zeros(H, B, 1)))
    assert seen == ["plan", "update"]


def _null():
    from contextlib import nullcontext
    return nullcontext()
