"""The image encoder and its random-shift augmentation (mbdpo_fast/layers.py)."""
import pytest
import torch
import torch.nn.functional as F

from mbdpo_fast.layers import PixelEncoder, RandomShift, SimNorm


def crops(x: torch.Tensor, pad: int) -> dict:
    """(dy, dx) -> every integer crop of the replicate-padded images."""
    p = F.pad(x, (pad,) * 4, mode="replicate")
    h = x.shape[-1]
    return {(dy, dx): p[..., dy:dy + h, dx:dx + h] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)}


def test_random_shift_is_an_integer_crop_within_the_padding():
    """Each shifted image equals the padded image cropped at one offset in [0, 2 pad]^2 (to float
    rounding of grid_sample at pixel centres); over many images every offset in range occurs."""
    torch.manual_seed(0)
    x = torch.randint(0, 256, (300, 3, 16, 16)).float()
    y = RandomShift(3)(x, torch.Generator().manual_seed(1))
    options = crops(x, 3)
    seen = set()
    for i in range(len(x)):
        match = [k for k, c in options.items() if (y[i] - c[i]).abs().max() < 1e-2]
        assert len(match) == 1, i
        seen.add(match[0])
    assert seen == set(options)  # 49 offsets, 300 draws


def test_random_shift_is_reproducible_under_a_seed():
    x = torch.rand(8, 9, 64, 64) * 255
    aug = RandomShift(3)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(RandomShift(0)(x), x)


