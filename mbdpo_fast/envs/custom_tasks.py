"""TD-MPC2's 11 custom DMControl tasks, defined once for both physics backends.

Models are edits of the stock suite XMLs (dm_control's for the CPU tasks, MuJoCo Playground's for
MJX), matching the models TD-MPC2 ships: cheetah and walker get a longer floor (planes collide
as infinite, so this only changes rendering), hopper, ball_in_cup and pendulum are the stock
models, and the three-link reacher replaces the reacher's upper arm by two 0.09 links.
Rewards are written against a `tolerance(x, bounds, margin, sigmoid, value_at_margin)` function
(dm_control's numpy version or Playground's JAX port), so both backends share one formula.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

INF = float("inf")

# TD-MPC2 name -> (domain, goal, parameters). Speeds reference the stock tasks' constants.
CHEETAH_RUN_SPEED = 10.0
WALKER_WALK_SPEED, WALKER_RUN_SPEED, WALKER_STAND_HEIGHT = 1.0, 8.0, 1.2
HOPPER_STAND_HEIGHT, HOPPER_HOP_SPEED = 0.6, 2.0
CHEETAH_JUMP_HEIGHT = 1.2
CUP_DIST_TARGET, CUP_TARGET_SPEED = 0.5, 6.0
PENDULUM_TARGET_SPEED = 9.0
REACHER_BIG_TARGET, REACHER_SMALL_TARGET = 0.05, 0.015

CUSTOM_TASKS: dict[str, dict] = {
    "cheetah-run-backwards": dict(domain="cheetah", goal="run-backwards", move_speed=CHEETAH_RUN_SPEED * 0.8),
    "cheetah-run-front": dict(domain="cheetah", goal="run-front", move_speed=CHEETAH_RUN_SPEED * 0.6),
    "cheetah-run-back": dict(domain="cheetah", goal="run-back", move_speed=CHEETAH_RUN_SPEED * 0.6),
    "cheetah-jump": dict(domain="cheetah", goal="jump", move_speed=0.5),
    "walker-walk-backwards": dict(domain="walker", goal="backwards", move_speed=WALKER_WALK_SPEED),
    "walker-run-backwards": dict(domain="walker", goal="backwards", move_speed=WALKER_RUN_SPEED),
    "hopper-hop-backwards": dict(domain="hopper", goal="hop-backwards"),
    "reacher-three-easy": dict(domain="reacher", goal="three", target_size=REACHER_BIG_TARGET),
    "reacher-three-hard": dict(domain="reacher", goal="three", target_size=REACHER_SMALL_TARGET),
    "cup-spin": dict(domain="ball_in_cup", goal="spin"),
    "pendulum-spin": dict(domain="pendulum", goal="spin"),
}


# ---------------------------------------------------------------------------------------------
# Models
def _find(root: ET.Element, tag: str, name: str) -> ET.Element:
    el = root.find(f".//{tag}[@name='{name}']")
    if el is None:
        raise ValueError(f"model has no <{tag} name='{name}'>")
    return el


def lengthen_floor(xml: str, geom: str, half_length: float) -> str:
    """Set the x half-size of the floor plane `geom` (TD-MPC2: cheetah 200, walker 500)."""
    root = ET.fromstring(xml)
    g = _find(root, "geom", geom)
    size = g.get("size").split()
    size[0] = f"{half_length:g}"
    g.set("size", " ".join(size))
    return ET.tostring(root, encoding="unicode")


def three_link_reacher(xml: str) -> str:
    """The stock two-link reacher with its 0.12 upper arm replaced by two 0.09 links
    (shoulder0 unlimited, shoulder1 within +-80 deg), the wrist limited to +-80 deg, the hand
    and finger offsets shortened to 0.09, and a third motor on shoulder1."""
    root = ET.fromstring(xml)
    arm = _find(root, "body", "arm")
    hand = _find(arm, "body", "hand")
    arm.set("name", "arm0")
    arm_geom = _find(arm, "geom", "arm")
    arm_geom.set("name", "arm0")
    arm_geom.set("fromto", "0 0 0 0.09 0 0")
    _find(arm, "joint", "shoulder").set("name", "shoulder0")
    arm.remove(hand)
    arm1 = ET.SubElement(arm, "body", {"name": "arm1", "pos": ".09 0 0"})
    ET.SubElement(arm1, "geom", {"name": "arm1", "type": "capsule", "fromto": "0 0 0 0.09 0 0",
                                 "size": ".01", "material": "self"})
    ET.SubElement(arm1, "joint", {"name": "shoulder1", "limited": "true", "range": "-80 80"})
    arm1.append(hand)
    hand.set("pos", ".09 0 0")
    _find(hand, "joint", "wrist").set("range", "-80 80")
    _find(hand, "body", "finger").set("pos", ".09 0 0")
    actuator = root.find("actuator")
    shoulder = _find(actuator, "motor", "shoulder")
    shoulder.set("name", "shoulder0")
    shoulder.set("joint", "shoulder0")
    idx = list(actuator).index(shoulder)
    motor1 = ET.Element("motor", {"name": "shoulder1", "joint": "shoulder1"})
    for key in ("gear", "ctrlrange", "ctrllimited"):
        if shoulder.get(key) is not None:
            motor1.set(key, shoulder.get(key))
    actuator.insert(idx + 1, motor1)
    return ET.tostring(root, encoding="unicode")


# ---------------------------------------------------------------------------------------------
# Rewards: q holds the physical quantities each formula needs (floats or JAX scalars).
def cheetah_reward(goal: str, q: dict, tol, move_speed: float):
    """q: speed (torso subtree x-velocity), torso_z, bfoot_z, ffoot_z (body heights)."""
    if goal == "run-backwards":
        return tol(q["speed"], bounds=(-INF, -move_speed), margin=move_speed, value_at_margin=0, sigmoid="linear")

    def stand_one_foot(foot_z):  # `foot` is the foot that is NOT on the ground
        height = tol((q["torso_z"] + foot_z) / 2, bounds=(CHEETAH_JUMP_HEIGHT, INF), margin=CHEETAH_JUMP_HEIGHT / 2)
        still = tol(q["speed"], bounds=(-move_speed, move_speed), margin=move_speed, value_at_margin=0, sigmoid="linear")
        return (5 * height + still) / 6

    def run_one_foot(foot_z):
        torso_up = tol(q["torso_z"], bounds=(CHEETAH_JUMP_HEIGHT, INF), margin=CHEETAH_JUMP_HEIGHT / 2)
        foot_up = tol(foot_z, bounds=(CHEETAH_JUMP_HEIGHT, INF), margin=CHEETAH_JUMP_HEIGHT / 2)
        up = (3 * foot_up + 2 * torso_up) / 5
        fast = tol(q["speed"], bounds=(move_speed, INF), margin=move_speed, value_at_margin=0, sigmoid="linear")
        return up * (5 * fast + 1) / 6

    if goal == "jump":
        return (stand_one_foot(q["bfoot_z"]) + stand_one_foot(q["ffoot_z"])) / 2
    if goal == "run-front":
        return run_one_foot(q["bfoot_z"])
    if goal == "run-back":
        return run_one_foot(q["ffoot_z"])
    raise ValueError(f"unknown cheetah goal {goal!r}")


def walker_backwards_reward(q: dict, tol, move_speed: float):
    """q: torso_height, torso_upright (xmat zz), horizontal_velocity."""
    standing = tol(q["torso_height"], bounds=(WALKER_STAND_HEIGHT, INF), margin=WALKER_STAND_HEIGHT / 2)
    upright = (1 + q["torso_upright"]) / 2
    stand = (3 * standing + upright) / 4
    move = tol(q["horizontal_velocity"], bounds=(-INF, -move_speed), margin=move_speed / 2,
               value_at_margin=0.5, sigmoid="linear")
    return stand * (5 * move + 1) / 6


def hopper_backwards_reward(q: dict, tol):
    """q: height (torso over foot), speed (torso subtree x-velocity)."""
    standing = tol(q["height"], bounds=(HOPPER_STAND_HEIGHT, 2))
    hopping = tol(q["speed"], bounds=(-INF, -HOPPER_HOP_SPEED / 2), margin=HOPPER_HOP_SPEED / 4,
                  value_at_margin=0.5, sigmoid="linear")
    return standing * hopping


def cup_spin_reward(q: dict, tol):
    """q: dist (ball to target), ball_speed (norm of |vx|, |vz|), in_target (0/1)."""
    dist = tol(q["dist"], bounds=(CUP_DIST_TARGET, INF), margin=CUP_DIST_TARGET / 2, value_at_margin=0.5, sigmoid="linear")
    vel = tol(q["ball_speed"], bounds=(CUP_TARGET_SPEED, INF), margin=CUP_TARGET_SPEED / 2, value_at_margin=0.5,
              sigmoid="linear")
    return (1 - q["in_target"]) * (dist + 2 * vel) / 3


def pendulum_spin_reward(q: dict, tol):
    """q: angular_speed (|hinge velocity|)."""
    return tol(q["angular_speed"], bounds=(PENDULUM_TARGET_SPEED, INF), margin=PENDULUM_TARGET_SPEED / 2,
               value_at_margin=0.5, sigmoid="linear")
