"""Archives on a Ray cluster: the passages of an update embedded by a pool of Ray actors, committed here.

The articles are read and chunked on the driver (the machine that runs ``rag index --ray``), against the
live version, so only what the update would embed anyway is sent (``passages_to_embed``). Ray Data carries
the passage texts to an actor pool, one embedding model loaded per actor (``PassageActor``), and the
vectors come back in the passages' order. The write is then the usual one (``update_index``: one atomic
commit under the writer lock), with an embedder that hands it the vectors computed on the cluster
(``Precomputed``); anything else it asks for is embedded here.

A killed actor process (a node lost, out of memory, ``kill -9``) is restarted by Ray and its batches are
run again, up to ``RETRIES`` times each; an exception raised by the model is not retried. Every passage
must come back, or nothing is written.

Ray is imported inside the functions: ``import index`` never imports it (it is the optional ``ray`` extra).
"""
from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from common.errors import InputError, ModelError
from index.build import UpdateReport, passages_to_embed, same_url, update_index
from index.chunker import Chunker
from index.duplicates import THRESHOLD as DUPLICATE_THRESHOLD
from index.embedder import Embedder, load_embedder
from index.store import IndexData, IndexStore
from index.types import Article

BATCH_ROWS = 64  # passages per Ray task: a killed actor loses at most this much work
RETRIES = 3  # restarts of a killed actor, and runs again of a batch it held
ACTOR_START_S = 600  # for every actor to be placed and load its model before the first batch is sent
CONNECT_TIMEOUT_S = 5.0  # ray.init waits minutes on an address where nothing listens: a plain TCP look first
INSTALL_HINT = "pip install -c constraints.txt -e '.[ray]'"


class PassageActor:
    """One Ray actor's embedder: the project's model for ``spec``, loaded once when the actor starts, from
    the node's own cache (its ``RAG_CACHE_DIR``, else ``~/.cache/newsrag``); ``__call__`` embeds a batch."""

    def __init__(self, spec: str, options: dict):
        started = time.perf_counter()
        self.embedder = load_embedder(spec, **options)
        self.pid, self.load_s = os.getpid(), time.perf_counter() - started

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{"i", "text"}`` -> ``{"i", "vector", "pid", "node", "load_s", "embed_s"}``: passage vectors, who
        made them, how long the actor took to load its model and (per passage) to embed the batch."""
        import ray

        started = time.perf_counter()
        vectors = self.embedder.embed([str(t) for t in batch["text"]], kind="passage")
        n, node = len(vectors), ray.get_runtime_context().get_node_id()
        return {"i": batch["i"], "vector": vectors, "pid": np.full(n, self.pid), "node": np.full(n, node),
                "load_s": np.full(n, self.load_s), "embed_s": np.full(n, (time.perf_counter() - started) / n)}


@dataclass
class RayRun:
    """What the cluster did for an update: passages embedded, by how many actors on how many nodes."""

    address: str
    passages: int = 0
    seconds: float = 0.0  # the Ray pipeline, actors' start and model loading included
    load_s: float = 0.0  # the longest time an actor took to load its model
    embed_s: float = 0.0  # time the actors spent embedding, added up
    actors: int = 0  # actor processes that returned vectors (a restarted actor is a new process)
    pids: list[int] = field(default_factory=list)  # their process ids
    nodes: int = 0  # nodes those actors ran on
    cluster_nodes: int = 0
    cluster_cpus: int = 0

    @property
    def per_second(self) -> float:
        """Passages (chunks) embedded per second."""
        return self.passages / self.seconds if self.seconds else 0.0

    @property
    def per_actor_second(self) -> float:
        """Passages per second of one actor's embedding, model loaded: what each actor adds to a large
        archive, where loading is paid once."""
        return self.passages / self.embed_s if self.embed_s else 0.0

    def summary(self) -> str:
        """One line for people."""
        if not self.passages:
            return f"Ray cluster at {self.address}: nothing to embed"
        return (f"Ray cluster at {self.address} ({self.cluster_nodes} nodes, {self.cluster_cpus} CPUs): "
                f"{self.passages} chunks embedded by {self.actors} actor(s) on {self.nodes} node(s) in "
                f"{self.seconds:.1f} s: {self.per_second:.1f} chunks/s (models loaded in up to {self.load_s:.1f} s; "
                f"then {self.per_actor_second:.1f} chunks/s per actor)")

    def to_dict(self) -> dict:
        """The run as JSON-ready fields, chunks/s included."""
        return {**asdict(self), "chunks_per_s": round(self.per_second, 2),
                "chunks_per_actor_s": round(self.per_actor_second, 2)}


class Precomputed:
    """An embedder holding passage vectors computed elsewhere (on the cluster). Anything it does not hold (a
    query, a passage another writer's commit made necessary) goes to ``fallback()``, loaded when first needed."""

    def __init__(self, name: str, dim: int, vectors: dict[str, np.ndarray], fallback: Callable[[], Embedder]):
        self.name, self.dim, self.vectors = name, dim, vectors
        self._fallback, self._local = fallback, None
        self.local_texts = 0  # texts embedded here, not on the cluster

    def embed(self, texts: Sequence[str], kind: str = "passage") -> np.ndarray:
        """One vector per text: the cluster's for a passage it embedded, else the local model's."""
        texts = list(texts)
        found = {t: self.vectors[t] for t in texts if kind == "passage" and t in self.vectors}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            self._local = self._local or self._fallback()
            self.local_texts += len(missing)
            found.update(zip(missing, self._local.embed(missing, kind=kind)))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[t] for t in texts]).astype(np.float32, copy=False)


