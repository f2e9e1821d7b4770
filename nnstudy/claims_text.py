"""The declared claims in the lab report: their rows formatted once, the verdict grid, the claims tables, the
design statement and the sentences that are written only when the data show what they say."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from .claims import COUNT_METRICS, minimum_detectable_d, paired_power, seeds_needed
from .i18n import N_, translator
from .tables import markdown_table

ARMS = {"replication": N_("replication"), "tuned": N_("tuned")}
FAMILIES = {"seed": N_("the seed report's claims"), "extension": N_("this study's extensions")}
CLAIM_VERDICTS = {"supported": N_("supported"), "contradicted": N_("contradicted"), "inconclusive": N_("inconclusive")}


def fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    """A number with the true minus sign (−), ``—`` for none."""
    if value is None or pd.isna(value):
        return "—"
    if round(value, digits) == 0:
        value = 0.0
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "−").replace("inf", "∞")


def fmt_p(p: float) -> str:
    if pd.isna(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def statements(protocol: Mapping[str, Any], lang: str) -> dict[str, str]:
    """Claim id -> its plain-language statement in ``lang`` (English where the config gives no other)."""
    out = {}
    for claim in protocol.get("claims", []):
        for entry in [claim, *claim.get("components", [])]:
            text = entry.get("statement", {})
            out[entry["id"]] = text.get(lang) or text.get("en") or entry["id"]
    return out


def claim_rows(claims: pd.DataFrame, protocol: Mapping[str, Any], lang: str) -> list[dict[str, Any]]:
    """Every row of claims.csv formatted for the report (the same strings in every place it appears)."""
    _ = translator(lang)
    said = statements(protocol, lang)
    rows = []
    for row in claims.itertuples():
        count = row.metric in COUNT_METRICS
        digits, unit = (1, _("epochs")) if count else (2, "pp")

        def interval(low: float, high: float, digits: int = digits) -> str:
            return f"[{fmt(low, digits, True)}, {fmt(high, digits, True)}]"

        rows.append({
            "family": row.family, "family_text": _(FAMILIES.get(row.family, row.family)), "arm": row.arm,
            "arm_text": _(ARMS.get(row.arm, row.arm)), "claim": row.claim, "role": row.role, "kind": row.kind,
            "part_of": row.part_of if isinstance(row.part_of, str) else "", "text": said.get(row.claim, row.claim),
            "unit": unit, "count": count, "n": str(row.n), "estimate": fmt(row.estimate, digits, True),
            "ci": interval(row.ci_low, row.ci_high), "ci_adj": interval(row.ci_adj_low, row.ci_adj_high),
            "p": fmt_p(row.p_value), "p_holm": fmt_p(row.p_holm), "mde": fmt(row.mde, digits),
            "power": fmt(100 * row.power, 0), "verdict": row.verdict, "verdict_text": _(CLAIM_VERDICTS[row.verdict]),
            "binding": said.get(row.binding, "") if isinstance(row.binding, str) else "",
            "equivalent": row.equivalent is True or str(row.equivalent) == "True", "value": float(row.estimate),
        })  # fmt: skip
    return rows


def reading_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each composite row followed by its components of the same arm (claims.csv lists components first)."""
    out = []
    for row in rows:
        if row["role"] != "component":
            out.append(row)
            out += [r for r in rows if r["part_of"] == row["claim"] and r["arm"] == row["arm"]]
    return out


def claims_markdown(rows: list[dict[str, Any]], family: str, lang: str) -> str:
    """One family's table: each claim in each arm, its components indented below it."""
    _ = translator(lang)
    chosen = reading_order([r for r in rows if r["family"] == family])
    if not chosen:
        return _("(no claim of this family could be tested: the grid lacks its cells)")
    columns = [_("claim"), _("arm"), "B − A", _("95 % CI"), _("Holm-level CI"), "p", _("p (Holm)"), _("verdict")]
    body = []
    for r in chosen:
        name = f"↳ {r['text']}" if r["role"] == "component" else r["text"]
        verdict = f"({r['verdict_text']})" if r["role"] == "component" else r["verdict_text"]
        body.append([name, r["arm_text"], f"{r['estimate']} {r['unit']}", r["ci"], r["ci_adj"], r["p"], r["p_holm"],
                     verdict])  # fmt: skip
    return markdown_table(pd.DataFrame(body, columns=columns))


