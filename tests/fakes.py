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
