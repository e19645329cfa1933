"""The rows of a cost table (`cost.json`), read back without torch.

`ramlab.cost` measures the rows and writes them; the study runner (what is measured
already) and the report (the compute-cost section) read them here, so neither has to import
the measuring code, and the report never imports the study runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ramlab.errors import RamlabError


def read_cost_rows(path: str | Path) -> list[dict]:
    """The rows of a cost JSON (a list, or a mapping with `rows`); [] when absent."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RamlabError(f"{path}: not valid JSON ({exc}); delete it to measure again") from None
    rows = data.get("rows", []) if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and "model" in r and "size" in r for r in rows
    ):
        raise RamlabError(f"{path}: not a cost table (rows with model and size); delete it to measure again")
    return rows


def timing_mode(rows: list[dict[str, Any]]) -> str:
    """How the rows were timed, in words: "eager", "compiled (...)" or both, with the devices."""
    devices = ", ".join(sorted({str(r.get("device", "?")) for r in rows}))
    modes = sorted({bool(r.get("compiled")) for r in rows})
    words = {False: "eager", True: "compiled (torch.compile; CUDA graphs on a GPU)"}
    return f"{' and '.join(words[m] for m in modes)} inference on {devices}"


__all__ = ["read_cost_rows", "timing_mode"]
