"""Near-miss checks: names, numbers and answer types the passages must cover."""
import numpy as np
import pytest

from rag.coverage import (
    found_across_languages,
    has_date,
    has_number,
    missing_terms,
    question_names,
    wants_amount,
    wants_date,
)

PASSAGES = [
    "Depuis 2019, Microsoft et OpenAI ont construit une relation stratégique solide, reposant sur un "
    "investissement massif de Microsoft (estimé à 13 milliards de dollars cumulés).",
    "OpenAI pourrait aller jusqu’à solliciter les autorités américaines pour une révision du contrat.",
    "Face à des concurrents comme Anthropic, Mistral AI, ou Meta. Le 24 juin 2025, Sam Altman a parlé.",
]


@pytest.mark.parametrize("question, missing", [
    ("Combien Google a-t-il investi dans OpenAI ?", ["Google"]),
    ("Combien Amazon a-t-il investi dans Anthropic ?", ["Amazon"]),
    ("How much did Google invest in Anthropic?", ["Google"]),
    ("What did Elon Musk say about the OpenAI-Microsoft partnership?", ["Elon", "Musk"]),
    ("Combien Microsoft a-t-il investi dans OpenAI en 2023 ?", ["2023"]),
    ("Combien Microsoft a-t-il investi dans OpenAI ?", []),
    ("How much has Microsoft invested in OpenAI since 2019?", []),
    ("What could OpenAI ask the American authorities to do?", []),
    ("Qui a fondé Mistral AI ?", []),
    ("Que s'est-il passé le 24 juin 2025 ?", []),
    ("Quels concurrents d’OpenAI l’article cite-t-il ?", []),
])
def test_missing_terms(question, missing):
    assert missing_terms(question, PASSAGES) == missing


def test_question_names_skip_question_words():
    assert (question_names("Pourquoi Sam Altman a-t-il parlé avec Satya Nadella ?")
            == ["Sam", "Altman", "Satya", "Nadella"])
    assert question_names("Quel est le prix de l'abonnement à Copilot ?") == ["Copilot"]
    assert question_names("Microsoft pourrait-il se passer d’OpenAI ?") == ["Microsoft", "OpenAI"]


@pytest.mark.parametrize("question, amount, date", [
    ("Combien d'employés compte OpenAI ?", True, False),
    ("À combien est estimée la valorisation d'OpenAI ?", True, False),
    ("Quel pourcentage des revenus revient à OpenAI ?", True, False),
    ("How many users does ChatGPT have?", True, False),
    ("Depuis quand Microsoft et OpenAI sont-ils partenaires ?", False, True),
    ("When did Sam Altman talk with Satya Nadella?", False, True),
    ("Pourquoi Sam Altman a-t-il parlé avec Satya Nadella ?", False, False),
])
def test_answer_types(question, amount, date):
    assert wants_amount(question) is amount and wants_date(question) is date


def test_sentence_types():
    assert has_number("estimé à 13 milliards de dollars") and not has_number("un investissement massif")
    assert (has_date("Le 24 juin 2025, Sam Altman") and has_date("Depuis 2019, Microsoft")
            and not has_date("13 milliards"))


@pytest.mark.parametrize("sentence, number, date", [
    ("Les urgences ne comptent plus que neuf urgentistes titulaires.", True, False),
    ("Forty of the farm's 62 turbines have been installed.", True, False),
    ("C'est son quatorzième but de la saison.", True, False),
    ("Tahert devient la capitale en 761.", True, True),
    ("Les aboiteaux sont construits au XVIe siècle.", False, True),
    ("Le PDG a récemment confirmé qu'il s'était entretenu avec Satya Nadella.", False, False),
    ("Louis XIV est roi.", False, False),
])
def test_numbers_and_times_in_words(sentence, number, date):
    assert has_number(sentence) is number and has_date(sentence) is date


@pytest.mark.parametrize("question, date", [
    ("Quand la cloche est-elle ramenée d'Amsterdam ?", True),
    ("L'espèce a été découverte quand ?", True),
    ("À partir de quand la neurologie a-t-elle commencé ?", True),
    ("Quel âge avait Harry Potter quand on lui a offert Chouette ?", False),
    ("Que faire pour se protéger du soleil quand on a la peau claire ?", False),
    ("In which year did the strike end?", True),
])
def test_quand_asks_when_at_the_start_or_the_end(question, date):
    assert wants_date(question) is date


ENGLISH = ["The parliament of the Netherlands passed the law. German farmers protested in London."]


@pytest.mark.parametrize("question, missing, found", [
    ("Quand le parlement des Pays-Bas a-t-il voté ?", [], {"Pays-Bas": "Netherlands"}),
    ("Qu'ont dit les agriculteurs à Londres ?", [], {"Londres": "London"}),
    ("Qu'ont dit les agriculteurs Allemands ?", [], {"Allemands": "German"}),
    ("Quand le parlement de la Belgique a-t-il voté ?", ["Belgique"], {}),
])
def test_names_are_found_under_their_cldr_names_across_languages(question, missing, found):
    before = missing_terms(question, ENGLISH)
    assert before, "the literal check misses them"
    assert found_across_languages(question, before, ENGLISH) == (missing, found)


def test_the_embedder_is_the_second_chance_and_only_for_words_of_the_same_letter():
    asked = []

    axes = {"Swiss": 0, "suisses": 0, "Swedish": 1, "sociétés": 2}

    def embed(texts, kind):
        asked.append((kind, list(texts)))
        return np.eye(3)[[axes[t] for t in texts]]

    passages = ["Les banques suisses et les sociétés allemandes conservent de l'or."]
    assert found_across_languages("How much gold do Swiss banks keep?", ["Swiss"], passages, embed) == (
        [], {"Swiss": "suisses"})
    assert ("passage", ["suisses", "sociétés"]) in asked
    assert found_across_languages("How much gold do Swedish banks keep?", ["Swedish"], passages, embed) == (
        ["Swedish"], {})


def test_a_hyphenated_name_is_reported_whole():
    assert missing_terms("Quand le parlement des Pays-Bas a-t-il voté ?", ["Le parlement a voté en bas de page."]) == [
        "Pays-Bas"]
