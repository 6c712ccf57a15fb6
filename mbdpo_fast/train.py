"""python -m mbdpo_fast.train task=cheetah-run [key=value ...]: online training on num_envs >= 1
environments (1: the paper's mode); with task=mt30|mt80 or tasks=[...], one multi-task model on
every task at once (num_envs / T environments per task).

The run directory (Hydra's, default runs/<task>/s<seed>/<exp_name>) receives config.yaml (the
resolved config with derived fields), eval.csv, train.csv, checkpoint.pt and the replay file.
resume=true continues from the checkpoint found there.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, open_dict

from .agent import seed_everything
from .cli import choose_renderer, expand_task_sweep, hydra_entry, precheck, resume_or_start, run_checkpoint, train_and_report
from .config import Config, apply_threads, register_schema, resolve_task, resolve_tasks
from .envs import envs_per_task, make_env, make_eval_envs
from .errors import ConfigError
from .task_registry import TASK_SETS, expand
from .trainers.online import OnlineTrainer

register_schema()


def build_envs(spec):
    """The training env (spec.num_envs copies) and the evaluation envs (mbdpo_fast/envs) of spec.task."""
    if spec.env_backend == "mjx":  # nothing else shows while JAX compiles the batched step
        print(f"building {spec.num_envs} MJX environments of {spec.task} (JAX compiles reset and step: about a "
              f"minute on a CPU, seconds on a GPU)", flush=True)
    elif spec.num_envs > 1:
        print(f"starting {spec.num_envs} environment worker processes", flush=True)
    env = make_env(spec, spec.num_envs, spec.seed)
    if (env.obs_dim, env.action_dim) != (spec.obs_dim, spec.action_dim):  # the registry disagrees with the env
        env.close()
        raise ConfigError(f"{spec.task}: the environment has (obs_dim, action_dim) = ({env.obs_dim}, {env.action_dim}), "
                          f"the task registry ({spec.obs_dim}, {spec.action_dim})")
    return env, make_eval_envs(spec)


def prepare(cfg: DictConfig):
    """(run spec, checkpoint path) of a composed config: every check that needs no environment.
    save_video=true also chooses headless OpenGL here (before MuJoCo is imported), so that a machine
    that cannot render refuses the run before anything is created."""
    ckpt = run_checkpoint(cfg)
    choose_renderer(cfg)
    if cfg.task in TASK_SETS or len(cfg.tasks):
        names = expand(list(cfg.tasks) if len(cfg.tasks) else [cfg.task])
        if cfg.task in names:  # the run trains every task: name it by none of them
            with open_dict(cfg):
                cfg.task = "multitask"
        spec = resolve_tasks(cfg)
        envs_per_task(spec, spec.num_envs)
        return spec, ckpt
    return resolve_task(cfg), ckpt


def run(cfg: DictConfig) -> dict:
    """Build env, agent and trainer from a composed config and train. Returns the summary.
    task=mt30|mt80 or tasks=[a,b,...]: one multi-task model trained online on every task, num_envs /
    T environments each (the run is named by `task`: the set's name, or `multitask` for a list)."""
    spec, ckpt = prepare(cfg)
    work_dir = ckpt.parent
    threads = apply_threads(spec)
    env, eval_envs = build_envs(spec)
    seed_everything(spec.seed)
    trainer = OnlineTrainer(spec, env, work_dir, eval_envs)
    resume_or_start(trainer, ckpt, spec.resume)
    return train_and_report(trainer, spec, f"task {spec.task} | model_size {spec.model_size} "
                            f"({trainer.agent.model.num_parameters() / 1e6:.2f}M params) | device {trainer.device} "
                            f"({trainer.agent.threads.describe() if trainer.device.type == 'cpu' else f'{threads} threads'}) | envs {spec.num_envs} x {spec.env_backend} | discount {spec.discount} "
                            f"| seed_steps {spec.seed_steps} | planner {trainer.agent.code_paths()['planner']} | run dir {work_dir}")


@hydra.main(version_base=None, config_path="cfgs", config_name="config")
def _main(cfg: DictConfig) -> None:
    hydra_entry(cfg, run)


def main() -> None:
    sys.argv = expand_task_sweep(sys.argv)
    precheck("config", Config, prepare)
    _main()


if __name__ == "__main__":
    main()
