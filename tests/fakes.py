"""Fakes for unit tests of logic: a scripted backend registered like the real ones."""
from rag.backends import Generation, register


class ScriptedBackend:
    """Answers with a fixed script; records the requests it saw."""

    name = "scripted"

    def __init__(self, text="Réponse scriptée [1]"):
        self.text, self.requests = text, []

    def generate(self, request):
        self.requests.append(request)
        return Generation(self.text, highlights={1: [(0, 5)]}, model="script")


@register("scripted")
def _factory(settings, embedder):
    return ScriptedBackend()


def fake_corpus_pipeline(index_dir):
    """A pipeline over the bundled corpus with the deterministic FakeEmbedder (no model to load)."""
    from index.build import update_index
    from index.chunker import Chunker
    from index.embedder import FakeEmbedder
    from index.loaders import load_articles
    from index.store import IndexStore
    from rag.pipeline import Pipeline
    from rag.settings import Settings

    settings = Settings(index_dir=index_dir, embedding_model="fake:64", abstain_threshold=0.1)
    emb = FakeEmbedder(64)
    data, _ = update_index(IndexStore(settings.index_dir), emb, Chunker(), load_articles(["corpus"]))
    return Pipeline(settings, emb, data)
