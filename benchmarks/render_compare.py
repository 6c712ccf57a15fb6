"""The two renderers of obs=rgb side by side: dm_control's OpenGL frame (CPU workers) and MuJoCo Warp's
ray-traced frame (env_backend=mjx impl=warp) of the same physics state, per pixel task.

    python benchmarks/render_compare.py --csv benchmarks/results/pixels/warp_vs_dm_control.csv

For each task: dm_control's reset state (seeded), its joint positions copied into MJX Warp data
(the target, a world-fixed geom or site in dm_control, into Playground's mocap target), one 64x64 frame from
the task's pixel camera by each renderer. Rows: mean absolute difference per channel (0-255) and the
share of pixels whose channels all differ by at most 32; the PNG shows the pairs (dm_control left).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import quiet_libraries, announce, benchmark_parser, check_device, error_note, outputs, stamp, write_csv  # noqa: E402


def frames(task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(dm_control's frame, Warp's frame) of one state: uint8 [64, 64, 3] each."""
    import jax
    import jax.numpy as jp
    from mujoco import mjx

    from mbdpo_fast.envs.cpu.dmcontrol import load_dmc
    from mbdpo_fast.envs.mjx.pixels import WarpFrames
    from mbdpo_fast.envs.mjx.tasks import build_task
    from mbdpo_fast.task_registry import PIXEL_CAMERAS, PIXEL_SIZE

    cam, size = PIXEL_CAMERAS[task], PIXEL_SIZE
    dm = load_dmc(task, seed)
    dm.reset()
    physics = dm.physics
    gl = physics.render(height=size, width=size, camera_id=cam)
    env = build_task(task, "warp", pixels=True)
    qpos = jp.asarray(physics.data.qpos, jp.float32)
    mocap = None
    if env.mj_model.nmocap:  # Playground's mocap target: a world-fixed geom (reacher) or site (finger) in dm_control
        model = physics.named.model
        where = model.geom_pos if "target" in model.geom_pos.axes.row.names else model.site_pos
        mocap = jp.asarray(where["target"], jp.float32)[None]

    def state(_):
        d = mjx.make_data(env.mj_model, impl="warp")
        d = d.replace(qpos=qpos) if mocap is None else d.replace(qpos=qpos, mocap_pos=mocap)
        return mjx.forward(env.mjx_model, d)

    data = jax.jit(jax.vmap(state))(jp.arange(1))
    render = WarpFrames(env.mj_model, env.mjx_model, 1, cam, size, jax.devices("cpu")[0])
    warp = np.asarray(jax.jit(render)(data))[0].transpose(1, 2, 0)
    return gl, warp


def plot(pairs: dict, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pairs), 2, figsize=(3.2, 1.6 * len(pairs)), squeeze=False)
    for row, (task, (gl, warp)) in zip(axes, pairs.items()):
        for ax, img, name in zip(row, (gl, warp), ("dm_control (OpenGL)", "MuJoCo Warp")):
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{task}: {name}", fontsize=5)
    fig.suptitle(title, fontsize=6)
    fig.tight_layout()
    fig.savefig(png, dpi=150)


def main() -> None:
    ap = benchmark_parser("render_compare", __doc__, png=True)
    ap.add_argument("--tasks", nargs="+", default=None, help="default: every pixel task that MJX has")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    quiet_libraries()
    device = check_device(args.device, args.dry_run)
    csv_path, png_path = outputs(args)
    from mbdpo_fast.task_registry import PIXEL_CAMERAS, names

    mjx_tasks = [t for t in PIXEL_CAMERAS if t in names(mjx=True)]
    for t in args.tasks or []:
        if t not in mjx_tasks:
            from common import fail

            fail(f"{t} is not a pixel task that MJX has", f"choose from {', '.join(mjx_tasks)}")
    tasks = args.tasks or mjx_tasks
    meta = stamp(device)
    announce(f"render_compare on {meta['device']}, commit {meta['commit']}",
             [f"dm_control and MuJoCo Warp frames of the same state: {', '.join(tasks)}"], 20 + 15 * len(tasks),
             csv_path, png_path)
    if args.dry_run:
        return
    from mbdpo_fast.envs.cpu.pixels import use_headless_gl

    gl_backend = use_headless_gl()
    rows, pairs = [], {}
    for task in tasks:
        try:
            gl, warp = frames(task, args.seed)
            diff = np.abs(gl.astype(np.int16) - warp.astype(np.int16))
            pairs[task] = (gl, warp)
            row = {**meta, "task": task, "seed": args.seed, "gl": gl_backend,
                   "mean_abs_diff": round(float(diff.mean()), 2),
                   "share_within_32": round(float((diff.max(-1) <= 32).mean()), 3), "note": ""}
        except Exception as e:  # noqa: BLE001  one failure is reported, the others still run
            row = {**meta, "task": task, "seed": args.seed, "note": error_note(e)}
        print(" | ".join(f"{k}={v}" for k, v in row.items() if v != ""), flush=True)
        rows.append(row)
    write_csv(csv_path, rows)
    if pairs and png_path is not None:
        plot(pairs, png_path, f"commit {meta['commit']}, {meta['date']}, MUJOCO_GL={gl_backend}")
        print(f"wrote {png_path}")


if __name__ == "__main__":
    main()
