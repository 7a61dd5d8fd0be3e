"""The dashboard's server-drawn SVG charts: labelled axes, threshold rules, escaped text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from app.ui import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    with_namespace = str(markup).replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1)
    return ET.fromstring(with_namespace)


def _texts(root: ET.Element, css: str) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text") if css in t.get("class", "").split()]


def test_axes_are_labelled_and_rules_drawn() -> None:
    chart = charts.Chart(
        title="Gate",
        x_label="model version",
        y_label="accuracy",
        points=[charts.Point(1, 0.91, "v1"), charts.Point(2, 0.95, "v2", kind="current")],
        rules=[charts.Rule(0.9, "min_score 0.9")],
    )
    root = _parse(charts.render(chart))
    assert _texts(root, "x-label") == ["model version"]
    assert _texts(root, "y-label") == ["accuracy"]
    assert _texts(root, "rule-label") == ["min_score 0.9"]
    assert [c.get("class") for c in root.iter(f"{SVG}circle")] == ["point", "current"]
    assert _texts(root, "tick")[-2:] == ["1", "2"]


def test_one_point_and_a_flat_series_still_draw() -> None:
    chart = charts.Chart("one", "x", "y", points=[charts.Point(0, 0.5, "only")])
    root = _parse(charts.render(chart))
    (circle,) = root.iter(f"{SVG}circle")
    assert 0 < float(circle.get("cx", "-1")) < charts.WIDTH
    assert 0 < float(circle.get("cy", "-1")) < charts.HEIGHT


def test_text_from_data_is_escaped() -> None:
    chart = charts.Chart(
        "<script>", "<b>x</b>", "y & z", points=[charts.Point(0, 1, "</title><script>")]
    )
    markup = str(charts.render(chart))
    assert "<script>" not in markup
    assert "&lt;b&gt;x&lt;/b&gt;" in markup
    _parse(markup)  # still well-formed
