"""Configuration: the Hydra schema, model-size presets, and the run spec every part reads.

The schema (`Config`) is registered with Hydra's ConfigStore so that overrides are type-checked
(`steps=abc` fails) and unknown keys are refused (`stpes=1` fails). At the entry point, `resolve`
(`resolve_tasks` for multi-task runs) validates the composed config once, computes every derived
field (model dims from the preset, discount, seed steps, task dims from the task registry, ...)
and returns a `RunSpec`: a frozen dataclass with the schema's fields, which the world model,
planner, agent, environments and trainers read (and cannot change).
"""
from __future__ import annotations

import copy
import math
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from . import task_registry
from .errors import ConfigError

# Parameter-count presets (millions) of TD-MPC2, kept by MBDPO (docs/algorithm.md section 1).
MODEL_SIZE: dict[int, dict[str, int]] = {
    1: dict(enc_dim=256, mlp_dim=384, latent_dim=128, num_enc_layers=2, num_q=2),
    5: dict(enc_dim=256, mlp_dim=512, latent_dim=512, num_enc_layers=2, num_q=5),
    19: dict(enc_dim=1024, mlp_dim=1024, latent_dim=768, num_enc_layers=3, num_q=5),
    48: dict(enc_dim=1792, mlp_dim=1792, latent_dim=768, num_enc_layers=4, num_q=5),
    317: dict(enc_dim=4096, mlp_dim=4096, latent_dim=1376, num_enc_layers=5, num_q=8),
}


@dataclass
class WandbConfig:
    mode: str = "disabled"  # disabled | offline | online
    project: str = "mbdpo_fast"
    entity: str | None = None
    group: str | None = None


