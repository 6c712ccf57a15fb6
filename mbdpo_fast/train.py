"""python -m mbdpo_fast.train task=cheetah-run [key=value ...]: online single-environment training.

The run directory (Hydra's, default runs/<task>/s<seed>/<exp_name>) receives config.yaml (the
resolved config with derived fields), eval.csv, train.csv, checkpoint.pt and the replay file.
resume=true continues from the checkpoint found there.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .agent import seed_everything
from .cli import hydra_entry, resume_or_start, run_checkpoint, train_and_report
from .config import ConfigError, finalize, register_schema, unset_to_none
from .envs import make_env
from .task_sets import TASK_SETS
from .trainers.online import OnlineTrainer

register_schema()


def vectorised(cfg: DictConfig) -> bool:
    """The paper's single-environment trainer runs dm_control tasks at num_envs=1; everything else
    (several envs, or MJX) runs the vectorised trainer."""
    return cfg.num_envs > 1 or cfg.env_backend != "dmc"


def build_envs(cfg: DictConfig):
    """The training and evaluation environments of cfg.task; finalizes cfg from them.
    Single-env mode: (env, eval_env). Vectorised: (batched env, {name: batched eval env})."""
    if vectorised(cfg):
        from .envs.batched import make_batched_env

        env = make_batched_env(cfg, cfg.num_envs, cfg.seed)
        finalize(cfg, env.obs_dim, env.action_dim, env.action_repeat, env.episode_length)
        if cfg.eval_episodes == 0:
            return env, {}
        evals = {cfg.env_backend: make_batched_env(cfg, cfg.eval_episodes, cfg.seed + 10_000)}
        if cfg.env_backend == "mjx" and cfg.dmc_eval:
            evals["dmc"] = make_batched_env(cfg, cfg.eval_episodes, cfg.seed + 20_000, backend="dmc")
        return env, evals
    repeat, length = unset_to_none(cfg.action_repeat), unset_to_none(cfg.episode_length)
    env = make_env(cfg.task, cfg.seed, repeat, length)
    eval_env = make_env(cfg.task, cfg.seed + 1, repeat, length) if cfg.eval_episodes else None
    finalize(cfg, env.obs_dim, env.action_dim, env.action_repeat, env.episode_length)
    return env, eval_env


def run(cfg: DictConfig) -> dict:
    """Build env, agent and trainer from a composed config and train. Returns the summary."""
    if cfg.task in TASK_SETS or len(cfg.tasks):
        raise ConfigError(f"online training is single-task (task={cfg.task}, tasks={list(cfg.tasks)}): pretrain "
                          f"multi-task offline with python -m mbdpo_fast.pretrain, then fine-tune one task with "
                          f"python -m mbdpo_fast.finetune")
    ckpt = run_checkpoint(cfg)
    work_dir = ckpt.parent
    env, eval_env = build_envs(cfg)
    seed_everything(cfg.seed)
    if vectorised(cfg):
        from .trainers.vector import VectorTrainer

        trainer = VectorTrainer(cfg, env, work_dir, eval_envs=eval_env)
    else:
        trainer = OnlineTrainer(cfg, env, eval_env, work_dir)
    resume_or_start(trainer, ckpt, cfg.resume)
    return train_and_report(trainer, cfg, f"task {cfg.task} | model_size {cfg.model_size} ({trainer.agent.model.num_parameters() / 1e6:.2f}M params) "
          f"| device {trainer.device} | envs {cfg.num_envs} x {cfg.env_backend} | discount {cfg.discount} "
          f"| seed_steps {cfg.seed_steps} | run dir {work_dir}")


@hydra.main(version_base=None, config_path="cfgs", config_name="config")
def _main(cfg: DictConfig) -> None:
    hydra_entry(cfg, run)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
