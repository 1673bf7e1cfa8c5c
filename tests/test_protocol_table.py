"""The README's protocol table: generated from the Options dataclasses and their cited sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xreal_bench.cli import main
from xreal_bench.generators import Generator, register_generator
from xreal_bench.generators.base import cited
from xreal_bench.generators.protocol_table import (
    BEGIN,
    END,
    NOT_CITED,
    generator_table,
    protocol_table,
    readme_section,
    uncited_options,
)
from xreal_bench.registry import GENERATORS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_table_is_the_generated_one():
    section = readme_section(README.read_text(encoding="utf-8"))
    assert section is not None, f"README.md lost its {BEGIN} ... {END} section: paste `xreal-bench generators protocol-table`"
    assert section == protocol_table(), "README protocol table is stale: paste `xreal-bench generators protocol-table` over it"


@dataclass
class TableOptions:
    guidance: float = cited(7.0, "XReal repo, xreal/sample.py line 88 | the `scale` argument")
    labels: tuple[str, ...] = cited(("Edema", "Support Devices"), "ControlNet training text, Sec. 4")
    extra: list[int] = field(default_factory=lambda: [1, 2])
    seed_text: str = ""


class TableGenerator(Generator):
    type_name = "table-test"
    Options = TableOptions

    def generate(self, conditions):
        raise AssertionError


def test_generator_table_cells():
    assert generator_table(TableGenerator) == "\n".join(
        [
            "#### `table-test`",
            "",
            "| option | default | source |",
            "|---|---|---|",
            "| `guidance` | `7.0` | XReal repo, xreal/sample.py line 88 \\| the `scale` argument |",
            "| `labels` | `('Edema', 'Support Devices')` | ControlNet training text, Sec. 4 |",
            f"| `extra` | `[1, 2]` | {NOT_CITED} |",
            f"| `seed_text` | `''` | {NOT_CITED} |",
        ]
    )


def test_the_suites_own_generators_cite_every_default():
    assert uncited_options() == []  # every built-in: the four adapters and the suite's own generators
    table = protocol_table(["real", "noise", "shuffled"])
    assert table.startswith(
        "#### `noise`\n\n| option | default | source |\n|---|---|---|\n| `contrast` | `0.15` | the suite's own"
    )
    assert table.endswith("\n\nWithout options of their own: `real`, `shuffled`.\n")


def test_uncited_options_are_listed():
    register_generator(TableGenerator)
    try:
        assert uncited_options(["noise", "table-test"]) == ["table-test.extra", "table-test.seed_text"]
    finally:
        GENERATORS.unregister("table-test")


def test_cli_prints_the_table_between_its_markers(capsys):
    assert main(["generators", "protocol-table"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(BEGIN + "\n#### `noise`\n") and out.endswith("\n" + END + "\n")
    assert readme_section(f"# README\n\ntext\n{out}\nmore\n") == protocol_table()
    assert readme_section(f"no markers\n{BEGIN}\nonly the first\n") is None
