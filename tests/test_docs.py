"""The documents a user reads first: every relative link and anchor in README.md and docs/ resolves, the
README stays a front door, and every configuration key the schema knows is documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (outside code blocks)."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    out = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_relative_link_and_anchor_resolves():
    checked = 0
    for doc in documents():
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
        for target in LINK.findall(text) + IMAGE.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto: not followed here
            file_part, _, anchor = target.partition("#")
            linked = (doc.parent / file_part).resolve() if file_part else doc
            assert linked.exists(), f"{doc.name}: {target} -> {linked} does not exist"
            if anchor:
                assert linked.suffix == ".md" and anchor in anchors(linked), f"{doc.name}: no anchor {target}"
            checked += 1
    assert checked >= 20


def test_the_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 220, len(lines)
    text = "\n".join(lines)
    for page in ("protocol", "configuration", "cluster", "failure-modes", "engine", "performance", "recogniser",
                 "development"):  # fmt: skip
        assert f"docs/{page}.md" in text, page
        assert (REPO / "docs" / f"{page}.md").exists(), page


def test_the_configuration_page_lists_every_key_as_the_schema_gives_it():
    """docs/configuration.md's key table is generated from the schema: it is out of date when it differs."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts/config_reference.py"), "--check"], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    text = (REPO / "docs/configuration.md").read_text()
    for section, node in schema["properties"].items():
        for key in node.get("properties", {}):
            assert f"| `{section}.{key}` |" in text, f"{section}.{key}"