def verdict_grid(rows: list[dict[str, Any]], arms: list[str], lang: str) -> str:
    """The summary's grid: every claim (one plain-language line) against every arm, by family."""
    _ = translator(lang)
    claims = [r for r in rows if r["role"] == "claim"]
    order = list(dict.fromkeys((r["family"], r["claim"]) for r in claims))
    found = {(r["claim"], r["arm"]): r for r in claims}
    body = []
    for _family, claim in order:
        first = next(r for r in claims if r["claim"] == claim)
        cells = []
        for arm in arms:
            r = found.get((claim, arm))
            cells.append("—" if r is None else f"{r['verdict_text']}, {r['estimate']} {r['unit']}")
        body.append([first["family_text"], first["text"], *cells])
    columns = [_("family"), _("claim"), *[_(ARMS.get(a, a)) for a in arms]]
    return markdown_table(pd.DataFrame(body, columns=columns))


def verdict_counts(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """family -> verdict -> how many claim rows (every arm) have it."""
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        if r["role"] == "claim":
            counts.setdefault(r["family"], dict.fromkeys(CLAIM_VERDICTS, 0))[r["verdict"]] += 1
    return counts


def design(claims: pd.DataFrame, protocol: Mapping[str, Any], n_grid: int, n_cnn: int) -> dict[str, Any]:
    """The design as the report states it: per family the number of claims m and the conservative per-claim
    level alpha / m; the planned seeds for the target MDE; the MDE and power the study had."""
    planning, alpha = protocol.get("planning") or {}, protocol["alpha"]
    power = planning.get("power", 0.8)
    out: dict[str, Any] = {"power": fmt(100 * power, 0), "families": {}}
    for family, group in claims[claims["role"] == "claim"].groupby("family", sort=False):
        m = len(group)
        level = alpha / m
        entry: dict[str, Any] = {"m": m, "level": f"{level:.2g}"}
        for kind in ("accuracy", "epochs"):
            plan = planning.get(kind)
            if not plan:
                continue
            sd, target = float(plan["sd"]), float(plan["target_mde"])
            digits = 1 if kind == "epochs" else 2
            entry[kind] = {"sd": fmt(sd, digits), "target": fmt(target, digits),
                           "needed": seeds_needed(target, sd, level, power),
                           "mde": fmt(minimum_detectable_d(n_grid, level, power) * sd, digits),
                           "mde_cnn": fmt(minimum_detectable_d(n_cnn, level, power) * sd, digits),
                           "power_at_target": fmt(100 * paired_power(target / sd, n_grid, level), 0)}  # fmt: skip
        out["families"][family] = entry
    return out


def find(rows: list[dict[str, Any]], claim: str, arm: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["claim"] == claim and r["arm"] == arm and r["role"] == "claim"), None)


def optimizer_paragraph(rows: list[dict[str, Any]], margin: str, cite: Callable[[str], str], lang: str) -> str | None:
    """Written when Adam's accuracy lead is supported at the seed's rates and inconclusive at searched ones
    (no test compares the arms: the paragraph says what each arm shows)."""
    _ = translator(lang)
    rep, tuned = find(rows, "adam_acc", "replication"), find(rows, "adam_acc", "tuned")
    if not (rep and tuned and rep["verdict"] == "supported" and tuned["verdict"] == "inconclusive"):
        return None
    if tuned["equivalent"]:
        rest = _(
            "its Holm-level interval %(ci)s pp lies within the declared margin of ±%(margin)s pp, so at their "
            "searched rates the two are equivalent on accuracy"
        )
    else:
        rest = _(
            "its Holm-level interval %(ci)s pp reaches beyond the declared margin of ±%(margin)s pp, so the data "
            "neither confirm Adam's lead there nor show the two equivalent"
        )
    rest %= {"ci": tuned["ci_adj"], "margin": margin}
    return (_("**Adam's lead at the seed's rates is not confirmed at searched rates.** At the seed report's rates "
              "Adam is ahead by %(rep)s pp (%(rep_verdict)s); with each optimizer at its own searched rate the "
              "difference is %(tuned)s pp (%(tuned_verdict)s): %(rest)s. No test here compares the two arms. "
              "Wilson et al. %(ref)s report that well-tuned SGD often generalises as well as adaptive methods or "
              "better.")
            % {"rep": rep["estimate"], "rep_verdict": rep["verdict_text"], "tuned": tuned["estimate"],
               "tuned_verdict": tuned["verdict_text"], "rest": rest, "ref": cite("wilson")})  # fmt: skip


