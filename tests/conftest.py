"""Fixtures shared by the golden tests."""

import jax
import pytest


@pytest.fixture(params=[False, True], ids=["threefry0", "threefry1"])
def partitionable(request):
    """Run the test under one jax_threefry_partitionable setting, then restore the old one."""
    old = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", request.param)
    yield request.param
    jax.config.update("jax_threefry_partitionable", old)
