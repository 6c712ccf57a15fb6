"""E ManiSkill3 environments in one simulation in this process (env_backend=maniskill): the
`physx_cuda` backend on a GPU, tensors handed to the trainer as they are (ManiSkill3 steps in
torch), or ManiSkill's CPU backend (one environment).

    env = ManiSkillVecEnv("ms-pick-cube", num_envs=1024, seed=0, device="cuda")
    obs = env.reset()                                   # [E, obs_dim] float32 on the device
    obs, reward, terminated, truncated, info = env.step(actions)   # actions [E, A] in [-1, 1]

The conventions of the CPU workers (envs/cpu/suites.py: state observations, normalized_dense
reward, the reference's controllers, repeat 2 with rewards summed, 100 agent steps, success), with
one difference a batched simulation imposes: where ManiSkill says done after the first repeated
step, that environment still takes the second (every environment of a simulation steps together),
but its reward and observation are the first step's, as if the repeat had stopped. Episodes end
by the time limit only; ended environments are reset in the same step (ManiSkill's partial reset)
and info["terminal_obs"] keeps what they ended on. Needs mani-skill in this interpreter
(`pip install mani-skill==3.0.1`, with torch for CUDA on a GPU machine).
"""
from __future__ import annotations

import torch

from ..errors import ConfigError


class ManiSkillVecEnv:
    def __init__(self, task: str, num_envs: int, seed: int = 0, action_repeat: int = 2, episode_length: int = 100,
                 device: str | torch.device = "cuda"):
        from .cpu.suites import MANISKILL_IDS, import_maniskill, make_maniskill3

        try:
            import_maniskill()
        except ImportError as exc:
            raise ConfigError(f"env_backend=maniskill runs ManiSkill3 in this process, which cannot import it "
                              f"({exc}): pip install mani-skill==3.0.1, or train on CPU workers with "
                              f"env_backend=dmc") from None
        if task not in MANISKILL_IDS or MANISKILL_IDS[task][1] is None:
            raise ConfigError(f"env_backend=maniskill is for the ManiSkill3 tasks, not {task!r}")
        self.task, self.num_envs = task, int(num_envs)
        self.device = torch.device(device)
        self.action_repeat, self.episode_length = int(action_repeat), int(episode_length)
        if self.device.type == "cuda":
            sim = "physx_cuda"
        elif self.num_envs == 1:
            sim = "cpu"
        else:
            raise ConfigError(f"env_backend=maniskill on a CPU simulates one environment per process "
                              f"(num_envs={self.num_envs}): use env_backend=dmc, whose workers run one each")
        self._env = make_maniskill3(task, self.num_envs, sim)
        if self.device.type == "cuda" and torch.device(self._env.device) != torch.device("cuda", self.device.index or 0):
            raise ConfigError(f"ManiSkill simulates on {self._env.device}, the run's device is {self.device}: "
                              f"select the GPU with CUDA_VISIBLE_DEVICES")
        self.obs_dim = int(self._env.single_observation_space.shape[0])
        self.obs_shape = (self.obs_dim,)
        self.action_dim = int(self._env.single_action_space.shape[0])
        self.has_success = True
        self._seed = seed
        E = self.num_envs
        self._t = torch.zeros(E, dtype=torch.int64, device=self.device)
        self._ret = torch.zeros(E, device=self.device)

    def _on_device(self, x) -> torch.Tensor:
        return torch.as_tensor(x).to(self.device).reshape(self.num_envs, -1).float()

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Fresh episodes: env i seeded seed + i (the constructor's seed on the first call), else
        continuing ManiSkill's own stream."""
        seed = self._seed if seed is None else seed
        self._seed = None
        obs, _ = self._env.reset(seed=None if seed is None else [seed + i for i in range(self.num_envs)])
        self._t.zero_()
        self._ret.zero_()
        return self._on_device(obs)

    def step(self, actions: torch.Tensor):
        """actions [E, A] -> obs [E, D], reward [E], terminated [E] (False), truncated [E], info."""
        if tuple(actions.shape) != (self.num_envs, self.action_dim):
            raise ValueError(f"actions must be [{self.num_envs}, {self.action_dim}], got {list(actions.shape)}")
        a = actions.to(self.device, torch.float32).clamp(-1, 1)
        E = self.num_envs
        reward = torch.zeros(E, device=self.device)
        success = torch.zeros(E, device=self.device)
        stopped = torch.zeros(E, dtype=torch.bool, device=self.device)
        obs = None
        for _ in range(self.action_repeat):
            o, r, terminated, _, info = self._env.step(a)
            o = self._on_device(o)
            obs = o if obs is None else torch.where(stopped[:, None], obs, o)
            reward += torch.where(stopped, 0.0, self._on_device(r).view(E))
            success = torch.where(stopped, success, self._on_device(info["success"]).view(E))
            stopped |= self._on_device(terminated).view(E).bool()
        self._t += 1
        self._ret += reward
        truncated = self._t >= self.episode_length
        out = {"terminal_obs": obs.clone(), "episode_return": self._ret.clone(), "episode_length": self._t.clone(),
               "done": truncated.clone(), "success": success}
        if truncated.any():
            idx = truncated.nonzero().view(-1)
            fresh, _ = self._env.reset(options={"env_idx": idx})
            obs = torch.where(truncated[:, None], self._on_device(fresh), obs)
            self._t[idx] = 0
            self._ret[idx] = 0
        return obs, reward, torch.zeros_like(truncated), truncated, out

    def close(self) -> None:
        self._env.close()
