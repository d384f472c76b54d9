"""One process serving the HTTP API and the web UI (``rag serve``, ``make run``)."""
from __future__ import annotations

import logging

import gradio as gr

from rag.http.app import create_app
from rag.service import load_pipeline, warm_writer
from rag.settings import Settings
from ui.app import build_ui, mount_options


def create_server_app(settings: Settings, sync: bool = True, on_ready=None, load=None, language: str = "auto"):
    """The API app with the web UI (chat and review room) mounted at /ui.

    ``load`` builds the pipeline at start-up (default: from ``settings``); tests hand in a ready one.
    """
    app = create_app(load or (lambda: _loaded(settings, sync)), on_ready, settings=settings)
    ui = build_ui(lambda: app.state.pipeline, language=language, settings=settings, eval_path=settings.eval_set)
    return gr.mount_gradio_app(app, ui, path="/ui", **mount_options())


def _loaded(settings: Settings, sync: bool):
    pipeline = load_pipeline(settings, sync=sync, progress=True)
    pipeline.warm_up()
    warm_writer()
    return pipeline


def serve(settings: Settings, host: str, port: int, sync: bool = True) -> None:
    """Serve until interrupted, printing the URLs once ready."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("faiss.loader", "httpx", "gradio", "urllib3"):  # their INFO lines look like errors or repeat
        logging.getLogger(noisy).setLevel(logging.WARNING)
    base = f"http://{host}:{port}"
    app = create_server_app(settings, sync=sync, on_ready=lambda: print(
        f"\n  UI:   {base}/ui\n  API:  {base}/ask  (docs: {base}/docs)\n", flush=True))
    uvicorn.run(app, host=host, port=port, log_level="warning")
