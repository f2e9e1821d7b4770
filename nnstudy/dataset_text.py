"""What the lab report says about its dataset: the dataset's and its classes' names in the report's language,
whether the seed report measured it, and the published reference points the config names (with sources)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .datasets import class_names, dataset_card, is_digits, seed_measured, text
from .i18n import N_, join_list, translator
from .tables import markdown_table, mean_std

ARCH_CELLS = {"mlp": ("BPNN", N_("the BP network (plain, Adam)")), "cnn": ("CNN", N_("the CNN (Adam)"))}


def dataset_context(config: dict[str, Any], table2: pd.DataFrame, table3: pd.DataFrame, lang: str) -> dict[str, Any]:
    """The report's words for the data: ``dataset``, ``item``, ``classes``, ``digits`` (the classes are 0-9),
    ``seed_measured``, ``class_key`` ("0 = T-shirt/top, …" for figures labelled by index) and
    ``references_md`` (the config's published points beside the study's, or "")."""
    card = dataset_card(config["data"])
    names = class_names(card, lang)
    digits = is_digits(card)
    _ = translator(lang)
    if digits:
        subject = _("handwritten digits 0–9")
    else:
        subject = _("the %(n)d classes of %(dataset)s (%(classes)s)") % {
            "n": len(names),
            "dataset": text(card, "display_name", lang),
            "classes": join_list(names, lang),
        }
    return {
        "dataset": text(card, "display_name", lang),
        "item": text(card, "item", lang),
        "classes": names,
        "digits": digits,
        "task_subject": subject,
        "seed_measured": seed_measured(card),
        "class_key": "" if digits else join_list([f"{k} = {name}" for k, name in enumerate(names)], lang),
        "references_md": references_markdown(card["references"], table2, table3, lang),
    }


def references_markdown(references: list[dict], table2: pd.DataFrame, table3: pd.DataFrame, lang: str) -> str:
    """Each published point with its source, beside the study's matching network (tuned arm when there is
    one): the plain BP network with Adam for an MLP, the CNN with Adam for a CNN."""
    if not references:
        return ""
    _ = translator(lang)
    cells = pd.concat([table2, table3[table3["variant"] == "CNN"]], ignore_index=True)
    arm = "tuned" if "tuned" in set(cells["arm"]) else "replication"
    rows = []
    for ref in references:
        network, ours = "—", "—"
        if ref.get("arch") in ARCH_CELLS:
            variant, label = ARCH_CELLS[ref["arch"]]
            found = cells[(cells["arm"] == arm) & (cells["optimizer"] == "adam") & (cells["variant"] == variant)]
            if len(found):
                r = found.iloc[0]
                network, ours = _(label), mean_std(r.test_acc_mean, r.test_acc_std)
        model = ref["model"].get(lang, ref["model"]["en"])
        rows.append([model, f"{ref['accuracy']:.2f}", ref["source"], network, ours])
    cols = [_("published model"), _("its test acc (%)"), _("source"), _("our network"), _("our test acc (%)")]
    return markdown_table(pd.DataFrame(rows, columns=cols))
