"""Make the golden tables of ``summary_cases.py`` with the real Flax linen (not run by CI).

How the data was made: with flax 0.12.8 and jax 0.10.2 on CPU (the ``bench`` extra),
``.venv/bin/python tests/golden/make_golden_summary.py`` renders every case with
``nn = flax.linen`` on both consoles and writes ``summary/tables.json`` (the text
of each table by case and console). Flax orders the collection columns as a Python
set iterates, which changes from run to run; this script sorts them as minilinen
does ("params" first, then by name), so the only choice recorded is that order.
``tests/test_summary.py`` renders the same cases with minilinen.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "summary"


def main() -> None:
    """Render every case with Flax and write the tables."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import flax
    import flax.linen as nn
    import flax.linen.summary as flax_summary
    import jax

    table_init = flax_summary.Table.__init__

    def sorted_columns(self, module, collections, rows):
        ordered = sorted(collections, key=lambda col: (col != "params", col))
        table_init(self, module, tuple(ordered), rows)

    flax_summary.Table.__init__ = sorted_columns

    sys.path.insert(0, str(HERE.parent))
    from golden.summary_cases import CASES, CONSOLES, render

    tables = {name: {c: render(nn, name, c) for c in CONSOLES} for name in CASES}
    meta = {"flax": flax.__version__, "jax": jax.__version__, "backend": jax.default_backend()}
    OUT.mkdir(exist_ok=True)
    with open(OUT / "tables.json", "w") as f:
        json.dump({"meta": meta, "tables": tables}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT / 'tables.json'}: {len(tables)} cases")


if __name__ == "__main__":
    main()
