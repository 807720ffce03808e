"""The README's first example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make demo", "make test"]


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    source = re.search(r"## A first example.*?```python\n(.*?)```", README.read_text(), re.S)
    code = source.group(1).replace("/tmp/mlp_ckpt", str(tmp_path / "ckpt"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert float(namespace["loss"]) > 0
    assert int(namespace["state"].step) == 1
    assert list((tmp_path / "ckpt").iterdir())  # the checkpoint file was written
    assert "Total Parameters" in capsys.readouterr().out