@dataclass
class Config:
    # --- task and run -------------------------------------------------------------------------
    task: str = "cheetah-run"
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch's intra-op threads on CPU; 0: OMP_NUM_THREADS where set, else the cores this
    #   process may run on (its CPU affinity). On a machine shared with other jobs, set it to the cores
    #   that are free: torch's waiting threads spin, so two runs that each take every core slow down many-fold.
    exp_name: str = "default"
    work_dir: str = MISSING  # set by the entry point (Hydra's run dir)
    resume: bool = False
    profile: str = "paper"  # name of the profile group that was applied (informational)

    # --- environment (TD-MPC2 conventions; -1: the suite's default, resolved from the env) -------
    action_repeat: int = -1  # dm_control 2, MetaWorld 2, MyoSuite 1
    episode_length: int = -1  # agent steps per episode: dm_control 500, MetaWorld 100, MyoSuite 100
    episodic: bool = False  # only episodic tasks train/use the termination head

    # --- vectorised training (num_envs > 1 or env_backend=mjx: the vectorised trainer) ------------
    num_envs: int = 1  # E environments stepped together; 1 with env_backend=dmc: the paper's trainer
    env_backend: str = "dmc"  # dmc: CPU suites (in-process at E=1, worker processes above) | mjx: MJX on the device
    #   | maniskill: ManiSkill3's physx_cuda simulation of E envs in this process (ms-* tasks, GPU)
    impl: str = "auto"  # MJX implementation: auto (the task's own: warp for the dog and for obs=rgb, else
    #   jax) | jax | warp (MuJoCo Warp; needs warp-lang)
    updates_per_step: int = 1  # updates per vector step (E env steps); the paper: 1 at E=1
    seed_updates: int = -1  # the update burst after seeding; -1: seed_steps * updates_per_step / num_envs
    log_every: int = -1  # vector steps (updates, offline) between train rows, the loop's only regular host
    #   syncs; -1: one episode at num_envs=1 (a row per episode, the paper's log), else 50
    dmc_eval: bool = True  # mjx backend: also evaluate on dm_control's own task (CPU workers)
    maniskill: int = 3  # ms-* tasks: 3 = ManiSkill3 (.venv-maniskill) | 2 = the paper's ManiSkill2 tasks
    #   (.venv-maniskill2 or MBDPO_MANISKILL2_PYTHON; needs an NVIDIA Vulkan device; untested here)
    obs: str = "state"  # state | rgb: learn from 64x64 RGB frames (3 stacked; the 10 tasks of
    #   task_registry.PIXEL_CAMERAS): env_backend=dmc renders dm_control on CPU through headless
    #   OpenGL; env_backend=mjx impl=warp renders all envs at once with MuJoCo Warp (no quadruped)

    # --- training schedule ---------------------------------------------------------------------
    steps: int = 1_000_000  # agent (environment) steps, summed over envs
    suite_steps: list[str] = field(default_factory=list)  # per-suite budgets that replace `steps` for
    #   that suite's tasks, as suite:steps items: suite_steps=[myosuite:500000] (a sweep over several suites)
    seed_steps: int = -1  # -1: max(1000, 5 * episode_length)
    batch_size: int = 256
    buffer_size: int = 1_000_000
    eval_freq: int = 50_000
    eval_episodes: int = 10  # 0: no evaluation (benchmarks)
    eval_first: bool = True  # evaluate the untrained agent at step 0 (false: first evaluation at eval_freq)
    checkpoint_freq: int = 50_000  # a checkpoint at the first episode end after each multiple
    checkpoint_minutes: float = 10.0  # also one when seeding ends and then every this many minutes of wall
    #   clock (at E = 1: at the next episode end), so that a killed run always resumes; 0: by steps only
    save_replay: bool = True  # include the replay buffer in checkpoints (exact resume)
    time_limit: float = 0.0  # seconds of wall clock after which training stops cleanly; 0: none

    # --- world model -------------------------------------------------------------------------
    model_size: int = 5
    enc_dim: int = -1  # -1: from the preset
    mlp_dim: int = -1
    latent_dim: int = -1
    num_enc_layers: int = -1
    num_q: int = -1
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    simnorm_dim: int = 8
    task_dim: int = -1  # task embedding size (multi-task only); -1: 64 for mt30, 96 for mt80 and any other
    #   task list (the reference code's rule, so that TD-MPC2's mt30/mt80 checkpoints fit); 0 single-task
    dropout: float = 0.01
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    score_net: bool = False  # optional score network s_theta(z0, x_tau, tau)
    time_embed_dim: int = 64

    # --- update (docs/algorithm.md section 5) -------------------------------------------------------
    horizon: int = 3
    rho: float = 0.5
    lr: float = 3e-4
    enc_lr_scale: float = 0.3
    grad_clip_norm: float = 20.0
    tau: float = 0.01
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    value_coef: float = 0.1
    energy_loss_coef: float = 1.0
    termination_coef: float = 1.0
    score_coef: float = 1.0
    entropy_coef: float = 1e-4
    energy_neg_noise: float = 0.5
    score_candidates: int = 64
    score_states: int = 1  # states per update used by the score loss: the batch's first ones (the paper: one)

    # --- where the reference code and a plain reading of the method differ (docs/algorithm.md) ---
    energy_pairing: str = "aligned"  # energy positives: aligned (z[t,b] with a[t,b]) | reference (the
    #   reference code's time-major/batch-major mis-pairing, which produced the published curves)
    energy_neg_center: str = "policy"  # noisy hard negative around: policy (clip(pi(z) + 0.5 N), reference) | replay
    entropy_tanh_correction: bool = False  # false: the reference's scaled entropy, -A log N(eps; 0, std) (its
    #   tanh correction cancels); true: also subtract the tanh log-det (the scaled log-likelihood of the action)
    score_detach_latent: bool = False  # false: the score loss reaches the encoder (reference); true: detach z_0

    # --- discount (docs/algorithm.md section 2) -----------------------------------------------------
    discount_denom: float = 5.0
    discount_min: float = 0.95
    discount_max: float = 0.995

    # --- diffusion planner (docs/algorithm.md section 4) ---------------------------------------------
    num_samples: int = 512
    diffusion_steps: int = 20
    beta_start: float = 1e-4
    beta_end: float = 1e-2
    num_elites: int = 64
    num_pi_trajs: int = 24
    temperature: float = 0.5
    action_noise: float = 0.05
    energy_coef: float = 0.01  # eta: weight of the normalised energy bonus in imagined returns
    energy_clip: float = 5.0
    energy_momentum: float = 0.99
    planner_score: str = "auto"  # the planner's score: mc (Monte Carlo, from imagined returns) | network
    #   (s_theta; no rollouts at acting time; needs score_net) | auto: network when score_net=true, as the
    #   reference code does, else mc

    # --- speed flags (each benchmarked against the path without it) -----------------------------
    cudagraphs: bool = False  # replay the planner call and the update from captured CUDA graphs (CUDA only)
    compile: bool = False  # torch.compile the update's losses (forward and backward) and the planner's denoising
    #   step, once per shape; the compiled model's Mish from one exponential; on a CPU Adam's fused step
    bf16_plan: bool = False  # bf16 autocast in the planner (matmuls in bf16, accumulation in fp32)
    bf16_update: bool = False  # bf16 autocast in the update's forward passes
    fused_update: bool = False  # the update's energy loss evaluates F's latent part once for its five
    #   action sets (positives, three negative candidates, hard negatives) instead of five times
    kernels: str = "torch"  # planner hot path: torch (reference) | triton (fused kernels, CUDA or TRITON_INTERPRET=1)
    fused_rollout: bool = False  # a denoising step's rollout by head groups (the heads that read one input as one
    #   matrix product, z0's part once per plan): kernels=triton as 3H + 3 kernels, kernels=torch in PyTorch ops

    # --- multi-task, offline pretraining, fine-tuning ------------------------------------------
    tasks: list[str] = field(default_factory=list)  # multi-task list (set names mt30/mt80 expand); [] with
    #   task=mt30|mt80: that set; [] otherwise: single task. Pretraining: the tasks trained; fine-tuning:
    #   the embedding table's tasks (the fine-tuned `task` is one of them, appended if unseen).
    data_dir: str | None = None  # pretrain: directory of TD-MPC2 chunk_*.pt files
    data_mmap: bool = False  # memory-map the chunks instead of reading them (datasets larger than RAM)
    data_allow_pickle: bool = False  # chunks saved as TensorDicts need unpickling (trusted files only)
    data_on_device: bool = False  # hold the (eager) dataset on the training device: no host->device copies
    checkpoint: str | None = None  # finetune: the pretrained (multi-task) checkpoint to start from
    save_dataset: bool = False  # online trainers: also write the replay as dataset chunks (work_dir/dataset)
    grad_checkpoint: bool = False  # recompute MLP activations in the backward pass (large models, memory)

    # --- logging ------------------------------------------------------------------------------
    wandb: WandbConfig = field(default_factory=WandbConfig)
    progress_bar: bool = True
    tensorboard: bool = False  # also write TensorBoard event files (train rows, evaluations) beside the CSVs
    save_video: bool = False  # an MP4 of the first evaluation episode at every evaluation: videos/eval_<step>.mp4

    # --- derived (filled by `resolve`; do not set) --------------------------------------------
    obs_dim: int = -1
    obs_shape: list[int] = field(default_factory=list)  # [obs_dim], or [3 x frames, H, W] with obs=rgb
    action_dim: int = -1
    discount: float = -1.0
    multitask: bool = False
    obs_dims: list[int] = field(default_factory=list)  # per task (multi-task); obs_dim is their padded max
    action_dims: list[int] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    action_repeats: list[int] = field(default_factory=list)


