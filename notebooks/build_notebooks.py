"""Build the tutorial notebooks from their sources and execute them.

    .venv/bin/python notebooks/build_notebooks.py            # all of them
    .venv/bin/python notebooks/build_notebooks.py 01_basics  # just one

Each notebook is written as a Python file in ``notebooks/src/`` in the "percent"
format: ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose
lines are comments, and ``# %% tags=["name"]`` tags a cell (the tests find the
cells whose output they check by tag). The notebook is executed with nbclient in
a kernel running this very Python (the virtual environment's), and written to
``notebooks/<name>.ipynb`` with its outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "src"
KERNEL_NAME = "python3"
_MARKER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def names() -> list[str]:
    """The notebooks, in reading order."""
    return sorted(p.stem for p in SOURCES.glob("[0-9][0-9]_*.py"))


def parse(source: str) -> list[nbformat.NotebookNode]:
    """Cells from a percent-format source; lines before the first marker are dropped."""
    cells: list[nbformat.NotebookNode] = []
    kind, tags, lines = None, [], []

    def flush() -> None:
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(re.sub(r"^# ?", "", line) for line in text.splitlines())
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in source.splitlines():
        match = _MARKER.match(line)
        if match:
            flush()
            kind = "markdown" if match["markdown"] else "code"
            tags = json.loads(match["tags"]) if match["tags"] else []
            lines = []
        else:
            lines.append(line)
    flush()
    return cells


def build(name: str) -> nbformat.NotebookNode:
    """The unexecuted notebook ``name``, with stable cell ids (clean diffs)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = parse((SOURCES / f"{name}.py").read_text())
    for i, cell in enumerate(nb.cells):
        cell.id = f"{name[:2]}-{i:03d}"
    nb.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


@contextlib.contextmanager
def this_python_kernel() -> Iterator[None]:
    """Makes the kernel named ``python3`` run this interpreter, whatever else is installed.

    A kernelspec for ``sys.executable`` goes into a temporary directory that is put
    first on ``JUPYTER_PATH``, ahead of any user-wide or system-wide ``python3``.
    The kernel's connection file and IPython's profile go there too, so a fresh
    machine with a read-only home directory works as well.
    """
    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = Path(tmp) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        settings = {
            "JUPYTER_PATH": os.pathsep.join(p for p in (tmp, os.environ.get("JUPYTER_PATH")) if p),
            "JUPYTER_RUNTIME_DIR": str(Path(tmp) / "runtime"),
            "IPYTHONDIR": str(Path(tmp) / "ipython"),
        }
        old = {key: os.environ.get(key) for key in settings}
        os.environ.update(settings)
        try:
            yield
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def execute(nb: nbformat.NotebookNode, timeout: int | None = 600) -> nbformat.NotebookNode:
    """Runs every cell in a fresh kernel (cwd ``notebooks/``); raises on the first error.

    ``timeout`` bounds each cell and the kernel's start-up, in seconds; None waits for them.
    """
    with this_python_kernel():
        client = NotebookClient(
            nb,
            timeout=timeout,
            startup_timeout=timeout or 10**9,  # nbclient wants a number here
            kernel_name=KERNEL_NAME,
            record_timing=False,
            resources={"metadata": {"path": str(HERE)}},
        )
        client.execute()
    return nb


def main(argv: list[str]) -> None:
    for name in argv or names():
        print(f"building {name} ...", flush=True)
        nb = execute(build(name))
        nbformat.validate(nb)
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print(f"wrote {HERE / name}.ipynb", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
