"""Paper-faithful online training on one environment (docs/algorithm.md section 6).

seed_steps random actions, one burst of seed_steps updates when they end, then one update per
environment step; evaluation every eval_freq steps over eval_episodes episodes without action
noise on a separate environment instance; checkpoints at the first episode end after every
checkpoint_freq steps, at the time limit and at the end.

What resume restores: model, both optimisers, running statistics (energy, Q scale), target heads,
the replay buffer, the step/episode counters, the torch RNG states and the environment's RNG.
A checkpoint written at an episode end therefore resumes exactly (same actions, same returns on
the same device); one written at the time limit is mid-episode, and resume starts a fresh
episode at the same step (the interrupted episode's steps stay in the buffer).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from ..agent import MBDPO
from ..checkpoint import CHECKPOINT_NAME, load_run, save_run
from ..logger import Logger
from ..replay import ReplayBuffer

class TrainingDivergedError(RuntimeError):
    """A loss became NaN/inf; training stops without overwriting the last good checkpoint."""


def check_finite(metrics: dict[str, float], step: int, checkpoint_path: Path) -> None:
    """Raise TrainingDivergedError naming the non-finite metrics and the state of the checkpoint."""
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        last = (f"the last checkpoint ({checkpoint_path}) is untouched" if checkpoint_path.exists()
                else "no checkpoint was written yet")
        raise TrainingDivergedError(f"non-finite {', '.join(bad)} at step {step}: training diverged and stopped; {last}")


def np_rng_to_tensors(rs: np.random.RandomState) -> dict:
    name, keys, pos, has_gauss, gauss = rs.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "gauss": float(gauss)}


def np_rng_from_tensors(rs: np.random.RandomState, s: dict) -> None:
    rs.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))


def evaluate_agent(agent: MBDPO, env, episodes: int, seed: int | None = None, task: int | None = None) -> dict:
    """Run `episodes` episodes with the planner in eval mode (no action noise); `task`: the task's
    index for a multi-task agent (env then pads observations, see envs/padded.py).
    Returns {"reward": mean return, "returns": [...], "success": mean success or None,
    "successes": [...]}."""
    if seed is not None and hasattr(env, "random_state"):
        env.random_state.seed(seed)
    returns, successes = [], []
    dev = agent.device
    task_t = None if task is None else torch.tensor([task], device=dev)
    for _ in range(episodes):
        obs, done, ep_ret, first = env.reset(), False, 0.0, True
        plan = agent.planner.initial_plan(1)
        info = {}
        while not done:
            obs_t = torch.as_tensor(obs, device=dev).unsqueeze(0)
            action, plan = agent.act(obs_t, plan, first=torch.tensor([first], device=dev), task=task_t, eval_mode=True)
            obs, r, term, trunc, info = env.step(action[0].cpu().numpy())
            ep_ret += r
            done, first = term or trunc, False
        returns.append(ep_ret)
        if "success" in info:
            successes.append(float(info["success"]))
    return {"reward": float(np.mean(returns)), "returns": returns, "successes": successes,
            "success": float(np.mean(successes)) if successes else None}


class OnlineTrainer:
    def __init__(self, cfg: DictConfig, env, eval_env, work_dir: str | Path):
        self.cfg, self.env, self.eval_env = cfg, env, eval_env
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.agent = MBDPO(cfg)
        self.device = self.agent.device
        # A multi-task model fine-tuned on one of its tasks (cfg.task in cfg.tasks): the env pads
        # observations (envs/padded.py), actions and replay carry the task's index.
        self.task_index = list(cfg.tasks).index(cfg.task) if cfg.multitask else None
        self._task = None if self.task_index is None else torch.tensor([self.task_index], device=self.device)
        self.buffer = ReplayBuffer(cfg.buffer_size, cfg.obs_dim, cfg.action_dim, cfg.horizon, 1, self.device,
                                   multitask=cfg.multitask)
        self.logger = Logger(cfg, self.work_dir, with_success=getattr(env, "has_success", False))
        self.step, self.episode, self.elapsed = 0, 0, 0.0
        self.last_eval: int | None = None  # step of the latest evaluation
        self._last_metrics: dict[str, torch.Tensor] = {}
        self._timing = {"plan": [0.0, 0], "update": [0.0, 0]}

    # ----------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / CHECKPOINT_NAME

    def save(self) -> Path:
        return save_run(self.work_dir, self.cfg, self.agent, self.buffer, {
            "step": self.step, "episode": self.episode, "elapsed": self.elapsed,
            "last_eval": -1 if self.last_eval is None else self.last_eval,
            # Envs in worker processes (MetaWorld, MyoSuite) expose no RNG: their resume continues
            # with fresh worker seeds instead of the saved stream.
            "env_rng": np_rng_to_tensors(self.env.random_state) if hasattr(self.env, "random_state") else None,
        }, self.step)

    def load(self, path: str | Path) -> None:
        tr = load_run(path, self.cfg, self.agent, self.buffer)
        self.step, self.episode, self.elapsed = int(tr["step"]), int(tr["episode"]), float(tr["elapsed"])
        self.last_eval = None if int(tr["last_eval"]) < 0 else int(tr["last_eval"])
        if tr.get("env_rng") is not None and hasattr(self.env, "random_state"):
            np_rng_from_tensors(self.env.random_state, tr["env_rng"])
        self.logger.truncate_after(self.step)
        if self.last_eval != self.step:
            # A checkpoint at an episode end precedes that step's evaluation, which runs again on
            # resume (to repeat the uninterrupted run's random draws): drop a row it already wrote.
            self.logger.eval.truncate_after(self.step - 1)

    # ----------------------------------------------------------------------------------------
    def _timed(self, key: str, fn):
        t0 = time.perf_counter()
        out = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        acc = self._timing[key]
        acc[0] += time.perf_counter() - t0
        acc[1] += 1
        return out

    def _timing_ms(self, key: str) -> float:
        total, n = self._timing[key]
        self._timing[key] = [0.0, 0]
        return 1000.0 * total / n if n else float("nan")

    def _evaluate(self) -> dict:
        if self.eval_env is None:  # eval_episodes=0
            self.last_eval = self.step
            return {"reward": float("nan")}
        res = evaluate_agent(self.agent, self.eval_env, self.cfg.eval_episodes, seed=self.cfg.seed * 100_003 + self.step,
                             task=self.task_index)
        self.logger.log_eval(self.step, res["reward"], res["success"])
        self.last_eval = self.step
        return res

    def _update(self, num_updates: int) -> None:
        for _ in range(num_updates):
            batch = self.buffer.sample(self.cfg.batch_size)
            self._last_metrics = self._timed("update", lambda: self.agent.update(batch))

    def _reset_episode(self):
        obs = self.env.reset()
        self.buffer.add(torch.as_tensor(obs).unsqueeze(0), None, None, None, first=torch.tensor([True]), task=self._task)
        return obs

    def train(self) -> dict:
        """Run until cfg.steps (or the time limit). Returns a summary dict.

        Per iteration: evaluate if due, reset if the last episode ended, act, step, store, update.
        Evaluation precedes the reset so that a run checkpointed at an episode end and resumed
        repeats the uninterrupted run's sequence of random draws exactly."""
        cfg, dev = self.cfg, self.device
        A = cfg.action_dim
        start_wall = time.perf_counter() - self.elapsed
        steps_at_start, wall_at_start = self.step, time.perf_counter()
        stop_reason = "steps"
        next_ckpt = (self.step // cfg.checkpoint_freq + 1) * cfg.checkpoint_freq
        pbar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress_bar, dynamic_ncols=True,
                    desc=f"{cfg.task} s{cfg.seed}", unit="step")
        need_reset, obs, first, ep_ret, plan = True, None, True, 0.0, None
        window = (self.step, time.perf_counter())  # (step, wall) of the previous train row
        try:
            while self.step < cfg.steps:
                if self.step % cfg.eval_freq == 0 and self.last_eval != self.step:
                    res = self._evaluate()
                    pbar.set_postfix(eval=f"{res['reward']:.1f}", refresh=False)
                if need_reset:
                    obs, first, ep_ret, need_reset = self._reset_episode(), True, 0.0, False
                    plan = self.agent.planner.initial_plan(1)
                if self.step < cfg.seed_steps:
                    action = torch.rand(1, A, device=dev) * 2 - 1
                    if self._task is not None:
                        action = action * self.agent.model.action_mask(self._task)
                else:
                    obs_t = torch.as_tensor(obs, device=dev).unsqueeze(0)
                    action, plan = self._timed("plan", lambda: self.agent.act(
                        obs_t, plan, first=torch.tensor([first], device=dev), task=self._task))
                action_np = action[0].cpu().numpy()
                obs, r, term, trunc, _ = self.env.step(action_np)
                self.buffer.add(torch.as_tensor(obs).unsqueeze(0), torch.as_tensor(action_np).unsqueeze(0),
                                torch.tensor([r]), torch.tensor([float(term)]), first=torch.tensor([False]),
                                task=self._task)
                self.step += 1
                ep_ret += r
                first = False
                pbar.update(1)
                if self.step >= cfg.seed_steps:
                    self._update(cfg.seed_steps if self.step == cfg.seed_steps else 1)
                self.elapsed = time.perf_counter() - start_wall
                if term or trunc:
                    self.episode += 1
                    need_reset = True
                    self._log_episode(ep_ret, window)
                    window = (self.step, time.perf_counter())
                    if self.step >= next_ckpt:
                        self.save()
                        next_ckpt = (self.step // cfg.checkpoint_freq + 1) * cfg.checkpoint_freq
                if cfg.time_limit > 0 and time.perf_counter() - wall_at_start >= cfg.time_limit:
                    stop_reason = "time_limit"
                    break
            if self.last_eval != self.step:
                self._evaluate()  # the final policy is always evaluated (also at the time limit)
            self.save()
        finally:
            pbar.close()
            self.logger.close()
        return {"step": self.step, "episode": self.episode, "elapsed_s": self.elapsed, "stop": stop_reason,
                "checkpoint": str(self.checkpoint_path)}

    def _log_episode(self, ep_ret: float, window: tuple[int, float]) -> None:
        """A train row at an episode's end; env_steps_per_s over the steps since the previous row."""
        sps = (self.step - window[0]) / max(time.perf_counter() - window[1], 1e-9)
        row = {"step": self.step, "episode": self.episode, "episode_reward": float(ep_ret),
               "elapsed_s": float(self.elapsed), "env_steps_per_s": float(sps),
               "plan_ms": self._timing_ms("plan"), "update_ms": self._timing_ms("update")}
        metrics = {k: float(v) for k, v in self._last_metrics.items()}
        check_finite(metrics, self.step, self.checkpoint_path)
        row.update({k: v for k, v in metrics.items() if k in self.logger.train.fields})
        self.logger.log_train(row)
