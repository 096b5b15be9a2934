"""JSON Schema files of the contract (docs/schema/) and the event reference (docs/events.md),
generated from agentledger.events and kept in sync by a test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentledger.events import json_schemas

REFERENCE = "events.md"


def render() -> dict[str, str]:
    """File name -> file text, exactly as written to docs/schema/."""
    return {
        f"{name}.json": json.dumps(doc, indent=2, sort_keys=True) + "\n"
        for name, doc in json_schemas().items()
    }


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in prop:
        kinds = [_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        nullable = any(p.get("type") == "null" for p in prop["anyOf"])
        return " | ".join(kinds) + (" (optional)" if nullable else "")
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " / ".join(f"`{v}`" for v in prop["enum"])
    if prop.get("type") == "array":
        return f"list of {_type(prop.get('items', {}))}"
    fmt = prop.get("format")
    return str(prop.get("type", "any")) + (f" ({fmt})" if fmt else "")


def render_reference() -> str:
    """docs/events.md: every model, field by field (type, required, description)."""
    out = [
        "# Event reference",
        "",
        "Generated from `agentledger.events` (the contract, in `contract/src/agentledger/`) by",
        "`agentledger schema` (a test keeps it in sync).",
        "JSON Schemas: `docs/schema/<Model>.json`. Times are RFC 3339 with a zone (stored as UTC);",
        "money is a decimal string; `event_id` is the dedupe key everywhere.",
        "",
    ]
    for name, doc in json_schemas().items():
        out += [f"## {name}", "", (doc.get("description") or "").strip(), ""]
        required = set(doc.get("required", []))
        out += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for field, prop in doc.get("properties", {}).items():
            desc = (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
            kind = _type(prop).replace("|", "\\|")
            needed = "yes" if field in required else ""
            out.append(f"| `{field}` | {kind} | {needed} | {desc} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in render().items():
        path = folder / filename
        path.write_text(text)
        written.append(path)
    reference = folder.parent / REFERENCE
    reference.write_text(render_reference())
    written.append(reference)
    return written
