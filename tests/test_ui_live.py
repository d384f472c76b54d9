"""The web UI served for real on 127.0.0.1: Debian's Chromium driven by Playwright, and gradio_client.

The server is ``newsrag.server.create_server_app`` (what ``make run`` serves) over the session's real pipeline,
with the review room on a temporary copy of the eval set. Screenshots go to ``test-artifacts/``.
Chromium comes from Debian (``make browser``, part of ``make test``); Playwright never downloads one.
"""
import shutil
from pathlib import Path

import pytest

from eval.dataset import EvalSet
from newsrag.server import create_server_app
from tests.live_server import live_server, queue_call

# Gradio's queue uses pandas options that pandas 3 deprecates; not this project's to fix.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")]
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUESTION = "Combien Microsoft a-t-il investi dans OpenAI ?"
OFF_TOPIC = "Quelle est la recette de la ratatouille ?"
WAIT = 60_000  # ms; the first answer warms the model up
EDITOR_KEY = "k-alice-7Q"


@pytest.fixture(scope="module")
def eval_copy(tmp_path_factory) -> Path:
    """A copy of the eval set for the review room; the repository's own file must stay as it is."""
    repo_set = ROOT / "eval" / "items.jsonl"
    before = repo_set.read_bytes()
    path = tmp_path_factory.mktemp("ui-eval") / "items.jsonl"
    shutil.copy(repo_set, path)
    yield path
    assert repo_set.read_bytes() == before, "the UI tests must never write the repository's eval set"


@pytest.fixture(scope="module")
def base_url(corpus_pipeline, eval_copy):
    settings = corpus_pipeline.settings.model_copy(update={
        "eval_set": eval_copy, "eval_runs_dir": eval_copy.parent / "runs",
        "feedback_file": eval_copy.parent / "feedback.jsonl", "editor_keys": [("alice", EDITOR_KEY)]})
    app = create_server_app(settings, load=lambda: corpus_pipeline)
    with live_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian's Chromium is missing: run `make browser` (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page_in(browser, base_url, tmp_path):
    """A fresh page on the UI with the browser's language set to ``locale`` (the UI must follow it)."""
    contexts = []

    def open_page(locale: str):
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT)
        page.goto(f"{base_url}/ui/")
        page.wait_for_selector("#question textarea")
        title = "Interrogez les articles" if locale.startswith("fr") else "Ask the articles"
        page.wait_for_function("t => document.querySelector('#title').innerText.trim() === t", arg=title)
        return page

    yield open_page
    for context in contexts:
        context.close()


def ask(page, question: str, nth: int = 0):
    page.fill("#question textarea", question)
    page.click("#ask")
    answer = page.locator("#chat .rag-answer:not(.streaming)").nth(nth)
    answer.wait_for()
    return answer


def fill_kept(page, locator, value: str) -> None:
    """Fill a field and make sure the value stays: the language relabelling that runs when the page loads
    can land after a quick fill and clear it (Gradio re-renders the field), so fill again until it holds."""
    for _ in range(40):
        locator.fill(value)
        page.wait_for_timeout(250)
        if locator.input_value() == value:
            return
    pytest.fail(f"the field kept clearing {value!r}")


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_the_first_screen_says_what_the_articles_cover(page_in):
    page = page_in("fr-FR")
    cover = page.locator("#coverage .coverage")
    cover.wait_for()
    assert "1 article(s) à interroger" in cover.inner_text() and "2025-06-24" in cover.inner_text()
    assert "OpenAI et Microsoft" in cover.inner_text() and page.locator("#examples button").count() >= 3


