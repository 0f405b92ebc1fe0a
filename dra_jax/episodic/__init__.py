"""Episodic tasks: PSRL and VE-PSRL (psrl)."""
