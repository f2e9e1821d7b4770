"""Write (or check) the key reference of docs/configuration.md from workflow/schemas/config.schema.yaml.

python scripts/config_reference.py          # rewrite the reference between its markers
python scripts/config_reference.py --check  # exit 1 if the page is not what the schema gives
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "configuration.md"
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def rows(node: dict, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every key, depth first, in the schema's order."""
    out = []
    for name, sub in (node.get("properties") or {}).items():
        key = f"{prefix}{name}"
        nested = isinstance(sub, dict) and sub.get("type") == "object" and "properties" in sub
        default = "" if nested or "default" not in sub else json.dumps(sub["default"], ensure_ascii=False)
        if len(default) > 60:
            default = default[:57] + "…"
        text = " ".join(str(sub.get("description", "")).split()).replace("|", "\\|")
        out.append((key, default.replace("|", "\\|"), text))
        if nested:
            out += rows(sub, f"{key}.")
    return out


def reference() -> str:
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | {f'`{default}`' if default else ''} | {text} |" for key, default, text in rows(schema)]
    return "\n".join([BEGIN, *lines, END])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    page = PAGE.read_text()
    before, _, rest = page.partition(BEGIN)
    _, _, after = rest.partition(END)
    wanted = before + reference() + after
    if args.check:
        if wanted != page:
            print(f"{PAGE} is out of date: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
