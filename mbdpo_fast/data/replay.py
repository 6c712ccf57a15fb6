"""Replay buffer on the config's device: S parallel streams of episodes, sampled as windows of
H+1 consecutive steps that never cross an episode boundary.

Slot layout: slot j of a stream holds observation o_t and the (action, reward, terminated) that
led into it (zeros at an episode's first slot). A window starting at slot s covers s..s+H:
obs o_s..o_{s+H}, and actions/rewards/terminations of slots s+1..s+H. `valid[s]` marks starts
whose whole window lies in one episode and has been written; it is maintained on every write
(set when a window completes, cleared when the write head overwrites any of its slots), so
sampling is one multinomial draw with no host synchronisation.

Pixel observations (obs_shape = (3 F, H, W), a stack of the last F RGB frames, uint8): each slot
keeps only its newest frame, [3, H, W] uint8, and sampling rebuilds the stacks from the slots
before (at an episode's first steps the first frame repeated, as the environment stacks them), so
a transition costs one frame (12,288 B at 64 x 64) instead of F. A window also reads the F - 1
slots before its start, so overwriting a slot clears the starts whose stacks reach back into it.
With `storage` = "cpu" and a CUDA device the slots live in pinned host memory and sample() hands
the batch to the device without blocking (a transfer on the current stream).
"""
from __future__ import annotations

import math
import os

import torch

