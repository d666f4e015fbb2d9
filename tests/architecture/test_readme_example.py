"""The README's Python example is run exactly as written (so it cannot rot)."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the From Python section holds one python block"
    return blocks[0]


def test_the_readme_trains_and_evaluates_from_python(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEDIQAD_CACHE_DIR", str(tmp_path / "cache"))
    exec(compile(readme_python_example(), "README.md", "exec"), {"__name__": "readme"})
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"selected epoch [12]; test accuracy \d\.\d\d", line), line
    history = json.loads((tmp_path / "demo/run/metrics.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert (tmp_path / "demo/run/best.ckpt").is_file()
