"""The whole paper in one command: ``python -m dra_jax.paper`` runs every figure's config and
writes ``report.md`` (figures, the claims table computed from the run, timing)."""
