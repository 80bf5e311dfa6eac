"""The README's reliability figures come from a run's report, never from a hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.readme import END, START, render, replace_block

README = Path(__file__).resolve().parents[2] / "README.md"


def test_a_report_renders_as_one_row_per_class_in_run_order() -> None:
    rows = {"zeta fault": {"cases": 2, "outcomes": ["TransportError", "session kept"]},
            "alpha | probe": {"cases": 1, "outcomes": ["refused"], "peak_mib": 1.3,
                              "by_phase": {"sent": {"survived": 3}}}}
    table = render(rows).splitlines()
    assert table[2] == "| zeta fault | 2 | TransportError; session kept |  |"
    assert table[3] == ("| alpha \\| probe | 1 | refused | peak mib: 1.3; by phase: sent:"
                        " survived: 3 |")
    assert len(table) == 4


def test_only_the_block_between_the_markers_is_replaced() -> None:
    doc = f"before\n{START}\nold table\n{END}\nafter\n"
    out = replace_block(doc, "NEW\n")
    assert out == f"before\n{START}\nNEW\n{END}\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers here", "x")


def test_the_readme_holds_a_generated_block() -> None:
    text = README.read_text()
    block = text[text.index(START) + len(START):text.index(END)]
    assert block.lstrip("\n").startswith("| What was tried | Cases |")
    assert block.count("\n|") > 20  # rows from a full run, not an empty block