def test_chat_answers_with_highlighted_cited_sources(page_in):
    page = page_in("fr-FR")
    assert page.locator("#ask").inner_text().strip() == "Demander", "French from the browser's language"
    answer = ask(page, QUESTION)
    assert "answered" in answer.get_attribute("class")
    assert "13 milliards" in answer.locator(".answer-text").inner_text()
    marks = answer.locator(".sources .source mark")
    assert marks.count() >= 1 and "13 milliards" in marks.first.inner_text(), "the span's sentence is highlighted"
    head = answer.locator(".article-group .article-head").first.inner_text()
    assert "OpenAI et Microsoft" in head and "2025-06-24" in head
    link = answer.locator("a.cite").last
    target = link.get_attribute("data-target")
    link.click()
    card = page.locator(f"#{target}")
    page.wait_for_function("id => document.getElementById(id).classList.contains('flash')", arg=target)
    assert card.is_visible() and page.evaluate(
        "id => { const r = document.getElementById(id).getBoundingClientRect(); "
        "return r.top >= 0 && r.top < window.innerHeight; }", target), "the cited source is brought into view"
    assert "##" not in answer.locator(".sources").inner_text(), "Markdown heading marks are not shown"
    cite = answer.locator("a.cite").first
    assert "13 milliards" in cite.get_attribute("title"), "hovering [n] shows what it rests on"
    with page.context.expect_page() as opened:
        answer.locator("a.open-article").first.click()
    article = opened.value
    article.wait_for_load_state()
    mark = article.locator("mark#cited")
    assert "13 milliards" in mark.inner_text() and mark.is_visible()
    assert article.evaluate("() => { const r = document.getElementById('cited').getBoundingClientRect(); "
                            "return r.top >= 0 && r.bottom <= window.innerHeight; }"), "scrolled to the cited span"
    article.close()
    titles = answer.locator(".article-head .title").all_inner_texts()
    assert len(titles) == len(set(titles)), "one title per article, above its passages"
    screenshot(page, "ui-chat.png")


def test_abstention_reads_as_such_and_offers_related_passages(page_in):
    page = page_in("en-US")
    answer = ask(page, OFF_TOPIC)
    assert "abstained" in answer.get_attribute("class")
    assert answer.locator(".answer-text").inner_text().strip() == "Les articles ne le disent pas."
    assert answer.locator(".related .source").count() >= 1
    assert "Closest passages" in answer.locator(".related .sources-head").inner_text()


def test_the_chat_filters_by_publication_date_and_says_a_wrong_date(page_in):
    page = page_in("fr-FR")
    page.locator("#chat-settings").get_by_text("Réglages").first.click()
    date_from = page.locator("#date-from input, #date-from textarea").first
    fill_kept(page, date_from, "2025-07-01")  # the bundled article is of 2025-06-24
    answer = ask(page, QUESTION)
    assert "abstained" in answer.get_attribute("class"), "no article of the range: nothing to answer from"
    fill_kept(page, date_from, "2025-02-30")
    answer = ask(page, QUESTION, nth=1)
    assert "error" in answer.get_attribute("class") and "does not exist" in answer.inner_text()
    fill_kept(page, date_from, "2025-06-01")
    answer = ask(page, QUESTION, nth=2)
    assert "answered" in answer.get_attribute("class") and "Selon l'article du 24 juin 2025" in answer.inner_text()


def test_errors_are_readable_and_the_language_can_be_switched(page_in):
    page = page_in("en-US")
    assert page.inner_text("#title").strip() == "Ask the articles"
    answer = ask(page, "x" * 2100)
    text = answer.inner_text()
    assert "error" in answer.get_attribute("class") and "limit is 2000" in text and "Traceback" not in text
    page.locator("#lang-switch label", has_text="Français").click()
    page.wait_for_function("() => document.querySelector('#title').innerText.includes('Interrogez')")
    assert page.locator("#ask").inner_text().strip() == "Demander"
    page.click("#reset")
    page.wait_for_function("() => !document.querySelector('#chat .rag-answer')")


def test_markdown_in_a_question_is_shown_as_text_not_a_link(page_in):
    page = page_in("en-US")
    ask(page, "[clic ici](javascript:alert(document.domain)) **gras** ?")
    user = page.locator("#chat .message.user, #chat [data-testid='user']").last
    assert page.locator("#chat a[href^='javascript']").count() == 0
    assert "[clic ici](javascript:alert(document.domain))" in user.inner_text()


def test_api_docs_render_offline_in_the_browser(browser, base_url):
    """Swagger UI's files come from the server (fastapi-offline), so /docs renders with no internet;
    any request the page makes elsewhere is refused and counted."""
    context = browser.new_context()
    outside = []
    context.route("**/*", lambda route: (outside.append(route.request.url), route.abort())
                  if not route.request.url.startswith(base_url) else route.continue_())
    page = context.new_page()
    page.goto(f"{base_url}/docs")
    page.locator(".swagger-ui .info .title", has_text="newsrag").wait_for(timeout=WAIT)
    assert page.locator(".opblock-summary-path", has_text="/ask").count() >= 1
    assert outside == []
    context.close()


