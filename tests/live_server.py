"""A real uvicorn on 127.0.0.1 (a free port) in a thread, for tests that talk HTTP; and a call of a
Gradio event straight through its queue, as a client that bypasses the page would make it."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid

import httpx
import uvicorn


@contextlib.contextmanager
def live_server(app, timeout: float = 60.0):
    """Serve ``app`` on a free loopback port until the block exits; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start; see the log above")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def queue_call(base_url: str, elem_id: str, data_for) -> str:
    """Call the event behind the button ``elem_id`` of the Gradio UI at ``base_url/ui`` as an attacker
    would: straight through Gradio's queue (``/ui/gradio_api/queue/join`` with the event's ``fn_index``),
    not through the page. ``data_for(input components)`` gives the values; returns the status line the
    handler answered."""
    config = httpx.get(f"{base_url}/ui/config", timeout=30).json()
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"] if c.get("props")}
    fn_index, dep = next((i, d) for i, d in enumerate(config["dependencies"])
                         if [ids[elem_id], "click"] in [list(t) for t in d["targets"]])
    session = uuid.uuid4().hex[:10]
    data = data_for([next(c for c in config["components"] if c["id"] == i) for i in dep["inputs"]])
    joined = httpx.post(f"{base_url}/ui/gradio_api/queue/join", timeout=30,
                        json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None,
                              "trigger_id": ids[elem_id]})
    assert joined.status_code == 200, joined.text
    with httpx.stream("GET", f"{base_url}/ui/gradio_api/queue/data", params={"session_hash": session},
                      timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message["output"]["data"][0]
    raise AssertionError("the queue never completed the event")
