"""The HTML views of the tables (what `snakemake --report` shows in place): numbers as a person reads them."""

from __future__ import annotations

import re

import pandas as pd

from nnstudy.tables import html_table


def test_html_tables_show_no_float_noise():
    frame = pd.DataFrame({"claim": ["adam_acc", "bn_acc"], "estimate": [0.7230000000000019, -0.49299999999999783],
                          "p_value": [0.00015217226569186432, 0.5], "n": [16, 16], "note": [None, "x"]})  # fmt: skip
    page = html_table(frame, "claims")
    cells = re.findall(r'<td class="(?:num|text)">([^<]*)</td>', page)
    assert cells == ["adam_acc", "0.723", "1.522e−04", "16", "", "bn_acc", "−0.493", "0.5", "16", "x"]
    assert all(len(re.sub(r"\D", "", c.split("e")[0])) <= 4 for c in cells if re.match(r"^[−\d]", c))


def test_a_result_file_of_the_wrong_shape_is_named_with_its_repair(tmp_path):
    import json

    import pytest

    from nnstudy.tables import load_runs

    for content in ({}, [1, 2], {"cell": "sgd-bn0-dp0"}):
        path = tmp_path / "result.json"
        path.write_text(json.dumps(content))
        named = re.escape(str(path))
        with pytest.raises(ValueError, match=rf"{named}: not a grid run's result .*rm '{named}'"):
            load_runs([path])