def test_review_room_records_a_verdict_that_a_reload_shows(page_in, eval_copy):
    page = page_in("en-US")
    ask(page, QUESTION)
    page.get_by_role("tab", name="Review room").click()
    page.locator("#eval-table [role=gridcell]", has_text="q011").click()
    page.locator("#item-metrics table").wait_for()
    assert page.input_value("#item-question textarea") == QUESTION
    assert "13 milliards" in page.inner_text("#item-answer")
    page.locator("#verdict label", has_text="incorrect").click()
    page.fill("#verdict-comment textarea", "cites the amount but not the year")
    before = len(EvalSet(eval_copy).get("q011").verdicts)
    page.click("#record-verdict")
    page.locator("#review-status", has_text="Sign-in needed").wait_for()
    assert len(EvalSet(eval_copy).get("q011").verdicts) == before, "no key, no verdict"
    page.fill("#editor-key input", EDITOR_KEY)
    page.click("#record-verdict")
    page.locator("#review-status", has_text="Verdict recorded").wait_for()
    saved = EvalSet(eval_copy).get("q011").verdicts[-1]
    assert (saved["verdict"], saved["comment"], saved["by"]) == ("incorrect", "cites the amount but not the year",
                                                                 "alice")
    screenshot(page, "ui-review.png")

    page.reload()
    page.get_by_role("tab", name="Review room").click()
    page.click("#f-verdict input")
    page.get_by_role("option", name="incorrect").click()
    page.locator("#eval-table [role=gridcell]", has_text="q001").wait_for(state="detached")
    rows = page.locator("#eval-table [role=gridcell][data-col='0']").all_inner_texts()
    assert [r.strip() for r in rows] == ["q011"], "after a reload the filter on verdicts finds the saved one"


def test_review_room_adds_an_item_from_the_chat_question(page_in, eval_copy):
    page = page_in("en-US")
    ask(page, QUESTION)
    page.get_by_role("tab", name="Review room").click()
    page.fill("#editor-key input", EDITOR_KEY)
    page.click("#new-item")
    page.click("#from-chat")
    page.wait_for_function("q => document.querySelector('#new-question textarea').value === q", arg=QUESTION)
    page.fill("#new-expected textarea", "13 milliards de dollars")
    page.fill("#new-tags textarea, #new-tags input", "ui, number")
    page.click("#add-item")
    page.locator("#review-status", has_text="Added item").wait_for()
    added = EvalSet(eval_copy).items()[-1]
    assert ((added.question, added.expected_answer, added.tags)
            == (QUESTION, "13 milliards de dollars", ("ui", "number")))


def test_gradio_client_calls_the_chat_endpoint(base_url):
    from gradio_client import Client

    client = Client(f"{base_url}/ui/", verbose=False)
    chat, box = client.predict(QUESTION, api_name="/chat")
    assert box == "" and [m["role"] for m in chat] == ["user", "assistant"]
    html = chat[-1]["content"][0]["text"]
    assert "rag-answer answered" in html and "<mark>" in html and 'class="cite"' in html and "13 milliards" in html
    chat, _ = client.predict(OFF_TOPIC, api_name="/chat", language="en", mode="dense", top_k=3)
    assert "rag-answer abstained" in chat[-1]["content"][0]["text"]


@pytest.mark.parametrize(("key", "written"), [("", False), ("guess", False), (EDITOR_KEY, True)])
def test_review_room_events_called_directly_need_the_editor_key(base_url, eval_copy, key, written):
    """The hole found under attack: adding an item through the queue without signing in."""
    def data_for(inputs):
        values = {"editor-key": key, "new-question": "Injected item?", "new-expected": "x", "new-evidence": "y",
                  "new-answerable": True, "new-language": "en", "new-tags": "attack"}
        return [values.get(c["props"].get("elem_id"), c["props"].get("value")) for c in inputs]

    before = len(EvalSet(eval_copy).items())
    status = queue_call(base_url, "add-item", data_for)
    after = len(EvalSet(eval_copy).items())
    assert (after == before + 1) is written, status
    assert status.startswith("✓" if written else "⚠"), status


