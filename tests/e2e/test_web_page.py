"""The live page (``/hermes/``) in a real headless Chromium (Debian's ``chromium``, driven by Playwright)
with Chromium's fake camera: it streams, asks, shows the answer, and draws the memory heatmap from
the server's per-layer counts. The test takes a screenshot of the page (into its tmp folder; with
HERMES_UPDATE_SCREENSHOTS=1 into docs/web-page.png, the one the docs show).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.server
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "web-page.png"


@pytest.fixture(scope="module")
def browser():
    from playwright import sync_api
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (scripts/setup-cpu.sh installs Debian's package)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _page_state(page) -> dict:
    return page.evaluate("""() => ({status: document.getElementById('status').textContent,
        sent: hermesPage.framesSent, pending: hermesPage.pending.length, errors: hermesPage.appendErrors,
        memory: hermesPage.memory && {compressions: hermesPage.memory.compressions, frames: hermesPage.memory.frames}})""")


def test_page_streams_the_fake_camera_answers_and_draws_the_memory(qwen_server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    outside = []  # every request the page makes must go to this server
    page.on("request", lambda r: None if r.url.startswith(qwen_server.base_url) else outside.append(r.url))
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{qwen_server.base_url}/hermes/")
    page.fill("#fps", "4")
    page.fill("#budget", "96")
    page.fill("#per-append", "2")
    page.click("#start")
    sid = None
    try:
        # Enough appends for compressions: 224x168 frames are 48 tokens per two-frame chunk.
        try:
            page.wait_for_function("() => window.hermesPage.memory && window.hermesPage.memory.compressions >= 2",
                                   timeout=300_000)
        except Exception:
            pytest.fail(f"no compressions: {_page_state(page)}")
        sid = page.evaluate("() => window.hermesPage.sid")
        page.fill("#question", "What is on the screen?")
        page.fill("#max-tokens", "8")
        page.click("#ask")
        page.wait_for_function("() => document.body.dataset.answers === '1'", timeout=120_000)
        page.click("#stop")
        page.wait_for_function("() => window.hermesPage.history.length >= 3", timeout=30_000)
        answer = page.inner_text("#answer")
        assert answer.strip(), "no answer text"
        assert "TTFT" in page.inner_text("#ttft")

        memory = httpx.get(f"{qwen_server.base_url}/v1/sessions/{sid}/memory", timeout=60).json()
        heat = page.eval_on_selector("#heatmap", "c => ({...c.dataset})")
        assert int(heat["layers"]) == memory["layers"] > 0
        assert int(heat["cells"]) >= memory["layers"] * len(memory["chunks"]) > 0 and int(heat["lit"]) > 0
        # The heatmap is drawn: its canvas has more than one colour.
        colours = page.eval_on_selector("#heatmap", """c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, seen = new Set();
            for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]);
            return seen.size; }""")
        assert colours > 3
        # HERMES keeps different tokens in different layers: the map is not the same in every layer.
        assert len({tuple(row) for row in memory["held"]}) > 1
        assert memory["tokens_held"] < memory["tokens_seen"]
        shot = DOCS_SCREENSHOT if os.environ.get("HERMES_UPDATE_SCREENSHOTS") == "1" else tmp_path / "page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not outside, outside
        assert not problems, problems
        assert "error" not in page.get_attribute("#status", "class"), page.inner_text("#status")
    finally:
        if sid:
            httpx.delete(f"{qwen_server.base_url}/v1/sessions/{sid}", timeout=60)
        page.close()
