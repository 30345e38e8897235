"""The web page at `/`, driven in headless Chromium: a label with its bar chart, a streamed answer, no CDN."""

from __future__ import annotations

import pytest

from serving import API_KEY, ServerProcess

pytestmark = pytest.mark.slow


def offline_page(browser, server: ServerProcess):
    """A page that may reach the server and nothing else; the list of what it tried elsewhere."""
    page = browser.new_page(viewport={"width": 900, "height": 700})
    elsewhere: list[str] = []
    errors: list[str] = []

    def route(route):
        if route.request.url.startswith(server.url):
            return route.continue_()
        elsewhere.append(route.request.url)
        return route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda err: errors.append(str(err)))
    return page, elsewhere, errors


def test_the_page_asks_for_the_key_then_draws_the_label_probabilities(browser, pipeline_run, tmp_path):
    server = ServerProcess(pipeline_run / "models/int4", tmp_path / "server.log")
    try:
        phrase = "I can't stop smiling, best day ever"
        with server.client() as client:
            expected = client.post("/v1/classify", json={"input": phrase, "scores": True}).json()["data"][0]
        page, elsewhere, errors = offline_page(browser, server)
        page.goto(server.url + "/")
        page.wait_for_selector("#key-card:not(.hidden)")  # the model card answered 401: the page asks for the key
        page.fill("#key", API_KEY)
        page.click("#key-save")
        page.wait_for_selector("#classify-card:not(.hidden)")
        assert "classification" in page.inner_text("#about")
        page.fill("#phrase", phrase)
        page.click("#classify")
        page.wait_for_selector("#label")
        page.wait_for_timeout(400)  # the bars' width transition
        assert page.inner_text("#label") == expected["label"]
        bars = page.query_selector_all(".bar")
        assert sorted(bar.get_attribute("data-label") for bar in bars) == sorted(expected["scores"])
        top = page.query_selector(".bar.top")
        assert top.get_attribute("data-label") == expected["label"]
        widths = page.eval_on_selector_all(".fill", "nodes => nodes.map(n => n.getBoundingClientRect().width)")
        track = page.eval_on_selector(".track", "n => n.getBoundingClientRect().width")
        assert abs(sum(widths) - track) <= 0.02 * track  # the probabilities add up to one full bar
        page.screenshot(path=str(tmp_path / "classify.png"), full_page=True)
        assert elsewhere == [] and errors == []
        page.close()
    finally:
        server.stop()


def test_the_page_streams_a_generated_answer_and_keeps_the_conversation(browser, generation_runs, tmp_path):
    server = ServerProcess(generation_runs["home_commands"] / "models/int4", tmp_path / "server.log", api_key=None)
    try:
        request = "dim the living room lights at 9 pm"
        with server.client() as client:
            answer = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": request}]})
        expected = answer.json()["choices"][0]["message"]["content"]
        page, elsewhere, errors = offline_page(browser, server)
        page.goto(server.url + "/")
        page.wait_for_selector("#chat-card:not(.hidden)")
        page.fill("#message", request)
        page.click("#send")
        idle = "!document.getElementById('send').disabled"
        page.wait_for_function(f"() => {idle} && document.querySelector('.turn.assistant span')?.textContent")
        assert page.inner_text(".turn.assistant span").strip() == expected
        page.fill("#message", "and lock the back door")
        page.click("#send")
        page.wait_for_function(f"() => {idle} && document.querySelectorAll('.turn.assistant').length == 2")
        assert len(page.query_selector_all(".turn.user")) == 2
        assert page.inner_text("#error") == ""
        page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
        assert elsewhere == [] and errors == []
        page.close()
    finally:
        assert server.stop() == 0
