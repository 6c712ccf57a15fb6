"""Worker process for a CPU suite, run under that suite's own interpreter:

    <suite python> -m mbdpo_fast.envs.cpu.suite_worker ADDRESS AUTHKEY_HEX INDEX JSON_ARGS

It connects back to the parent over a multiprocessing.connection socket (never stdout: some
suites print banners there), builds the task, and serves ("reset",) / ("step", action) /
("render", size) / ("close",) requests. A step that ends an episode resets in the same request (gymnasium's
same-step auto-reset) and returns the terminal observation and info separately. A user's error
while building (errors.UserError, e.g. a task's assets not downloaded) goes back as its class name
and message, which the parent raises as that error. Imports numpy and the suite only.
"""
from __future__ import annotations

import json
import os
import sys
import traceback


def serve(address: str, authkey: bytes, index: int, args: dict) -> None:
    from multiprocessing.connection import Client

    from mbdpo_fast.errors import UserError

    conn = Client(address, authkey=authkey)
    try:
        from mbdpo_fast.envs.cpu.suites import make_suite_env
        from mbdpo_fast.envs.cpu.wrappers import AutoReset

        env = AutoReset(make_suite_env(args["task"], args["seed"], args.get("action_repeat"), args.get("episode_length")))
        conn.send(("ready", index, env.obs_dim, env.action_dim))
    except UserError as exc:  # the user's to fix (e.g. assets not downloaded): one line, no traceback
        conn.send(("user_error", index, type(exc).__name__, str(exc)))
        conn.close()
        return
    except BaseException:
        conn.send(("error", index, traceback.format_exc()))
        conn.close()
        return
    while True:
        msg = conn.recv()
        try:
            if msg[0] == "reset":
                conn.send(("ok", env.reset()))
            elif msg[0] == "step":
                obs, reward, terminated, truncated, info = env.step(msg[1])
                final_obs, final_info = info.pop("final_obs", None), info.pop("final_info", None)
                conn.send(("ok", (obs, reward, terminated, truncated, info, final_obs, final_info)))
            elif msg[0] == "render":
                conn.send(("ok", env.render_rgb(msg[1])))
            elif msg[0] == "close":
                conn.close()
                return
        except BaseException:
            conn.send(("error", index, traceback.format_exc()))


def main() -> None:
    os.environ.setdefault("MUJOCO_GL", "disable")
    address, key_hex, index, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    serve(address, bytes.fromhex(key_hex), index, args)


if __name__ == "__main__":
    main()
