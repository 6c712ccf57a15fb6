"""Shared entry-point plumbing: one clear error line instead of a traceback for user mistakes.

The error contract of every entry point: a mistake on the command line or in the environment
prints one line `error: <what> (<how to fix>)` on stderr, exits with code 2, and creates or
overwrites nothing. `precheck` runs before Hydra (which creates the run directory and writes
.hydra/ before the task starts): it composes the command line as Hydra will and validates it.
"""
from __future__ import annotations

import dataclasses
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from .data.checkpoint import CHECKPOINT_NAME, load_checkpoint
from .errors import ConfigError, UserError
from .task_registry import suggest

CFG_DIR = str(Path(__file__).parent / "cfgs")


@contextmanager
def user_errors():
    """The one place that turns a user's error (errors.UserError: configuration, task, checkpoint,
    dataset, replay capacity, divergence) into `error: ...` on stderr and exit code 2."""
    try:
        yield
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run_checkpoint(cfg: DictConfig) -> Path:
    """The checkpoint path of cfg.work_dir. ConfigError when work_dir is unset, or when a
    checkpoint is already there and resume=false (a new run must not overwrite it)."""
    if cfg.get("work_dir") in (None, "???") or OmegaConf.is_missing(cfg, "work_dir"):
        raise ConfigError("work_dir is not set")
    ckpt = Path(cfg.work_dir) / CHECKPOINT_NAME
    if ckpt.exists() and not cfg.resume:
        step = load_checkpoint(ckpt)["trainer"]["step"]
        raise ConfigError(f"{cfg.work_dir} already holds a checkpoint at step {step}: pass resume=true to continue "
                          f"it, or choose another exp_name/seed for a new run")
    if cfg.resume and not ckpt.exists():
        raise ConfigError(f"resume=true, but {cfg.work_dir} holds no checkpoint ({CHECKPOINT_NAME}) to continue: "
                          f"drop resume=true to start a new run there, or name the run to continue (task, seed, "
                          f"exp_name or hydra.run.dir)")
    return ckpt


def choose_renderer(cfg: DictConfig) -> None:
    """save_video=true: choose headless OpenGL for this process and its workers now, before MuJoCo
    is imported (it reads MUJOCO_GL once); RenderingError, one line before anything is created,
    where nothing renders."""
    if cfg.get("save_video"):
        from .envs.cpu.pixels import use_headless_gl

        use_headless_gl()


def resume_or_start(trainer, ckpt: Path, resume: bool) -> bool:
    """Load `ckpt` into an online trainer when resuming (True); else start fresh, dropping log rows
    of an earlier run in the same directory that never checkpointed (False)."""
    if resume and ckpt.exists():
        trainer.load(ckpt)
        print(f"resumed {ckpt} at step {trainer.step}")
        return True
    trainer.logger.truncate_after(-1)
    return False


def save_spec(spec, path: Path) -> None:
    """The run spec as config.yaml beside the run (every field, derived ones included)."""
    OmegaConf.save(OmegaConf.create(spec.to_dict()), path)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"


def resume_command(entry: str, more: bool = False) -> str:
    """The command that continues this run: the entry point with this command line's overrides
    and resume=true (in a Hydra sweep job: the sweep's own command, which resumes unfinished jobs);
    more=True (a finished run): with steps=<more> in place of its steps."""
    import shlex

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return f"python -m {entry} ... resume=true" + (" steps=<more>" if more else "")
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return "the same sweep command again (-m): finished jobs are skipped, this one resumes"
    drop = ("resume=",) + (("steps=",) if more else ())
    args = [a for a in hc.overrides.task if not a.startswith(drop)] + list(hc.overrides.hydra) + ["resume=true"]
    args = [a for a in args if not a.startswith(("hydra.mode=", "hydra.job.", "hydra.runtime."))]
    return f"python -m {entry} {shlex.join(args)}" + (" steps=<more>" if more else "")


