"""The report's and the figures' wording in other languages: English in the sources, translated by the
gettext message catalog report/templates/locale/<lang>/LC_MESSAGES/report.po (compiled when first used)."""

from __future__ import annotations

import functools
import gettext
import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

LANGS = ("en", "zh")
#: where the message catalogs live: locale/<lang>/LC_MESSAGES/report.po beside the report template
LOCALE_DIR = Path(__file__).resolve().parents[1] / "report" / "templates" / "locale"
DOMAIN = "report"


def N_(message: str) -> str:  # noqa: N802 (the gettext convention)
    """Marks a message for the catalog (pybabel extract -k N_) without translating it here."""
    return message


@functools.cache
def translations(lang: str, locale_dir: str | None = None) -> gettext.NullTranslations:
    """The messages in ``lang``, compiled from its .po catalog (English is the source language)."""
    if lang not in LANGS:
        raise ValueError(f"unknown report language {lang!r}; choose one of {list(LANGS)}")
    if lang == "en":
        return gettext.NullTranslations()
    po = Path(locale_dir or LOCALE_DIR) / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.is_file():
        raise FileNotFoundError(f"no message catalog for the report language {lang!r}: {po} is missing")
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def translator(lang: str) -> Callable[[str], str]:
    """``gettext`` for ``lang``: a message in English in, the catalog's wording out."""
    return translations(lang).gettext


def join_list(items: Iterable[Any], lang: str) -> str:
    """A list in running text: "a, b, c" in English, "a、b、c" in Chinese."""
    _ = translator(lang)
    return _(", ").join(str(i) for i in items)
