"""python -m mbdpo_fast.finetune checkpoint=PRETRAINED.pt task=TASK [steps=40000] [key=value ...]

Offline-to-online fine-tuning: the pretrained model (its architecture and task list come from the
checkpoint) is trained online on one task with the paper's single-environment trainer, then
evaluated. A task the checkpoint was pretrained on keeps its task embedding; an unseen task is
appended to the task list with a freshly initialised embedding (its obs/action dims must fit the
model's padded dims). Optimisers start fresh; the model, target heads and running statistics
come from the checkpoint. resume=true continues a fine-tuning run from its own checkpoint.
"""
from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig, open_dict

from .agent import seed_everything
from .cli import choose_renderer, hydra_entry, precheck, resume_or_start, run_checkpoint, train_and_report
from .config import Config, RunSpec, apply_threads, register_schema, resolve, resolve_tasks
from .data.checkpoint import load_checkpoint
from .envs import make_env, make_eval_envs
from .errors import CheckpointError, ConfigError
from .task_registry import TASK_SETS
from .trainers.online import OnlineTrainer

register_schema()

# Fields that define the network (taken from the pretrained checkpoint, whatever the command says).
ARCH_KEYS = ("model_size", "enc_dim", "mlp_dim", "latent_dim", "num_enc_layers", "num_q", "num_bins", "vmin",
             "vmax", "simnorm_dim", "task_dim", "dropout", "log_std_min", "log_std_max", "score_net",
             "time_embed_dim", "horizon", "episodic")


def finetune_config(cfg: DictConfig, pretrained: dict) -> tuple[RunSpec, int]:
    """The run spec of fine-tuning cfg.task from the pretrained config dict (its architecture and
    task list), and the number of tasks the checkpoint knows (an unseen task is appended after them)."""
    with open_dict(cfg):
        for key in ARCH_KEYS:
            cfg[key] = pretrained[key]
    if not pretrained.get("multitask"):
        if cfg.task != pretrained["task"]:
            raise ConfigError(f"the checkpoint is a single-task model of {pretrained['task']!r}: it has no task "
                              f"embedding to fine-tune on {cfg.task!r} (pretrain a multi-task model)")
        with open_dict(cfg):
            cfg.tasks = []
        return resolve(cfg, pretrained["obs_dim"], pretrained["action_dim"], pretrained["action_repeat"],
                       pretrained["episode_length"]), 1
    seen = list(pretrained["tasks"])
    with open_dict(cfg):
        cfg.tasks = seen + ([] if cfg.task in seen else [cfg.task])
    return resolve_tasks(cfg, pretrained["obs_dim"], pretrained["action_dim"]), len(seen)


def load_pretrained(model: torch.nn.Module, state: dict, num_seen: int, path) -> None:
    """Copy a pretrained model state into `model`; task-embedding rows beyond `num_seen` (unseen
    tasks) keep their fresh initialisation, the action masks are this config's."""
    own = model.state_dict()
    for key, value in state.items():
        if key == "action_masks":
            continue
        if key not in own:
            raise CheckpointError(f"{path}: parameter {key} does not exist in this model")
        if key == "task_emb.weight" and value.shape[0] == num_seen and own[key].shape[0] >= num_seen:
            own[key][:num_seen] = value
        elif value.shape != own[key].shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(value.shape)}, the model {tuple(own[key].shape)}")
        else:
            own[key] = value
    missing = sorted(set(own) - set(state) - {"action_masks"})
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {missing[:5]}")
    model.load_state_dict(own)


def prepare(cfg: DictConfig):
    """(run spec, tasks the checkpoint knows, the pretrained checkpoint, this run's checkpoint path):
    every check that needs no environment."""
    if not cfg.checkpoint:
        raise ConfigError("checkpoint is not set: pass checkpoint=PATH of a pretrained (multi-task) checkpoint")
    own_ckpt = run_checkpoint(cfg)
    choose_renderer(cfg)
    if cfg.task in TASK_SETS:
        raise ConfigError(f"fine-tuning trains one task; task={cfg.task} is a task set (name one of its tasks)")
    payload = load_checkpoint(cfg.checkpoint)
    spec, num_seen = finetune_config(cfg, payload["config"])
    return spec, num_seen, payload, own_ckpt


def run(cfg: DictConfig) -> dict:
    cfg, num_seen, payload, own_ckpt = prepare(cfg)
    work_dir = own_ckpt.parent
    apply_threads(cfg)
    env = make_env(cfg, cfg.num_envs, cfg.seed)
    eval_envs = make_eval_envs(cfg)
    seed_everything(cfg.seed)
    trainer = OnlineTrainer(cfg, env, work_dir, eval_envs)
    if not resume_or_start(trainer, own_ckpt, cfg.resume):
        load_pretrained(trainer.agent.model, payload["agent"]["model"], num_seen, cfg.checkpoint)
    seen = "seen" if cfg.task in list(payload["config"].get("tasks", []))[:num_seen] or not cfg.multitask else "unseen"
    return train_and_report(trainer, cfg, entry="mbdpo_fast.finetune", banner=f"fine-tune {cfg.task} ({seen} task) from {cfg.checkpoint} (step {payload['trainer']['step']}) | "
          f"{trainer.agent.model.num_parameters() / 1e6:.2f}M params | device {trainer.device} | steps {cfg.steps} "
          f"| run dir {work_dir}")


@hydra.main(version_base=None, config_path="cfgs", config_name="finetune")
def _main(cfg: DictConfig) -> None:
    hydra_entry(cfg, run)


def main() -> None:
    precheck("finetune", Config, prepare)
    _main()


if __name__ == "__main__":
    main()