def connect(address: str) -> bool:
    """Join the Ray cluster at ``address`` (``host:port`` of its head, or ``auto``); True when this call
    started the connection (and so should end it). An InputError, saying what to do, when Ray is not
    installed or no cluster answers there."""
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    if ray.is_initialized():
        return False
    _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InputError(f"the Ray cluster at {address!r} could not be joined ({_last_line(exc)}); a driver runs "
                         f"on a node of the cluster: join this machine first (`ray start --address {address} "
                         "--num-cpus 0`), or run the command on the head") from None
    return True


def _check_reachable(address: str) -> None:
    """Refuse at once an address where nothing listens (ray.init would retry it for minutes)."""
    if address == "auto":
        try:  # where ray.init(address="auto") would go: RAY_ADDRESS, else this machine's last `ray start`
            from ray._private.services import canonicalize_bootstrap_address

            address = canonicalize_bootstrap_address("auto")
        except (ImportError, ConnectionError, ValueError) as exc:
            raise InputError(f"--ray auto: no Ray cluster found on this machine ({exc}); start one with "
                             "`ray start --head`, or give its head's HOST:PORT") from None
        if address is None:
            raise InputError("--ray auto: no Ray cluster found on this machine; start one with "
                             "`ray start --head`, or give its head's HOST:PORT")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray {address!r}: give the head's HOST:PORT (e.g. 10.0.0.5:6379) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise InputError(f"no Ray cluster answered at {address} ({exc}); start its head with "
                         f"`ray start --head --port {port}` there, or check the address") from None


def embed_passages(texts: list[str], spec: str, options: dict, actors: int | None = None,
                   batch_rows: int = BATCH_ROWS, actor: type = PassageActor,
                   address: str = "") -> tuple[np.ndarray, RayRun]:
    """The passage vectors of ``texts``, in their order, computed on the connected Ray cluster by
    ``actors`` actors (default: one per CPU of the cluster), each with its own ``actor(spec, options)``."""
    import ray

    run = RayRun(address, len(texts), cluster_nodes=len([n for n in ray.nodes() if n.get("Alive")]),
                 cluster_cpus=int(ray.cluster_resources().get("CPU", 0)))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), run
    size = actors or max(1, run.cluster_cpus)
    if size > run.cluster_cpus:
        raise InputError(f"{size} embedding actors need {size} CPUs and the Ray cluster at {address} has "
                         f"{run.cluster_cpus}: ask for fewer (--ray-actors) or add nodes")
    started = time.perf_counter()
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for an actor's restarts and task retries, only the deprecated
        # **ray_remote_args (removed in 2.64): constraints.txt pins the version this is tested with. And
        # copying a DataContext sets its deprecated fields, each copy warning about them.
        warnings.filterwarnings("ignore", message=r"`ray_remote_args` is deprecated")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.data\.context")
        pipeline = _pipeline(texts, spec, options, size, batch_rows, actor)
        vectors, workers = _collect(pipeline, len(texts), run)
    run.seconds = time.perf_counter() - started
    run.pids, run.actors = sorted({pid for _, pid in workers}), len(workers)
    run.nodes = len({node for node, _ in workers})
    return vectors, run


