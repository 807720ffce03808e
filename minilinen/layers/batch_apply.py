"""BatchApply: run a function with its inputs' leading axes merged into one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from minilinen.errors import LayerInputError

__all__ = ["BatchApply", "merge_leading_dims", "split_leading_dim"]


def merge_leading_dims(x: Any, num_dims: int) -> Any:
    """``x`` with its first ``num_dims`` axes flattened into one (unchanged if it has fewer)."""
    if np.ndim(x) < num_dims:
        return x
    return x.reshape((int(np.prod(x.shape[:num_dims])),) + x.shape[num_dims:])


def split_leading_dim(x: Any, to_dim: tuple[int, ...]) -> Any:
    """``x`` with its first axis split back into ``to_dim``."""
    return x.reshape(tuple(to_dim) + x.shape[1:])


class BatchApply:
    """Calls ``f`` with the first ``num_dims`` axes of every input merged, then splits them.

    Inputs of lower rank (scalars, ``None``, small arrays) pass through unchanged, e.g.
    to apply a 2D-input layer to each step of a ``[time, batch, features]`` array.
    """

    def __init__(self, f: Callable[..., Any], num_dims: int = 2):
        self._f = f
        self.num_dims = num_dims

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        example = next((x for x in leaves if np.ndim(x) >= self.num_dims), None)
        if example is None:
            raise LayerInputError(
                f"BatchApply requires at least one input with ndim >= {self.num_dims} "
                f"(the number of leading axes it merges); got ranks {[np.ndim(x) for x in leaves]}."
            )
        lead = example.shape[: self.num_dims]
        args, kwargs = jax.tree_util.tree_map(
            lambda x: merge_leading_dims(x, self.num_dims), (args, kwargs)
        )
        outputs = self._f(*args, **kwargs)
        return jax.tree_util.tree_map(lambda y: split_leading_dim(y, lead), outputs)
