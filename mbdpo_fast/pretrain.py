"""python -m mbdpo_fast.pretrain task=mt30 data_dir=PATH [key=value ...]: offline (multi-task) pretraining.

Data parallel on several GPUs (or CPU processes with gloo):
    torchrun --nproc_per_node=N -m mbdpo_fast.pretrain task=mt30 data_dir=PATH
(batch_size is the global batch, split evenly; rank 0 writes logs and checkpoints.)

The run directory (default runs/pretrain/<task>/s<seed>/<exp_name>) receives config.yaml,
train.csv, eval.csv (mean normalised score), eval_tasks.csv (per task) and checkpoint.pt, which
`python -m mbdpo_fast.finetune checkpoint=...` and `python -m mbdpo_fast.evaluate` read.
"""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

from .agent import seed_everything
from .cli import hydra_entry, precheck, run_checkpoint, save_spec, train_reporting
from .config import Config, RunSpec, apply_threads, register_schema, resolve, resolve_tasks
from .errors import ConfigError
from .data.chunks import OfflineDataset
from .distributed import init_distributed
from . import task_registry
from .trainers.offline import OfflineTrainer

register_schema()


def check_command(cfg: DictConfig) -> None:
    """What can be checked before the dataset is read: data_dir, the task list, the run directory."""
    if not cfg.data_dir:
        raise ConfigError("data_dir is not set: pass data_dir=DIRECTORY (chunk_*.pt files; see README, "
                          "'Offline pretraining', for the TD-MPC2 datasets)")
    if not Path(cfg.data_dir).is_dir():
        raise ConfigError(f"data_dir={cfg.data_dir} is not a directory")
    task_registry.expand(list(cfg.tasks) if len(cfg.tasks) else [cfg.task])
    run_checkpoint(cfg)


def load_dataset(cfg: DictConfig, device: str) -> tuple[OfflineDataset, list[str]]:
    """The dataset of cfg.data_dir with task ids remapped to the run's task list (returned)."""
    check_command(cfg)
    names = task_registry.expand(list(cfg.tasks) if len(cfg.tasks) else [cfg.task])
    dims = [(task_registry.get(t).obs_dim, task_registry.get(t).action_dim) for t in names]
    ds = OfflineDataset.load(cfg.data_dir, tasks=names, mmap=cfg.data_mmap, allow_pickle=cfg.data_allow_pickle,
                             device=device if cfg.data_on_device and not cfg.data_mmap else "cpu")
    ds.pad_to(max([d for d, _ in dims] + [ds.obs_dim]), max([a for _, a in dims] + [ds.action_dim]))
    return ds, names


def spec_for_dataset(cfg: DictConfig, ds: OfflineDataset, names: list[str]) -> RunSpec:
    """The run spec of pretraining cfg's tasks `names` on ds (model dims: the dataset's padded ones)."""
    if len(names) > 1:
        with open_dict(cfg):
            cfg.tasks = names
        return resolve_tasks(cfg, ds.obs_dim, ds.action_dim)
    row = task_registry.get(names[0])
    with open_dict(cfg):
        cfg.task, cfg.tasks = names[0], []
    return resolve(cfg, ds.obs_dim, ds.action_dim, row.action_repeat, row.episode_length)  # suite defaults where cfg leaves -1


def run(cfg: DictConfig) -> dict:
    ctx = init_distributed(cfg.device)
    if ctx is not None:
        if cfg.compile or cfg.cudagraphs:
            raise ConfigError("torchrun (DDP) pretraining runs the update eagerly: set compile=false cudagraphs=false")
        with open_dict(cfg):
            cfg.device = ctx.device
    ckpt = run_checkpoint(cfg)
    work_dir = ckpt.parent
    ds, names = load_dataset(cfg, cfg.device if cfg.device != "auto" else ("cuda" if _cuda() else "cpu"))
    cfg = spec_for_dataset(cfg, ds, names)
    if ctx is None:  # torchrun gives each of several processes one thread (OMP_NUM_THREADS=1)
        apply_threads(cfg)
    seed_everything(cfg.seed)
    trainer = OfflineTrainer(cfg, ds, work_dir, ctx)
    if cfg.resume and ckpt.exists():
        trainer.load(ckpt)
        if trainer.main:
            print(f"resumed {ckpt} at update {trainer.step}")
    elif trainer.main:
        trainer.logger.truncate_after(-1)
        trainer.task_log.truncate_after(-1)
    trainer.distribute()
    if trainer.main:
        save_spec(cfg, work_dir / "config.yaml")
        counts = ds.task_counts()
        print(f"pretrain {cfg.task}: {len(cfg.tasks) or 1} tasks, {ds.num_episodes} episodes "
              f"({len(counts)} tasks present) of {ds.episode_length} slots | model_size {cfg.model_size} "
              f"({trainer.agent.model.num_parameters() / 1e6:.2f}M params) | device {trainer.device} | "
              f"processes {trainer.world} | batch {cfg.batch_size} | run dir {work_dir}")
    return train_reporting(trainer, work_dir, "mbdpo_fast.pretrain", show=trainer.main, unit="update")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@hydra.main(version_base=None, config_path="cfgs", config_name="pretrain")
def _main(cfg: DictConfig) -> None:
    import torch.distributed as dist

    try:
        hydra_entry(cfg, run)
        if dist.is_initialized():  # every rank done before any tears the group down (one rank leaving
            dist.barrier()         # while another still talked to it aborted once in gloo's teardown)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def main() -> None:
    precheck("pretrain", Config, check_command)
    _main()


if __name__ == "__main__":
    main()