def epochs_paragraph(rows: list[dict[str, Any]], lang: str) -> str | None:
    """Written when some claim about epochs to the best is contradicted: the seed said fewer, or more."""
    _ = translator(lang)
    against = [r for r in rows if r["role"] == "claim" and r["count"] and r["verdict"] == "contradicted"]
    if not against:
        return None
    items = [_("%(claim)s, %(arm)s arm: %(estimate)s epochs, Holm-level CI %(ci)s")
             % {"claim": r["text"], "arm": r["arm_text"], "estimate": r["estimate"], "ci": r["ci_adj"]}
             for r in against]  # fmt: skip
    return _(
        "**Epochs to the best, against the seed.** These claims about the number of epochs to the best (the "
        "early-stopping epoch; the seed speaks of the number of iterations) are significant in the direction "
        "opposite to the seed report's: %(items)s."
    ) % {"items": _("; ").join(items)}


def dropout_paragraph(rows: list[dict[str, Any]], dropout: str, hidden: str, cite: Callable[[str], str],
                      lang: str) -> str | None:  # fmt: skip
    """Written when a claim that dropout raises accuracy is contradicted in some arm."""
    _ = translator(lang)
    tested = [r for r in rows if r["role"] == "claim" and r["claim"] in ("dp_acc", "dp_acc_sgd")]
    against = [r for r in tested if r["verdict"] == "contradicted"]
    if not against:
        return None
    worst = min(tested, key=lambda r: r["value"])
    return (_("**Dropout at p = %(p)s lowers accuracy in %(k)s of the %(n)s rows that test it.** The largest loss "
              "is %(worst)s pp (%(claim)s, %(arm)s arm). A possible reason, not tested here: dropping each of only "
              "%(hidden)s hidden units with probability %(p)s leaves the layer a fraction of its width at every "
              "step; Srivastava et al. %(ref)s used p = 0.5 on layers of 1,024 units and more, with max-norm "
              "constraints and long training.")
            % {"p": dropout, "k": len(against), "n": len(tested), "worst": worst["estimate"], "claim": worst["text"],
               "arm": worst["arm_text"], "hidden": hidden, "ref": cite("srivastava")})  # fmt: skip


def interaction_paragraph(rows: list[dict[str, Any]], cite: Callable[[str], str], lang: str) -> str | None:
    """The seed's mechanism (BN and dropout conflict): what the interaction rows show, and why it could not
    be the variance shift of Li et al. in this network."""
    _ = translator(lang)
    tested = [r for r in rows if r["role"] == "claim" and r["kind"] == "interaction"]
    if not tested:
        return None
    supported = [r for r in tested if r["verdict"] == "supported"]
    items = _("; ").join(_("%(claim)s, %(arm)s arm: %(estimate)s pp, %(verdict)s")
                         % {"claim": r["text"], "arm": r["arm_text"], "estimate": r["estimate"],
                            "verdict": r["verdict_text"]} for r in tested)  # fmt: skip
    if supported:
        lead = _(
            "**BN and dropout.** The interaction (BN+DP − BN − DP + plain, per seed) is negative beyond chance "
            "in %(k)s of %(n)s rows: %(items)s."
        )
    else:
        lead = _(
            "**BN and dropout.** No interaction row confirms the conflict the seed report conjectures "
            "(BN+DP − BN − DP + plain, per seed): %(items)s."
        )
    mechanism = _(
        "Li et al. %(ref)s explain one way the two conflict: dropout changes a unit's variance between "
        "training and test, and a BN layer after it keeps the variance it saw in training. In this network "
        "dropout comes after the only BN layer, so that variance shift cannot arise here."
    )
    return lead % {"k": len(supported), "n": len(tested), "items": items} + " " + mechanism % {"ref": cite("li")}


