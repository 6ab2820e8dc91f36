"""Actor-critic policies for the inner-alignment agents: MLP, CNN, LSTM and a small causal transformer.

Every policy maps a batch of episodes to action logits and values, causally over time::

    logits, values = policy(obs)          # obs [N, T, *obs_shape] -> [N, T, actions], [N, T]
    logits, value, state = policy.step(obs_t, state)   # one step of N episodes, for rollouts

The MLP and CNN see one observation at a time (``recurrent = False``); the LSTM carries a hidden state and the
transformer attends over the episode so far (``recurrent = True``: PPO then learns from whole episodes).
The MLP is Stable-Baselines3's default actor-critic (separate 2-layer tanh networks for the policy and the
value, orthogonal initialisation with gains √2, 0.01 and 1), so a comparison with SB3 compares the same net.

Example::

    >>> import torch
    >>> policy = make_policy("transformer", obs_shape=(5,), n_actions=2, hidden=16, max_len=8)
    >>> logits, values = policy(torch.zeros(3, 8, 5))
    >>> tuple(logits.shape), tuple(values.shape)
    ((3, 8, 2), (3, 8))
"""

from __future__ import annotations

import difflib
import math
from typing import Any

import torch
from torch import nn

from alignlab.errors import InnerError

State = Any  # None (feedforward), (h, c) (LSTM) or the episode's observations so far (transformer)


def _init(layer: nn.Linear | nn.Conv2d, gain: float = math.sqrt(2)) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Policy(nn.Module):
    """The interface every policy implements; ``step`` defaults to running ``forward`` on one time step."""

    recurrent = False

    def initial_state(self, n: int) -> State:
        return None

    def step(self, obs: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        logits, values = self(obs[:, None])
        return logits[:, 0], values[:, 0], state


class MLPPolicy(Policy):
    """Separate policy and value MLPs (two tanh layers each) on the flattened observation."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: int = 64):
        super().__init__()
        dim = math.prod(obs_shape)

        def trunk() -> nn.Sequential:
            return nn.Sequential(_init(nn.Linear(dim, hidden)), nn.Tanh(), _init(nn.Linear(hidden, hidden)), nn.Tanh())

        self.pi, self.vf = trunk(), trunk()
        self.pi_head, self.vf_head = _init(nn.Linear(hidden, n_actions), 0.01), _init(nn.Linear(hidden, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs.flatten(2)  # [N, T, dim]
        return self.pi_head(self.pi(x)), self.vf_head(self.vf(x))[..., 0]


class CNNPolicy(Policy):
    """Two 3×3 convolutions (same padding) over the [C, H, W] grid, a hidden layer, then both heads."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: int = 64, channels: int = 16):
        super().__init__()
        if len(obs_shape) != 3:
            raise InnerError(f"the cnn policy needs [C, H, W] observations, got shape {obs_shape}")
        c, h, w = obs_shape
        self.body = nn.Sequential(_init(nn.Conv2d(c, channels, 3, padding=1)), nn.ReLU(),
                                  _init(nn.Conv2d(channels, channels, 3, padding=1)), nn.ReLU(), nn.Flatten(),
                                  _init(nn.Linear(channels * h * w, hidden)), nn.ReLU())
        self.pi_head, self.vf_head = _init(nn.Linear(hidden, n_actions), 0.01), _init(nn.Linear(hidden, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, t = obs.shape[:2]
        x = self.body(obs.flatten(0, 1)).view(n, t, -1)  # the convolutions see one frame at a time
        return self.pi_head(x), self.vf_head(x)[..., 0]


class LSTMPolicy(Policy):
    """An embedding of the observation, one LSTM layer over the episode, then both heads."""

    recurrent = True

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: int = 64):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Sequential(_init(nn.Linear(math.prod(obs_shape), hidden)), nn.Tanh())
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.pi_head, self.vf_head = _init(nn.Linear(hidden, n_actions), 0.01), _init(nn.Linear(hidden, 1), 1.0)

    def forward(self, obs: torch.Tensor, state: State = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = self.lstm(self.embed(obs.flatten(2)), state)
        return self.pi_head(x), self.vf_head(x)[..., 0]

    def initial_state(self, n: int) -> State:
        return (torch.zeros(1, n, self.hidden), torch.zeros(1, n, self.hidden))

    def step(self, obs: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        x, state = self.lstm(self.embed(obs.flatten(1))[:, None], state)
        return self.pi_head(x[:, 0]), self.vf_head(x[:, 0])[..., 0], state


class TransformerPolicy(Policy):
    """A small causal transformer (pre-norm, learned positions) over the episode's observations so far."""

    recurrent = True

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: int = 64, max_len: int = 64,
                 layers: int = 1, heads: int = 2):
        super().__init__()
        self.max_len = max_len
        self.embed = _init(nn.Linear(math.prod(obs_shape), hidden), 1.0)
        self.position = nn.Parameter(torch.randn(max_len, hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.pi_head, self.vf_head = _init(nn.Linear(hidden, n_actions), 0.01), _init(nn.Linear(hidden, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = obs.shape[1]
        if t > self.max_len:
            raise InnerError(f"the transformer policy sees at most max_len={self.max_len} steps, got {t}")
        x = self.embed(obs.flatten(2)) + self.position[:t]
        causal = nn.Transformer.generate_square_subsequent_mask(t)  # step t attends to steps ≤ t
        x = self.norm(self.blocks(x, mask=causal, is_causal=True))
        return self.pi_head(x), self.vf_head(x)[..., 0]

    def initial_state(self, n: int) -> State:
        return None

    def step(self, obs: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        seen = obs[:, None] if state is None else torch.cat([state, obs[:, None]], 1)  # [N, t + 1, ...]
        logits, values = self(seen)  # episodes are short: recomputing the prefix is cheaper than a cache
        return logits[:, -1], values[:, -1], seen


POLICIES: dict[str, type[Policy]] = {"mlp": MLPPolicy, "cnn": CNNPolicy, "lstm": LSTMPolicy,
                                     "transformer": TransformerPolicy}


def make_policy(name: str, obs_shape: tuple[int, ...], n_actions: int, hidden: int = 64, max_len: int = 64) -> Policy:
    """The policy architecture ``name`` (mlp, cnn, lstm, transformer) for this observation shape and action count."""
    if name not in POLICIES:
        close = difflib.get_close_matches(name, POLICIES, n=2)
        raise InnerError(f"unknown policy '{name}'" + (f"; did you mean {', '.join(close)}?" if close
                                                        else f"; choose from {', '.join(POLICIES)}"))
    if name == "transformer":
        return TransformerPolicy(obs_shape, n_actions, hidden, max_len=max_len)
    return POLICIES[name](obs_shape, n_actions, hidden)
