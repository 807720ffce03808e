"""Golden data made with the real Flax, and the shared cases and helpers that made it."""
