"""Fitting capacity-limited agents to choice data: particle-filter likelihoods (particle.py),
models (models.py), data (data.py), sequential tasks (the grid-world: sequential.py, seqdata.py,
seqsim.py), CMA-ES (optimize.py), recovery and posterior predictive
checks (recovery.py, ppc.py), hierarchical EM (group.py), random-effects model selection
(selection.py), the command (cli.py)."""


def fit(data, config, **kw):
    """``fit(data, config) -> FitResults``: every model of ``config`` (a TOML path or dict) fitted
    to ``data`` (a CSV path or a pandas DataFrame); see :func:`dra_jax.fitting.api.fit`."""
    from dra_jax.fitting.api import fit as _fit

    return _fit(data, config, **kw)


def bms(log_evidence, **kw):
    """Random-effects Bayesian model selection of ``log_evidence [n_subjects, n_models]``:
    ``alpha``, ``expected_frequencies``, ``xp``, ``pxp``, ``bor``; see
    :func:`dra_jax.fitting.selection.bms`."""
    from dra_jax.fitting.selection import bms as _bms

    return _bms(log_evidence, **kw)
