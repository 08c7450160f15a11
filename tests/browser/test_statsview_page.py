"""StatsView in real JupyterLab + Chromium: its charts draw and change, the emulated network
shows in them, and clearing the output pauses the kernel's updates.

Runs notebooks/stats_view.ipynb one cell at a time.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

CHART = ".peerix-stats-chart[data-metric='{}']"


def _last(lab, metric: str) -> dict:
    import json

    return json.loads(lab.page.locator(CHART.format(metric)).get_attribute("data-last") or "{}")


def _inked_pixels(lab, metric: str) -> int:
    """Pixels of the chart's canvas that are neither transparent nor the page's background."""
    return lab.page.evaluate(
        """(selector) => {
            const canvas = document.querySelector(selector + ' canvas');
            const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let inked = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked += 1;
            return inked;
        }""",
        CHART.format(metric),
    )


@pytest.mark.timeout(150)
def test_stats_view_charts_draw_change_and_pause(lab) -> None:
    lab.open("stats_view.ipynb")
    lab.run_cell(1, timeout=90)
    page = lab.page
    sent = CHART.format("bitrate_sent")
    page.wait_for_selector(sent)
    # a line for bob with a few points, drawn on the canvas
    page.wait_for_function(
        "(s) => +document.querySelector(s).dataset.points >= 3", arg=sent, timeout=30_000
    )
    assert _inked_pixels(lab, "bitrate_sent") > 50
    assert _last(lab, "bitrate_sent")["bob"] > 100  # kbit/s of a 320x240 VP8 stream
    draws = int(page.locator(".peerix-stats").get_attribute("data-draws"))
    before = page.locator(sent).get_attribute("data-last")
    first = lab.screenshot(page.locator(".peerix-stats"), "before")
    # it keeps updating: more draws, new values
    page.wait_for_function(
        """([draws, before, s]) => +document.querySelector('.peerix-stats').dataset.draws >= draws + 3
            && document.querySelector(s).dataset.last !== before""",
        arg=[draws, before, sent],
        timeout=30_000,
    )
    assert page.locator(".peerix-stats-status").inner_text().lower() == "live"
    assert "network: none" in page.locator(".peerix-stats-conditions").inner_text()

    # a bad network on ada: the conditions show, the RTT climbs, emulated drops appear
    lab.run_cell(2)
    assert "SET delay 80 ms, loss 5 %, seed 1" in lab.output_text(2)
    page.wait_for_function(
        "() => document.querySelector('.peerix-stats-conditions').textContent"
        ".includes('delay 80 ms, loss 5 %')",
        timeout=30_000,
    )
    rtt = CHART.format("rtt")
    page.wait_for_function(
        "(s) => (JSON.parse(document.querySelector(s).dataset.last).bob || 0) > 40",
        arg=rtt,
        timeout=60_000,
    )
    dropped = CHART.format("net_dropped")
    page.wait_for_function(
        "(s) => +document.querySelector(s).dataset.points > 0", arg=dropped, timeout=30_000
    )
    assert _inked_pixels(lab, "rtt") > 50
    second = lab.screenshot(page.locator(".peerix-stats"), "after")
    assert first != second

    # no view left: the kernel stops pushing, the sampler keeps sampling
    lab.execute_at(1, "notebook:clear-cell-output")
    page.wait_for_function("() => !document.querySelector('.peerix-stats')")
    lab.run_cell(3, timeout=30)
    assert "PAUSED paused 0 True" in lab.output_text(3), lab.output_text(3)
    lab.run_cell(4, timeout=30)
    assert "DONE" in lab.output_text(4)
