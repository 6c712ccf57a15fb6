"""Vectorised online training: E environments stepped together (MJX on the device, or CPU suites in
worker processes), one planner call for all of them, a device replay of E episode streams, and
`updates_per_step` updates of `batch_size` per vector step.

Hot-path discipline: nothing in the loop copies to the host or calls .item(); losses and finished
episodes are accumulated on the device and fetched every `log_every` vector steps (the only
synchronisations, besides evaluation and checkpoints). Every stage runs inside an NVTX range.

`steps`, `eval_freq`, `checkpoint_freq` and `seed_steps` count environment steps summed over envs.
What resume restores: model, optimisers, running statistics, replay buffer, counters and the torch
RNG; the environments start fresh episodes (their simulator states are not saved).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from ..agent import MBDPO
from ..checkpoint import CHECKPOINT_NAME, load_run, save_run
from ..logger import Logger
from ..profiling import RegionTimer
from ..replay import ReplayBuffer
from .online import check_finite


@torch.no_grad()
def evaluate_batched(agent: MBDPO, env) -> dict:
    """One episode in each of the env's E copies, planner in eval mode (no action noise).
    Returns {"reward": mean return, "returns": [E], "success": mean or None}."""
    E = env.num_envs
    obs = env.reset()
    plan = agent.planner.initial_plan(E)
    first = torch.ones(E, dtype=torch.bool, device=agent.device)
    finished = torch.zeros(E, dtype=torch.bool, device=agent.device)
    returns = torch.zeros(E, device=agent.device)
    success = torch.zeros(E, device=agent.device)
    while not bool(finished.all()):
        action, plan = agent.act(obs.to(agent.device), plan, first=first, eval_mode=True)
        obs, _, _, _, info = env.step(action.to(env.device))
        done = info["done"].to(agent.device)
        newly = done & ~finished
        returns = torch.where(newly, info["episode_return"].to(agent.device).float(), returns)
        if "success" in info:
            success = torch.where(newly, info["success"].to(agent.device).float(), success)
        finished |= done
        first = done
    out = {"reward": float(returns.mean()), "returns": returns.tolist(), "success": None}
    if getattr(env, "has_success", False):
        out["success"] = float(success.mean())
    return out


class VectorTrainer:
    def __init__(self, cfg: DictConfig, env, work_dir: str | Path, eval_envs: dict | None = None):
        """env: a batched env with cfg.num_envs copies; eval_envs: name -> batched env for evaluation
        (e.g. {"mjx": ..., "dmc": ...}), each with eval_episodes copies."""
        self.cfg, self.env = cfg, env
        self.eval_envs = eval_envs or {}
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.agent = MBDPO(cfg)
        self.device = self.agent.device
        self.E = int(cfg.num_envs)
        self.buffer = ReplayBuffer(cfg.buffer_size, cfg.obs_dim, cfg.action_dim, cfg.horizon, self.E, self.device)
        self.logger = Logger(cfg, self.work_dir, with_success=getattr(env, "has_success", False))
        self.timer = RegionTimer(self.device)
        self.step, self.episode, self.elapsed, self.last_eval = 0, 0, 0.0, None
        self.seeded = False  # whether the post-seeding update burst has run
        self._eval_summary: dict[str, float] = {}

    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / CHECKPOINT_NAME

    def save(self) -> Path:
        return save_run(self.work_dir, self.cfg, self.agent, self.buffer, {
            "step": self.step, "episode": self.episode, "elapsed": self.elapsed, "seeded": self.seeded,
            "last_eval": -1 if self.last_eval is None else self.last_eval, "env_rng": None}, self.step)

    def load(self, path: str | Path) -> None:
        tr = load_run(path, self.cfg, self.agent, self.buffer)
        self.step, self.episode, self.elapsed = int(tr["step"]), int(tr["episode"]), float(tr["elapsed"])
        self.last_eval = None if int(tr["last_eval"]) < 0 else int(tr["last_eval"])
        self.seeded = bool(tr.get("seeded", self.step >= self.cfg.seed_steps))
        self.logger.truncate_after(self.step)

    # ----------------------------------------------------------------------------------------
    def _evaluate(self) -> None:
        results = {}
        for name, env in self.eval_envs.items():
            with self.timer.region("eval"):
                results[name] = evaluate_batched(self.agent, env)
        if results:
            # eval.csv keeps the published format: the reward of the first evaluation env (the
            # training backend's own task); the others go to the training log / wandb.
            main = next(iter(results.values()))
            self.logger.log_eval(self.step, main["reward"], main["success"])
            self._eval_summary = {f"eval_{k}": v["reward"] for k, v in results.items()}
        self.last_eval = self.step

    def _new_accumulators(self) -> dict:
        z = lambda: torch.zeros((), device=self.device)
        return {"ep_return_sum": z(), "ep_count": z(), "updates": z(), "losses": {}}

    def _accumulate_losses(self, acc: dict, metrics: dict) -> None:
        for k, v in metrics.items():
            acc["losses"][k] = acc["losses"].get(k, 0.0) + v.detach()
        acc["updates"] += 1

    def _log(self, acc: dict, sps: float, pbar) -> None:
        """Fetch the accumulated metrics (one host synchronisation) and write a train row."""
        n_up = max(float(acc["updates"]), 1.0)
        losses = {k: float(v) / n_up for k, v in acc["losses"].items()}
        check_finite(losses, self.step, self.checkpoint_path)
        count = float(acc["ep_count"])
        self.episode += int(count)
        times = self.timer.mean_ms()
        row = {"step": self.step, "episode": self.episode,
               "episode_reward": float(acc["ep_return_sum"]) / count if count else float("nan"),
               "elapsed_s": float(self.elapsed), "env_steps_per_s": float(sps),
               "plan_ms": times.get("plan", float("nan")), "update_ms": times.get("update", float("nan"))}
        row.update({k: v for k, v in losses.items() if k in self.logger.train.fields})
        self.logger.log_train(row)
        pbar.set_postfix(sps=f"{sps:.0f}", ret=f"{row['episode_reward']:.1f}",
                         **{k: f"{v:.1f}" for k, v in self._eval_summary.items()}, refresh=False)

    def train(self) -> dict:
        cfg, dev, E = self.cfg, self.device, self.E
        A = cfg.action_dim
        start_wall = time.perf_counter() - self.elapsed
        wall0, step0 = time.perf_counter(), self.step
        stop = "steps"
        next_ckpt = (self.step // cfg.checkpoint_freq + 1) * cfg.checkpoint_freq
        next_eval = self.step if self.last_eval != self.step and self.step % cfg.eval_freq == 0 else \
            (self.step // cfg.eval_freq + 1) * cfg.eval_freq
        pbar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress_bar, dynamic_ncols=True,
                    desc=f"{cfg.task} x{E} s{cfg.seed}", unit="step")
        obs = self.env.reset().to(dev)
        self.buffer.add(obs, None, None, None, first=torch.ones(E, dtype=torch.bool, device=dev))
        plan = self.agent.planner.initial_plan(E)
        first = torch.ones(E, dtype=torch.bool, device=dev)
        acc = self._new_accumulators()
        vector_steps, window_steps, window_wall = 0, self.step, time.perf_counter()
        try:
            while self.step < cfg.steps:
                if self.step >= next_eval:
                    self._evaluate()
                    next_eval = (self.step // cfg.eval_freq + 1) * cfg.eval_freq
                if self.step < cfg.seed_steps:
                    action = torch.rand(E, A, device=dev) * 2 - 1
                else:
                    with self.timer.region("plan"):
                        action, plan = self.agent.act(obs, plan, first=first)
                with self.timer.region("env"):
                    next_obs, reward, term, trunc, info = self.env.step(action)
                next_obs = next_obs.to(dev)
                done = info["done"].to(dev)
                # the transition's true next observation (the terminal one where an episode ended)
                self.buffer.add(info["terminal_obs"].to(dev), action, reward.to(dev), term.to(dev).float(),
                                first=torch.zeros(E, dtype=torch.bool, device=dev))
                self.buffer.add(next_obs, None, None, None, first=torch.ones(E, dtype=torch.bool, device=dev), mask=done)
                acc["ep_return_sum"] += (info["episode_return"].to(dev).float() * done).sum()
                acc["ep_count"] += done.sum()
                obs, first = next_obs, done
                self.step += E
                vector_steps += 1
                pbar.update(E)
                if self.step >= cfg.seed_steps:
                    n = cfg.updates_per_step
                    if not self.seeded:
                        n, self.seeded = cfg.seed_updates, True
                    if n:
                        with self.timer.region("update"):
                            for _ in range(n):
                                self._accumulate_losses(acc, self.agent.update(self.buffer.sample(cfg.batch_size)))
                self.elapsed = time.perf_counter() - start_wall
                if vector_steps % cfg.log_every == 0:
                    with self.timer.region("log"):
                        now = time.perf_counter()
                        self._log(acc, (self.step - window_steps) / max(now - window_wall, 1e-9), pbar)
                        acc, window_steps, window_wall = self._new_accumulators(), self.step, now
                if self.step >= next_ckpt:
                    self.save()
                    next_ckpt = (self.step // cfg.checkpoint_freq + 1) * cfg.checkpoint_freq
                if cfg.time_limit > 0 and time.perf_counter() - wall0 >= cfg.time_limit:
                    stop = "time_limit"
                    break
            if self.last_eval != self.step:
                self._evaluate()
            if float(acc["updates"]) or float(acc["ep_count"]):
                self._log(acc, (self.step - window_steps) / max(time.perf_counter() - window_wall, 1e-9), pbar)
            self.save()
        finally:
            pbar.close()
            self.logger.close()
        return {"step": self.step, "episode": self.episode, "elapsed_s": self.elapsed, "stop": stop,
                "env_steps_per_s": (self.step - step0) / max(time.perf_counter() - wall0, 1e-9),
                "checkpoint": str(self.checkpoint_path)}
