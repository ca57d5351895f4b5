"""Dual-net training: the split, ADMM roles, wire protocol and transport."""
