"""What every benchmark script shares: its command line (`--quick`, `--csv`, `--device`,
`--dry-run`), the error contract (one `error: <what> (<how to fix>)` line, exit code 2, nothing
created), the plan printed before any measurement, and the CSV written at the end with the
commit, date and device of the numbers.

A row that was not measured carries an empty value and a note saying why; nothing prints `nan`.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "runs" / "benchmarks"


def commit() -> str:
    """GIT_COMMIT from the environment (the GPU machine has no .git), else git's short HEAD."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device) if torch.cuda.is_available() else "CUDA (not present: dry run)"
    return platform.processor() or "cpu"


def stamp(device: torch.device) -> dict:
    """The columns every CSV row carries."""
    return {"date": dt.date.today().isoformat(), "commit": commit(), "device": device_name(device),
            "torch": torch.__version__}


def fail(what: str, fix: str) -> NoReturn:
    print(f"error: {what} ({fix})", file=sys.stderr, flush=True)
    raise SystemExit(2)


class Parser(argparse.ArgumentParser):
    """argparse with the package's error contract: one `error:` line and exit code 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        fail(message, f"see python benchmarks/{self.prog} --help")


def benchmark_parser(name: str, doc: str, png: bool = False) -> Parser:
    """The options every benchmark has. `name` is the script's stem; the CSV (and PNG) default to
    runs/benchmarks/<name>.csv (.png)."""
    ap = Parser(prog=f"{name}.py", description=doc.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu or cuda[:i] (default: cuda where torch sees a GPU)")
    ap.add_argument("--quick", action="store_true", help="the smallest run of every section: under a minute on a CPU")
    ap.add_argument("--dry-run", action="store_true", help="print what would run and how long it may take, then stop")
    ap.add_argument("--csv", default=str(DEFAULT_OUT / f"{name}.csv"), help="output CSV (default: %(default)s)")
    if png:
        ap.add_argument("--png", default=None, help="output plot (default: the CSV's path with .png)")
    return ap


def check_device(name: str, dry_run: bool = False) -> torch.device:
    """The device of --device; CUDA without a GPU is refused, except in a dry run (which only
    prints the plan, e.g. benchmarks/gpu_all.sh --dry-run on a CPU machine)."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        fail(f"unknown device {name!r}", "use cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available() and not dry_run:
        fail(f"device {name} asked for but torch sees no CUDA GPU", "use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        fail(f"device {name!r} is not supported here", "use cpu or cuda")
    return dev


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Refuse (before any measurement) an output path that cannot be written; creates nothing."""
    p = Path(path).expanduser().absolute()
    if p.is_dir():
        fail(f"{what} {p} is a directory", "give a file name")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    try:  # a probe file, removed at once: os.access says yes to root even where writing fails (/proc)
        tempfile.NamedTemporaryFile(dir=parent, prefix=".mbdpo-probe-").close()
    except OSError:
        fail(f"cannot write {what} {p}: {parent} is not a writable directory", "choose another path")
    if p.exists() and not os.access(p, os.W_OK):
        fail(f"cannot overwrite {what} {p}", "choose another path")
    return p


def outputs(args) -> tuple[Path, Path | None]:
    """(csv, png or None) checked for writing; the PNG defaults to the CSV's path with .png."""
    csv_path = check_writable(args.csv, "CSV")
    png = getattr(args, "png", "absent")
    if png == "absent":
        return csv_path, None
    return csv_path, check_writable(png or csv_path.with_suffix(".png"), "PNG")


def quiet_libraries() -> None:
    """Keep a benchmark's output to its plan, table and file paths: warnings of the libraries under
    it that say nothing about the measurement are dropped (absl's logger, through which dm_control
    passes MuJoCo's `settotalmass` deprecation; Python warnings). Errors still show."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


@contextlib.contextmanager
def nested_run():
    """Around a training run (or an agent) that a benchmark builds in its own process: torch.compile
    starts from empty caches (the graphs of earlier variants would push this one past dynamo's
    recompile limit, where it would run eagerly, unlike a real run), and the run's banner and
    end-of-run lines go to a buffer that is shown only if the run fails."""
    import io

    import torch._dynamo

    torch._dynamo.reset()
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    except BaseException:
        sys.stdout.write(buf.getvalue())
        raise


def announce(title: str, plan: list[str], seconds: float, csv_path: Path, png: Path | None = None) -> None:
    """Print what will run and a rough duration (an estimate from per-measurement budgets, not a measurement)."""
    print(title, flush=True)
    for line in plan:
        print(f"  - {line}")
    mins = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
    print(f"  roughly {mins} (estimate); results: {csv_path}" + (f" and {png}" if png else ""), flush=True)


def write_csv(path: Path, rows: list[dict], fields: list[str] | None = None, quiet: bool = False) -> None:
    """Write every row (overwriting the file); the header is the union of the rows' keys in order."""
    fields = fields or list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    if not quiet:
        print(f"wrote {len(rows)} rows to {path}", flush=True)


def shown(value, unit: str = "") -> str:
    """A measured value for the console, or '-' for a row that was not measured (its note says why)."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return "-"
    return f"{value} {unit}".rstrip()


def error_note(e: BaseException) -> str:
    return f"not measured: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