def bn_paragraph(rows: list[dict[str, Any]], cite: Callable[[str], str], lang: str) -> str | None:
    """Written when no claim that BN raises accuracy is supported in any arm."""
    _ = translator(lang)
    tested = [r for r in rows if r["role"] == "claim" and r["claim"] in ("bn_acc", "bn_acc_sgd")]
    if not tested or any(r["verdict"] == "supported" for r in tested):
        return None
    largest = max(tested, key=lambda r: r["value"])
    return (_("**No BN gain in accuracy is confirmed.** The largest estimate is %(est)s pp (%(claim)s, %(arm)s arm, "
              "Holm-level CI %(ci)s, verdict %(verdict)s). BN %(ref)s was made to speed up and stabilise the training "
              "of deep networks; this network has one hidden layer.")
            % {"est": largest["estimate"], "claim": largest["text"], "arm": largest["arm_text"],
               "ci": largest["ci_adj"], "verdict": largest["verdict_text"], "ref": cite("ioffe")})  # fmt: skip


def discussion_paragraphs(rows: list[dict[str, Any]], protocol: Mapping[str, Any], cite: Callable[[str], str],
                          dropout: str, hidden: str, lang: str) -> list[str]:  # fmt: skip
    """The discussion: each paragraph only where its condition holds on the data (the default claims' ids)."""
    margin = (protocol.get("equivalence_margin") or {}).get("accuracy")
    paragraphs = [optimizer_paragraph(rows, fmt(margin) if margin else "—", cite, lang),
                  epochs_paragraph(rows, lang), dropout_paragraph(rows, dropout, hidden, cite, lang),
                  interaction_paragraph(rows, cite, lang), bn_paragraph(rows, cite, lang)]  # fmt: skip
    return [p for p in paragraphs if p]


def deviations(protocol: Mapping[str, Any], lang: str) -> list[dict[str, str]]:
    """Each declared deviation, its date, change and reason in ``lang`` (English where none is given)."""
    said = lambda text: text.get(lang) or text["en"]  # noqa: E731
    return [{"date": d["date"], "change": said(d["change"]), "reason": said(d["reason"])}
            for d in protocol.get("deviations", [])]  # fmt: skip


def claims_context(claims: pd.DataFrame, config: Mapping[str, Any], lang: str, cite: Callable[[str], str],
                   dropout: str, hidden: str) -> dict[str, Any]:  # fmt: skip
    """Everything the report's template says about the claims."""
    protocol = config["protocol"]
    rows = claim_rows(claims, protocol, lang)
    arms = [a for a in protocol["arms"] if a in set(claims["arm"])]
    n_grid = len(config["grid"]["seeds"])
    n_cnn = len(config["cnn"].get("seeds") or config["grid"]["seeds"])
    families = [f for f in FAMILIES if f in set(claims["family"])]
    return {
        "claims": rows,
        "claim_families": [
            {"key": f, "text": translator(lang)(FAMILIES[f]), "md": claims_markdown(rows, f, lang)} for f in families
        ],  # fmt: skip
        "verdict_grid_md": verdict_grid(rows, arms, lang) if rows else "",
        "counts": verdict_counts(rows),
        "design": design(claims, protocol, n_grid, n_cnn),
        # called where the template shows it, so that its citations are numbered in reading order
        "discussion": lambda: discussion_paragraphs(rows, protocol, cite, dropout, hidden, lang),
        "deviations": deviations(protocol, lang),
        "pilot_seeds": list((protocol.get("pilot") or {}).get("seeds", [])),
        # rows whose verdict a small numerical difference could move: Holm-adjusted p within [alpha/2, 2 alpha]
        "near_alpha": int(claims["p_holm"].between(protocol["alpha"] / 2, 2 * protocol["alpha"]).sum()),
        "trial_seed_base": config["search"]["trial_seed_base"],
    }
