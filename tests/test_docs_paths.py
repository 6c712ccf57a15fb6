"""Every repository path that the documentation, configs, scripts and code mention exists."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a path rooted at one of the repository's top-level folders, e.g. `mbdpo_fast/envs/cpu/vector.py`
PATH = re.compile(r"(?<![\w./-])((?:mbdpo_fast|benchmarks|docs|tests|tools|scripts)/[\w./-]*[\w/])")


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / f for f in out.splitlines()
            if f.endswith((".md", ".py", ".sh", ".yaml", ".toml")) or f in ("Makefile", ".ci/run")]


def mentioned_paths() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for f in tracked_files():
        if not f.is_file():
            continue
        for m in PATH.finditer(f.read_text(errors="replace")):
            p = m.group(1).rstrip(".")
            if any(ch in p for ch in "*{$<"):  # patterns and placeholders
                continue
            found.setdefault(p, set()).add(str(f.relative_to(ROOT)))
    return found


def test_every_mentioned_path_exists():
    missing = {p: sorted(files) for p, files in mentioned_paths().items() if not (ROOT / p).exists()}
    assert not missing, "paths mentioned but absent:\n  " + "\n  ".join(f"{p} (in {', '.join(f)})" for p, f in sorted(missing.items()))


def test_the_scan_finds_paths():
    paths = mentioned_paths()
    assert "docs/architecture.md" in paths and "mbdpo_fast/trainers/online.py" in paths
    assert "tests/test_layering.py" in paths  # named by docs/architecture.md


# Markdown files the package writes into a results folder (mbdpo_fast/results.py), not repository files
WRITTEN_MD = {"tasks.md", "aggregates.md"}


def test_every_document_named_is_one_users_have():
    """A bare document name (`algorithm.md`, `README.md`) in any tracked file, benchmark READMEs
    included, is a file of the repository or one the package writes: nothing that only its
    developers have."""
    have = {f.name for f in tracked_files()} | WRITTEN_MD
    named = re.compile(r"(?<![\w./-])([A-Za-z0-9_-]+\.md)\b")
    missing = {}
    for f in tracked_files():
        if f.is_file():
            for m in named.finditer(f.read_text(errors="replace")):
                if m.group(1) not in have:
                    missing.setdefault(m.group(1), set()).add(str(f.relative_to(ROOT)))
    assert not missing, f"documents named but not in the repository: {missing}"
