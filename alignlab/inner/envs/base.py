"""A batched numpy environment with gymnasium's vector API, the base of every inner-alignment environment.

:class:`BatchedEnv` is a :class:`gymnasium.vector.VectorEnv` whose ``num_envs`` copies live in numpy arrays and
step together in one call, so a rollout of 64 environments costs a few array operations per step rather than
64 Python objects (no subprocesses, no per-copy ``step``). A subclass describes one game in three methods:

- ``_new_levels(where)`` draws fresh levels for the copies where ``where`` [N] is True;
- ``_move(actions)`` applies actions [N] and returns (reward [N], terminated [N], outcome [N]);
- ``_observe()`` returns the observations [N, *shape] (float32).

Episodes reset themselves in the same step (``autoreset_mode`` SAME_STEP, as gymnasium's ``SyncVectorEnv``
can): a finished copy's last observation is in ``info["final_obs"]`` (masked by ``info["_final_obs"]``), its
``info["outcome"]`` says how it ended (an integer the subclass documents in ``OUTCOMES``; -1 where no episode
ended) and the observation returned is already the next level's.

Example::

    >>> from alignlab.inner.envs import CoinRunEnv
    >>> env = CoinRunEnv(num_envs=4, length=6)
    >>> obs, _ = env.reset(seed=0)
    >>> obs.shape, int(env.single_action_space.n)
    ((4, 2, 1, 6), 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from alignlab.errors import InnerError


class BatchedEnv(VectorEnv):
    """``num_envs`` copies of one game stepped together as numpy arrays (see the module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
    OUTCOMES: tuple[str, ...] = ("timeout",)

    def __init__(self, num_envs: int, obs_shape: tuple[int, ...], n_actions: int, max_steps: int):
        if num_envs < 1 or max_steps < 1:
            raise InnerError(f"{type(self).__name__}: num_envs and max_steps must be >= 1, got {num_envs}, {max_steps}")
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.single_observation_space = spaces.Box(-np.inf, np.inf, shape=obs_shape, dtype=np.float32)
        self.single_action_space = spaces.Discrete(n_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.t = np.zeros(num_envs, dtype=np.int64)  # steps taken in the current episode
        self.index = np.arange(num_envs)

    # --- what a game defines -------------------------------------------------------------------------------
    def _new_levels(self, where: np.ndarray) -> None:
        raise NotImplementedError

    def _move(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _observe(self) -> np.ndarray:
        raise NotImplementedError

    # --- gymnasium's vector API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode in every copy (``seed`` reseeds the level generator)."""
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._new_levels(np.ones(self.num_envs, dtype=bool))
        self.t[:] = 0
        return self._observe(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs,):
            raise InnerError(f"{type(self).__name__}.step: expected actions of shape ({self.num_envs},), "
                             f"got {actions.shape}")
        reward, terminated, outcome = self._move(actions)
        self.t += 1
        truncated = (self.t >= self.max_steps) & ~terminated
        done = terminated | truncated
        info: dict[str, Any] = {}
        if done.any():
            info["final_obs"], info["_final_obs"] = self._observe(), done
            info["outcome"] = np.where(done, outcome, -1)
            self._new_levels(done)
            self.t[done] = 0
        return self._observe(), reward.astype(np.float32), terminated, truncated, info

    # --- helpers shared by the grid games ------------------------------------------------------------------
    def _randint(self, low: int, high: np.ndarray | int, size: int) -> np.ndarray:
        """Uniform integers in [low, high) (``high`` may differ per copy)."""
        return low + np.floor(self.np_random.random(size) * (np.asarray(high) - low)).astype(np.int64)


def one_hot_grid(shape: tuple[int, int, int, int], channel: int, rows: np.ndarray, cols: np.ndarray,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Set ``out[i, channel, rows[i], cols[i]] = 1`` for every copy i (a fresh zero [N, C, H, W] if no ``out``).

    Example::

        >>> one_hot_grid((2, 1, 1, 3), 0, np.array([0, 0]), np.array([2, 0]))[:, 0, 0]
        array([[0., 0., 1.],
               [1., 0., 0.]], dtype=float32)
    """
    if out is None:
        out = np.zeros(shape, dtype=np.float32)
    out[np.arange(shape[0]), channel, rows, cols] = 1.0
    return out
