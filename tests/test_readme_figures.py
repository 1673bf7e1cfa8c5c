"""The script that makes the README's reader-study figures still runs (so they can be regenerated)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "docs" / "readme_figures.py"


def test_readme_figures_script_writes_the_three_figures(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("readme_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--out", str(tmp_path)]) == 0
    for name in module.FIGURES.values():
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert "study-turing-auc.png" in capsys.readouterr().out
