"""HBNN layer types (registered on import)."""