def _pipeline(texts: list[str], spec: str, options: dict, size: int, batch_rows: int, actor: type):
    """The Ray Data pipeline: passages ``{"i", "text"}`` through a pool of ``size`` actors of one CPU."""
    import ray.data

    rows = max(1, min(batch_rows, -(-len(texts) // (2 * size))))  # a small update still reaches every actor
    items = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)],
                                override_num_blocks=-(-len(texts) // rows))  # a block per task
    items.context.wait_for_min_actors_s = ACTOR_START_S  # not every batch to the first actor that is ready
    return items.map_batches(actor, fn_constructor_args=(spec, options), batch_size=rows,
                             compute=ray.data.ActorPoolStrategy(size=size), num_cpus=1,
                             max_restarts=RETRIES, max_task_retries=RETRIES)


def _collect(pipeline, count: int, run: RayRun) -> tuple[np.ndarray, set[tuple[str, int]]]:
    """The pipeline's vectors in passage order, and the (node, pid) of the actors that made them (their
    times added to ``run``); a ModelError unless every passage came back."""
    import ray

    vectors, seen, workers = None, np.zeros(count, dtype=np.int64), set()
    try:
        for batch in pipeline.iter_batches(batch_format="numpy", batch_size=None):
            if vectors is None:
                vectors = np.zeros((count, batch["vector"].shape[1]), dtype=np.float32)
            vectors[batch["i"]] = batch["vector"]
            run.embed_s += float(batch["embed_s"].sum())
            run.load_s = max(run.load_s, float(batch["load_s"].max()))
            np.add.at(seen, batch["i"], 1)
            workers.update(zip(map(str, batch["node"]), map(int, batch["pid"])))
    except ray.exceptions.RayError as exc:
        raise ModelError(f"embedding on the Ray cluster failed, nothing was written: {_last_line(exc)}") from exc
    # A passage twice (a retried task whose first run had streamed part of its output) has the same vector
    # twice: the same text through the same model. One missing is an error.
    if vectors is None or not (seen >= 1).all():
        raise ModelError(f"the Ray cluster returned {int((seen >= 1).sum())} of {count} passages; "
                         "nothing was written: run the command again")
    return vectors, workers


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def index_on_ray(store: IndexStore, address: str, spec: str, options: dict, chunker: Chunker,
                 articles: Iterable[Article], fallback: Callable[[], Embedder], delete: Iterable[str] = (),
                 prune_under: Iterable[str] | None = None, rebuild: bool = False,
                 duplicate_threshold: float = DUPLICATE_THRESHOLD, actors: int | None = None,
                 batch_rows: int = BATCH_ROWS, actor: type = PassageActor
                 ) -> tuple[IndexData, UpdateReport, RayRun]:
    """``update_index`` with the update's new passages embedded on the Ray cluster at ``address``: the live
    version is read (and checked against ``spec`` and the chunker) first, the passages it lacks are embedded
    there, and the commit is the usual one. ``fallback()`` gives a local embedder for anything else."""
    articles, delete = list(articles), list(delete)
    snapshot = None
    if store.exists() and not rebuild:  # checked now, not after an hour of embedding
        snapshot = store.load(expect={"model": spec, "normalized": True, "chunker": chunker.settings()}, lazy=True)
    planned = same_url(snapshot, articles, set(delete))[0] if snapshot is not None else articles
    texts = passages_to_embed(snapshot, planned, chunker)
    vectors, run = np.zeros((0, 0), dtype=np.float32), RayRun(address)
    if texts:  # an update that embeds nothing (all unchanged, deletions only) does not need the cluster
        owned = connect(address)
        try:
            vectors, run = embed_passages(texts, spec, options, actors, batch_rows, actor, address)
        finally:
            if owned:
                import ray

                ray.shutdown()
    dim = vectors.shape[1] if texts else (snapshot.manifest["dimension"] if snapshot is not None else None)
    embedder = Precomputed(spec, dim if dim is not None else fallback().dim, dict(zip(texts, vectors)), fallback)
    data, report = update_index(store, embedder, chunker, articles, delete=delete, prune_under=prune_under,
                                rebuild=rebuild, reuse=snapshot, duplicate_threshold=duplicate_threshold)
    return data, report, run
