"""Planning (the paper's Fig. 3): the planner's sigma objective (planner), CMA-ES and the
SGD trainer (trainer), the runner with checkpoints (runner) and the equal-precision search
(equal_search)."""
