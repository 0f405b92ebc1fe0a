"""Bandits (the review's Fig. 2-4): Thompson sampling and its relatives (agents), the
Blahut-Arimoto rate-distortion curve (rate_distortion) and the runner (runner)."""
