"""Statistics of learning curves and memory tables: has a curve converged (:func:`tail_trend`),
episodes to converge (:func:`episodes_to_converge`), the choice entropy of a table
(:func:`choice_entropy_maps`)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def choice_entropy_maps(q: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Normalized entropy of the hard-Thompson choice for a stack of memory tables
    ``[..., S, A]`` -> ``[..., S]``, exact by quadrature (:mod:`dra_jax.core.choice`)."""
    from dra_jax.core import choice

    return np.asarray(choice.choice_entropy(jnp.asarray(q), jnp.asarray(sigma)))


_T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
         10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04, 60: 2.00}


def _t975(df: int) -> float:
    """97.5% quantile of Student's t (table; the next smaller tabulated df, 1.96 past 60)."""
    return 1.96 if df > 60 else _T975[max(k for k in _T975 if k <= df)]


def tail_trend(curve: np.ndarray, episodes: np.ndarray, tail: float = 0.1) -> dict:
    """Has a learning curve converged? A least-squares line through its last ``tail`` fraction
    of evaluations (at least 3): ``change`` = the line's rise over those episodes, ``noise`` =
    its 95% confidence half-width (Student t, from the residuals); ``converged`` =
    ``|change| <= noise``, i.e. no trend the evaluation noise cannot explain. Deterministic curves (no residual noise)
    count as converged only if flat to float32 rounding."""
    curve = np.asarray(curve, float)
    n = max(3, int(round(tail * len(curve))))
    if len(curve) < 3 or not np.all(np.isfinite(curve[-n:])):
        return {"converged": None, "change": None, "noise": None, "tail_evaluations": min(n, len(curve))}
    y, x = curve[-n:], np.asarray(episodes[-n:], float)
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc * xc).sum())
    resid = y - y.mean() - slope * xc
    se = float(np.sqrt((resid ** 2).sum() / (n - 2) / (xc * xc).sum()))
    span = float(x[-1] - x[0])
    change, noise = slope * span, _t975(n - 2) * se * span
    tol = max(noise, 1e-5 * max(1.0, float(np.abs(y).max())))
    return {"converged": bool(abs(change) <= tol), "change": change, "noise": noise,
            "tail_evaluations": n}


def episodes_to_converge(curve: np.ndarray, episodes: np.ndarray, tol: float = 0.05,
                         tail: float = 0.1, mode: str = "band") -> float:
    """Episodes a learning curve takes to converge; the plateau is the mean of the last ``tail``
    fraction of evaluations, and curves are smoothed by a running mean over 5 evaluations.

    * ``mode="band"``: the first evaluation from which the smoothed curve *stays* within ``tol``
      (relative) of the plateau;
    * ``mode="rise"``: the first evaluation at which the smoothed curve has covered
      ``1 - tol`` of the way from its first value to the plateau (robust to a slow drift of the
      plateau itself, which the band criterion counts as not yet converged).
    """
    curve = np.asarray(curve, float)
    m = max(1, int(round(tail * len(curve))))
    plateau = curve[-m:].mean()
    w = min(5, len(curve))
    smooth = np.convolve(curve, np.ones(w) / w, mode="valid")
    if mode == "rise":
        start = smooth[0]
        if start == plateau:
            return float(episodes[w - 1])
        frac = (smooth - start) / (plateau - start)
        hit = np.nonzero(frac >= 1.0 - tol)[0]
        return float(episodes[hit[0] + w - 1]) if len(hit) else float("nan")
    band = tol * max(abs(plateau), 1e-12)
    inside = np.abs(smooth - plateau) <= band
    outside = np.nonzero(~inside)[0]
    first = 0 if len(outside) == 0 else outside[-1] + 1
    if first >= len(smooth):
        return float("nan")
    return float(episodes[first + w - 1])