from ..errors import ReplayCapacityError
from ..batch import Batch


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int, action_dim: int, horizon: int, num_streams: int = 1,
                 device: torch.device | str = "cpu", multitask: bool = False, obs_shape: tuple | None = None,
                 frames: int = 1, storage: torch.device | str | None = None):
        """obs_shape: pixel observations (3 x frames, H, W) uint8 (None: vectors of obs_dim);
        storage: where the slots live (default `device`, where batches are delivered)."""
        self.S = int(num_streams)
        self.T = int(math.ceil(capacity / self.S))  # slots per stream
        self.H, self.obs_dim, self.action_dim = int(horizon), int(obs_dim), int(action_dim)
        self.device = torch.device(device)
        self.storage = torch.device(storage) if storage is not None else self.device
        self.obs_shape = tuple(int(d) for d in obs_shape) if obs_shape is not None else None
        self.frames = int(frames) if obs_shape is not None else 1
        if self.obs_shape is not None and (len(self.obs_shape) != 3 or self.obs_shape[0] % self.frames):
            raise ValueError(f"obs_shape={self.obs_shape} is not a stack of {self.frames} frames [C, H, W]")
        if self.T < self.H + self.frames:
            raise ReplayCapacityError(f"buffer_size={capacity} gives {self.T} slots per stream; need >= "
                                      f"horizon+frames={self.H + self.frames}")
        self._check_memory(multitask)
        S, T = self.S, self.T
        kw = dict(device=self.storage)
        if self.obs_shape is None:
            self.obs = torch.zeros(S, T, obs_dim, **kw)
        else:  # the newest frame of each slot
            c, h, w = self.obs_shape
            pin = self.storage.type == "cpu" and self.device.type == "cuda"
            self.obs = torch.zeros(S, T, c // self.frames, h, w, dtype=torch.uint8, pin_memory=pin, **kw)
        self.action = torch.zeros(S, T, action_dim, **kw)
        self.reward = torch.zeros(S, T, **kw)
        self.terminated = torch.zeros(S, T, **kw)
        self.task = torch.zeros(S, T, dtype=torch.long, **kw) if multitask else None
        self.step = torch.full((S, T), -1, dtype=torch.long, **kw)  # step within episode; -1: empty
        self.valid = torch.zeros(S, T, dtype=torch.bool, **kw)
        self.ptr = torch.zeros(S, dtype=torch.long, **kw)  # writes so far per stream
        self._rows = torch.arange(S, **kw)
        self._offsets = torch.arange(self.H + 1, **kw)

    def bytes_per_slot(self, multitask: bool) -> int:
        """Bytes one transition takes (observation, action, reward, termination, step, valid, task)."""
        if self.obs_shape is None:
            obs = 4 * self.obs_dim
        else:
            c, h, w = self.obs_shape
            obs = c // self.frames * h * w
        return obs + 4 * (self.action_dim + 2) + 8 + 1 + (8 if multitask else 0)

    def _check_memory(self, multitask: bool) -> None:
        need = self.S * self.T * self.bytes_per_slot(multitask)
        if self.storage.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.storage)
        else:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        if need > 0.8 * free:
            raise ReplayCapacityError(
                f"replay of {self.S * self.T:,} slots needs {need / 2**30:.2f} GiB on {self.storage}, "
                f"but only {free / 2**30:.2f} GiB is free; lower buffer_size")

    # ----------------------------------------------------------------------------------------
    def add(self, obs: torch.Tensor, action: torch.Tensor | None, reward: torch.Tensor | None,
            terminated: torch.Tensor | None, first: torch.Tensor, mask: torch.Tensor | None = None,
            task: torch.Tensor | None = None) -> None:
        """Append one slot to each stream (where `mask`, default all).

        obs [S, D] (pixels: [S, 3 F, H, W], of which the newest frame is kept); action [S, A],
        reward [S], terminated [S]: what led into obs (ignored where `first`, i.e. obs is an
        episode's first observation); first [S] bool; task [S]."""
        S, T, H = self.S, self.T, self.H
        first = first.to(self.storage, torch.bool).view(S)
        mask = torch.ones(S, dtype=torch.bool, device=self.storage) if mask is None else mask.to(self.storage, torch.bool).view(S)
        rows, slot = self._rows, self.ptr % T
        keep = first.view(S, 1)

        def put(store: torch.Tensor, value: torch.Tensor | None, zero_first: bool) -> None:
            value = torch.zeros_like(store[rows, slot]) if value is None else value.to(self.storage, store.dtype).view_as(store[rows, slot])
            if zero_first:
                value = torch.where(keep.view(S, *([1] * (value.dim() - 1))), torch.zeros_like(value), value)
            m = mask.view(S, *([1] * (value.dim() - 1)))
            store[rows, slot] = torch.where(m, value, store[rows, slot])

        # Overwriting `slot` breaks every window that contains it: starts slot-H .. slot.
        for k in range(H + 1):
            back = (slot - k) % T
            self.valid[rows, back] &= ~mask
        for k in range(1, self.frames):  # ... and the starts whose frame stacks reach back into it
            self.valid[rows, (slot + k) % T] &= ~mask
        prev_step = self.step[rows, (slot - 1) % T]
        new_step = torch.where(first | (self.ptr == 0), torch.zeros_like(prev_step), prev_step + 1)
        if self.obs_shape is not None:
            obs = obs[:, -self.obs.shape[2]:]  # the newest frame
        put(self.obs, obs, zero_first=False)
        put(self.action, action, zero_first=True)
        put(self.reward, reward, zero_first=True)
        put(self.terminated, terminated, zero_first=True)
        if self.task is not None:
            put(self.task, task, zero_first=False)
        self.step[rows, slot] = torch.where(mask, new_step, self.step[rows, slot])
        done_window = mask & (new_step >= H)
        start = (slot - H) % T
        self.valid[rows, start] |= done_window
        self.ptr += mask.long()

    def num_valid(self) -> int:
        """Number of valid window starts (host sync; for logs and checks, not the hot path)."""
        return int(self.valid.sum())

    def __len__(self) -> int:
        """Slots currently stored across streams."""
        return int(self.ptr.clamp(max=self.T).sum())

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """Uniform over valid windows: obs [H+1, B, D] (pixels: [H+1, B, 3 F, H, W] uint8),
        action [H, B, A], reward/terminated [H, B, 1], on `device`."""
        flat = torch.multinomial(self.valid.view(-1).float(), batch_size, replacement=True, generator=generator)
        stream, start = flat // self.T, flat % self.T
        idx = (start.unsqueeze(0) + self._offsets.unsqueeze(1)) % self.T  # [H+1, B]
        s = stream.unsqueeze(0).expand_as(idx)
        batch = Batch(
            obs=self._observations(s, idx),
            action=self.action[s[1:], idx[1:]],
            reward=self.reward[s[1:], idx[1:]].unsqueeze(-1),
            terminated=self.terminated[s[1:], idx[1:]].unsqueeze(-1),
            task=self.task[stream, start] if self.task is not None else None,
        )
        return batch if self.storage == self.device else self._to_device(batch)

    def _observations(self, s: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Observations at slots idx of streams s ([H+1, B]); pixel stacks rebuilt from the newest
        frames of the slots before, never reaching before the episode's first slot."""
        if self.obs_shape is None:
            return self.obs[s, idx]
        step = self.step[s, idx]
        return torch.cat([self.obs[s, (idx - step.clamp(max=back)) % self.T] for back in range(self.frames - 1, -1, -1)],
                         dim=2)

    def _to_device(self, batch: Batch) -> Batch:
        """The batch on `device`: from pinned host memory without blocking this thread."""
        pin = self.storage.type == "cpu" and self.device.type == "cuda"

        def move(t):
            return None if t is None else (t.pin_memory() if pin else t).to(self.device, non_blocking=pin)
        return Batch(*(move(t) for t in (batch.obs, batch.action, batch.reward, batch.terminated, batch.task)))

    # ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The stored slots only (not the empty tail), so checkpoints stay proportional to data."""
        filled = int(self.ptr.max().clamp(max=self.T))
        names = ["obs", "action", "reward", "terminated", "step", "valid"] + (["task"] if self.task is not None else [])
        state = {n: getattr(self, n)[:, :filled].cpu() for n in names}
        state.update(ptr=self.ptr.cpu(), shape=torch.tensor([self.S, self.T, self.obs_dim, self.action_dim, self.H]))
        return state

    def load_state_dict(self, state: dict) -> None:
        want = [self.S, self.T, self.obs_dim, self.action_dim, self.H]
        got = state["shape"].tolist()
        if got != want:
            raise ValueError(f"replay state has (streams, slots, obs_dim, action_dim, horizon)={got}, "
                             f"this buffer {want}; use the same buffer_size, task and horizon to resume")
        filled = state["obs"].shape[1]
        for n in ["obs", "action", "reward", "terminated", "step", "valid"] + (["task"] if self.task is not None else []):
            getattr(self, n)[:, :filled] = state[n].to(self.storage)
        self.ptr.copy_(state["ptr"])
