"""Machinery with no model in it: devices and batches, checkpoints, multi-host gathering,
execution options, the compile cache and the shared 1-D search of equal precision."""
