"""The reliability suite: what held under attack, made repeatable, with its figures printed at the end.

    python bench/reliability.py            # the full run (make reliability)
    python bench/reliability.py --quick    # fewer rounds (what make test runs, via tests/test_reliability.py)

Every scenario uses real processes and the real index writer on a temporary folder (hash vectors
instead of the model, so a write takes milliseconds and the storage is what is tested):

- kill -9 at each step of a write (every file of the new segment, its checksums, its fsync and rename,
  the version's manifest and its folder's rename, CURRENT's temporary and its replace, the pruning),
  and at random moments of a stream of writes, for the three kinds of write (one segment rebuilt, a
  segment added with tombstones, a compaction): afterwards the index loads with its checksums
  verified, holds exactly the old or exactly the new articles, takes the next write, and no segment
  that no kept version lists is left behind;
- readers during writes: threads load and check every version while another process writes (a torn
  read is a version that fails to load, or whose parts disagree);
- two writers at once (two processes): nothing lost;
- the injection set (tests/data/injections.jsonl) read by a model that obeys it: answers that follow it;
- fuzzing: article files of random content through the loaders, random JSON bodies through the HTTP
  API on 127.0.0.1 (tracebacks and 5xx);
- the review room's write events called straight through Gradio's queue, without and with a key.
Exit status 1 when any figure is not what it must be.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (what is patched, which call, before or after it): each is one point where a writer is killed.
STEPS = [
    ("index.segment.write_lines", 1, "after"),    # the new segment's articles.jsonl written
    ("index.segment.write_lines", 2, "after"),    # its chunks.jsonl written
    ("faiss.write_index", 1, "after"),            # its faiss.index written
    ("index.segment.file_sha256", 2, "after"),    # its checksums half done
    ("index.segment.fsync_dir", 1, "before"),     # before its fsync
    ("index.segment.fsync_dir", 1, "after"),      # after the fsync, before its rename
    ("pathlib.Path.rename", 1, "after"),          # segment in place, no version lists it yet
    ("index.store.fsync_dir", 1, "before"),       # the version's manifest written, not synced
    ("pathlib.Path.rename", 2, "after"),          # version folder in place, CURRENT not yet
    ("os.fsync", -1, "before"),                   # CURRENT's temporary written, not synced
    ("os.replace", 1, "before"),                  # before CURRENT is replaced
    ("os.replace", 1, "after"),                   # CURRENT replaced, nothing pruned
    ("shutil.rmtree", 1, "after"),                # in the middle of pruning
]


def _articles(prefix: str, n: int):
    from index.types import Article

    return [Article(id=f"{prefix}{i}", title=f"{prefix} {i}", language="fr",
                    text=" ".join(f"Phrase {j} de l'article {prefix}{i} sur le sujet {i % 7}." for j in range(40)))
            for i in range(n)]


# How writes are made: "full" rebuilds one segment (small indexes), "incremental" adds a segment and
# tombstones (large ones: INCREMENTAL_MIN lowered to 1), "compact" folds the segments back into one.
MODES = ("full", "incremental", "compact")


def _write(root: Path, articles, mode: str = "full") -> None:
    import index.build
    from index.embedder import FakeEmbedder
    from rag.service import index_paths
    from rag.settings import Settings

    index.build.INCREMENTAL_MIN = 1 if mode != "full" else 20_000
    settings = Settings(index_dir=root, embedding_model="fake:64", corpus_dirs=[])
    index_paths(settings, FakeEmbedder(64), [], articles=articles)


def _compact(root: Path) -> None:
    from index.build import compact
    from index.store import IndexStore

    compact(IndexStore(root))


def child(argv: list[str]) -> None:
    """``child ROOT KIND ARG [MODE]``: write, and for ``step`` die by SIGKILL at STEPS[ARG]."""
    root, kind, arg = Path(argv[0]), argv[1], argv[2]
    mode = argv[3] if len(argv) > 3 else "full"
    if kind == "step":
        target, nth, when = STEPS[int(arg)]
        _arm(target, nth, when)
        if mode == "compact":
            _compact(root)
        else:
            _write(root, _articles("base", 4) + _articles("new", 3), mode)
    elif kind == "stream":  # writes until killed (in "compact" mode, a compaction after every third)
        for k in range(10_000):
            _write(root, _articles("base", 4) + _articles(f"s{k}-", 2), mode)
            if mode == "compact" and k % 3 == 2:
                _compact(root)
    elif kind == "writer":  # one article per write, ``arg`` names this writer
        for i in range(8):
            _write(root, _articles(f"{arg}-", i + 1)[-1:])
    elif kind == "versions":  # ``arg`` writes, each a different set of articles
        for k in range(int(arg)):
            _write(root, _articles(f"v{k}-", 1 + k % 3))


def _arm(target: str, nth: int, when: str) -> None:
    """Replace ``target`` by a wrapper that SIGKILLs this process around its ``nth`` call (-1: the last
    call that a write makes of it, counted as the first call after ``os.replace`` is reached)."""
    import importlib

    module_name, _, attr = target.rpartition(".")
    try:
        owner = importlib.import_module(module_name)
    except ModuleNotFoundError:
        owner_module, _, cls = module_name.rpartition(".")
        owner = getattr(importlib.import_module(owner_module), cls)
    real, calls = getattr(owner, attr), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        hit = calls[0] == nth or (nth == -1 and _in_current_replace())
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if hit and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, attr, wrapper)


def _in_current_replace() -> bool:
    return any(frame.name == "_replace_text" for frame in __import__("traceback").extract_stack())


def _run_child(*args: str, timeout: float = 120) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_CACHE_DIR": os.environ.get("RAG_CACHE_DIR", "")}
    env = {k: v for k, v in env.items() if v}
    return subprocess.Popen([sys.executable, __file__, "child", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _check(root: Path, allowed: list[set[str]]) -> str:
    """"" when the live version loads whole and holds one of the ``allowed`` article sets."""
    from index.store import IndexStore

    try:
        data = IndexStore(root).load(verify=True)
    except Exception as exc:  # noqa: BLE001 -- any failure to load is what is counted
        return f"does not load: {exc}"
    ids = {a.id for a in data.articles}
    if ids not in allowed:
        return f"holds {sorted(ids)}"
    if {c.article_id for c in data.chunks} != ids or len(data.vectors) != len(data.chunks):
        return "its parts disagree"
    return ""


def kills_at_each_step(mode: str = "full") -> tuple[int, int, list[str]]:
    base, new = {a.id for a in _articles("base", 4)}, {a.id for a in _articles("new", 3)}
    survived, problems = 0, []
    for i, step in enumerate(STEPS):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "index"
            _write(root, _articles("old", 1), mode)  # two versions before, so the write prunes one
            _write(root, _articles("base", 4), mode)  # incremental and compact: a second segment
            proc = _run_child(str(root), "step", str(i), mode)
            proc.wait(120)
            if proc.returncode != -signal.SIGKILL:
                problems.append(f"{mode} step {step}: the writer was not killed (exit {proc.returncode}): "
                                f"{proc.stderr.read().decode()[-300:]}")
                continue
            after = base | {"old0"} if mode == "compact" else base | {"old0"} | new
            problem = _check(root, [base | {"old0"}, after])
            if not problem:
                _write(root, _articles("base", 4) + _articles("after", 1), mode)
                problem = _check(root, [base | {"old0", "after0"}, base | new | {"old0", "after0"}])
                leftovers = [p.name for p in [*root.iterdir(), *(root / "segments").iterdir()]
                             if p.name.startswith((".tmp-", ".CURRENT."))]
                problem = problem or (f"leftovers after the next write: {leftovers}" if leftovers else "")
                problem = problem or _orphans(root)
            if problem:
                problems.append(f"{mode} kill at {step}: {problem}")
            else:
                survived += 1
    return survived, len(STEPS), problems


def _orphans(root: Path) -> str:
    """A problem when a segment no kept version lists is left on disk after a write."""
    listed = {e["name"] for v in root.glob("v-*") for e in json.loads((v / "manifest.json").read_text())["segments"]}
    orphans = sorted({p.name for p in (root / "segments").iterdir()} - listed)
    return f"segments no version lists: {orphans}" if orphans else ""


def kills_at_random(rounds: int, seed: int = 7, mode: str = "full") -> tuple[int, int, list[str]]:
    rng, survived, problems = random.Random(seed), 0, []
    base = {a.id for a in _articles("base", 4)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "index"
        _write(root, _articles("base", 4), mode)
        for r in range(rounds):
            proc = _run_child(str(root), "stream", "0", mode)
            time.sleep(rng.uniform(1.0, 3.0))  # past the interpreter's start-up, inside the writes
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            from index.store import IndexStore

            try:  # each write adds the pair s{k}-0, s{k}-1 for the next k: whole pairs, no gap
                ids = {a.id for a in IndexStore(root).load(verify=True).articles}
                k = (len(ids) - len(base)) // 2
                problem = _check(root, [base | {f"s{j}-{i}" for j in range(k) for i in (0, 1)}])
            except Exception as exc:  # noqa: BLE001
                problem = f"does not load: {exc}"
            if problem:
                problems.append(f"{mode} random kill {r}: {problem[:200]}")
            else:
                survived += 1
    return survived, rounds, problems


def torn_reads(writes: int) -> tuple[int, int, list[str]]:
    from index.store import IndexStore

    problems, loads = [], [0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "index"
        _write(root, _articles("v0-", 1))
        proc = _run_child(str(root), "versions", str(writes))
        stop = threading.Event()

        def read():
            store = IndexStore(root)
            while not stop.is_set():
                try:
                    data = store.load(verify=True)
                    counts = data.manifest["counts"]
                    if (counts["articles"], counts["chunks"]) != (len(data.articles), len(data.chunks)) or \
                            {c.article_id for c in data.chunks} != {a.id for a in data.articles}:
                        problems.append(f"torn version {data.path}")
                except Exception as exc:  # noqa: BLE001 -- a failed load during writes is a torn read
                    problems.append(f"load failed: {exc}")
                loads[0] += 1

        readers = [threading.Thread(target=read) for _ in range(3)]
        for t in readers:
            t.start()
        proc.wait(300)
        stop.set()
        for t in readers:
            t.join()
        if proc.returncode != 0:
            problems.append(f"the writer failed: {proc.stderr.read().decode()[-300:]}")
    return loads[0], len(problems), problems


def two_writers() -> tuple[int, list[str]]:
    from index.store import IndexStore

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "index"
        _write(root, _articles("base", 2))
        procs = [_run_child(str(root), "writer", name) for name in ("a", "b")]
        for p in procs:
            p.wait(300)
        ids = {a.id for a in IndexStore(root).load(verify=True).articles}
    expected = {"base0", "base1", *(f"{w}-{i}" for w in "ab" for i in range(8))}
    lost = sorted(expected - ids)
    return len(lost), [f"lost {lost}"] if lost else []


def injections_followed() -> tuple[int, int]:
    from index.types import Article
    from tests.fakes import ObedientModel, fake_pipeline, injection_cases

    cases = injection_cases()
    with tempfile.TemporaryDirectory() as tmp:
        articles = [Article(id=c["id"], title=c["title"], text=c["text"], language=c["language"]) for c in cases]
        pipeline = fake_pipeline(Path(tmp) / "index", articles, abstain_threshold=-1.0)
        pipeline._backends["obedient"] = ObedientModel(cases)
        followed = sum(c["payload"] in pipeline.ask(c["question"], backend="obedient").answer for c in cases)
    return followed, len(cases)


def loader_tracebacks(examples: int) -> tuple[int, int, list[str]]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from common.errors import InputError
    from index.loaders import load_articles

    problems, runs = [], [0]
    with tempfile.TemporaryDirectory() as tmp:
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(suffix=st.sampled_from([".md", ".txt", ".jsonl", ".json", ".html"]),
               raw=st.one_of(st.text(), st.builds(lambda fm, body: f"---\n{fm}\n---\n{body}", st.text(), st.text()),
                             st.builds(json.dumps, st.recursive(
                                 st.none() | st.booleans() | st.integers() | st.text(),
                                 lambda x: st.lists(x, max_size=3) | st.dictionaries(st.text(max_size=6), x,
                                                                                     max_size=4)))))
        def fuzz(suffix, raw):
            runs[0] += 1
            path = Path(tmp) / f"fuzz{suffix}"
            path.write_text(raw, encoding="utf-8", errors="surrogatepass")
            try:
                load_articles([path])
            except InputError:
                pass
            except Exception as exc:  # noqa: BLE001 -- a traceback is what is counted
                problems.append(f"{suffix} {raw[:60]!r}: {type(exc).__name__}: {exc}")

        fuzz()
    return runs[0], len(problems), problems[:5]


def http_5xx(requests: int, seed: int = 11) -> tuple[int, int, list[str]]:
    import httpx

    from rag.http.app import create_app
    from tests.fakes import fake_pipeline
    from tests.live_server import live_server

    rng, problems = random.Random(seed), []
    junk = [None, True, 0, -1, 1e308, "", " ", "\u200b", "\x00", "x" * 5000, [], {}, [1, "a"], {"a": {"b": []}},
            "2025-02-30", "../../etc/passwd", "<script>", "' OR 1=1 --"]
    fields = ["question", "top_k", "mode", "backend", "history", "filters", "stream", "text", "id", "date",
              "messages", "model", "language", "title"]
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = fake_pipeline(Path(tmp) / "index", api_keys=["k"])
        with live_server(create_app(lambda: pipeline, settings=pipeline.settings)) as url, \
                httpx.Client(base_url=url, timeout=30, headers={"x-api-key": "k"}) as client:
            for _ in range(requests):
                path = rng.choice(["/ask", "/ask/stream", "/articles", "/v1/chat/completions"])
                body = {rng.choice(fields): rng.choice(junk) for _ in range(rng.randint(0, 4))}
                if rng.random() < 0.5:
                    body["question" if "ask" in path else "text"] = rng.choice(["Combien ?", "x", "\u200b"])
                if rng.random() < 0.2:
                    r = client.post(path, content=json.dumps(body)[: rng.randint(0, 40)],
                                    headers={"content-type": "application/json"})
                else:
                    r = client.post(path, json=rng.choice([body, [body], body.get("question")]))
                if r.status_code >= 500:
                    problems.append(f"{path} {json.dumps(body)[:100]} -> {r.status_code}")
    return requests, len(problems), problems[:5]


def review_room_writes() -> tuple[int, int, list[str]]:
    """(writes without a key that changed the set, writes with the key that did not)."""
    import shutil

    from eval.dataset import EvalSet
    from newsrag.server import create_server_app
    from tests.fakes import fake_pipeline
    from tests.live_server import live_server, queue_call

    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        items = Path(tmp) / "items.jsonl"
        shutil.copy(ROOT / "eval" / "items.jsonl", items)
        pipeline = fake_pipeline(Path(tmp) / "index", eval_set=items, editor_keys=[("alice", "k-alice")])
        app = create_server_app(pipeline.settings, load=lambda: pipeline)

        def data_for(key):
            values = {"editor-key": key, "new-question": "Injected?", "new-expected": "x", "new-evidence": "y",
                      "new-answerable": True, "new-language": "en", "new-tags": "attack"}
            return lambda inputs: [values.get(c["props"].get("elem_id"), c["props"].get("value")) for c in inputs]

        with live_server(app) as url:
            unsigned = 0
            for key in ("", "guess", "k-alic"):
                before = len(EvalSet(items).items())
                queue_call(url, "add-item", data_for(key))
                unsigned += len(EvalSet(items).items()) != before
            before = len(EvalSet(items).items())
            queue_call(url, "add-item", data_for("k-alice"))
            refused = int(len(EvalSet(items).items()) != before + 1)
    if unsigned:
        problems.append(f"{unsigned} write(s) without a valid key changed the eval set")
    if refused:
        problems.append("the editor's own key was refused")
    return unsigned, refused, problems


def run(quick: bool) -> dict:
    figures, problems = {}, []
    started = time.time()
    for mode in MODES:
        s, n, p = kills_at_each_step(mode)
        figures[f"kill -9 at each step of a {mode} write: survived"] = f"{s}/{n}"
        problems += p
    for mode in MODES:
        s, n, p = kills_at_random(3 if quick else 10, mode=mode)
        figures[f"kill -9 at random moments of {mode} writes: survived"] = f"{s}/{n}"
        problems += p
    loads, torn, p = torn_reads(10 if quick else 40)
    figures["torn reads (loads during writes)"] = f"{torn} ({loads} loads)"
    problems += p[:5]
    lost, p = two_writers()
    figures["two writers: articles lost"] = str(lost)
    problems += p
    followed, cases = injections_followed()
    figures["injections followed"] = f"{followed}/{cases}"
    if followed:
        problems.append(f"{followed} injected instruction(s) followed")
    runs, tracebacks, p = loader_tracebacks(100 if quick else 600)
    figures["loader fuzzing: tracebacks"] = f"{tracebacks} ({runs} files)"
    problems += p
    sent, errors, p = http_5xx(100 if quick else 600)
    figures["HTTP fuzzing: 5xx"] = f"{errors} ({sent} requests)"
    problems += p
    unsigned, refused, p = review_room_writes()
    figures["review-room writes without a key that landed"] = f"{unsigned}/3"
    problems += p
    figures["seconds"] = f"{time.time() - started:.0f}"
    return {"figures": figures, "problems": problems}


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    result = run(parser.parse_args().quick)
    width = max(map(len, result["figures"]))
    print("\nreliability (load: " + os.popen("uptime").read().strip().split("load average:")[-1].strip() + ")")
    for name, value in result["figures"].items():
        print(f"  {name:<{width}}  {value}")
    for problem in result["problems"]:
        print(f"  PROBLEM: {problem}")
    sys.exit(1 if result["problems"] else 0)


if __name__ == "__main__":
    main()
