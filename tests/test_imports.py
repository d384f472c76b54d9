"""``import rag``, ``import index`` and the bottom packages stay light: no torch, faiss, sentence_transformers or
ray (index.distributed imports ray inside its functions)."""
import subprocess
import sys

import pytest

HEAVY = ("torch", "faiss", "sentence_transformers", "transformers", "gradio", "ray")


@pytest.mark.parametrize("module", ["rag", "index", "rag.settings", "index.types", "common.errors", "common.text",
                                    "common.sentences", "common.citations", "e5convert", "rag.types", "newsrag.cli",
                                    "index.distributed"])
def test_import_is_light(module):
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {module} loaded {out.stdout.strip()}"