def test_a_whole_run_is_shown_after_a_reload_and_listed(page_in, eval_copy):
    """The bug: after an eval run, a reload in an English browser showed "No run yet." and every row
    "not run". Runs are saved on disk and every page load reads them."""
    page = page_in("en-US")
    page.get_by_role("tab", name="Review room").click()
    page.fill("#editor-key input", EDITOR_KEY)
    page.click("#run-all")
    page.locator("#review-status", has_text="Eval run on").wait_for(timeout=180_000)
    toast = page.locator(".toast-wrap .toast-body").first
    toast.wait_for()
    a, b = toast.bounding_box(), page.locator("#lang-switch").bounding_box()
    assert a["y"] > b["y"] + b["height"] or a["x"] + a["width"] < b["x"], "the toast leaves the language switch free"
    assert list((eval_copy.parent / "runs").glob("run-*.json")), "the run is saved"
    page.reload()
    page.get_by_role("tab", name="Review room").click()
    page.locator("#run-summary .grid").wait_for()
    assert "No run yet" not in page.inner_text("#run-summary")
    states = page.locator("#eval-table [role=gridcell][data-col='6']").all_inner_texts()
    assert states and "not run" not in [s.strip() for s in states]
    page.click("#past-runs")
    assert "alice" in page.input_value("#run-newer input")


def test_a_readers_thumbs_down_reaches_the_review_room(page_in, eval_copy):
    from eval.feedback import FeedbackStore

    store = FeedbackStore(eval_copy.parent / "feedback.jsonl")
    before = len(store.items())
    page = page_in("en-US")
    ask(page, QUESTION)
    page.locator("#chat button[aria-label='Dislike']").last.click()
    deadline = __import__("time").monotonic() + 30
    while len(store.items()) == before and __import__("time").monotonic() < deadline:
        page.wait_for_timeout(100)
    newest = store.items()[0]
    assert (newest.rating, newest.question) == ("down", QUESTION) and "13 milliards" in newest.answer
    page.locator("#chat button[aria-label='Feedback']").last.click()
    page.locator("#chat .extra-feedback-option", has_text="Wrong source").click()
    while len(store.items()) < before + 2 and __import__("time").monotonic() < deadline:
        page.wait_for_timeout(100)
    assert store.items()[0].reason == "Wrong source"
    page.get_by_role("tab", name="Review room").click()
    page.click("#refresh")
    page.click("#reader-feedback")
    cell = page.locator("#feedback-table [role=gridcell]", has_text=QUESTION).first
    cell.wait_for()
    cell.click()
    page.wait_for_function("q => document.querySelector('#new-question textarea')?.value === q", arg=QUESTION)


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 390, "height": 844}])
def test_an_abstention_after_answers_is_in_view_with_one_scroll(browser, base_url, viewport):
    """The chat used to be a fixed 520 px box scrolled to the bottom of the newest message, so the
    abstention had scrolled out of view behind its related passages; passages scrolled too."""
    context = browser.new_context(locale="fr-FR", viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(WAIT)
    page.goto(f"{base_url}/ui/")
    page.wait_for_selector("#question textarea")
    ask(page, QUESTION, 0)
    ask(page, "Pourquoi Sam Altman s'est-il entretenu avec Satya Nadella ?", 1)
    shown = page.locator("#chat").inner_text()
    assert "Sam Altman s'est-il entretenu" in shown and "&#" not in shown, "the question is shown as typed"
    last = ask(page, OFF_TOPIC, 2)
    assert "abstained" in last.get_attribute("class")
    page.wait_for_timeout(800)  # the smooth scroll
    text = last.locator(".answer-text")
    assert page.evaluate("e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }",
                         text.element_handle()), "the abstention is in view"
    assert page.evaluate("() => { const c = document.querySelector('#chat'); "
                         "return [...c.querySelectorAll('*')].every(e => e.scrollHeight <= e.clientHeight + 2 || "
                         "getComputedStyle(e).overflowY === 'visible' || getComputedStyle(e).overflowY === 'hidden'); }"
                         ), "nothing inside the chat scrolls on its own: the page is the one scroll"
    screenshot(page, f"ui-abstention-{viewport['width']}.png")
    context.close()


def test_the_review_table_is_readable_on_a_phone(browser, base_url):
    """At 390 px the table had seven columns of 23-140 px, headers written one letter a line; it now
    keeps id, question, verdict and run, header over body, and the intro stacks over the key."""
    context = browser.new_context(locale="en-US", viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(WAIT)
    page.goto(f"{base_url}/ui/")
    page.get_by_role("tab", name="Review room").click()
    page.wait_for_selector("#eval-table [role=gridcell]")
    widths = page.evaluate("""() => {
      const table = document.querySelector('#eval-table');
      const width = sel => { const e = table.querySelector(sel); return e ? e.getBoundingClientRect().width : -1; };
      return {body: [0, 1, 2, 3, 4, 5, 6].map(c => width(`[role=gridcell][data-col="${c}"]`)),
              head: [0, 1, 2, 3, 4, 5, 6].map(c => width(`[data-heading="${c}"]`)),
              table: table.clientWidth, overflow: table.scrollWidth - table.clientWidth};
    }""")
    assert widths["body"][2:5] == [0, 0, 0] and widths["head"][2:5] == [0, 0, 0], "lang, tags, answerable hidden"
    assert widths["body"][1] >= 0.45 * widths["table"], "the question column takes the room"
    assert min(widths["body"][i] for i in (0, 5, 6)) >= 40, widths
    assert all(abs(b - h) <= 2 for b, h in zip(widths["body"], widths["head"])), "headers sit over their columns"
    assert widths["overflow"] <= 2
    intro, key = (page.locator(s).bounding_box() for s in ("#review-head [data-testid=markdown]", "#editor-key"))
    assert key["y"] >= intro["y"] + intro["height"] - 1, "the key sits below the intro"
    screenshot(page, "ui-review-390.png")
    context.close()


def test_a_french_browser_never_sees_the_page_in_english(browser, base_url):
    """The page is built in English and relabelled once the browser's language is known; a French
    browser used to see it in English for about 0.6 s. Every animation frame is checked from the start."""
    context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 800})
    context.add_init_script("""
      window.__englishSeen = 0; window.__frenchAt = null;
      const look = () => {
        const title = document.querySelector('#title');
        const shown = title && getComputedStyle(document.body).visibility === 'visible' && title.innerText.trim();
        if (shown === 'Ask the articles') window.__englishSeen += 1;
        if (shown === 'Interrogez les articles') { window.__frenchAt = performance.now(); return; }
        requestAnimationFrame(look);
      };
      requestAnimationFrame(look);
    """)
    page = context.new_page()
    page.set_default_timeout(WAIT)
    page.goto(f"{base_url}/ui/")
    page.wait_for_function("() => window.__frenchAt !== null")
    assert page.evaluate("window.__englishSeen") == 0, "English was painted first"
    assert page.evaluate("window.__frenchAt") < 5000
    context.close()


