"""Region timing without host synchronisation on the hot path, and NVTX ranges for Nsight.

    timer = RegionTimer(device)
    with timer.region("plan"):      # an NVTX range "plan"; CUDA events (or a host clock on CPU)
        ...
    timer.mean_ms()                 # {"plan": ms, ...}: synchronises once, then resets
    process_age_s()                 # seconds since this process started (interpreter start-up included)
"""
from __future__ import annotations

import os
import time
from collections import defaultdict
from contextlib import contextmanager

import torch


_IMPORTED = time.perf_counter()


def process_age_s() -> float:
    """Seconds since this process started, from /proc (Linux: the interpreter's start-up and every
    import included, 10 ms resolution); elsewhere since this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


@contextmanager
def nvtx_range(name: str):
    """An NVTX range when CUDA is available (visible in Nsight Systems), else nothing."""
    if torch.cuda.is_available():
        torch.cuda.nvtx.range_push(name)
        try:
            yield
        finally:
            torch.cuda.nvtx.range_pop()
    else:
        yield


class RegionTimer:
    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self._events: dict[str, list] = defaultdict(list)

    @contextmanager
    def region(self, name: str):
        with nvtx_range(name):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                yield
                end.record()
                self._events[name].append((start, end))
            else:
                t0 = time.perf_counter()
                yield
                self._events[name].append(1000.0 * (time.perf_counter() - t0))

    def mean_ms(self) -> dict[str, float]:
        """Mean milliseconds per region since the last call (one synchronisation)."""
        if self.cuda and self._events:
            torch.cuda.synchronize()
        out = {}
        for name, items in self._events.items():
            ms = [s.elapsed_time(e) for s, e in items] if self.cuda else items
            out[name] = sum(ms) / len(ms) if ms else float("nan")
        self._events.clear()
        return out
