"""Figures, one module per task family: drawn from results, never by the runners."""
