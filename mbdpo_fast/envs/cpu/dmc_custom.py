"""TD-MPC2's custom tasks on dm_control (CPU physics), from the shared definitions in
custom_tasks.py: stock suite Physics/Task classes with edited models and the custom rewards."""
from __future__ import annotations

import numpy as np
from dm_control.rl import control
from dm_control.suite import ball_in_cup, base, cheetah, hopper, pendulum, reacher, walker
from dm_control.utils import rewards

from .. import custom_tasks as ct


class CheetahCustom(cheetah.Cheetah):
    def __init__(self, goal: str, move_speed: float, random=None):
        super().__init__(random)
        self._goal, self._move_speed = goal, move_speed

    def get_reward(self, physics):
        xpos = physics.named.data.xpos
        q = dict(speed=physics.speed(), torso_z=xpos["torso", "z"], bfoot_z=xpos["bfoot", "z"], ffoot_z=xpos["ffoot", "z"])
        return ct.cheetah_reward(self._goal, q, rewards.tolerance, self._move_speed)


class WalkerBackwards(walker.PlanarWalker):
    def get_reward(self, physics):
        q = dict(torso_height=physics.torso_height(), torso_upright=physics.torso_upright(),
                 horizontal_velocity=physics.horizontal_velocity())
        return ct.walker_backwards_reward(q, rewards.tolerance, self._move_speed)


class HopperBackwards(hopper.Hopper):
    def __init__(self, random=None):
        super().__init__(hopping=True, random=random)

    def get_reward(self, physics):
        return ct.hopper_backwards_reward(dict(height=physics.height(), speed=physics.speed()), rewards.tolerance)


class ThreeLinkReacher(reacher.Reacher):
    """Stock reacher task (random joints, target radius .05-.20, observations position,
    to_target, velocity) on the three-link model."""


class CupSpin(ball_in_cup.BallInCup):
    def initialize_episode(self, physics):
        # A collision-free random ball position, inside the cup except in 10% of episodes.
        out_of_target = self.random.uniform() < 0.1
        while True:
            physics.named.data.qpos["ball_x"] = self.random.uniform(-0.2, 0.2)
            physics.named.data.qpos["ball_z"] = self.random.uniform(0.2, 0.5)
            physics.after_reset()
            if physics.data.ncon == 0 and (physics.in_target() or out_of_target):
                break
        base.Task.initialize_episode(self, physics)

    def get_reward(self, physics):
        qvel = physics.named.data.qvel
        q = dict(dist=np.linalg.norm(physics.ball_to_target()),
                 ball_speed=np.linalg.norm([abs(qvel["ball_x"]), abs(qvel["ball_z"])]),
                 in_target=physics.in_target())
        return ct.cup_spin_reward(q, rewards.tolerance)


class PendulumSpin(pendulum.SwingUp):
    def get_reward(self, physics):
        return ct.pendulum_spin_reward(dict(angular_speed=np.linalg.norm(physics.angular_velocity())), rewards.tolerance)


def load(name: str, seed: int) -> control.Environment:
    """One of ct.CUSTOM_TASKS as a dm_control Environment (seeded task RNG)."""
    spec = ct.CUSTOM_TASKS[name]
    domain = spec["domain"]
    if domain == "cheetah":
        xml, assets = cheetah.get_model_and_assets()
        physics = cheetah.Physics.from_xml_string(ct.lengthen_floor(xml, "ground", 200), assets)
        task = CheetahCustom(spec["goal"], spec["move_speed"], random=seed)
        return control.Environment(physics, task, time_limit=cheetah._DEFAULT_TIME_LIMIT)
    if domain == "walker":
        xml, assets = walker.get_model_and_assets()
        physics = walker.Physics.from_xml_string(ct.lengthen_floor(xml, "floor", 500), assets)
        task = WalkerBackwards(move_speed=spec["move_speed"], random=seed)
        return control.Environment(physics, task, time_limit=walker._DEFAULT_TIME_LIMIT,
                                   control_timestep=walker._CONTROL_TIMESTEP)
    if domain == "hopper":
        physics = hopper.Physics.from_xml_string(*hopper.get_model_and_assets())
        return control.Environment(physics, HopperBackwards(random=seed), time_limit=hopper._DEFAULT_TIME_LIMIT,
                                   control_timestep=hopper._CONTROL_TIMESTEP)
    if domain == "reacher":
        xml, assets = reacher.get_model_and_assets()
        physics = reacher.Physics.from_xml_string(ct.three_link_reacher(xml), assets)
        task = ThreeLinkReacher(target_size=spec["target_size"], random=seed)
        return control.Environment(physics, task, time_limit=reacher._DEFAULT_TIME_LIMIT)
    if domain == "ball_in_cup":
        physics = ball_in_cup.Physics.from_xml_string(*ball_in_cup.get_model_and_assets())
        return control.Environment(physics, CupSpin(random=seed), time_limit=20,
                                   control_timestep=ball_in_cup._CONTROL_TIMESTEP)
    if domain == "pendulum":
        physics = pendulum.Physics.from_xml_string(*pendulum.get_model_and_assets())
        return control.Environment(physics, PendulumSpin(random=seed), time_limit=pendulum._DEFAULT_TIME_LIMIT)
    raise ValueError(f"no loader for custom domain {domain!r}")
