"""The dataset's card: what the report, the figures and the recogniser say about the data (its name, what one
image shows, its class names per language, the recogniser's preprocessing), from the config's ``data``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .io import read_json

#: the card's file, under the study's results folder
CARD_PATH = Path("data") / "card.json"
DIGITS = [str(k) for k in range(10)]
MNIST_CARD: dict[str, Any] = {
    "name": "mnist",
    "display_name": {"en": "MNIST", "zh": "MNIST"},
    "item": {"en": "digit", "zh": "数字"},
    "classes": {"en": DIGITS, "zh": DIGITS},
    "preprocess": "digits",
    "references": [],
}


def dataset_card(data: dict[str, Any]) -> dict[str, Any]:
    """The card of the config's ``data`` section (defaults filled by the schema)."""
    classes = dict(data.get("classes") or MNIST_CARD["classes"])
    classes.setdefault("zh", classes["en"])
    return {
        "name": data.get("name", "mnist"),
        "display_name": dict(data.get("display_name") or MNIST_CARD["display_name"]),
        "item": dict(data.get("item") or MNIST_CARD["item"]),
        "classes": classes,
        "preprocess": data.get("preprocess", "digits"),
        "references": list(data.get("references") or []),
    }


def read_card(results_dir: str | Path) -> dict[str, Any]:
    """The card a study wrote (``results/data/card.json``); MNIST's when there is none (a study made before
    datasets were configurable)."""
    path = Path(results_dir) / CARD_PATH
    return read_json(path) if path.exists() else dict(MNIST_CARD)


def text(card: dict[str, Any], key: str, lang: str) -> Any:
    """A per-language field of the card in ``lang``, English when it has none."""
    value = card[key]
    return value.get(lang, value["en"]) if isinstance(value, dict) else value


def class_names(card: dict[str, Any], lang: str) -> list[str]:
    return list(text(card, "classes", lang))


def is_digits(card: dict[str, Any]) -> bool:
    """Its class names are the digits 0-9 in order: labels need no key."""
    return list(card["classes"]["en"]) == DIGITS


def seed_measured(card: dict[str, Any]) -> bool:
    """The seed report measured this dataset (MNIST only): its figures are set beside the study's."""
    return card["name"] == "mnist"
