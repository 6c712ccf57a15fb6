"""The thread tuner (mbdpo_fast/cpu_threads.py): every core while the machine is otherwise idle,
one fewer per core another process fills, back when it leaves, this process's own children not
counted as others; the /proc readers against a real busy process; inactive where nothing is to be
chosen. Fake clocks and CPU counters stand for the machine in the first tests."""
import os
import subprocess
import sys
import time

import pytest
import torch

from mbdpo_fast.cpu_threads import ThreadTuner, busy_cpu_seconds, own_cpu_seconds

from conftest import tiny_config


class FakeMachine:
    """Cores' busy seconds and this process tree's seconds, advanced by `run(seconds)`: ours is
    `mine` cores' worth (with our threads), others' `others` cores'."""

    def __init__(self, cores: int = 2):
        self.now, self.busy_s, self.own_s, self.count = 0.0, 0.0, 0.0, cores
        self.others, self.sets = 0.0, []

    def clock(self):
        return self.now

    def busy(self, cpus):
        return self.busy_s

    def own(self):
        return self.own_s

    def set_threads(self, n):
        self.count = n
        self.sets.append(n)

    def run(self, tuner, seconds, step=0.05):
        for _ in range(int(round(seconds / step))):
            tuner.poll()
            mine = min(self.count, max(len(tuner.cpus) - self.others, 0.5))
            self.now += step
            self.own_s += mine * step
            self.busy_s += (mine + self.others) * step


def tuner_on(m: FakeMachine, threads=2, cpus=(0, 1), **kw):
    return ThreadTuner(threads, clock=m.clock, busy=m.busy, own=m.own, set_threads=m.set_threads, cpus=set(cpus), **kw)


def test_every_core_while_idle_fewer_while_others_fill_cores_and_back():
    m = FakeMachine()
    t = tuner_on(m)
    m.run(t, 10)
    assert t.current == 2 and m.sets == [] and t.others < 0.1
    m.others = 1.0  # another process spins on a core
    m.run(t, 4.1)  # within two intervals
    assert t.current == 1 and m.count == 1 and t.switches == 1
    m.run(t, 20)
    assert t.current == 1 and m.sets == [1]
    m.others = 0.0
    m.run(t, 4.1)
    assert t.current == 2 and m.sets == [1, 2]


def test_a_little_load_from_others_keeps_every_core():
    m = FakeMachine()
    t = tuner_on(m)
    m.others = 0.3  # a daemon waking now and then: less than half a core
    m.run(t, 10)
    assert t.current == 2 and t.switches == 0


def test_many_cores_drop_one_per_core_taken_and_never_exceed_the_given_count():
    m = FakeMachine(cores=4)
    t = tuner_on(m, threads=4, cpus=range(8))  # 4 threads given on an 8-core affinity
    m.others = 3.0
    m.run(t, 4.1)
    assert t.current == 4  # 8 - 3 = 5 free, capped at the 4 given
    m.others = 6.0
    m.run(t, 4.1)
    assert t.current == 2
    m.others = 9.0
    m.run(t, 4.1)
    assert t.current == 1


def test_polls_between_intervals_only_read_the_clock():
    calls = []
    m = FakeMachine()
    t = ThreadTuner(2, clock=m.clock, busy=lambda c: calls.append(1) or m.busy_s, own=m.own,
                    set_threads=m.set_threads, cpus={0, 1})
    assert len(calls) == 1  # the first sample
    for _ in range(30):  # 1.5 s: no sample
        t.poll()
        m.now += 0.05
    assert len(calls) == 1
    for _ in range(20):  # past 2 s: one more
        t.poll()
        m.now += 0.05
    assert len(calls) == 2


def test_inactive_for_one_thread_explicit_threads_non_cpu_devices_and_without_proc():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert ThreadTuner.for_run(tiny_config(), torch.device("cpu")).active == os.path.exists("/proc/stat")
        assert not ThreadTuner.for_run(tiny_config(threads=2), torch.device("cpu")).active
        assert not ThreadTuner.for_run(tiny_config(), torch.device("meta")).active
        assert not ThreadTuner(2, busy=lambda c: None).active
        torch.set_num_threads(1)
        t = ThreadTuner.for_run(tiny_config(), torch.device("cpu"))
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


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads Linux's /proc")
def test_proc_readers_see_another_process_and_count_our_children_as_ours():
    """A spinning child is this process tree's time, not another process's; a spinning process
    that is not a descendant shows in the cores' busy time only."""
    cpus = set(os.sched_getaffinity(0))
    b0, o0, t0 = busy_cpu_seconds(cpus), own_cpu_seconds(), time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", "import time\nwhile time.process_time() < 1.0: pass"])
    child.wait()
    b1, o1, t1 = busy_cpu_seconds(cpus), own_cpu_seconds(), time.monotonic()
    assert o1 - o0 >= 0.9  # the child's CPU second counts as ours (reaped: cutime)
    assert b1 - b0 >= o1 - o0 - 0.2
    # an unrelated spinner: started by a shell that exits at once, so it is no descendant of ours
    out = subprocess.run(["sh", "-c", f"{sys.executable} -c 'import time\nt = time.time()\nwhile time.time() - t < 1.5: pass' "
                                      "> /dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    pid = int(out.stdout.strip())
    try:
        time.sleep(0.2)
        b0, o0, t0 = busy_cpu_seconds(cpus), own_cpu_seconds(), time.monotonic()
        time.sleep(1.0)
        b1, o1, t1 = busy_cpu_seconds(cpus), own_cpu_seconds(), time.monotonic()
        others = ((b1 - b0) - (o1 - o0)) / (t1 - t0)
        assert others >= 0.6, others  # the unrelated spinner's core
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
