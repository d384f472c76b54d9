"""Citation verification: sentence cutting, removed and moved citations, dropped and flagged sentences."""
import pytest

from index.embedder import FakeEmbedder
from index.types import Chunk
from rag.citecheck import Verifier
from rag.types import Hit

P1 = "Microsoft a investi 13 milliards de dollars dans OpenAI depuis 2019. Satya Nadella dirige Microsoft."
P2 = "La ratatouille se cuit lentement au four. Elle contient des aubergines et des courgettes."
MS = "Microsoft a investi 13 milliards de dollars dans OpenAI depuis 2019."
RATA = "La ratatouille se cuit lentement au four."


def hits(*texts, language="fr"):
    return tuple(Hit(Chunk(f"c{i}", f"a{i}", "T", t, 0, len(t), language=language), 0.9) for i, t in enumerate(texts))


@pytest.fixture(scope="module")
def verifier():
    return Verifier(FakeEmbedder(64))


def check(verifier, text, *texts):
    return verifier.checker(hits(*(texts or (P1, P2))), "fr").check(text)


def test_supported_sentences_pass_unchanged_and_are_highlighted(verifier):
    result = check(verifier, f"{MS} [1] {RATA} [2]")
    assert result.text == f"{MS} [1] {RATA} [2]" and not result.notes
    assert (result.kept, result.dropped) == (2, 0)
    assert [P1[a:b] for a, b in result.highlights[1]] == [MS]
    assert [P2[a:b] for a, b in result.highlights[2]] == [RATA]


@pytest.mark.parametrize("text", [f"{MS[:-1]} [1].", f"{MS} [1]", f"{MS}[1]", f"{MS} [ 1 ]", f"{MS} [passage 1]"])
def test_citation_marks_before_or_after_the_full_stop(verifier, text):
    assert check(verifier, f"{text} {RATA} [2]").text == f"{MS} [1] {RATA} [2]"


def test_marks_listed_together_are_each_verified(verifier):
    result = check(verifier, f"{MS} [1, 2]")
    assert result.text == f"{MS} [1]"
    assert result.notes == ["sentence 1: removed citation [2]: that passage does not support it"]


def test_unknown_passages_are_removed(verifier):
    result = check(verifier, f"{MS} [1][3][0]")
    assert result.text == f"{MS} [1]"
    assert result.notes == ["sentence 1: removed citation [0][3]: there is no such passage (the answer had 2)"]


def test_wrong_and_missing_citations_are_corrected(verifier):
    result = check(verifier, f"{MS} [2] {RATA}")
    assert result.text == f"{MS} [1] {RATA} [2]"
    assert result.notes == ["sentence 1 cited [2] but is supported by [1]; citation corrected",
                            "sentence 2 had no citation; cited [2]; citation corrected"]


@pytest.mark.parametrize("claim", [
    "Microsoft a investi 14 milliards de dollars dans OpenAI depuis 2019.",  # a number the passage lacks
    "Selon Google, Microsoft a investi 13 milliards de dollars dans OpenAI.",  # a name the passage lacks
    "Les pingouins mangent des sardines en hiver.",  # nothing in common
])
def test_unsupported_sentences_are_dropped(verifier, claim):
    result = check(verifier, f"{MS} [1] {claim} [1]")
    assert result.text == f"{MS} [1]" and result.dropped == 1
    assert result.notes[0].startswith("sentence 2 was dropped: no passage supports it")


def test_flag_mode_keeps_unsupported_sentences_and_says_so():
    flagging = Verifier(FakeEmbedder(64), mode="flag")
    result = flagging.checker(hits(P1, P2), "fr").check(f"{MS} [1] Les pingouins mangent des sardines [2].")
    assert result.text == f"{MS} [1] Les pingouins mangent des sardines. [2]" and result.flagged == 1
    assert "sentence 2 is not supported by the passages (flagged)" in result.notes[0]


def test_list_numbers_are_not_sentences(verifier):
    result = check(verifier, f"1. {MS} [1]\n2. {RATA} [2]")
    assert result.text == f"{MS} [1] {RATA} [2]" and not result.notes


def test_abstention_needs_no_citation(verifier):
    result = check(verifier, f"{MS} [1] Les articles ne disent pas pourquoi.")
    assert result.text == f"{MS} [1] Les articles ne disent pas pourquoi." and not result.notes


def test_streamed_pieces_give_the_same_result_as_the_whole(verifier):
    text = f"{MS} [2]. {RATA}[2][5] Les pingouins mangent des sardines [1].\n- Satya Nadella dirige Microsoft. [1]"
    whole = check(verifier, text)
    checker = verifier.checker(hits(P1, P2), "fr")
    emitted = "".join(checker.feed(text[i:i + 3]) for i in range(0, len(text), 3))
    assert emitted != whole.text, "the last sentence waits for the end of the stream"
    streamed = checker.close()
    assert streamed.text == whole.text and streamed.notes == whole.notes
    assert whole.text == f"{MS} [1] {RATA} [2]\n- Satya Nadella dirige Microsoft. [1]"


@pytest.mark.slow
def test_real_embeddings_accept_a_translation_and_reject_fabrications(embedder):
    """Across languages words rarely match: stems of either language, then the embedding decide."""
    french = ("Selon le Wall Street Journal, OpenAI et Microsoft seraient en train de renégocier les termes "
              "financiers et stratégiques de leur accord. En cause : la part de contrôle indirecte de Microsoft.")
    checker = Verifier(embedder).checker(hits(french), "en")
    assert checker.support("According to the Wall Street Journal, OpenAI and Microsoft are renegotiating "
                           "the financial and strategic terms of their agreement.", 1).ok
    ended = checker.support("The Wall Street Journal says OpenAI and Microsoft have ended their agreement.", 1)
    assert not ended.ok and ended.cosine is not None, "decided by the embedding, which is not close enough"
    paid = checker.support("According to the Wall Street Journal, Microsoft paid 20 billion dollars.", 1)
    assert not paid.ok and paid.missing == ("20",)
    resigned = checker.support("Satya Nadella a démissionné de Microsoft selon le Wall Street Journal.", 1)
    assert not resigned.ok and resigned.missing == ("Nadella",), ("a name the passage lacks "
                                                                  "(the first word is not checked)")
