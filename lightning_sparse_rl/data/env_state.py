"""Snapshot and restore a Gymnasium env mid-episode, so a resumed run continues the exact same episode.

A snapshot holds, for the env and every wrapper around it, the plain data of its instance attributes
(numbers, strings, arrays, deques of numbers: e.g. ``TimeLimit``'s elapsed steps, the episode statistics,
a classic-control env's ``state``), the state of every numpy ``Generator`` (the env's ``np_random``, the
spaces' samplers), of every ``torch.nn.Module`` (our noise wrapper's generator) and, for MuJoCo envs,
the integration state of the simulator (``mj_getState``: time, positions, velocities, controls, solver
warm start), which the next ``mj_step`` reads, plus ``MjData``'s fixed-size derived arrays (body
positions, contact forces, ...), which some envs read before stepping (Ant, Humanoid).
"""

from __future__ import annotations

import collections
import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from lightning_sparse_rl.validation import UserInputError

_PLAIN = (bool, int, float, str, type(None), np.ndarray, np.generic)


def _is_plain(value: object) -> bool:
    if isinstance(value, _PLAIN):
        return True
    return isinstance(value, (collections.deque, list, tuple)) and all(isinstance(v, _PLAIN) for v in value)


def _mujoco_state(env: gym.Env) -> dict[str, Any] | None:
    """The simulator's integration state and ``MjData``'s fixed-size arrays.

    The arrays include derived quantities such as body positions, which some envs read before stepping.
    """
    import mujoco

    model, data = getattr(env, "model", None), getattr(env, "data", None)
    if not isinstance(model, mujoco.MjModel) or not isinstance(data, mujoco.MjData):
        return None
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    integration = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, integration, spec)
    arrays = {}
    for name in dir(data):
        value = getattr(data, name, None) if not name.startswith("_") else None
        if isinstance(value, np.ndarray) and value.dtype != object and not name.startswith(("efc_", "contact")):
            arrays[name] = value.copy()
    return {"integration": integration, "arrays": arrays}


def _restore_mujoco_state(env: gym.Env, state: dict[str, Any]) -> None:
    import mujoco

    mujoco.mj_setState(env.model, env.data, state["integration"], mujoco.mjtState.mjSTATE_INTEGRATION)
    for name, value in state["arrays"].items():
        target = getattr(env.data, name)
        if target.shape == value.shape and target.flags.writeable:
            target[...] = value


def _layer_state(layer: gym.Env) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for name, value in vars(layer).items():
        if name == "env":
            continue
        if _is_plain(value):
            state[name] = ("plain", copy.deepcopy(value))
        elif isinstance(value, np.random.Generator):
            state[name] = ("generator", copy.deepcopy(value.bit_generator.state))
        elif isinstance(value, torch.nn.Module):
            state[name] = ("module", copy.deepcopy(value.state_dict()))
        elif isinstance(value, gym.spaces.Space) and value._np_random is not None:
            state[name] = ("space", copy.deepcopy(value.np_random.bit_generator.state))
    physics = _mujoco_state(layer)
    if physics is not None:
        state["data"] = ("mujoco", physics)
    return state


def _layers(env: gym.Env) -> list[gym.Env]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def env_state(env: gym.Env) -> list[dict[str, Any]]:
    """A snapshot of ``env`` (outermost wrapper first): restore it with :func:`restore_env_state`."""
    return [_layer_state(layer) for layer in _layers(env)]


def restore_env_state(env: gym.Env, state: list[dict[str, Any]]) -> None:
    """Put ``env`` (built by the same ``make_env`` call) into the snapshot ``state`` of :func:`env_state`.

    Raises:
        UserInputError: if ``env`` has another number of wrapper layers than the snapshot (the wrappers'
            types are not compared).

    """
    layers = _layers(env)
    if len(layers) != len(state):
        raise UserInputError(f"the env has {len(layers)} wrapper layers, the saved env state {len(state)}")
    for layer, saved in zip(layers, state, strict=True):
        for name, (kind, value) in saved.items():
            if kind == "plain":
                setattr(layer, name, copy.deepcopy(value))
            elif kind == "generator":
                generator = np.random.Generator(getattr(np.random, value["bit_generator"])())
                generator.bit_generator.state = value
                setattr(layer, name, generator)
            elif kind == "module":
                getattr(layer, name).load_state_dict(value)
            elif kind == "space":
                getattr(layer, name).np_random.bit_generator.state = value
            elif kind == "mujoco":
                _restore_mujoco_state(layer, value)
