"""The multi-power law's loss-drop term LD(t), evaluated exactly and fast.

Luo et al. (2025), "A Multi-Power Law for Loss Curve Prediction Across Learning Rate
Schedules" (arXiv 2503.12811), eq. (5)::

    LD(t) = B * sum_{k=1..t} (eta_{k-1} - eta_k) * G(eta_k^(-gamma) * S_k(t)),
    S_k(t) = sum_{tau=k..t} eta_tau = P[t] - P[k-1],   P = cumsum(eta),
    G(x)   = 1 - (C x + 1)^(-beta).

The naive sum costs O(T) per evaluated step, O(T^2) for a whole curve. Only the steps where the
LR changes (``eta_{k-1} != eta_k``) contribute, so we list those change points ``K`` once and
evaluate each requested step ``t`` against the change points ``k <= t``: O(#points * #changes),
exact (same terms, only the zero ones skipped). The (point, change) pairs do not depend on the
law's parameters, so a fit builds them once and every objective evaluation is a handful of
vectorised passes over flat arrays.

For the exploratory stage of a fit, :func:`coarse_pairs` merges change points far from ``t``
into geometric buckets (midpoint rule within a bucket whose width is a small fraction of its
distance to ``t``): a few hundred terms per point instead of thousands; the final polish of
every fit uses the exact pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# eta_k = 0 would make eta_k^-gamma infinite; a floor keeps G's limit G -> 1 when S_k(t) > 0.
# Where the LR stayed 0 from k to t (S_k(t) = 0: a stage's first, LR-0 warmup step) G is 0, set
# by _drop_x: the floor alone gave 1e-300^-gamma = inf for gamma > ~1.03 and inf * 0 = NaN.
_ETA_FLOOR = 1e-300


def _drop_x(C: float, gamma: float, log_eta: np.ndarray, area: np.ndarray) -> np.ndarray:
    """``x = C eta_k^-gamma S_k(t)``: inf where eta_k = 0 after some LR area (G = 1), 0 where
    no LR area followed the drop yet (no update has moved the loss: G = 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        x = C * np.exp(-gamma * log_eta) * area
    return np.where(area > 0, x, 0.0)


@dataclass
class LDPairs:
    """Flat (evaluation point, change point) pairs for LD sums.

    ``point[p]`` is the index of the evaluated step, ``weight[p]`` the LR drop
    ``eta_{k-1} - eta_k`` (summed over a bucket when coarse), ``log_eta[p] = log eta_k`` and
    ``area[p] = S_k(t)``. Pairs are grouped by point, in increasing point order.
    """

    point: np.ndarray
    weight: np.ndarray
    log_eta: np.ndarray
    area: np.ndarray
    n_points: int

    def __len__(self) -> int:
        return len(self.point)

    @staticmethod
    def concat(parts: list[LDPairs]) -> LDPairs:
        """Stack the pairs of several curves; point indices are offset to stay distinct."""
        offsets = np.cumsum([0] + [p.n_points for p in parts[:-1]])
        return LDPairs(
            point=np.concatenate([p.point + off for p, off in zip(parts, offsets, strict=True)]),
            weight=np.concatenate([p.weight for p in parts]),
            log_eta=np.concatenate([p.log_eta for p in parts]),
            area=np.concatenate([p.area for p in parts]),
            n_points=int(sum(p.n_points for p in parts)),
        )


def change_points(lr: np.ndarray) -> np.ndarray:
    """Steps ``k >= 1`` where ``lr[k] != lr[k-1]`` (the only ones LD sums over)."""
    return np.flatnonzero(lr[1:] != lr[:-1]) + 1


def _pair_index(lr: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(point index, change step k) of every pair with k a change point and 1 <= k <= t."""
    changes = change_points(lr[: int(steps.max()) + 1] if len(steps) else lr)
    counts = np.searchsorted(changes, steps, side="right")
    total = int(counts.sum())
    point = np.repeat(np.arange(len(steps)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return point, changes[np.arange(total) - starts]


def exact_pairs(lr: np.ndarray, steps: np.ndarray) -> LDPairs:
    """All pairs (t, k) with k a change point and 1 <= k <= t, for each t in ``steps``."""
    lr = np.asarray(lr, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    prefix = np.cumsum(lr)
    point, k = _pair_index(lr, steps)
    return LDPairs(
        point=point,
        weight=lr[k - 1] - lr[k],
        log_eta=np.log(np.maximum(lr[k], _ETA_FLOOR)),
        area=prefix[steps[point]] - prefix[k - 1],
        n_points=len(steps),
    )


def coarse_pairs(
    lr: np.ndarray,
    steps: np.ndarray,
    *,
    near: int = 32,
    rel: float = 0.05,
    max_pairs: int = 2_000_000,
) -> LDPairs:
    """Approximate pairs: change points within ``near`` steps of t stay exact; farther ones are
    merged into buckets of relative width ``rel`` of their distance to t, never across a sign
    change of the LR drop (warmup rises and decays stay apart). Bucket weight = summed drop,
    log-LR and area = drop-weighted means (midpoint rule).

    Built in chunks of steps holding at most ``max_pairs`` exact pairs, so a long curve (e.g.
    547 logged steps of a 72,000-step cosine: 20M exact pairs) never needs them all in memory.
    """
    lr = np.asarray(lr, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    if len(steps) == 0:
        return exact_pairs(lr, steps)
    counts = np.searchsorted(change_points(lr[: int(steps.max()) + 1]), steps, side="right")
    cumulative = np.cumsum(counts)
    parts, start = [], 0
    while start < len(steps):
        limit = (cumulative[start - 1] if start else 0) + max_pairs
        stop = max(start + 1, int(np.searchsorted(cumulative, limit, side="right")))
        parts.append(_coarse_block(lr, steps[start:stop], near, rel))
        start = stop
    return parts[0] if len(parts) == 1 else LDPairs.concat(parts)


def _coarse_block(lr: np.ndarray, steps: np.ndarray, near: int, rel: float) -> LDPairs:
    pairs = exact_pairs(lr, steps)
    if len(pairs) == 0:
        return pairs
    _, k = _pair_index(lr, steps)
    distance = steps[pairs.point] - k
    bucket = np.where(
        distance < near,
        distance,
        near + np.floor(np.log(np.maximum(distance, 1) / near) / np.log1p(rel)).astype(np.int64),
    )
    sign_run = np.cumsum(np.r_[0, np.diff(np.sign(pairs.weight)) != 0])
    # also split where eta_k itself moves by more than ``rel`` (early warmup: eta spans decades
    # within a few steps, and x ~ eta^-gamma must not be averaged across them)
    eta_band = np.floor(pairs.log_eta / np.log1p(rel)).astype(np.int64)
    new_group = np.r_[
        True,
        (np.diff(pairs.point) != 0)
        | (np.diff(bucket) != 0)
        | (np.diff(sign_run) != 0)
        | (np.diff(eta_band) != 0),
    ]
    first = np.flatnonzero(new_group)
    magnitude = np.abs(pairs.weight)
    mass = np.add.reduceat(magnitude, first)
    safe = np.where(mass > 0, mass, 1.0)
    return LDPairs(
        point=pairs.point[first],
        weight=np.add.reduceat(pairs.weight, first),
        log_eta=np.add.reduceat(magnitude * pairs.log_eta, first) / safe,
        area=np.add.reduceat(magnitude * pairs.area, first) / safe,
        n_points=pairs.n_points,
    )


def ld_sum(pairs: LDPairs, C: float, beta: float, gamma: float) -> np.ndarray:
    """``sum_k (eta_{k-1}-eta_k) G(eta_k^-gamma S_k(t))`` per point (LD without the factor B)."""
    x = _drop_x(C, gamma, pairs.log_eta, pairs.area)  # an LR of 0 then some area: G = 1
    # G = 1 - (1+x)^-beta = -expm1(-beta log1p(x)): no cancellation when x is tiny
    g = -np.expm1(-beta * np.log1p(x))
    return np.bincount(pairs.point, weights=pairs.weight * g, minlength=pairs.n_points)


def ld_sum_and_grads(
    pairs: LDPairs, C: float, beta: float, gamma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """LD/B per point and its derivatives w.r.t. log C, beta and gamma.

    With x = C eta^-gamma S, u = (1+x)^-beta, G = 1 - u:
    dG/dlogC = beta u x/(1+x),  dG/dbeta = u log(1+x),  dG/dgamma = -beta u x/(1+x) log eta.
    """
    x = _drop_x(C, gamma, pairs.log_eta, pairs.area)  # an LR of 0 then some area: G = 1
    log1p_x = np.log1p(x)
    u = np.exp(-beta * log1p_x)
    g = -np.expm1(-beta * log1p_x)
    w = pairs.weight
    finite = np.isfinite(x)
    with np.errstate(invalid="ignore"):
        # where x = inf, G is 1 and every derivative 0 (u = 0), not inf / inf or 0 * inf
        frac = np.where(finite, x / (1.0 + x), 1.0)
        u_log1p_x = np.where(finite, u * log1p_x, 0.0)
    dlogc = w * (beta * u * frac)
    n = pairs.n_points
    value = np.bincount(pairs.point, weights=w * g, minlength=n)
    d_log_c = np.bincount(pairs.point, weights=dlogc, minlength=n)
    d_beta = np.bincount(pairs.point, weights=w * u_log1p_x, minlength=n)
    d_gamma = -np.bincount(pairs.point, weights=dlogc * pairs.log_eta, minlength=n)
    return value, d_log_c, d_beta, d_gamma


def multi_power_ld(
    lr: np.ndarray,
    steps: np.ndarray,
    B: float,
    C: float,
    beta: float,
    gamma: float,
    *,
    max_pairs: int = 4_000_000,
) -> np.ndarray:
    """Exact LD(t) at each of ``steps`` in O(#steps * #LR changes), in chunks of steps so
    memory stays bounded (``max_pairs`` pairs at a time)."""
    lr = np.asarray(lr, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    out = np.zeros(len(steps))
    if len(steps) == 0:
        return out
    order = np.argsort(steps, kind="stable")
    sorted_steps = steps[order]
    changes = change_points(lr[: int(sorted_steps[-1]) + 1])
    counts = np.searchsorted(changes, sorted_steps, side="right")
    cumulative = np.cumsum(counts)
    start = 0
    while start < len(sorted_steps):
        # largest chunk whose pair count fits; at least one point
        limit = (cumulative[start - 1] if start else 0) + max_pairs
        stop = max(start + 1, int(np.searchsorted(cumulative, limit, side="right")))
        chunk = sorted_steps[start:stop]
        out[order[start:stop]] = B * ld_sum(exact_pairs(lr, chunk), C, beta, gamma)
        start = stop
    return out


def multi_power_ld_naive(
    lr: np.ndarray, steps: np.ndarray, B: float, C: float, beta: float, gamma: float
) -> np.ndarray:
    """Reference O(T) per step (O(T^2) per curve) LD straight from the definition, every k."""
    lr = np.asarray(lr, dtype=np.float64)
    prefix = np.cumsum(lr)
    out = np.empty(len(steps))
    for i, t in enumerate(np.asarray(steps, dtype=np.int64)):
        k = np.arange(1, t + 1)
        drop = lr[k - 1] - lr[k]
        area = prefix[t] - prefix[k - 1]
        x = _drop_x(C, gamma, np.log(np.maximum(lr[k], _ETA_FLOOR)), area)
        out[i] = B * np.sum(drop * (1.0 - (x + 1.0) ** -beta))
    return out