def test_pixel_encoder_shapes_range_and_gradients():
    """[..., 9, 64, 64] uint8 -> [..., 512] SimNorm features (each group of 8 sums to 1);
    gradients reach every convolution; other image shapes are refused."""
    enc = PixelEncoder(9, out_act=SimNorm(8))
    assert enc.out_dim == 512 and PixelEncoder.conv_side(64) == 4
    obs = torch.randint(0, 256, (2, 3, 9, 64, 64), dtype=torch.uint8)
    z = enc(obs, torch.Generator().manual_seed(0))
    assert z.shape == (2, 3, 512)
    assert torch.allclose(z.view(2, 3, 64, 8).sum(-1), torch.ones(2, 3, 64), atol=1e-5)
    (z * torch.randn_like(z)).sum().backward()
    convs = [m for m in enc.convs if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in convs)
    with pytest.raises(ValueError, match="pixel observations of shape"):
        enc(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_pixel_encoder_preprocesses_to_minus_half_plus_half():
    """x / 255 - 0.5 before the first convolution: an all-255 image and an all-0 one reach it as
    +0.5 and -0.5 (no shift: the padding repeats the border)."""
    enc = PixelEncoder(3, pad=0)
    seen = []
    enc.convs[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    enc(torch.full((1, 3, 64, 64), 255, dtype=torch.uint8))
    enc(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    assert torch.allclose(seen[0], torch.full_like(seen[0], 0.5)) and torch.allclose(seen[1], torch.full_like(seen[1], -0.5))


def frame(episode: int, t: int, size: int = 8) -> torch.Tensor:
    """A [3, size, size] uint8 frame that says which (episode, step) it shows."""
    f = torch.zeros(3, size, size, dtype=torch.uint8)
    f[0], f[1], f[2] = t, episode, 7
    return f


def stack_of(frames: list) -> torch.Tensor:
    return torch.cat(frames[-3:], dim=0)


@pytest.mark.parametrize("capacity", [400, 37])  # 37: the ring wraps many times
def test_pixel_replay_rebuilds_frame_stacks_from_one_frame_per_slot(capacity):
    """Episodes of random lengths written as the environment stacks them (first frame repeated at
    reset); every sampled stack equals the one the environment returned at that step, including
    after the ring has overwritten older episodes, and never mixes episodes."""
    from mbdpo_fast.data.replay import ReplayBuffer

    H, F = 3, 3
    buf = ReplayBuffer(capacity, 9 * 8 * 8, 2, H, num_streams=1, obs_shape=(9, 8, 8), frames=F)
    assert buf.obs.dtype == torch.uint8 and buf.obs.shape[2:] == (3, 8, 8)
    g = torch.Generator().manual_seed(0)
    for ep in range(12):
        length = int(torch.randint(4, 20, (1,), generator=g))
        frames = [frame(ep, 0)] * F
        buf.add(stack_of(frames)[None], None, None, None, first=torch.ones(1, dtype=torch.bool))
        for t in range(1, length + 1):
            frames.append(frame(ep, t))
            buf.add(stack_of(frames)[None], torch.rand(1, 2), torch.tensor([float(t)]), torch.zeros(1),
                    first=torch.zeros(1, dtype=torch.bool))
    batch = buf.sample(256, generator=torch.Generator().manual_seed(1))
    assert batch.obs.shape == (H + 1, 256, 9, 8, 8) and batch.obs.dtype == torch.uint8
    t_of = batch.obs[:, :, 0::3, 0, 0].long()  # [H+1, B, F]: the step each stacked frame shows
    ep_of = batch.obs[:, :, 1::3, 0, 0].long()
    assert (ep_of == ep_of[..., :1]).all() and (ep_of[0:1] == ep_of).all()  # one episode per window
    t_now = t_of[..., -1]
    for k in range(F):
        assert torch.equal(t_of[..., k], (t_now - (F - 1 - k)).clamp(min=0))
    assert torch.equal(t_now[1:], t_now[:-1] + 1)  # consecutive steps
    assert torch.equal(batch.reward[..., 0], t_now[1:].float())  # the reward that led into each step


def test_pixel_replay_bytes_per_transition():
    """64 x 64 RGB, 3 frames: 12,288 B of pixels per transition (one frame), 12,329 B in all at 6
    action dims: a million transitions take 12.3 GB of host memory (the stack would take 36.9 GB)."""
    from mbdpo_fast.data.replay import ReplayBuffer

    buf = ReplayBuffer(64, 9 * 64 * 64, 6, 3, obs_shape=(9, 64, 64), frames=3)
    assert buf.bytes_per_slot(multitask=False) == 3 * 64 * 64 + 4 * (6 + 2) + 8 + 1 == 12329
    assert buf.obs.element_size() * buf.obs[0, 0].numel() == 12288
    with pytest.raises(ValueError, match="stack of 3 frames"):
        ReplayBuffer(64, 10, 6, 3, obs_shape=(10, 8, 8), frames=3)


@pytest.mark.cuda
def test_pixel_replay_in_pinned_host_memory_delivers_on_the_gpu():
    from mbdpo_fast.data.replay import ReplayBuffer

    buf = ReplayBuffer(64, 9 * 8 * 8, 2, 3, obs_shape=(9, 8, 8), frames=3, device="cuda", storage="cpu")
    assert buf.obs.is_pinned()
    frames = [frame(0, 0)] * 3
    buf.add(stack_of(frames)[None], None, None, None, first=torch.ones(1, dtype=torch.bool))
    for t in range(1, 10):
        frames.append(frame(0, t))
        buf.add(stack_of(frames)[None], torch.rand(1, 2), torch.ones(1), torch.zeros(1), first=torch.zeros(1, dtype=torch.bool))
    batch = buf.sample(8)
    assert batch.obs.device.type == "cuda" and batch.action.device.type == "cuda"


PIXEL_SCRIPT = """
import json, sys
import numpy as np
from mbdpo_fast.envs.cpu.dmcontrol import DMControlEnv
from mbdpo_fast.envs.cpu.pixels import PixelObservation
from mbdpo_fast.task_registry import PIXEL_CAMERAS
from mbdpo_fast.envs.cpu.wrappers import ActionRepeat, TimeLimit

def make(seed):
    return TimeLimit(PixelObservation(ActionRepeat(DMControlEnv("cheetah-run", seed), 2), camera=PIXEL_CAMERAS["cheetah-run"]), 500)

a, b = make(0), make(0)
obs = [a.reset()]
same = bool(np.array_equal(obs[0], b.reset()))
rng = np.random.default_rng(0)
for t in range(6):
    act = rng.uniform(-1, 1, a.action_dim)
    obs.append(a.step(act)[0])
    same &= bool(np.array_equal(obs[-1], b.step(act)[0]))
first = obs[0]
print(json.dumps(dict(
    shape=list(first.shape), dtype=str(first.dtype), same=same,
    repeated=bool(np.array_equal(first[0:3], first[3:6]) and np.array_equal(first[3:6], first[6:9])),
    slides=all(np.array_equal(obs[t][0:6], obs[t - 1][3:9]) for t in range(1, 7)),
    moves=bool(not np.array_equal(obs[-1][6:9], obs[0][6:9])),
    mean=float(first.mean()))))
"""


def test_pixel_observations_of_a_dm_control_task_through_headless_gl():
    """cheetah-run rendered headless (EGL or OSMesa, chosen by headless_gl) in a child process: a
    stack of three 64 x 64 RGB frames, channel-first uint8; reset repeats its frame; each step
    slides the stack by one frame; the same seed renders the same frames; 14 frames in all."""
    import json
    import os
    import subprocess
    import sys

    from mbdpo_fast.envs.cpu.pixels import headless_gl

    backend = headless_gl()
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", PIXEL_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["shape"] == [9, 64, 64] and out["dtype"] == "uint8"
    assert out["repeated"] and out["slides"] and out["moves"] and out["same"]
    assert 5 < out["mean"] < 250  # a rendered scene, not a blank frame


def test_no_headless_gl_is_one_clear_error(monkeypatch):
    from mbdpo_fast.envs.cpu import pixels

    monkeypatch.setattr(pixels, "HEADLESS_BACKENDS", ("no-such-gl",))
    with pytest.raises(RuntimeError, match="pixel observations need headless OpenGL.*no-such-gl.*libegl1"):
        pixels.headless_gl({**__import__("os").environ, "MUJOCO_GL": "disable"})


PIXEL_RUN = ["device=cpu", "task=cheetah-run", "obs=rgb", "model_size=1", "mlp_dim=32", "latent_dim=512", "num_q=2",
             "num_samples=16", "num_elites=4", "num_pi_trajs=2", "diffusion_steps=3", "batch_size=4",
             "buffer_size=2000", "episode_length=20", "seed_steps=30", "eval_episodes=1", "eval_freq=40",
             "checkpoint_freq=40", "progress_bar=false"]


def test_training_from_pixels_end_to_end_and_resume(tmp_path):
    """obs=rgb through the online trainer on CPU: 40 steps of 20-step cheetah-run episodes rendered
    headless (about 100 frames with the evaluations), the replay holding one uint8 frame per slot in
    the checkpoint, then resume to 60 steps."""
    import csv

    from helpers import run_cli

    from mbdpo_fast.data.checkpoint import load_checkpoint, safe_load

    p = run_cli("mbdpo_fast.train", PIXEL_RUN + ["steps=40", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "eval.csv"))] == [0, 40]
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    obs = safe_load(tmp_path / ck["replay_file"])["obs"]
    assert obs.dtype == torch.uint8 and tuple(obs.shape[2:]) == (3, 64, 64) and obs.shape[1] == 43  # 2 episodes + the next first
    assert ck["config"]["obs_shape"] == [9, 64, 64]
    p = run_cli("mbdpo_fast.train", PIXEL_RUN + ["steps=60", "resume=true", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert p.returncode == 0 and "resumed" in p.stdout, p.stderr[-3000:]


@pytest.mark.parametrize("override,message", [
    (["task=hopper-hop"], "obs=rgb is for one of the pixel tasks"),
    (["latent_dim=128"], "the image encoder gives 512 features"),
    (["env_backend=mjx", "impl=jax"], "set impl=warp"),
    (["env_backend=mjx", "impl=warp", "task=quadruped-walk"], "rendered by the CPU workers only"),
    (["obs=pixels"], "obs='pixels': use state or rgb"),
])
def test_pixel_settings_that_cannot_work_are_refused(tmp_path, override, message):
    from mbdpo_fast.config import compose_config, resolve_task
    from mbdpo_fast.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        resolve_task(compose_config(PIXEL_RUN + override, tmp_path))


def test_a_pixel_setting_that_cannot_work_is_one_error_line(tmp_path):
    from helpers import run_cli

    p = run_cli("mbdpo_fast.train", PIXEL_RUN + ["task=hopper-hop", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1 and "obs=rgb is for one of the pixel tasks" in errors[0], p.stderr


def test_sites_pixels_need_become_massless_contact_free_geoms():
    """finger-turn's target and tip are sites, which MuJoCo Warp's renderer does not draw: for
    obs=rgb on MJX each gets a geom twin (same size and material) and the dynamics stay the same,
    step for step."""
    import mujoco
    import numpy as np

    pytest.importorskip("mujoco_playground")
    from mbdpo_fast.envs.mjx.tasks import build_task

    plain, shown = build_task("finger-turn-easy").mj_model, build_task("finger-turn-easy", pixels=True).mj_model
    assert shown.ngeom == plain.ngeom + 2
    for name in ("target", "tip"):
        g = shown.geom(f"{name}_visual")
        assert np.allclose(g.size, plain.site(name).size) and g.contype == 0 and g.conaffinity == 0
        assert g.bodyid == plain.site(name).bodyid and g.matid == plain.site(name).matid
    assert plain.site("target").size[0] == 0.07  # easy's radius survives the rebuild
    assert np.array_equal(plain.body_mass, shown.body_mass) and np.array_equal(plain.body_inertia, shown.body_inertia)
    a, b = mujoco.MjData(plain), mujoco.MjData(shown)
    rng = np.random.default_rng(0)
    for _ in range(300):
        a.ctrl[:] = b.ctrl[:] = rng.uniform(-1, 1, plain.nu)
        mujoco.mj_step(plain, a)
        mujoco.mj_step(shown, b)
    assert np.array_equal(a.qpos, b.qpos) and np.array_equal(a.qvel, b.qvel)


def test_mjx_pixels_without_warp_is_one_clear_error(monkeypatch):
    """Where warp-lang is missing, obs=rgb on MJX stops before building anything, naming the extra."""
    pytest.importorskip("mujoco_playground")
    import mbdpo_fast.envs.mjx.pixels as pixels
    from mbdpo_fast.envs.mjx import make_mjx_env
    from mbdpo_fast.errors import ConfigError

    monkeypatch.setattr(pixels, "warp_available", lambda: "warp-lang is not installed; pip install 'mujoco-mjx[warp]'")
    with pytest.raises(ConfigError, match=r"renders with MuJoCo Warp: warp-lang is not installed; pip install 'mujoco-mjx\[warp\]'"):
        make_mjx_env("cheetah-run", 2, impl="warp", pixels=True)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="set impl=warp"):
        make_mjx_env("cheetah-run", 2, impl="jax", pixels=True)