def _spec_get(self, key: str, default=None):
    return getattr(self, key, default)


def _spec_to_dict(self) -> dict:
    """Plain containers (lists, dicts) for YAML, checkpoints and wandb."""
    out = {}
    for f in dataclasses.fields(self):
        v = getattr(self, f.name)
        out[f.name] = v.to_dict() if dataclasses.is_dataclass(v) else list(v) if isinstance(v, tuple) else v
    return out


def _frozen_twin(schema: type, name: str, doc: str) -> type:
    """A frozen dataclass with the fields of `schema` (written once: the schema is the one list)."""
    return dataclasses.make_dataclass(name, [f.name for f in dataclasses.fields(schema)], frozen=True, eq=False,
                                      namespace={"__doc__": doc, "get": _spec_get, "to_dict": _spec_to_dict})


WandbSpec = _frozen_twin(WandbConfig, "WandbSpec", "WandbConfig's fields, frozen.")
RunSpec = _frozen_twin(Config, "RunSpec", """A resolved, validated run configuration: Config's fields
(derived ones filled, lists as tuples), frozen. Built by `resolve` / `resolve_tasks` /
`saved_spec`; read with attribute access (`spec.horizon`), `spec.get(key, default)`, and written
out with `spec.to_dict()`.""")


def to_spec(cfg: DictConfig) -> RunSpec:
    """Freeze a resolved DictConfig into a RunSpec."""
    d = OmegaConf.to_container(cfg, resolve=True)
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    d["wandb"] = WandbSpec(**d["wandb"])
    return RunSpec(**d)


