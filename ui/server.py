"""One process serving the HTTP API and the web UI (``rag serve``, ``make run``)."""
from __future__ import annotations

import logging

import gradio as gr

from rag.api import create_app
from rag.service import load_pipeline
from rag.settings import Settings
from ui.app import CSS, build_ui


def create_server_app(settings: Settings, sync: bool = True, on_ready=None):
    """The API app with the chat UI mounted at /ui."""
    app = create_app(lambda: load_pipeline(settings, sync=sync, progress=True), on_ready)
    ui = build_ui(lambda: app.state.pipeline)
    return gr.mount_gradio_app(app, ui, path="/ui", css=CSS, footer_links=["api"])


def serve(settings: Settings, host: str, port: int, sync: bool = True) -> None:
    """Serve until interrupted, printing the URLs once ready."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    base = f"http://{host}:{port}"
    app = create_server_app(settings, sync=sync, on_ready=lambda: print(
        f"\n  UI:   {base}/ui\n  API:  {base}/ask  (docs: {base}/docs)\n", flush=True))
    uvicorn.run(app, host=host, port=port, log_level="warning")
