"""The report's Markdown and its HTML: what a run's name can and cannot make of the page."""

from __future__ import annotations

from pathlib import Path

from ramlab.report.doc import Doc


def html_of(text: str) -> str:
    doc = Doc(Path("."))
    doc.para(text)
    body = doc.html("t")
    return body[body.index("<body>") : body.index("</body>")]


def test_a_code_span_stays_literal_in_the_html():
    # A run folder named `fc [y](javascript:alert%281%29)` became a script link inside its code span.
    html = html_of("No result.json: `fc [y](javascript:alert%281%29)` and `ram (reward=**x**)`.")
    assert "<code>fc [y](javascript:alert%281%29)</code>" in html
    assert "<code>ram (reward=**x**)</code>" in html
    assert "<a " not in html and "<strong>" not in html


def test_links_go_to_anchors_and_relative_paths_only():
    html = html_of("See [the run](#run-x), [its files](runs/a%20b/glimpses.png) and **this**.")
    assert '<a href="#run-x">the run</a>' in html
    assert '<a href="runs/a%20b/glimpses.png">its files</a>' in html
    assert "<strong>this</strong>" in html
    html = html_of("[click](javascript:alert%281%29) [out](https://example.org)")
    assert "<a " not in html and "[click](javascript:alert%281%29)" in html
