"""One module per task: its config keys, its runner and its figures."""
