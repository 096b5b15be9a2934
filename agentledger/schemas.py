"""JSON Schema files of the contract (docs/schema/), kept in sync by a test."""

from __future__ import annotations

import json
from pathlib import Path

from agentledger.events import json_schemas


def render() -> dict[str, str]:
    """File name -> file text, exactly as written to docs/schema/."""
    return {
        f"{name}.json": json.dumps(doc, indent=2, sort_keys=True) + "\n"
        for name, doc in json_schemas().items()
    }


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in render().items():
        path = folder / filename
        path.write_text(text)
        written.append(path)
    return written
