"""The equations: Gaussian memories, the soft Thompson policy, the sigma gradients, choice
probabilities, the one optimizer factory and the convergence statistics. Imports nothing else of
dra_jax."""
