"""dra_jax: a JAX-accelerated, vectorized simulator of capacity-limited RL agents.

The Dynamic Resource Allocator (DRA, Patel, Acerbi & Pouget, NeurIPS 2020): Gaussian memories
``N(q, sigma^2)``, soft Thompson sampling, expected-SARSA means and sigma allocated by stochastic
gradient ascent on expected reward minus ``lam * KL(memories || base)``.
"""
from dra_jax import gradients, memory, policy
from dra_jax.config import ConfigError

__version__ = "0.1.0"
__all__ = ["ConfigError", "gradients", "memory", "policy", "__version__"]
