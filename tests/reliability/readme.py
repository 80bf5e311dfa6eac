"""Render the reliability suite's figures into README.md, so no figure there is kept by hand.

    OAUTH_AUTH_RELIABILITY_REPORT=reliability.json .venv/bin/python -m pytest tests/reliability -q
    .venv/bin/python -m tests.reliability.readme reliability.json [README.md]

The suite's `Figures` (tests/reliability/conftest.py) hold, per fault or input class, how many
cases were tried, what happened (the outcomes each test asserted) and any measured figures;
this writes them as one table between the README's `reliability-figures` markers, in the
order the suite ran them, and leaves everything else in the file as it was.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

START = "<!-- reliability-figures:start -->"
END = "<!-- reliability-figures:end -->"
_HEAD = "| What was tried | Cases | What happened (asserted) | Measured |\n|---|---|---|---|\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _measured(extra: Mapping[str, Any]) -> str:
    """Figures a test recorded beside its outcome, as `name: value` pairs."""
    parts = []
    for name, value in extra.items():
        if isinstance(value, Mapping):
            inner = ", ".join(f"{k}: {_measured(v) if isinstance(v, Mapping) else v}"
                              for k, v in value.items())
            parts.append(f"{name.replace('_', ' ')}: {inner}")
        else:
            parts.append(f"{name.replace('_', ' ')}: {value}")
    return "; ".join(parts)


def render(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The markdown table of one run's figures."""
    lines = []
    for klass, row in rows.items():
        extra = {k: v for k, v in row.items() if k not in ("cases", "outcomes")}
        lines.append(f"| {_cell(klass)} | {int(row['cases'])} | "
                     f"{_cell('; '.join(row['outcomes']))} | {_cell(_measured(extra))} |\n")
    return _HEAD + "".join(lines)


def replace_block(document: str, table: str) -> str:
    """`document` with the text between the markers replaced by `table`.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start, end = document.find(START), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {START} ... {END} are missing or out of order")
    return document[: start + len(START)] + "\n" + table + document[end:]


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    rows = json.loads(Path(argv[0]).read_text())
    readme = Path(argv[1] if len(argv) > 1 else "README.md")
    readme.write_text(replace_block(readme.read_text(), render(rows)))
    print(f"{readme}: {len(rows)} rows of reliability figures", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
