"""The base of the MJX tasks built on dm_control's own models (envs/mjx/quadruped.py, dog.py): the
model compiled from dm_control's XML and assets, put on MJX's chosen implementation, and the
sensors whose readings dm_control's (legacy) step leaves from the last physics step."""
from __future__ import annotations

import abc

import mujoco
import numpy as np
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env


def acceleration_sensors(m: mujoco.MjModel) -> np.ndarray:
    """sensordata indices of the acceleration-stage sensors (accelerometer, force, torque, touch, ...):
    the readings dm_control's step observes from the last physics step, not the new state."""
    return np.concatenate([np.arange(m.sensor_adr[i], m.sensor_adr[i] + m.sensor_dim[i], dtype=np.int64)
                           for i in range(m.nsensor) if m.sensor_needstage[i] == mujoco.mjtStage.mjSTAGE_ACC]
                          + [np.zeros(0, np.int64)])


class DmControlModelEnv(mjx_env.MjxEnv):
    """A Playground MjxEnv on one of dm_control's models: subclasses give `_model_xml()` (the XML and
    its assets, as dm_control's suite builds them), `xml_path` and `_post_init()` (id lookups)."""

    def __init__(self, config: config_dict.ConfigDict, config_overrides: dict | None = None):
        super().__init__(config, config_overrides)
        self._xml, self._model_assets = self._model_xml()
        self._mj_model = mujoco.MjModel.from_xml_string(self._xml, self._model_assets)
        self._mj_model.opt.timestep = self.sim_dt
        self._mjx_model = mjx.put_model(self._mj_model, impl=self._config.impl)
        self._acc_sensors = acceleration_sensors(self._mj_model)
        self._post_init()

    @abc.abstractmethod
    def _model_xml(self) -> tuple[str, dict]:
        """dm_control's XML of the task's model and its assets."""

    @abc.abstractmethod
    def _post_init(self) -> None:
        """Id and index lookups on self._mj_model."""

    @property
    def action_size(self) -> int:
        return self.mjx_model.nu

    @property
    def mj_model(self) -> mujoco.MjModel:
        return self._mj_model

    @property
    def mjx_model(self) -> mjx.Model:
        return self._mjx_model
