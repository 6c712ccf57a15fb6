"""docs/mjx_physics.md is the current list of physics-setting differences (regenerate it with
`python tools/mjx_physics_diff.py > docs/mjx_physics.md`)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

pytest.importorskip("mujoco_playground")

from mjx_physics_diff import differences, markdown  # noqa: E402


def test_doc_is_current():
    doc = Path(__file__).resolve().parents[1] / "docs" / "mjx_physics.md"
    assert doc.read_text() == markdown(), "regenerate docs/mjx_physics.md"


def test_known_differences_are_detected():
    assert "timestep: 0.002 -> 0.003" in differences("swimmer-swimmer6")
    assert any(d.startswith("iterations: 100 -> ") for d in differences("cheetah-run"))
