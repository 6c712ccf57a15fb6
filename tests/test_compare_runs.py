"""tools/compare_runs.py: equal runs pass, a one-ulp change in any agent tensor or an eval row fails."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from compare_runs import main  # noqa: E402


def fake_run(d: Path, weight: torch.Tensor, reward: str = "1.5"):
    d.mkdir()
    (d / "eval.csv").write_text(f"step,reward,seed\n0,{reward},1\n")
    (d / "train.csv").write_text("step,episode_reward\n10,2.0\n")
    torch.save({"agent": {"model": {"w": weight}, "optim": [{"state": {0: weight * 2}}]}, "trainer": {"step": 10}},
               d / "checkpoint.pt")


def test_equal_and_different_runs(tmp_path):
    w = torch.randn(4, 3)
    fake_run(tmp_path / "a", w)
    fake_run(tmp_path / "b", w.clone())
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "r.csv")]) == 0
    assert "bitwise equal" in (tmp_path / "r.csv").read_text()
    w2 = w.clone()
    w2[0, 0] = torch.nextafter(w2[0, 0], torch.tensor(10.0))
    fake_run(tmp_path / "c", w2)
    assert main([str(tmp_path / "a"), str(tmp_path / "c")]) == 1
    fake_run(tmp_path / "d", w.clone(), reward="1.6")
    assert main([str(tmp_path / "a"), str(tmp_path / "d")]) == 1
