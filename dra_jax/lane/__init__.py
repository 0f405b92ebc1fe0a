"""The lane engine of Algorithm 1: run parameters (static), one step of a run's sub-lanes (step),
the run state and its superblocks (agent), batches over devices (batching), the task runner
(runner), the equal-precision search of a lane task (equal_search) and the plain-NumPy
reference (reference)."""
