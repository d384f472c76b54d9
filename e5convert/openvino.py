"""Compile a torch model once into OpenVINO with int8 weights: the e5 encoder and the reader's network.

OpenVINO with its weights compressed to int8 (``nncf.compress_weights``, asymmetric, one scale per output
channel) and f32 compute embedded PIAF chunks 2.1× as fast as torch fp32 on this machine, with vectors at
cosine 0.9998 of fp32's and the same nDCG@10 (README "Encoders side by side"); under load it degrades far
less than torch's two OpenMP threads. The conversion (``openvino.convert_model`` of the torch module, then
the compression) takes about 15 s and needs ``nncf``; the result is a folder of ``model.xml``/``model.bin``
and ``openvino.json`` (written last: its presence says the folder is whole), made in a temporary sibling
and renamed into place, as ``ensure_converted`` makes the e5 folder.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common.errors import ModelError
from e5convert.files import make_temp_dir, write_json

MARKER = "openvino.json"
COMPILER_VERSION = 1
# f32 explicitly: on CPUs with AVX512_BF16 OpenVINO would otherwise compute in bf16.
PRECISION = {"INFERENCE_PRECISION_HINT": "f32"}


def ensure_compiled(final: Path, build: Callable[[], tuple], about: dict) -> Path:
    """``final``, an OpenVINO folder of the module ``build()`` returns with its example inputs
    (``(module, (tensor, ...))``), made once; ``about`` goes into its marker file."""
    final = Path(final)
    if (final / MARKER).is_file():
        return final
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise ModelError(f"the openvino engine needs the openvino and nncf packages ({exc}); reinstall the "
                         "project (`make install`), or set RAG_ENGINE=torch") from exc
    tmp = make_temp_dir(final)
    try:
        started = time.perf_counter()
        with _stdout_to_stderr():  # nncf prints its statistics and progress: not into `rag ask --json`'s output
            module, example = build()
            model = nncf.compress_weights(ov.convert_model(module, example_input=example),
                                          mode=nncf.CompressWeightsMode.INT8_ASYM)
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        write_json(tmp / MARKER, {**about, "compiler_version": COMPILER_VERSION, "openvino": ov.__version__,
                                  "nncf": nncf.__version__, "weights": "int8 asymmetric, per channel",
                                  "seconds": round(time.perf_counter() - started, 1)})
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / MARKER).is_file():  # not a concurrent compiler's whole folder: a real failure
                raise
    except OSError as exc:
        raise ModelError(f"cannot write the compiled model {final}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def _stdout_to_stderr():
    """File descriptor 1 pointed at stderr for the block (what libraries print, from Python or C++)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def compile_for_cpu(folder: Path, threads: int = 0):
    """The folder's model compiled for the CPU: f32 compute; ``threads`` > 0: that many threads per
    inference and as many streams as fit the cores (concurrent requests each get their own)."""
    import openvino as ov

    config = dict(PRECISION)
    if threads > 0:
        config.update({"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": max(1, (os.cpu_count() or 1) // threads)})
    return ov.Core().compile_model(str(Path(folder) / "model.xml"), "CPU", config)


def e5_encoder(folder: Path) -> tuple:
    """The converted e5 folder's BertModel with mean pooling over the attention mask and L2 normalisation
    (the folder's sentence-transformers modules), and example inputs (ids, mask) to trace it with."""
    import torch
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    encoder = Encoder(AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval())
    ids = torch.tensor([[0, 5, 6, 7, 2, 1], [0, 8, 9, 10, 11, 2]])
    return encoder, (ids, (ids != 1).long())
