"""Model summary: a table of every submodule call, its shapes and its variables.

``tabulate(module, rngs)(*args)`` runs ``module.init`` abstractly (under
``jax.eval_shape``, so nothing is computed or allocated) with a method
interceptor that records each module call's path, class, inputs and outputs.
The variables ``init`` would create are then attributed to the module that owns
them, and the rows are rendered as a rich table: per collection, each module's
own variables, their count and bytes, and totals. FLOPs per call come from
XLA's cost analysis of that call alone, lowered but never run.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import rich.console
import rich.table
import rich.text

from minilinen.core.frozen_dict import unfreeze
from minilinen.core.meta import Partitioned
from minilinen.core.scope import DenyList
from minilinen.module import Module
from minilinen.module_context import InterceptorContext, intercept_methods

__all__ = ["tabulate"]

Path = tuple[str, ...]
_NOT_INTERMEDIATES = DenyList("intermediates")  # init's default: every collection but those


@dataclasses.dataclass
class _Call:
    """One intercepted module method call (inputs and outputs as shapes)."""

    path: Path
    module: Module
    method: str
    args: tuple
    kwargs: dict
    outputs: Any = None
    flops: dict = dataclasses.field(default_factory=dict)  # by column: flops, vjp_flops


def tabulate(
    module: Module,
    rngs: Any,
    depth: int | None = None,
    show_repeated: bool = False,
    mutable: Any = _NOT_INTERMEDIATES,
    console_kwargs: Mapping[str, Any] | None = None,
    table_kwargs: Mapping[str, Any] = MappingProxyType({}),
    column_kwargs: Mapping[str, Any] = MappingProxyType({}),
    compute_flops: bool = False,
    compute_vjp_flops: bool = False,
) -> Callable[..., str]:
    """Returns a function of the model's inputs that renders its summary table.

    Args:
      module: the model; it is initialized abstractly, never run for real.
      rngs: what ``module.init`` takes (a key, or a dict of keys by stream).
      depth: show submodules down to this many levels below the root; deeper
        ones are folded into their ancestor's row as totals. ``None``: all.
      show_repeated: one row per call, instead of one per module.
      mutable: the collections ``init`` may create (as in ``init``).
      console_kwargs: arguments for ``rich.console.Console`` (e.g. ``width``,
        ``force_terminal``).
      table_kwargs: arguments for ``rich.table.Table``.
      column_kwargs: arguments for every ``Table.add_column``.
      compute_flops: add a column of XLA's FLOP estimate for each call.
      compute_vjp_flops: add a column of FLOPs of each call's forward-and-backward pass.

    The returned function takes ``(*args, **kwargs)`` as ``module.init`` would
    after ``rngs`` (``method=`` included) and returns the table as a string.
    """
    flop_columns = ("flops",) * compute_flops + ("vjp_flops",) * compute_vjp_flops

    def summarize(*args: Any, **kwargs: Any) -> str:
        calls, variables = _trace(module, rngs, mutable, args, kwargs)
        shown = _select_rows(calls, depth, show_repeated)
        for call in shown if flop_columns else ():
            keys = dict(rngs) if isinstance(rngs, Mapping) else {"params": rngs}
            _measure_flops(call, keys, mutable, flop_columns)
        title = type(module).__name__
        options = (console_kwargs, table_kwargs, column_kwargs)
        return _render(title, calls, shown, variables, depth, flop_columns, *options)

    return summarize


# --- tracing ------------------------------------------------------------------


def _trace(
    module: Module, rngs: Any, mutable: Any, args: tuple, kwargs: dict
) -> tuple[list[_Call], dict]:
    """Runs ``init`` abstractly, recording every module call."""
    calls: list[_Call] = []

    def record(next_fun: Callable, a: tuple, kw: dict, ctx: InterceptorContext) -> Any:
        if ctx.method_name == "setup" or ctx.module.scope is None:  # not calls, as in Flax
            return next_fun(*a, **kw)
        call = _Call(
            path=tuple(ctx.module.path),
            # Unbound: a module inside a lifted transform holds the transform's tracers.
            module=ctx.module.clone(_deep_clone=True),
            method=ctx.method_name,
            args=_abstract(a),
            kwargs=_abstract(kw),
        )
        calls.append(call)  # before the call, so parents precede their children
        out = next_fun(*a, **kw)
        call.outputs = _abstract(out)
        return out

    def init() -> Any:
        with intercept_methods(record):
            return module.init(rngs, *args, mutable=mutable, **kwargs)

    variables = jax.eval_shape(init)
    return calls, unfreeze(variables)


def _inputs_view(args: tuple, kwargs: dict) -> Any:
    # One positional argument shows as itself; otherwise a list, keywords as a dict at its end.
    items: list[Any] = list(args)
    if kwargs:
        items.append(dict(kwargs))
    return items[0] if len(items) == 1 else items or ""  # no inputs: an empty cell


def _abstract(tree: Any) -> Any:
    """Arrays (and tracers) become ``ShapeDtypeStruct``s; everything else stays."""

    def leaf(x: Any) -> Any:
        if isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)):
            return jax.ShapeDtypeStruct(x.shape, x.dtype)
        return x

    return jax.tree_util.tree_map(leaf, tree)


def _select_rows(calls: list[_Call], depth: int | None, show_repeated: bool) -> list[_Call]:
    # A call of no method of the module (a transform's body function) is no row, as in Flax.
    rows = [
        c for c in calls if (depth is None or len(c.path) <= depth) and hasattr(c.module, c.method)
    ]
    if show_repeated:
        return rows
    first: dict[Path, _Call] = {}  # each module's first call, in call order
    for call in rows:
        first.setdefault(call.path, call)
    return list(first.values())


# --- variables per module -----------------------------------------------------


def _subtree(tree: Any, path: Path) -> Any:
    for name in path:
        if not isinstance(tree, Mapping) or name not in tree:
            return {}
        tree = tree[name]
    return tree if isinstance(tree, Mapping) else {}


def _count(tree: Any) -> tuple[int, int]:
    """(number of values, bytes) over the arrays in ``tree``; other objects count nothing."""
    arrays = [x for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "shape")]
    return sum(x.size for x in arrays), sum(x.size * x.dtype.itemsize for x in arrays)


# --- FLOPs --------------------------------------------------------------------


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.ShapeDtypeStruct)


def _measure_flops(call: _Call, rngs: dict, mutable: Any, columns: tuple[str, ...]) -> None:
    """Lowers this one call (with its module's variables) and reads XLA's FLOP estimate."""
    arrays, with_arrays = _picked((call.args, call.kwargs), _is_array)

    def run(variables: Any, keys: dict, arrays: list, how: str = "apply") -> Any:
        args, kwargs = with_arrays(arrays)
        kwargs.update(method=call.method, mutable=mutable)
        if how == "init":
            return call.module.init(keys, *args, **kwargs)
        # The updated variables are outputs too: Flax's VJP pulls a cotangent back through them.
        return call.module.apply(variables, *args, rngs=keys, **kwargs)

    # As in Flax, the module is initialized on its own (a vmapped one on its slice; a
    # WeightNorm with its wrapped layer, whose variables the model keeps elsewhere).
    own = jax.eval_shape(partial(run, how="init"), None, rngs, arrays)

    # The keys are traced arguments, as in Flax, so XLA folds none of the RNG work away.
    if "flops" in columns:
        call.flops["flops"] = _cost(run, own, rngs, arrays)
    if "vjp_flops" in columns:
        call.flops["vjp_flops"] = _cost(_forward_and_backward(run), own, rngs, arrays)


def _forward_and_backward(run: Callable) -> Callable:
    """``run``'s pullback of its own output, as Flax measures it: the forward pass
    is part of the cost, and the cotangent is no constant XLA could fold."""

    def both(variables: Any, keys: dict, arrays: list) -> Any:
        diff, with_diff = _picked((variables, keys, arrays), _is_inexact)
        of_diff = lambda *xs: _inexact_leaves(run(*with_diff(xs)))  # noqa: E731
        out, pullback = jax.vjp(of_diff, *diff)
        return pullback(out)

    return both


def _picked(tree: Any, pick: Callable) -> tuple[list, Callable]:
    """The leaves of ``tree`` that ``pick`` selects, and a function giving ``tree`` with
    other values in their place (the rest of it held fixed)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    where = [i for i, x in enumerate(leaves) if pick(x)]

    def with_values(values: Any) -> Any:
        filled = list(leaves)
        for i, x in zip(where, values):
            filled[i] = x
        return jax.tree_util.tree_unflatten(treedef, filled)

    return [leaves[i] for i in where], with_values


def _is_inexact(x: Any) -> bool:
    # Python scalars count by the dtype JAX gives them (a float is inexact, an int not).
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _inexact_leaves(tree: Any) -> list:
    return [y for y in jax.tree_util.tree_leaves(tree) if _is_inexact(y)]


def _cost(fn: Callable, *shapes: Any) -> int:
    analysis = jax.jit(fn).lower(*shapes).cost_analysis()
    if isinstance(analysis, Sequence):  # older jax: one dict per device
        analysis = analysis[0] if analysis else None
    return int((analysis or {}).get("flops", 0))  # Flax shows 0 where XLA reports none


# --- rendering ----------------------------------------------------------------
# Cells are rich markup, each value as Flax writes it: leaves rendered, then dumped as YAML.


class _Markup(str):
    """A leaf already rendered (``_plain`` keeps it as it is)."""


def _leaf_markup(x: Any) -> _Markup:
    if isinstance(x, Partitioned):  # the shape, then the mesh axes: P(None, data)
        return _Markup(f"{_leaf_markup(x.value)} [dim]P[/dim]{x.names}")
    if _is_array(x):
        return _Markup(f"[dim]{x.dtype}[/dim][{','.join(str(d) for d in x.shape)}]")
    return _Markup(repr(x))


def _plain(value: Any) -> Any:
    """What YAML can dump: sequences as tuples, mappings and dataclasses as dicts."""
    if isinstance(value, _Markup):
        return str(value)
    if isinstance(value, (tuple, list)):
        return tuple(map(_plain, value))
    if isinstance(value, Mapping):
        return {_plain_key(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # by its fields
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    # A value a pytree node keeps outside its leaves; an Enum by its value, as in Flax.
    return repr(value.value if isinstance(value, enum.Enum) else value)


def _plain_key(key: Any) -> Any:
    key = key.value if isinstance(key, enum.Enum) else key
    # Another key than a string shows as its repr: an int as Flax's YAML writes it (Flax
    # writes True, None and the like as YAML does, or fails: keys no pytree holds in practice).
    return key if type(key) is str else repr(key)


def _yaml(value: Any) -> str:
    """``value`` as one cell: dicts and lists one item a line, quotes dropped (as Flax)."""
    is_leaf = lambda x: x is None or isinstance(x, Partitioned)  # noqa: E731
    value = _plain(jax.tree_util.tree_map(_leaf_markup, value, is_leaf=is_leaf))
    if not value:  # nothing to show: an empty cell
        return ""
    return _dump(value).replace("'", "").strip()


# --- YAML, as Flax's cells are written: the block style of ``yaml.safe_dump(value,
# default_flow_style=False, indent=2, sort_keys=False)`` for the dicts, tuples and strings
# ``_plain`` gives. Only what tabulate's reprs and markup hold: strings of printable ASCII
# (YAML would escape others in double quotes), keys shorter than 123 characters (longer ones
# YAML writes as "? key").

_IMPLICIT = re.compile(  # what YAML 1.1 reads as a bool, null, int, float or date: quoted
    r"[yY]es|YES|[nN]o|NO|[tT]rue|TRUE|[fF]alse|FALSE|[oO]n|ON|[oO]ff|OFF|[nN]ull|NULL|~|<<|="
    r"|[-+]?(?:0b[01_]+|0[0-7_]+|0|[1-9][0-9_]*(?::[0-5]?[0-9])*"
    r"|0x[0-9a-fA-F_]+|[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|[0-9][0-9_]*(?::[0-5]?[0-9])+"
    r"\.[0-9_]*|\.(?:inf|Inf|INF))|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|\.(?:nan|NaN|NAN)"
    r"|\d{4}-\d\d-\d\d|\d{4}-\d\d?-\d\d?(?:[Tt]|[ \t]+)\d\d?:\d\d:\d\d(?:\.\d*)?"
    r"(?:[ \t]*(?:Z|[-+]\d\d?(?::\d\d)?))?"
)
# An indicator (at the start, or ": " and " #"), a space at either end, anything but ASCII.
_NOT_PLAIN = re.compile(r"^(?:[-?:](?: |$)|---|\.\.\.|[#,\[\]{}&*!|>'\"%@` ])| $|: |:$| #|[^ -~]")


def _dump(value: Any, indent: int = 0, column: int = 0) -> str:
    """``value`` in YAML, without the document's end; its lines after the first are indented
    by ``indent``, its first starts at ``column``."""
    pad = "\n" + " " * indent
    if isinstance(value, dict) and value:
        return pad.join(_entry(_scalar(k), v, indent) for k, v in value.items())
    if isinstance(value, tuple) and value:
        return pad.join("- " + _dump(v, indent + 2, indent + 2) for v in value)
    if isinstance(value, str):
        return _scalar(value, indent or 2, column)  # a lone string's folds indented by 2
    return "{}" if isinstance(value, dict) else "[]"


def _entry(key: str, value: Any, indent: int) -> str:
    if value and isinstance(value, (dict, tuple)):  # on the next lines; a list not indented
        inner = indent + 2 if isinstance(value, dict) else indent
        return f"{key}:\n{' ' * inner}{_dump(value, inner)}"
    return f"{key}: {_dump(value, indent + 2, indent + len(key) + 2)}"


def _scalar(text: str, indent: int = 0, column: int | None = None) -> str:
    """A string, plain where YAML reads it back as this string, else in single quotes; past
    column 80 a lone space becomes a line break (``column`` None: a key, never folded)."""
    quote = "" if text and not (_IMPLICIT.fullmatch(text) or _NOT_PLAIN.search(text)) else "'"
    text = text.replace("'", "''") if quote else text
    if column is None:
        return quote + text + quote
    words = re.split(r"(?<=[^ ]) (?=[^ ])", text)  # at the lone spaces, where YAML folds
    out, column = quote + words[0], column + len(quote + words[0])
    for word in words[1:]:
        fold = column > 80
        out += ("\n" + " " * indent if fold else " ") + word
        column = (indent if fold else column + 1) + len(word)
    return out + quote


def _size(tree: Any) -> str:
    n, nbytes = _count(tree)
    return f"{n:,} [dim]({_bytes_repr(nbytes)})[/dim]" if n else ""  # nothing: an empty cell


def _bytes_repr(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes > scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes:,} B"


def _module_cell(call: _Call) -> str:
    name = type(call.module).__name__
    return name if call.method == "__call__" else f"{name} [dim]({call.method})[/dim]"


def _render(
    title: str,
    calls: list[_Call],
    rows: list[_Call],
    variables: dict,
    depth: int | None,
    flop_columns: tuple[str, ...],
    console_kwargs: Mapping[str, Any] | None,
    table_kwargs: Mapping[str, Any],
    column_kwargs: Mapping[str, Any],
) -> str:
    called = {call.path for call in calls}  # a key of a called path's is a submodule's
    cols = sorted(variables, key=lambda col: (col != "params", col))
    options = {"title": f"{title} Summary", "show_header": True, "show_lines": True}
    table = rich.table.Table(**{**options, "show_footer": True, **table_kwargs})
    headers = ["path", "module", "inputs", "outputs", *flop_columns]
    for header in headers[:-1]:
        table.add_column(header, **column_kwargs)
    # "Total" sits in the footer of the last column before the collections.
    table.add_column(headers[-1], footer=rich.text.Text("Total", justify="right"), **column_kwargs)
    for col in cols:
        table.add_column(col, footer=_size(variables[col]), **column_kwargs)

    listed: set[Path] = set()
    for call in rows:
        repeated = call.path in listed
        listed.add(call.path)
        folded = depth is not None and len(call.path) == depth
        cells = ["/".join(call.path), _module_cell(call)]
        values = [_inputs_view(call.args, call.kwargs), call.outputs]
        cells += [_yaml(v) for v in values + [call.flops[c] for c in flop_columns]]
        for col in cols:
            # A module's variables belong to its first row only: its own ones listed, counted
            # with its submodules' where the depth folds them into it.
            tree = {} if repeated else _subtree(variables[col], call.path)
            own = {k: v for k, v in tree.items() if call.path + (k,) not in called}
            listing = _yaml(own) + "\n\n" if own else ""
            cells.append(f"{listing}[bold]{_size(tree if folded else own)}[/bold]")
        table.add_row(*cells)

    table.caption = f"\nTotal Parameters: {_size(variables)}"
    table.caption_style = "bold"

    console_options = {"force_terminal": True, "force_jupyter": False, **(console_kwargs or {})}
    if "width" not in console_options:
        # As wide as the table wants, so no cell is cut short with an ellipsis.
        probe = rich.console.Console(width=10_000, file=io.StringIO())
        console_options["width"] = max(probe.measure(table).maximum, 40)
    console = rich.console.Console(file=io.StringIO(), **console_options)
    console.print(table)
    return "\n" + console.file.getvalue() + "\n"
