"""Santurkar 2018's "noisy" BatchNorm (App. A.2.1, Alg. 1): BN followed by time-varying noise.

At every training step t, for every unit (channel) j, draw mu_j ~ U(-n_mu, n_mu) and
sigma_j ~ U(1, n_sigma); then for every element (sample i and, in conv layers, every spatial
position, which count as batch) draw m_ij ~ U(mu_j - r_mu, mu_j + r_mu) and s_ij ~ N(sigma_j, r_sigma)
and set a_ij <- s_ij * a_ij + m_ij. The paper leaves three things open; the choices here:

- r_sigma is a standard deviation;
- the noise acts on the normalised activation, *before* gamma/beta (BN with `affine=False`, then the
  noise, then a per-channel gamma/beta initialised to 1/0);
- the noise is off in eval mode, where the layer is exactly BN's Alg. 2 (Ioffe 2015).

The noise never touches the global RNG (a probe replaying it would change the run's draws). It
is a pure function of `(seed, stream, rank, noise step)`: each training forward seeds a private `torch.Generator` on the
activation's device from a hash of those numbers and then advances the noise step by one. So

- two modules with the same seed (and stream, rank) draw the same noise, and deep copies draw what
  the original would;
- the unit noise (mu_j, sigma_j) depends on the seed and step only, and is the same on every DDP rank
  (one draw per step for the global batch); the element noise (m_ij, s_ij) also depends on the rank
  (`reseed(seed, rank=...)`), since the ranks hold different samples;
- the noise step travels in the state_dict (`_extra_state`), so a resumed run draws the noise the
  uninterrupted run would have drawn;
- a probe's forward does not shift the training noise if it runs inside `frozen_noise()`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from normlab.errors import NormlabError

# Santurkar 2018, App. A.2.1: "n_mu = 0.5, n_sigma = 1.25, r_mu = r_sigma = 0.1".
N_MU, N_SIGMA, R_MU, R_SIGMA = 0.5, 1.25, 0.1, 0.1

_UNIT, _ELEMENT = 0, 1  # the two noise streams of a step: per unit (shared by ranks), per element


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from a tuple of integers (a hash, so nearby keys give unrelated streams)."""
    packed = struct.pack(f"<{len(keys)}q", *keys)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little") >> 1


