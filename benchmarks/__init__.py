"""Benchmarks of minilinen against Flax linen and hand-written JAX (issue 7)."""
