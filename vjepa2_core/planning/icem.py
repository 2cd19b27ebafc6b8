"""iCEM (Pinneri et al. 2020) on the CEM loop: coloured noise, elites kept, population decay, best sample returned.

Smooth (low-frequency) action sequences are what a reaching arm executes, so sampling noise with a 1/f^beta power
spectrum over the horizon puts more samples where good plans are. Its options are the flat `CEMConfig` fields
`icem_noise_beta`, `icem_elite_fraction`, `icem_population_decay` (`CEMConfig.icem_options`), so the node exposes
them as parameters.
"""

from __future__ import annotations

import torch

from vjepa2_core.planning.action_space import ACTION_DIM
from vjepa2_core.planning.base import Planner, Problem, SearchOutcome, white_noise
from vjepa2_core.planning.cem import cem_search


def coloured_noise_basis(horizon: int, beta: float, device: torch.device) -> torch.Tensor:
    """Linear map [2F, horizon] from 2F standard normals to unit-variance 1/f^beta noise over `horizon` steps.

    Rows are the inverse real FFT of each (real, imaginary) Fourier coefficient scaled by f^(-beta/2) (the zero
    frequency gets the lowest non-zero frequency's scale); columns are normalised so that every step has variance 1.
    """
    freqs = torch.fft.rfftfreq(horizon, device=device)
    freqs[0] = 1.0 / horizon
    scale = freqs ** (-beta / 2)
    eye = torch.diag(scale).to(torch.complex64)
    basis = torch.cat([torch.fft.irfft(eye, n=horizon), torch.fft.irfft(1j * eye, n=horizon)])  # [2F, H]
    return basis / basis.square().sum(0).sqrt()


def coloured_noise(
    n: int,
    horizon: int,
    beta: float,
    gen: torch.Generator,
    device: torch.device,
    basis: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unit-variance noise [n, horizon, 7] with a 1/f^beta spectrum over the horizon (white for beta 0 or H 1).

    `basis` is `coloured_noise_basis(horizon, beta, device)` when the caller has it already (a search, once)."""
    if beta == 0 or horizon == 1:
        return white_noise(n, horizon, gen, device)
    if basis is None:
        basis = coloured_noise_basis(horizon, beta, device)
    white = torch.randn((n, ACTION_DIM, basis.shape[0]), generator=gen, device=device)
    return (white @ basis).transpose(1, 2)


class ICEMPlanner(Planner):
    """CEM under the iCEM sampling and selection rules; same config, seeds and `PlanResult` as every planner."""

    def run(self, problem: Problem, gen: torch.Generator, warm: torch.Tensor | None) -> SearchOutcome:
        opts, horizon, device = self.config.icem_options(), problem.space.horizon, problem.device
        basis = coloured_noise_basis(horizon, opts.noise_beta, device)  # once per search, not per iteration
        return cem_search(
            self,
            problem,
            gen,
            warm,
            opts.cem,
            lambda n: coloured_noise(n, horizon, opts.noise_beta, gen, device, basis),
        )
