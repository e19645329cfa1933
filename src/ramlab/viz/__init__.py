"""Figures: scene grids, glimpse trajectories, curves. matplotlib with the Agg backend."""
