"""Hollow nodes: many simulated agents in one process, each a real node to the control plane."""
