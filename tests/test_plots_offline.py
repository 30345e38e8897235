"""`dvc plots show` draws every plot with no network: vendor/dvc_plots.html carries Vega inline.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN; .dvc/config points `plots.html_template`
at vendor/dvc_plots.html (scripts/vendor_plots_template.py), which holds them. The page is opened from
file:// in headless Chromium with every http(s) request aborted; DVC's default page, as a control, stays
blank there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import sh

pytestmark = pytest.mark.slow

# DVC writes one <div> per plot whose inline script sets the spec and calls vegaEmbed('#<id>', spec)
# (dvc_render.vega); a plot with no data (a generation-only plot on a label task) gets `var spec = {};`.
PLOT = re.compile(r"var spec = (.*?);\s*vegaEmbed\('#([^']+)', spec\);", re.DOTALL)
SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc\s*=", re.IGNORECASE)
# Per id: [Vega-Embed made the element a view, the view's marks (canvas or svg) have a size, they hold a drawing].
STATE = """ids => ids.map(id => {
    const element = document.getElementById(id);
    const marks = element && element.classList.contains("vega-embed") ? element.querySelector(".marks") : null;
    if (!marks) return [false, false, false];
    const sized = Number(marks.getAttribute("width")) > 0 && Number(marks.getAttribute("height")) > 0;
    let painted = false;
    if (sized && marks.tagName === "CANVAS") {
        const pixels = marks.getContext("2d").getImageData(0, 0, marks.width, marks.height).data;
        for (let i = 3; i < pixels.length && !painted; i += 4) painted = pixels[i] !== 0;
    } else if (sized) {
        painted = marks.querySelector("path, rect, text") !== null;
    }
    return [true, sized, painted];
})"""
# The page is done when every element is a view and every plot with data is drawn.
DONE = "([ids, withData]) => (" + STATE + ")(ids).every(([view, , painted], i) => view && (!withData[i] || painted))"


def render(project: Path, out: Path, *options: str) -> str:
    """`dvc plots show -o OUT` in `project`; the page it writes."""
    sh(["dvc", "plots", "show", "-o", str(out), *options], project)
    return (out / "index.html").read_text(encoding="utf-8")


def open_offline(browser, page_file: Path):
    """The page opened from file:// with http(s) aborted; (page, its errors, the URLs it asked the network for)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    requested: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def abort(route):
        requested.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^https?://"), abort)
    page.goto(page_file.as_uri(), wait_until="load")
    return page, errors, requested


def test_plots_render_with_no_network(pipeline_run, browser, tmp_path):
    status = ["git", "status", "--porcelain", "--untracked-files=all"]
    before = sh(status, pipeline_run).stdout
    html = render(pipeline_run, tmp_path / "plots")

    assert not SCRIPT_SRC.search(html), "the page loads a script from a file or host instead of carrying it"
    plots = {id_: spec.strip() != "{}" for spec, id_ in PLOT.findall(html)}
    ids, with_data = list(plots), list(plots.values())
    assert len(ids) == html.count("vegaEmbed('#"), "a plot's <div> is not in the form this test reads"
    # The loss curves, the bar charts, a confusion matrix per artifact.
    assert sum(with_data) >= 8, plots
    assert "Training_loss" in ids and any(id_.startswith("plots_confusion_") for id_ in ids), ids

    page, errors, requested = open_offline(browser, tmp_path / "plots" / "index.html")
    try:
        page.wait_for_function(DONE, arg=[ids, with_data], timeout=30_000)
        page.screenshot(path=str(tmp_path / "plots.png"), full_page=True)
        state = dict(zip(ids, page.evaluate(STATE, ids), strict=True))
    finally:
        page.close()
    assert all(view for view, _, _ in state.values()), state
    assert sum(painted for _, _, painted in state.values()) == sum(with_data) >= 8, state
    assert not errors, errors
    assert not requested, f"the page asked the network for {requested}"

    # The control: DVC's own page (scripts from the CDN) draws nothing here, so the check above means something.
    from dvc_render.html import PAGE_HTML

    (tmp_path / "default.html").write_text(PAGE_HTML, encoding="utf-8")
    default_html = render(pipeline_run, tmp_path / "default", "--html-template", str(tmp_path / "default.html"))
    assert SCRIPT_SRC.search(default_html)
    page, _, requested = open_offline(browser, tmp_path / "default" / "index.html")
    try:
        assert requested, "DVC's default page asked the network for nothing: is it still its default?"
        default_ids = [id_ for _, id_ in PLOT.findall(default_html)]
        assert default_ids == ids
        assert not any(view for view, _, _ in page.evaluate(STATE, default_ids))
    finally:
        page.close()

    assert sh(status, pipeline_run).stdout == before, "dvc plots show changed the reproduced project"
    assert not (pipeline_run / "dvc_plots").exists()
