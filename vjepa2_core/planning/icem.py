"""iCEM (Pinneri et al. 2020) on the CEM loop: coloured noise, elites kept, population decay, best sample returned.

Smooth (low-frequency) action sequences are what a reaching arm executes, so sampling noise with a 1/f^beta power
spectrum over the horizon puts more samples where good plans are. Every option is a plain `CEMConfig` field
(`icem_noise_beta`, `icem_elite_fraction`, `icem_population_decay`), so the node exposes them as parameters.
"""

from __future__ import annotations

import torch

from vjepa2_core.planning.cem import ACTION_DIM, CEMPlanner


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


class ICEMPlanner(CEMPlanner):
    """CEM with the iCEM sampling and selection rules; same config, seeds and `PlanResult` as `CEMPlanner`."""

    mean_in_last_iteration = True
    returns_best_sample = True

    def population(self, iteration: int) -> int:
        cfg = self.config
        fresh = round(cfg.samples * cfg.icem_population_decay**iteration)
        return max(fresh, min(cfg.samples, 2 * cfg.topk))

    def elite_fraction(self) -> float:
        return self.config.icem_elite_fraction

    def sample_noise(self, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        cfg = self.config
        if cfg.icem_noise_beta == 0 or cfg.horizon == 1:
            return super().sample_noise(n, gen, device)
        basis = coloured_noise_basis(cfg.horizon, cfg.icem_noise_beta, device)
        white = torch.randn((n, ACTION_DIM, basis.shape[0]), generator=gen, device=device)
        return (white @ basis).transpose(1, 2)  # [n, horizon, 7]