class NoisyBatchNorm(nn.Module):
    """BN (torch's, so running statistics and eval are Ioffe 2015's Alg. 1/2), then in training
    mode Santurkar 2018's Alg. 1 noise (App. A.2.1), then a per-channel affine gamma/beta.

    Shapes: (N, C) for `dims=1`, (N, C, H, W) for `dims=2`. Parameters `weight` (gamma, init 1) and
    `bias` (beta, init 0); the BN statistics live in the submodule `bn` (`affine=False`).
    """

    def __init__(
        self,
        num_features: int,
        dims: int = 1,
        eps: float = 1e-5,
        momentum: float = 0.1,
        n_mu: float = N_MU,
        n_sigma: float = N_SIGMA,
        r_mu: float = R_MU,
        r_sigma: float = R_SIGMA,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 (N, C) or 2 (N, C, H, W), got {dims}")
        for key, value, low in (
            ("n_mu", n_mu, 0.0),
            ("n_sigma", n_sigma, 1.0),
            ("r_mu", r_mu, 0.0),
            ("r_sigma", r_sigma, 0.0),
        ):
            if not float(value) >= low:  # also rejects NaN
                raise NormlabError(f"norm.{key} must be >= {low:g}, got {value!r}")
        self.num_features, self.dims = num_features, dims
        self.n_mu, self.n_sigma = float(n_mu), float(n_sigma)
        self.r_mu, self.r_sigma = float(r_mu), float(r_sigma)
        # Noise after the normalisation and before gamma/beta (open in the paper: docs/protocols.md):
        # BN without its own affine, the noise, then the per-channel gamma/beta below (init 1 and 0
        # as in BN).
        bn_cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
        self.bn = bn_cls(num_features, eps=eps, momentum=momentum, affine=False)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.seed, self.rank, self.stream = int(seed), 0, 0
        self.noise_step = 0  # training forwards so far; saved in the state_dict (_extra_state)
        self._pinned_step: int | None = None  # set inside frozen_noise()
        self._generators: dict[torch.device, torch.Generator] = {}

    # -- seeding -------------------------------------------------------------------------------

    def reseed(self, seed: int, rank: int = 0, stream: int | None = None) -> None:
        """Seed the noise: `seed` fixes the per-unit noise (mu_j, sigma_j) of every step, `rank`
        (a DDP rank) additionally the per-element noise (m_ij, s_ij), and `stream` (e.g. the layer's
        index, see `seed_noise`) tells apart layers that share a seed; None keeps the stream."""
        self.seed, self.rank = int(seed), int(rank)
        if stream is not None:
            self.stream = int(stream)

    def _generator(self, device: torch.device, *keys: int) -> torch.Generator:
        gen = self._generators.get(device)
        if gen is None:
            gen = self._generators[device] = torch.Generator(device=device)
        return gen.manual_seed(derive_seed(self.seed, self.stream, *keys))

    # -- noise state ---------------------------------------------------------------------------

    @contextmanager
    def frozen_noise(self, replay_last: bool = False) -> Iterator[None]:
        """Inside this context, training forwards do not advance the noise, and every one of them
        draws the same noise: by default the noise the *next* training forward will draw; with
        `replay_last=True` the noise the *last* training forward drew (e.g. to recompute a step's
        gradient after the optimizer step). On exit the noise step is what it was on entry.

        For probes (ICS's G and G', the landscape walk): they must not shift the training noise and
        should see the step's own noise (else a probe changes what it measures). Under
        `torch.func.vmap`, pass `randomness="same"` (the draw uses this module's generator, not the
        global one)."""
        if replay_last and self.noise_step == 0:
            raise RuntimeError("frozen_noise(replay_last=True): no training forward has run yet")
        saved_step, saved_pin = self.noise_step, self._pinned_step
        self._pinned_step = self.noise_step - 1 if replay_last else self.noise_step
        try:
            yield
        finally:
            self.noise_step, self._pinned_step = saved_step, saved_pin

    def get_extra_state(self) -> torch.Tensor:
        """The noise step, so that a checkpoint resumes the noise sequence exactly."""
        return torch.tensor(self.noise_step, dtype=torch.int64)

    def set_extra_state(self, state: Any) -> None:
        self.noise_step = int(state)

    def __getstate__(self) -> dict[str, Any]:
        # Generators are a cache (the noise is a function of seed and step): drop them on copy/pickle.
        return {**self.__dict__, "_generators": {}}

    # -- noise ---------------------------------------------------------------------------------

    def unit_noise(
        self, num_features: int, device: torch.device | str, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alg. 1's per-unit (mu, sigma) of noise step `step` (float32, shape (C,)):
        mu_j ~ U(-n_mu, n_mu), sigma_j ~ U(1, n_sigma). The same on every DDP rank."""
        device = torch.device(device)
        gen = self._generator(device, step, _UNIT)
        f32 = torch.float32
        mu = (torch.rand(num_features, generator=gen, device=device, dtype=f32) * 2 - 1) * self.n_mu
        u = torch.rand(num_features, generator=gen, device=device, dtype=f32)
        return mu, 1 + u * (self.n_sigma - 1)

    @torch.compiler.disable
    def draw_noise(
        self, shape: torch.Size | tuple[int, ...], device: torch.device | str, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alg. 1's (m, s) for an activation of `shape` (N, C, ...) at noise step `step` (float32).

        Per unit j, (mu_j, sigma_j) from `unit_noise`; per element (every sample and, for
        (N, C, H, W), every spatial position): m ~ U(mu_j - r_mu, mu_j + r_mu),
        s ~ N(sigma_j, r_sigma). Returns m and s of `shape`; the noisy activation is s * a + m."""
        device = torch.device(device)
        shape = torch.Size(shape)
        view = (1, shape[1]) + (1,) * (len(shape) - 2)
        mu, sigma = self.unit_noise(shape[1], device, step)
        gen = self._generator(device, step, _ELEMENT, self.rank)
        u = torch.rand(shape, generator=gen, device=device, dtype=torch.float32)
        z = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
        m = mu.view(view) + (u * 2 - 1) * self.r_mu
        s = sigma.view(view) + z * self.r_sigma
        return m, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(x)
        if self.training:
            if self._pinned_step is None:
                step = self.noise_step
                self.noise_step += 1
            else:
                step = self._pinned_step
            m, s = self.draw_noise(y.shape, y.device, step)
            y = s.to(y.dtype) * y + m.to(y.dtype)
        view = (1, -1) + (1,) * (y.dim() - 2)
        return y * self.weight.view(view) + self.bias.view(view)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, dims={self.dims}, n_mu={self.n_mu}, n_sigma={self.n_sigma}, "
            f"r_mu={self.r_mu}, r_sigma={self.r_sigma}, seed={self.seed}, rank={self.rank}, "
            f"stream={self.stream}"
        )


def noisy_modules(model: nn.Module) -> list[NoisyBatchNorm]:
    """The model's noisy BN layers, in `model.modules()` order."""
    return [m for m in model.modules() if isinstance(m, NoisyBatchNorm)]


def seed_noise(model: nn.Module, seed: int, rank: int = 0) -> None:
    """Reseed every noisy BN layer of `model`: layer k (in `modules()` order) gets stream k, so the
    layers draw independent noise (built from one config, they all share `seed` and would otherwise
    draw the same noise), and `rank` sets each layer's per-element noise for a DDP rank."""
    for index, module in enumerate(noisy_modules(model)):
        module.reseed(seed, rank=rank, stream=index)


@contextmanager
def frozen_noise(model: nn.Module, replay_last: bool = False) -> Iterator[None]:
    """`NoisyBatchNorm.frozen_noise` for every noisy BN layer of `model` (a no-op without any)."""
    with ExitStack() as stack:
        for module in noisy_modules(model):
            stack.enter_context(module.frozen_noise(replay_last))
        yield
