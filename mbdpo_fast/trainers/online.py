"""Online training (docs/algorithm.md section 6) on E >= 1 environments stepped together.

E = 1 on a CPU suite is the paper's mode: seed_steps random actions, one burst of seed_steps
updates when they end, then one update per environment step. E > 1 (CPU suites in worker
processes, or MJX on the device) is the fast mode: one planner call for all E environments, a
replay of E episode streams and `updates_per_step` updates per vector step (the burst after seeding:
`seed_updates`). `steps`, `eval_freq`, `checkpoint_freq` and `seed_steps` count environment steps
summed over the E environments. A multi-task model trains on one of its tasks (fine-tuning) or on
all of them at once (E / T environments per task; per-task evaluation in eval_tasks.csv).

Evaluation every eval_freq steps on separate environments (trainers/evaluation.py), without action
noise; a train row every `log_every` vector steps (losses averaged over the row's updates, the
return of the episodes that ended in it); checkpoints at the first episode end after each multiple
of checkpoint_freq at E = 1 (so that resume is exact), at the multiple itself at E > 1, likewise
when seeding ends and every `checkpoint_minutes` of wall clock, at the time limit and at the end.

Hot-path discipline: at E > 1 nothing in the loop copies to the host or calls .item() except the
train rows every `log_every` vector steps, evaluation and checkpoints. Every stage runs inside an
NVTX range (trainers/timing.py).

What resume restores: model, optimisers, running statistics, target heads, the replay buffer, the
counters and the torch RNG; at E = 1 on an in-process suite also the environment's RNG, so a run
resumed from a checkpoint written at an episode end repeats the uninterrupted run exactly. With
worker processes (E > 1, MetaWorld, MyoSuite) or MJX the environments start fresh episodes.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..config import RunSpec, uses_pixels
from ..agent import MBDPO
from ..data.checkpoint import CHECKPOINT_NAME, load_run, save_run
from ..data.export import export_training_replay
from ..data.replay import ReplayBuffer
from ..envs import trains_every_task
from ..task_registry import PIXEL_FRAMES
from .common import (EvalProgress, EvaluationStopped, StopSignals, check_finite, np_rng_from_tensors, np_rng_to_tensors, progress_bar,
                     raise_if_diverged)
from .evaluation import EVAL_FIELDS, TASK_FIELDS, EpisodeRecorder, TaskResult, log_task_results, run_episodes
from .logger import CSVLog, Logger
from .timing import RegionTimer, process_age_s


class OnlineTrainer:
    def __init__(self, cfg: RunSpec, env, work_dir: str | Path, eval_envs: dict | None = None):
        """cfg: the run spec (config.RunSpec); env: a batched env (envs.make_env) of cfg.num_envs copies;
        eval_envs: name -> batched env for evaluation ({} or None: no evaluation), the first one's
        results going to eval.csv. A multi-task model trains on cfg.task, one of cfg.tasks (its
        environments are padded to the model's dims; actions and replay carry the task's index)."""
        self.cfg, self.env = cfg, env
        self.eval_envs = eval_envs or {}
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.agent = MBDPO(cfg)
        self.device = self.agent.device
        self.E = int(env.num_envs)
        # every copy's task index: the env's own (several tasks at once, envs/concat.py), or cfg.task's
        self.every_task = trains_every_task(cfg)
        self.task_index = list(cfg.tasks).index(cfg.task) if cfg.multitask and not self.every_task else None
        if self.every_task:
            self.task_ids = env.task_ids.to(self.device)
        else:
            self.task_ids = None if self.task_index is None else \
                torch.full((self.E,), self.task_index, dtype=torch.long, device=self.device)
        pixels = uses_pixels(cfg)  # one uint8 frame per slot, in host memory
        self.buffer = ReplayBuffer(cfg.buffer_size, cfg.obs_dim, cfg.action_dim, cfg.horizon, self.E, self.device,
                                   multitask=cfg.multitask, obs_shape=cfg.obs_shape if pixels else None,
                                   frames=PIXEL_FRAMES if pixels else 1, storage="cpu" if pixels else None)
        with_success = getattr(env, "has_success", False)
        if self.every_task:  # eval.csv: the mean normalised score; eval_tasks.csv: every task's
            self.logger = Logger(cfg, self.work_dir, eval_fields=EVAL_FIELDS)
            self.task_log = CSVLog(self.work_dir / "eval_tasks.csv", TASK_FIELDS)
        else:
            self.logger = Logger(cfg, self.work_dir, with_success=with_success)
        self.timer = RegionTimer(self.device)
        self.step, self.episode, self.elapsed = 0, 0, 0.0
        # wall: seconds from the command's start (start-up and compilation included), summed over
        # resumed commands; eval_wall: the part of it spent evaluating (eval.csv's wall_s, eval_s)
        self.wall, self.eval_wall = 0.0, 0.0
        self._wall0 = time.perf_counter()
        self.last_eval: int | None = None  # step of the latest evaluation
        self.seeded = False  # whether the post-seeding update burst has run
        self.env_rng_restored = False
        self._eval_summary: dict[str, float] = {}
        self._last_return: float | None = None

    # ----------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / CHECKPOINT_NAME

    def save(self) -> Path:
        if self.cfg.get("save_dataset"):
            export_training_replay(self.cfg, self.buffer, self.work_dir)
        # the environments' RNG before their latest reset: at E = 1 a checkpoint is written at an
        # episode end, right after the auto-reset that began the next episode, which resume repeats
        states = getattr(self.env, "random_states_before_reset", None)
        return save_run(self.work_dir, self.cfg, self.agent, self.buffer, {
            "step": self.step, "episode": self.episode, "elapsed": self.elapsed, "seeded": self.seeded,
            "wall": self._wall_now(), "eval_wall": self.eval_wall,
            "last_eval": -1 if self.last_eval is None else self.last_eval,
            "env_rng": [np_rng_to_tensors(rs) for rs in states] if states else None}, self.step)

    def load(self, path: str | Path) -> None:
        tr = load_run(path, self.cfg, self.agent, self.buffer)
        self.step, self.episode, self.elapsed = int(tr["step"]), int(tr["episode"]), float(tr["elapsed"])
        self.wall, self.eval_wall = float(tr.get("wall", self.elapsed)), float(tr.get("eval_wall", 0.0))
        self.last_eval = None if int(tr["last_eval"]) < 0 else int(tr["last_eval"])
        self.seeded = bool(tr.get("seeded", self.step >= self.cfg.seed_steps))
        saved, states = tr.get("env_rng"), getattr(self.env, "random_states", None)
        if isinstance(saved, dict):  # written by a single-environment run of an earlier version
            saved = [saved]
        if saved and states and len(saved) == len(states):
            for rs, s in zip(states, saved):
                np_rng_from_tensors(rs, s)
            self.env_rng_restored = True
        self.logger.truncate_after(self.step)
        evals = [self.logger.eval] + ([self.task_log] if self.every_task else [])
        if self.every_task:
            self.task_log.truncate_after(self.step)
        if self.last_eval != self.step:
            # A checkpoint at an episode end precedes that step's evaluation, which runs again on
            # resume (to repeat the uninterrupted run's random draws): drop a row it already wrote.
            for log in evals:
                log.truncate_after(self.step - 1)

    def _wall_now(self) -> float:
        """Seconds the run has taken from its command's start, earlier commands of a resumed run
        included (the time between their last checkpoint and their end is not: it is repeated)."""
        return self.wall + time.perf_counter() - self._wall0

    # ----------------------------------------------------------------------------------------
    def _evaluate(self, stage, stop: StopSignals | None = None) -> None:
        """Evaluate every evaluation env at the current step; `stage(text)` (the progress bar's) is
        told how far each evaluation has come, with its rate and the time left. A stop requested
        meanwhile (stop.requested) abandons it with EvaluationStopped: no row is written."""
        def progress(name: str, env):
            which = f" ({name})" if len(self.eval_envs) > 1 else ""
            total = self.cfg.eval_episodes // env.num_envs * self.cfg.episode_length
            show = EvalProgress(stage, f"evaluating at step {self.step}{which}", total)

            def step(done: int) -> None:
                if stop is not None and stop.requested:
                    raise EvaluationStopped
                show(done)
            return step

        def recorder(env, name: str | None) -> EpisodeRecorder | None:
            """save_video: the first episode of copy 0 -> videos/eval_<step>[_<task>].mp4"""
            if not self.cfg.save_video:
                return None
            path = self.work_dir / "videos" / f"eval_{self.step}{'' if name is None else f'_{name}'}.mp4"
            return EpisodeRecorder(env, [0], lambda i, k: path, episodes=1)

        def log_videos(rec: EpisodeRecorder | None) -> None:
            for path in [] if rec is None else rec.paths:
                self.logger.log_video(self.step, path)

        if self.every_task:
            results = []
            for task, env in self.eval_envs.items():
                index = list(self.cfg.tasks).index(task)
                rec = recorder(env, task)
                with self.timer.region("eval"):
                    res = run_episodes(self.agent, env, self.cfg.eval_episodes, seed=self.cfg.seed * 100_003 + self.step,
                                       task=index, progress=progress(task, env), recorder=rec)
                log_videos(rec)
                results.append(TaskResult.of(task, index, res))
            if results:
                self._eval_summary = {"score": log_task_results(self.logger, self.task_log, self.step, results)["score"]}
            self.last_eval = self.step
            return
        results = {}
        t0 = time.perf_counter()
        for k, (name, env) in enumerate(self.eval_envs.items()):
            rec = recorder(env, None) if k == 0 else None  # the training backend's own task
            with self.timer.region("eval"):
                results[name] = run_episodes(self.agent, env, self.cfg.eval_episodes,
                                             seed=self.cfg.seed * 100_003 + self.step, task=self.task_index,
                                             progress=progress(name, env), recorder=rec)
            log_videos(rec)
        if results:
            # eval.csv keeps the published format: the reward of the first evaluation env (the
            # training backend's own task); the others go to the progress bar.
            self.eval_wall += time.perf_counter() - t0
            main = next(iter(results.values()))
            self.logger.log_eval(self.step, main["reward"], main["success"], wall_s=self._wall_now(), eval_s=self.eval_wall)
            self._eval_summary = {f"eval_{k}": v["reward"] for k, v in results.items()}
        self.last_eval = self.step

    def _new_accumulators(self) -> dict:
        z = lambda: torch.zeros((), device=self.device)
        return {"ep_return_sum": z(), "ep_count": z(), "updates": z(), "losses": {}}

    def _update(self, n: int, acc: dict) -> None:
        for _ in range(n):
            with self.timer.region("update"):
                batch = self.buffer.sample(self.cfg.batch_size)
                try:
                    metrics = self.agent.update(batch)
                except (RuntimeError, IndexError) as exc:
                    raise_if_diverged(self.agent.model, batch, self.step, self.checkpoint_path, exc)
                    raise
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
               "plan_ms": times.get("plan", float("nan")), "update_ms": times.get("update", float("nan")),
               "env_ms": times.get("env", float("nan"))}
        row.update({k: v for k, v in losses.items() if k in self.logger.train.fields})
        self.logger.log_train(row)
        if count:
            self._last_return = row["episode_reward"]
        # the progress bar: the latest finished episodes' return (at E > 1 a window may end none)
        last = "-" if self._last_return is None else f"{self._last_return:.1f}"
        pbar.set_postfix(sps=f"{sps:.0f}", ret=last,
                         **{k: f"{v:.1f}" for k, v in self._eval_summary.items()}, refresh=False)

    def train(self, stop: StopSignals | None = None) -> dict:
        """Run until cfg.steps (or the time limit, or a signal: stop.requested, see StopSignals).
        Returns a summary dict; its "stop" says why it ended: "steps", "time_limit" or the signal's
        name (then the checkpoint is at the step where it arrived, and the run resumes from there)."""
        cfg, dev, E = self.cfg, self.device, self.E
        A = cfg.action_dim
        start_wall = time.perf_counter() - self.elapsed
        wall0, step0 = time.perf_counter(), self.step
        # this command's start-up (interpreter, imports, building the agent and the environments)
        # counts in the run's wall clock
        self.wall, self._wall0 = self.wall + process_age_s(), time.perf_counter()
        stop_reason = "steps"
        next_ckpt = (self.step // cfg.checkpoint_freq + 1) * cfg.checkpoint_freq
        due_now = self.last_eval != self.step and self.step % cfg.eval_freq == 0 and (self.step > 0 or cfg.eval_first)
        next_eval = self.step if due_now else (self.step // cfg.eval_freq + 1) * cfg.eval_freq
        desc = f"{cfg.task}{f' x{E}' if E > 1 else ''} s{cfg.seed}"
        pbar = progress_bar(cfg, self.step, desc, "step")
        stage = lambda what: pbar.set_description_str(f"{desc} [{what}]" if what else desc, refresh=True)
        # A fresh run seeds its environments; a resumed one continues their restored random
        # streams, or (streams not saved) draws new episodes.
        seed = None if self.env_rng_restored else cfg.seed + self.step
        stage("starting the environments")
        obs = self.env.reset(seed=seed).to(dev)
        stage("seeding: random actions" if self.step < cfg.seed_steps else "")
        ones = torch.ones(E, dtype=torch.bool, device=dev)
        self.buffer.add(obs, None, None, None, first=ones, task=self.task_ids)
        plan = self.agent.planner.initial_plan(E)
        first = ones
        acc = self._new_accumulators()
        window_steps, window_wall = self.step, time.perf_counter()
        save_soon, last_save = False, time.perf_counter()  # checkpoints by event / wall clock
        try:
            while self.step < cfg.steps:
                if self.step >= next_eval:
                    stage(f"evaluating at step {self.step}: {cfg.eval_episodes} episode"
                          f"{'s' if cfg.eval_episodes > 1 else ''}")
                    try:
                        self._evaluate(stage, stop)
                    except EvaluationStopped:
                        stop_reason = stop.name
                        break
                    stage("seeding: random actions" if self.step < cfg.seed_steps else "")
                    next_eval = (self.step // cfg.eval_freq + 1) * cfg.eval_freq
                if self.step < cfg.seed_steps:
                    action = torch.rand(E, A, device=dev) * 2 - 1
                    if self.task_ids is not None:
                        action = action * self.agent.model.action_mask(self.task_ids)
                else:
                    with self.timer.region("plan"):
                        action, plan = self.agent.act(obs, plan, first=first, task=self.task_ids)
                with self.timer.region("env"):
                    next_obs, reward, term, trunc, info = self.env.step(action)
                next_obs = next_obs.to(dev)
                done = info["done"].to(dev)
                # the transition's true next observation (the terminal one where an episode ended),
                # then the next episode's first observation where one ended
                self.buffer.add(info["terminal_obs"].to(dev), action, reward.to(dev), term.to(dev).float(),
                                first=~ones, task=self.task_ids)
                self.buffer.add(next_obs, None, None, None, first=ones, mask=done, task=self.task_ids)
                acc["ep_return_sum"] += (info["episode_return"].to(dev).float() * done).sum()
                acc["ep_count"] += done.sum()
                obs, first = next_obs, done
                self.step += E
                pbar.update(E)
                if self.step >= cfg.seed_steps:
                    n = cfg.updates_per_step
                    if not self.seeded:
                        n, self.seeded = cfg.seed_updates, True
                        save_soon = cfg.checkpoint_minutes > 0  # the seeding's data and burst are kept
                        stage(f"{n} updates on the seeding data")
                        self._update(n, acc)
                        stage("")
                    else:
                        self._update(n, acc)
                self.elapsed = time.perf_counter() - start_wall
                # on the grid of vector steps since the run began, so that a resumed run keeps it
                if (self.step // E) % cfg.log_every == 0:
                    with self.timer.region("log"):
                        now = time.perf_counter()
                        self._log(acc, (self.step - window_steps) / max(now - window_wall, 1e-9), pbar)
                        acc, window_steps, window_wall = self._new_accumulators(), self.step, now
                if cfg.checkpoint_minutes > 0 and time.perf_counter() - last_save >= 60 * cfg.checkpoint_minutes:
                    save_soon = True
                # E = 1: wait for the episode's end, so that resume repeats the run exactly
                if (self.step >= next_ckpt or save_soon) and (E > 1 or bool(done[0])):
                    self.save()
                    next_ckpt = (self.step // cfg.checkpoint_freq + 1) * cfg.checkpoint_freq
                    save_soon, last_save = False, time.perf_counter()
                if cfg.time_limit > 0 and time.perf_counter() - wall0 >= cfg.time_limit:
                    stop_reason = "time_limit"
                    break
                if stop is not None and stop.requested:  # the step is done: checkpoint below, here
                    stop_reason = stop.name
                    break
            if self.last_eval != self.step and stop_reason in ("steps", "time_limit"):
                self._evaluate(stage)  # the final policy, always (also at the time limit)
            if float(acc["updates"]) or float(acc["ep_count"]):
                self._log(acc, (self.step - window_steps) / max(time.perf_counter() - window_wall, 1e-9), pbar)
            self.save()
        finally:
            pbar.close()
            self.logger.close()
        return {"step": self.step, "episode": self.episode, "elapsed_s": self.elapsed, "stop": stop_reason,
                "env_steps_per_s": (self.step - step0) / max(time.perf_counter() - wall0, 1e-9),
                "checkpoint": str(self.checkpoint_path), "code_paths": self.agent.code_paths()}