def print_run_summary(summary: dict, work_dir: Path, entry: str, eval_csv: Path | None = None) -> None:
    """A run's last lines, for a person: what ended it, steps and wall clock, the last evaluation,
    the run directory and the commands to evaluate, resume and plot it."""
    import csv

    stop = summary.get("stop", "steps")
    why = {"steps": "finished", "time_limit": "stopped at its time_limit"}.get(stop, f"stopped by {stop}")
    unit = "updates" if "env_steps_per_s" not in summary else "env steps"
    rate = f" ({summary['env_steps_per_s']:.1f} env steps/s in this command)" if "env_steps_per_s" in summary else ""
    print(f"{why}: {summary['step']:,} {unit} in {_duration(summary.get('elapsed_s', 0.0))} of training{rate}")
    rows = []
    if eval_csv is not None and eval_csv.exists():
        with open(eval_csv, newline="") as f:
            rows = list(csv.DictReader(f))
    if rows:
        last = rows[-1]
        value = ("return", last["reward"]) if "reward" in last else ("normalised score", last.get("score", "?"))
        print(f"last evaluation: {value[0]} {float(value[1]):.1f} at step {int(float(last['step'])):,} ({eval_csv})")
    else:
        print("last evaluation: none yet")
    ckpt = work_dir / CHECKPOINT_NAME
    print(f"run directory: {work_dir}")
    print(f"  evaluate: python -m mbdpo_fast.evaluate checkpoint={ckpt}")
    print(f"  resume:   {resume_command(entry, more=stop == 'steps')}")
    if (work_dir / "train.csv").exists() and eval_csv is not None:
        print(f"  plot:     python benchmarks/plot_returns.py {eval_csv} {work_dir / 'train.csv'} {work_dir / 'returns.png'}")
    if any(work_dir.glob("events.out.tfevents.*")):
        print(f"  watch:    tensorboard --logdir {work_dir}")
    if (work_dir / "videos").is_dir():
        print(f"  videos:   {work_dir / 'videos'}")


def train_reporting(trainer, work_dir: Path, entry: str, show: bool = True, unit: str = "step") -> dict:
    """Train under StopSignals and print the run's summary (show=False: a DDP rank other than 0).
    A run that a signal ended (summary["stop"] not steps / time_limit) prints the command that
    resumes it, calls the handler a launcher had installed (submitit's requeues) and exits with
    EXIT_STOPPED; its checkpoint is written by the trainer at the step where it stopped."""
    from .trainers.common import EXIT_STOPPED, StopSignals

    with StopSignals() as stop:
        summary = trainer.train(stop)
        if show:
            print_run_summary(summary, work_dir, entry, work_dir / "eval.csv")
        if summary["stop"] not in ("steps", "time_limit"):
            if show:
                print(f"{summary['stop']}: checkpoint written at {unit} {summary['step']:,}; resume with "
                      f"{resume_command(entry)}", flush=True)
            stop.pass_on()
            raise SystemExit(EXIT_STOPPED)
    return summary


def train_and_report(trainer, spec, banner: str, entry: str = "mbdpo_fast.train") -> dict:
    """Save the run spec beside the run, print the banner, then train_reporting."""
    work_dir = Path(spec.work_dir)
    save_spec(spec, work_dir / "config.yaml")
    print(banner)
    return train_reporting(trainer, work_dir, entry)


LOCK_NAME = ".run.lock"


def _is_secondary_rank() -> bool:
    """A torchrun process other than rank 0 (rank 0 holds the run directory for all of them)."""
    import os

    return int(os.environ.get("RANK", "0") or 0) != 0