def register_schema() -> None:
    """Register the schema with Hydra (called by the entry points before composing)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="mbdpo_schema", node=Config)


def compose_config(overrides: list[str], work_dir: str | None = None) -> DictConfig:
    """The config the CLI composes for these Hydra overrides (profiles included), outside the CLI:
    for benchmarks and tests. work_dir is set when given."""
    from hydra import compose, initialize_config_dir
    from pathlib import Path

    register_schema()
    with initialize_config_dir(config_dir=str(Path(__file__).parent / "cfgs"), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    if work_dir is not None:
        with open_dict(cfg):
            cfg.work_dir = str(work_dir)
    return cfg


def default_config(**overrides: Any) -> DictConfig:
    """The schema's defaults (the paper's settings) as a struct DictConfig, with overrides."""
    cfg = OmegaConf.structured(Config)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def saved_spec(saved: dict, **overrides: Any) -> RunSpec:
    """The spec saved in a checkpoint, over the schema's defaults (a field the saving version did
    not have takes its default, a field this version no longer has is dropped), with overrides
    (e.g. device) applied."""
    cfg = OmegaConf.structured(Config)
    known = {k: v for k, v in saved.items() if k in cfg}
    with open_dict(cfg):
        cfg = OmegaConf.merge(cfg, known, overrides)
    return to_spec(cfg)


def discount_for(episode_length: int, denom: float = 5.0, lo: float = 0.95, hi: float = 0.995) -> float:
    """gamma = clip((L/denom - 1) / (L/denom), lo, hi); 500 agent steps -> 0.99 (section 2)."""
    frac = episode_length / denom
    return float(min(max((frac - 1) / frac, lo), hi))


def apply_threads(spec: RunSpec) -> int:
    """Set torch's intra-op threads for a CPU run (spec.threads, or 0: OMP_NUM_THREADS where the
    environment sets it, else the cores in this process's CPU affinity, which torch's own default
    ignores); returns the count. GPU runs keep torch's default."""
    import os

    if resolve_device(spec.device).type != "cpu":
        return torch.get_num_threads()
    omp = os.environ.get("OMP_NUM_THREADS", "")
    n = spec.threads or (int(omp) if omp.isdigit() and int(omp) > 0 else len(os.sched_getaffinity(0)))
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device={name!r} is not a torch device (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} asked for CUDA but torch sees no GPU; use device=cpu or auto")
    return dev


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def resolve(cfg: DictConfig, obs_dim: int, action_dim: int, action_repeat: int | None = None,
            episode_length: int | None = None) -> RunSpec:
    """Validate a composed config and fill its derived fields; return them as a RunSpec (cfg itself
    is not changed). ConfigError on invalid values.

    obs_dim / action_dim: the task's (task registry), a dataset's or a checkpoint's (padded maxima
    in multi-task mode); action_repeat / episode_length: the suite's, used where the config leaves
    them at -1.
    """
    cfg = copy.deepcopy(cfg)
    _require(cfg.model_size in MODEL_SIZE,
             f"model_size={cfg.model_size} is not a preset; choose one of {sorted(MODEL_SIZE)}")
    with open_dict(cfg):
        for key, value in MODEL_SIZE[cfg.model_size].items():
            if cfg[key] == -1:
                cfg[key] = value
        cfg.obs_dim = int(obs_dim)
        cfg.action_dim = int(action_dim)
        if cfg.obs == "rgb":
            cfg.obs_shape = list(task_registry.pixel_shape())
            cfg.obs_dim = int(math.prod(cfg.obs_shape))
        else:
            cfg.obs_shape = [cfg.obs_dim]
        if cfg.action_repeat < 0:
            cfg.action_repeat = int(action_repeat) if action_repeat is not None else 2
        if cfg.episode_length < 0:
            cfg.episode_length = int(episode_length) if episode_length is not None else 500
        if cfg.seed_steps < 0:
            cfg.seed_steps = max(1000, 5 * cfg.episode_length)
        cfg.discount = discount_for(cfg.episode_length, cfg.discount_denom, cfg.discount_min, cfg.discount_max)
        cfg.multitask = len(cfg.tasks) > 1
        if not cfg.multitask:
            cfg.obs_dims, cfg.action_dims = [cfg.obs_dim], [cfg.action_dim]
            cfg.episode_lengths, cfg.action_repeats = [cfg.episode_length], [cfg.action_repeat]
    _require(cfg.obs in ("state", "rgb"), f"obs={cfg.obs!r}: use state or rgb")
    _require(cfg.env_backend in ("dmc", "mjx", "maniskill"),
             f"env_backend={cfg.env_backend!r}: use dmc (CPU suites), mjx or maniskill")
    if cfg.env_backend == "maniskill":
        _require(all(task_registry.suite_of(t) == "maniskill" for t in (cfg.tasks or [cfg.task])),
                 f"env_backend=maniskill simulates ManiSkill tasks (ms-*), not {cfg.task!r}")
    if cfg.env_backend == "mjx":  # refused here, before Hydra creates the run directory
        no_mjx = [t for t in (cfg.tasks or [cfg.task]) if t not in task_registry.names(mjx=True)]
        why = task_registry.NO_MJX_REASON.get(no_mjx[0]) if len(no_mjx) == 1 else None
        _require(not no_mjx, f"env_backend=mjx: {', '.join(no_mjx[:5])}{' ...' if len(no_mjx) > 5 else ''} "
                             f"{'has' if len(no_mjx) == 1 else 'have'} no MJX version"
                             + (f" ({why})" if why else " (the MJX tasks: python -c \"from mbdpo_fast import "
                                "task_registry; print(task_registry.names(mjx=True))\")") + "; use env_backend=dmc")
        own = [t for t in (cfg.tasks or [cfg.task]) if task_registry.get(t).dmc_mjx]
        _require(not (cfg.obs == "rgb" and own),
                 f"obs=rgb with env_backend=mjx: {cfg.task} runs on dm_control's own model there, whose pixels are "
                 f"rendered by the CPU workers only; use env_backend=dmc")
        _require(cfg.impl in ("auto", "jax", "warp"), f"impl={cfg.impl!r}: use auto, jax or warp")
        for t in own:
            why = task_registry.mjx_impl_refusal(t, cfg.impl)
            _require(why is None, why or "")
    if cfg.obs == "rgb":
        _require(len(cfg.tasks) <= 1 and cfg.task in task_registry.PIXEL_CAMERAS,
                 f"obs=rgb is for one of the pixel tasks {sorted(task_registry.PIXEL_CAMERAS)}, not {cfg.task!r}")
        _require(cfg.env_backend == "dmc" or cfg.impl != "jax",
                 "obs=rgb with env_backend=mjx renders with MuJoCo Warp, whose renderer needs the Warp physics: "
                 "set impl=warp (or env_backend=dmc: dm_control rendered on CPU workers)")
        _require(cfg.env_backend == "dmc" or cfg.task in task_registry.names(mjx=True),
                 f"obs=rgb: {cfg.task} has no MJX version (MuJoCo Playground); use env_backend=dmc")
        _require(cfg.latent_dim == 512, f"obs=rgb: the image encoder gives 512 features, latent_dim is "
                                        f"{cfg.latent_dim} (set latent_dim=512, as model_size=5 does)")
        _require(not cfg.save_dataset, "save_dataset=true writes state datasets; it does not take obs=rgb")
    _require(cfg.latent_dim % cfg.simnorm_dim == 0,
             f"latent_dim={cfg.latent_dim} must be a multiple of simnorm_dim={cfg.simnorm_dim}")
    _require(cfg.num_q >= 2, f"num_q={cfg.num_q}: the value estimate needs at least 2 Q heads")
    _require(cfg.horizon >= 1, f"horizon={cfg.horizon} must be >= 1")
    _require(cfg.diffusion_steps >= 2, f"diffusion_steps={cfg.diffusion_steps} must be >= 2")
    _require(0 < cfg.beta_start <= cfg.beta_end < 1, "need 0 < beta_start <= beta_end < 1")
    _require(1 <= cfg.num_elites <= cfg.num_samples,
             f"num_elites={cfg.num_elites} must be in [1, num_samples={cfg.num_samples}]")
    _require(0 <= cfg.num_pi_trajs <= cfg.num_samples,
             f"num_pi_trajs={cfg.num_pi_trajs} must be in [0, num_samples={cfg.num_samples}]")
    _require(cfg.temperature > 0, "temperature must be > 0")
    _require(cfg.batch_size >= 1 and cfg.buffer_size >= cfg.horizon + 1, "batch_size/buffer_size too small")
    _require(cfg.steps >= 1 and cfg.eval_freq >= 1 and cfg.checkpoint_freq >= 1,
             "steps, eval_freq and checkpoint_freq must be >= 1")
    _require(cfg.threads >= 0, f"threads={cfg.threads} must be >= 0 (0: the cores this process may use)")
    _require(cfg.checkpoint_minutes >= 0, f"checkpoint_minutes={cfg.checkpoint_minutes} must be >= 0 (0: off)")
    _require(cfg.eval_episodes >= 0, f"eval_episodes={cfg.eval_episodes} must be >= 0 (0: no evaluation)")
    _require(cfg.planner_score in ("auto", "mc", "network"),
             f"planner_score={cfg.planner_score!r}: use auto, mc or network")
    _require(cfg.planner_score != "network" or cfg.score_net,
             "planner_score=network needs score_net=true (the network it acts with)")
    _require(cfg.energy_pairing in ("aligned", "reference"),
             f"energy_pairing={cfg.energy_pairing!r}: use aligned or reference")
    _require(cfg.energy_neg_center in ("policy", "replay"),
             f"energy_neg_center={cfg.energy_neg_center!r}: use policy or replay")
    with open_dict(cfg):
        if cfg.planner_score == "auto":
            cfg.planner_score = "network" if cfg.score_net else "mc"
        if not cfg.multitask:
            cfg.task_dim = 0
        elif cfg.task_dim < 0:
            cfg.task_dim = task_registry.default_task_dim(list(cfg.tasks))
    _require(cfg.kernels in ("torch", "triton"), f"kernels={cfg.kernels!r}: use torch or triton")
    _require(cfg.num_envs >= 1, f"num_envs={cfg.num_envs} must be >= 1")
    _require(cfg.updates_per_step >= 0 and (cfg.log_every >= 1 or cfg.log_every == -1),
             "updates_per_step must be >= 0 and log_every >= 1 (or -1)")
    with open_dict(cfg):
        if cfg.log_every == -1:
            cfg.log_every = cfg.episode_length if cfg.num_envs == 1 else 50
        if cfg.seed_updates < 0:
            cfg.seed_updates = max(1, cfg.seed_steps * cfg.updates_per_step // cfg.num_envs)
    _require(cfg.wandb.mode in ("disabled", "offline", "online"),
             f"wandb.mode={cfg.wandb.mode!r}: use disabled, offline or online")
    import importlib.util

    _require(cfg.wandb.mode == "disabled" or importlib.util.find_spec("wandb") is not None,
             f"wandb.mode={cfg.wandb.mode} needs wandb, which is not installed (pip install 'mbdpo_fast[wandb]', "
             f"or wandb.mode=disabled)")
    _require(not cfg.tensorboard or importlib.util.find_spec("tensorboard") is not None,
             "tensorboard=true needs tensorboard, which is not installed (pip install 'mbdpo_fast[tensorboard]', "
             "or tensorboard=false)")
    if cfg.save_video:
        check_video_writer()
    _require(not cfg.save_video or cfg.env_backend in ("dmc", "mjx"),
             f"save_video=true renders dm_control, MetaWorld, MyoSuite and MJX tasks; env_backend={cfg.env_backend} "
             f"has no renderer here (save_video=false)")
    _require(not (cfg.grad_checkpoint and cfg.cudagraphs), "grad_checkpoint=true does not combine with cudagraphs=true")
    resolve_device(cfg.device)
    return to_spec(cfg)


def check_video_writer() -> None:
    """ConfigError unless the libraries that write save_video's MP4s are installed."""
    import importlib.util

    _require(all(importlib.util.find_spec(m) is not None for m in ("imageio", "imageio_ffmpeg")),
             "save_video=true needs imageio and imageio-ffmpeg, which are not installed (pip install "
             "'mbdpo_fast[video]', or save_video=false)")


def uses_pixels(cfg) -> bool:
    """Whether a run spec learns from stacked RGB frames (obs=rgb) rather than state vectors."""
    return cfg.get("obs", "state") == "rgb"


def steps_of(cfg: DictConfig) -> int:
    """The run's step budget: suite_steps[the task's suite] where set, else steps."""
    budgets = {}
    for item in cfg.get("suite_steps") or []:
        suite, _, n = str(item).partition(":")
        _require(n.strip().isdigit(), f"suite_steps item {item!r}: write suite:steps, e.g. myosuite:500000")
        budgets[suite.strip()] = int(n)
    unknown = set(budgets) - set(task_registry.SUITES)
    _require(not unknown, f"suite_steps names {sorted(unknown)}: suites are {sorted(task_registry.SUITES)}")
    if cfg.task in task_registry.TASKS and task_registry.suite_of(cfg.task) in budgets:
        return int(budgets[task_registry.suite_of(cfg.task)])
    return int(cfg.steps)


def resolve_task(cfg: DictConfig) -> RunSpec:
    """resolve() for a single-task run of cfg.task, its dims and suite defaults from the task registry."""
    if cfg.get("suite_steps"):
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.steps = steps_of(cfg)
    _require(cfg.get("maniskill", 3) in (2, 3), f"maniskill={cfg.get('maniskill')}: use 3 (ManiSkill3) or 2 (ManiSkill2)")
    if cfg.get("maniskill", 3) == 2 and cfg.task.startswith("ms-"):
        _require(cfg.env_backend == "dmc", "maniskill=2 runs on CPU workers: use env_backend=dmc")
    row = task_registry.get(cfg.task, cfg.get("maniskill", 3))
    return resolve(cfg, row.obs_dim, row.action_dim, row.action_repeat, row.episode_length)


def resolve_tasks(cfg: DictConfig, obs_dim: int | None = None, action_dim: int | None = None) -> RunSpec:
    """resolve() for multi-task configs: expand cfg.tasks (or a set name in cfg.task), fill the
    per-task dims, episode lengths and action repeats (suite defaults unless action_repeat /
    episode_length are set, which then apply to every task), pad obs/action dims to their maxima
    (or to obs_dim/action_dim where given, e.g. a dataset's or a checkpoint's padded dims)."""
    cfg = copy.deepcopy(cfg)
    names = task_registry.expand(list(cfg.tasks) if len(cfg.tasks) else [cfg.task])
    if len(names) < 2 and cfg.task not in task_registry.TASK_SETS:
        raise ConfigError(f"a multi-task run needs at least 2 tasks; got {names} (set task=mt30|mt80 or "
                          f"tasks=[a,b,...])")
    rows = [task_registry.get(t) for t in names]
    dims = [(r.obs_dim, r.action_dim) for r in rows]
    suite = [(r.action_repeat, r.episode_length) for r in rows]
    D, A = max(d for d, _ in dims), max(a for _, a in dims)
    if obs_dim is not None:
        _require(obs_dim >= D, f"obs_dim={obs_dim} is smaller than the largest task's ({D})")
        D = obs_dim
    if action_dim is not None:
        _require(action_dim >= A, f"action_dim={action_dim} is smaller than the largest task's ({A})")
        A = action_dim
    with open_dict(cfg):
        cfg.tasks = names
        cfg.obs_dims = [d for d, _ in dims]
        cfg.action_dims = [a for _, a in dims]
        cfg.action_repeats = [r if cfg.action_repeat < 0 else int(cfg.action_repeat) for r, _ in suite]
        cfg.episode_lengths = [L if cfg.episode_length < 0 else int(cfg.episode_length) for _, L in suite]
        own = names.index(cfg.task) if cfg.task in names else None  # the fine-tuned task, if any
        repeat = cfg.action_repeats[own] if own is not None else max(cfg.action_repeats)
        length = cfg.episode_lengths[own] if own is not None else max(cfg.episode_lengths)
    return resolve(cfg, D, A, repeat, length)


def unset_to_none(value: int) -> int | None:
    """-1 (\"the suite's default\") as None for the environment constructors."""
    return None if value < 0 else int(value)