def test_review_room_exports_imports_and_deletes_items(page_in, eval_copy, tmp_path):
    page = page_in("en-US")
    page.get_by_role("tab", name="Review room").click()
    page.click("#transfer")
    page.click("#export-csv")
    page.locator("#review-status", has_text="Exported").wait_for()
    with page.expect_download() as download:
        page.locator("#export-file a").first.click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id,question,expected_answer") and "q011" in "\n".join(lines)

    upload = tmp_path / "new-items.csv"
    upload.write_text("id,question,answerable,tags\nui-import-1,Qui a fondé Mistral AI ?,false,ui|import\n",
                      encoding="utf-8")
    page.set_input_files("#import-file input[type=file]", str(upload))
    page.locator("#import-file .file-preview").wait_for()
    page.click("#import-items")
    page.locator("#review-status", has_text="Sign-in needed").wait_for()
    assert "ui-import-1" not in {i.id for i in EvalSet(eval_copy).items()}, "no key, no import"
    page.fill("#editor-key input", EDITOR_KEY)
    page.click("#import-items")
    page.locator("#review-status", has_text="Imported").wait_for()
    assert EvalSet(eval_copy).get("ui-import-1").tags == ("ui", "import")

    page.click("#f-tag input")
    page.get_by_role("option", name="import").click()
    page.locator("#eval-table [role=gridcell]", has_text="ui-import-1").click()
    page.wait_for_function("() => document.querySelector('#item-question textarea').value.includes('Mistral')")
    page.click("#delete-item")
    page.locator("#review-status", has_text="Deleted").wait_for()
    assert "ui-import-1" not in {i.id for i in EvalSet(eval_copy).items()}
    page.locator("#eval-table [role=gridcell]", has_text="ui-import-1").wait_for(state="detached")


def test_review_room_search_narrows_the_table(page_in, eval_copy):
    page = page_in("fr-FR")
    page.get_by_role("tab", name="Salle de relecture").click()
    page.locator("#eval-table [role=gridcell]", has_text="q001").wait_for()
    page.fill("#f-search input, #f-search textarea", "mistral")
    page.locator("#eval-table [role=gridcell]", has_text="q001").wait_for(state="detached")
    shown = [r.strip() for r in page.locator("#eval-table [role=gridcell][data-col='0']").all_inner_texts()]
    expected = [i.id for i in EvalSet(eval_copy).items()
                if "mistral" in f"{i.question} {i.expected_answer} {i.evidence}".lower()]
    assert shown == expected and shown