class RunLock:
    """One process per run directory: an exclusive lock (flock) on <run dir>/.run.lock, held by the
    operating system for as long as the holder lives, so a killed run never blocks its own resume.
    The file names the holder (pid, host, start time, command) for the refusal's message."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    @staticmethod
    def _try(fd: int) -> bool:
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _refuse(self, fd: int):
        import os

        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        return ConfigError(f"{self.path.parent} is in use by {holder}: one process per run directory (wait for it, "
                           f"stop it, or choose another exp_name/seed or hydra.run.dir)")

    def check(self) -> None:
        """ConfigError naming the holder if a live process holds the directory; creates nothing."""
        import os

        if _is_secondary_rank() or not self.path.exists():
            return
        fd = os.open(self.path, os.O_RDONLY)
        if not self._try(fd):
            raise self._refuse(fd)
        os.close(fd)  # closing releases the probe's lock

    def __enter__(self) -> "RunLock":
        import datetime
        import os
        import socket

        if _is_secondary_rank():
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not self._try(fd):
            raise self._refuse(fd)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        try:  # the command as typed (python -m ...), which sys.argv no longer shows
            with open("/proc/self/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            command = " ".join(sys.argv)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} (started {started}: {command[:300]})\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import os

        if self.fd is not None:
            os.close(self.fd)  # releases the lock; the file stays (removing it would race a new holder)
            self.fd = None


def hydra_entry(cfg: DictConfig, run) -> None:
    """The body of a training entry point's @hydra.main: work_dir defaults to Hydra's run
    directory, user mistakes become one error line (exit 2), and the run holds its directory
    (RunLock) while it runs."""
    from hydra.core.hydra_config import HydraConfig

    with open_dict(cfg):
        if OmegaConf.is_missing(cfg, "work_dir"):
            cfg.work_dir = HydraConfig.get().runtime.output_dir
    with user_errors():
        with RunLock(Path(cfg.work_dir)):
            if sweep_job(cfg):
                run(cfg)


def expand_task_sweep(argv: list[str]) -> list[str]:
    """With -m/--multirun, `task=` values that name a task set (mt30, mt80) or a suite (dmcontrol,
    metaworld, myosuite, maniskill; `<suite>-paper`: only the tasks the paper benchmarks) become
    the tasks they stand for, so that each task is one job: task=mt30,mw-reach -> 31 jobs.
    With env_backend=mjx a suite stands for its tasks that have an MJX version (each job then runs on
    its task's own MJX implementation, impl=auto), and a note names the ones left out.
    Other command lines are returned unchanged."""
    from .task_registry import SUITES, TASK_SETS, names

    if not any(a in ("-m", "--multirun") for a in argv):
        return argv
    on_mjx = "env_backend=mjx" in argv
    out = []
    for a in argv:
        if a.startswith("task="):
            tasks = []
            for item in a[len("task="):].split(","):
                suite, paper = (item[:-len("-paper")], True) if item.endswith("-paper") else (item, None)
                if item in TASK_SETS:
                    tasks += TASK_SETS[item]
                elif suite in SUITES:
                    members = names(suite=suite, paper=paper)
                    if on_mjx:
                        left = [t for t in members if t not in names(mjx=True)]
                        members = [t for t in members if t not in left]
                        if left:
                            print(f"note: env_backend=mjx: task={item} runs its {len(members)} tasks that have an MJX "
                                  f"version; left out (no MJX version): {', '.join(left)}", file=sys.stderr)
                    tasks += members
                else:
                    tasks.append(item)
            a = "task=" + ",".join(dict.fromkeys(tasks))
        out.append(a)
    return out


# Hydra's launchers that start every job on this machine (the SLURM ones get their GPUs from SLURM).
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher")


def sweep_job(cfg: DictConfig) -> bool:
    """In a Hydra multirun job (-m), make the sweep resumable and spread it over the GPUs; True when
    the job has work to do. A run whose directory holds a checkpoint at its last step is finished
    and skipped (False); one with an earlier checkpoint resumes (resume=true). With a local launcher
    on a machine with several GPUs, device=auto|cuda becomes cuda:<job number mod GPUs>, which
    Hydra's launchers do not do themselves; joblib's parallel jobs split the CPU cores between them
    (threads=0 -> cores / n_jobs). Outside multirun: True, nothing changed."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return True
    ckpt = Path(cfg.work_dir) / CHECKPOINT_NAME
    with open_dict(cfg):
        if ckpt.exists():
            from .config import steps_of

            step = load_checkpoint(ckpt)["trainer"]["step"]
            if step >= steps_of(cfg):
                print(f"{cfg.work_dir}: finished at step {step}; skipped")
                return False
            cfg.resume = True
        launcher = str(hc.launcher.get("_target_", "")).rsplit(".", 1)[-1]
        if launcher == "JoblibLauncher" and not cfg.get("threads", 1):
            # Jobs side by side share the cores: each takes its part (torch's CPU threads spin while
            # they wait, so 2 jobs x all cores ran ~100x slower than one job on a 2-core machine).
            import os

            cores = len(os.sched_getaffinity(0))
            n_jobs = int(hc.launcher.get("n_jobs", -1) or -1)
            cfg.threads = max(1, cores // (cores if n_jobs < 0 else min(n_jobs, cores)))
        if cfg.device in ("auto", "cuda") and launcher in LOCAL_LAUNCHERS:
            import torch

            gpus = torch.cuda.device_count()
            if gpus > 1:
                cfg.device = f"cuda:{hc.job.num % gpus}"
    return True


def check_writable(run_dir: Path) -> None:
    """ConfigError unless run_dir exists writable or can be created: a directory is made and removed
    again in its nearest existing ancestor (permission bits do not tell root or special file systems)."""
    import tempfile

    probe = run_dir.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        tempfile.TemporaryDirectory(dir=probe, prefix=".mbdpo-probe-").cleanup()
    except OSError:
        raise ConfigError(f"cannot write the run directory {run_dir} ({probe} is not a writable directory): "
                          f"choose another with hydra.run.dir=PATH")


def _hydra_message(exc: Exception, known: set[str]) -> str:
    """One line for what Hydra or OmegaConf refused while composing the command line."""
    text = str(exc).split("Config search path")[0]
    cause = exc.__cause__ or exc.__context__
    m = re.search(r"Could not override '([^']+)'", text)
    if m and cause is not None and "not in" in str(cause):
        key = m.group(1).split(".")[0]
        return f"unknown config key {key!r}.{suggest(key, known)} (every key is documented in mbdpo_fast/config.py)"
    m = re.search(r"Could not find '(\w+)/([^']+)'", text)
    if m:
        options = re.search(r"Available options in '\w+':(.*)", text, re.S)
        names = ", ".join(options.group(1).split()) if options else "none"
        return f"{m.group(1)}={m.group(2)}: no such {m.group(1)} (available: {names})"
    if cause is not None and str(cause).strip():
        text = f"{text.strip().removeprefix('Error merging override ')}: {str(cause).strip().splitlines()[0]}"
    return " ".join(text.replace("\t", " ").split()).replace(": Available", ". Available")


def compose_command_line(config_name: str, schema: type, overrides: list[str]) -> DictConfig:
    """The config Hydra will compose from `overrides` (its own `hydra` node included). ConfigError
    for what Hydra refuses (a misspelt key, a value of the wrong type, an unknown profile) and for
    keys the schema does not have (`+key=...` adds them in Hydra)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    known = {f.name for f in dataclasses.fields(schema)}
    try:
        with initialize_config_dir(config_dir=CFG_DIR, version_base=None):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_hydra_message(exc, known)) from None
    unknown = [k for k in cfg if k != "hydra" and k not in known]
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}.{suggest(unknown[0], known)} (every key is "
                          f"documented in mbdpo_fast/config.py)")
    return cfg


def precheck(config_name: str, schema: type, validate=None, argv: list[str] | None = None) -> None:
    """Before Hydra runs (and creates the run directory): compose the command line, refuse what is
    wrong with it, then `validate(cfg)` (work_dir set to the run directory Hydra would use) for the
    entry point's own checks. Every refusal is the one-line error contract (exit code 2). Command
    lines with Hydra's own flags (-m, --cfg, --help, ...) are left to Hydra."""
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a.startswith("-") for a in args):
        return
    with user_errors():
        cfg = compose_command_line(config_name, schema, args)
        if validate is not None:
            with open_dict(cfg):
                if "work_dir" in {f.name for f in dataclasses.fields(schema)} and OmegaConf.is_missing(cfg, "work_dir"):
                    cfg.work_dir = str(cfg.hydra.run.dir)
                del cfg["hydra"]
            if cfg.get("work_dir"):
                RunLock(Path(cfg.work_dir)).check()
            validate(cfg)
            if cfg.get("work_dir"):
                check_writable(Path(cfg.work_dir))
