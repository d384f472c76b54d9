"""Time in questions: periods and "the latest" read from French and English words; dates in answers."""
import datetime as dt

import pytest

from common.citations import strip_attribution
from rag.when import according_to, spoken_date, time_scope, without_time_words

TODAY = dt.date(2025, 7, 15)  # a Tuesday


@pytest.mark.parametrize("question, start, end", [
    ("Qu'a décidé la mairie cette semaine ?", "2025-07-09", "2025-07-15"),
    ("What did the council decide this week?", "2025-07-09", "2025-07-15"),
    ("Que s'est-il passé la semaine dernière ?", "2025-07-07", "2025-07-13"),
    ("What happened last month?", "2025-06-01", "2025-06-30"),
    ("Qu’annonçait-on le mois dernier ?", "2025-06-01", "2025-06-30"),
    ("Quel était le bilan en 2024 ?", "2024-01-01", "2024-12-31"),
    ("What was announced in March 2025?", "2025-03-01", "2025-03-31"),
    ("Que disait-on en mars ?", "2025-03-01", "2025-03-31"),
    ("Que prévoyait-on en décembre ?", "2024-12-01", "2024-12-31"),  # the last December, not the next
    ("Qu'est-ce qui a changé l'an dernier ?", "2024-01-01", "2024-12-31"),
    ("Quelles décisions ces 10 derniers jours ?", "2025-07-05", "2025-07-15"),
    ("What was said before 2025?", "", "2024-12-31"),
    ("Qu'a-t-on appris depuis juin ?", "2025-06-01", ""),
    ("What has changed since 2024?", "2024-01-01", ""),
])
def test_a_named_period_becomes_a_range_of_publication_dates(question, start, end):
    scope = time_scope(question, TODAY)
    assert (scope.date_from, scope.date_to) == (start, end)
    assert scope.period and scope.words


@pytest.mark.parametrize("question", [
    "Quel est le dernier bilan des inondations ?", "Où en est la grève actuellement ?",
    "Qui dirige désormais l'entreprise ?", "What is the latest toll?", "Who is the current CEO?",
    "Is the line still delayed today?", "Quelle est la situation aujourd’hui ?",
])
def test_words_asking_for_the_newest_state_ask_for_the_latest(question):
    scope = time_scope(question, TODAY)
    assert scope.latest and not scope.period


@pytest.mark.parametrize("question", [
    "Combien coûte le billet de métro ?", "Who founded the company?", "Quelle est la longueur de la ligne ?",
    "What may happen to the deal?",  # "may" the verb, not the month
])
def test_a_question_without_time_words_has_no_scope(question):
    scope = time_scope(question, TODAY)
    assert not scope.period and not scope.latest


def test_answers_say_the_date_of_what_they_cite_and_evals_read_past_it():
    assert spoken_date("2025-06-24", "fr") == "24 juin 2025"
    assert spoken_date("2025-06-24", "en") == "24 June 2025"
    assert according_to("2025-06-24", "fr") == "Selon l'article du 24 juin 2025 :"
    assert according_to("2025-03-02", "en", earlier=True) == "Earlier, the article of 2 March 2025 said:"
    assert according_to("", "fr") == ""
    answer = (f"{according_to('2025-06-24', 'fr')} La ligne ouvrira en septembre. [1] "
              f"{according_to('2025-03-02', 'fr', earlier=True)} La ligne devait ouvrir en mars. [2]")
    assert strip_attribution(answer) == "La ligne ouvrira en septembre. [1] La ligne devait ouvrir en mars. [2]"
    # what a model writes, instructed to say the date (rag/prompt.py)
    assert strip_attribution("According to the article of June 24, 2025, the line opens in September [1].") == (
        "the line opens in September [1].")
    assert strip_attribution("D’après l’article du 1er mars 2025, X [1]") == "X [1]"


def test_a_named_year_is_said_by_the_articles_only_when_a_passage_is_of_that_year():
    question = "Combien Microsoft a-t-il investi dans OpenAI en 2023 ?"
    scope = time_scope(question, TODAY)
    assert scope.period and not scope.strict
    assert without_time_words(question, scope, ["Microsoft", "2023"], ["2025-06-24"]) == ["Microsoft", "2023"]
    assert without_time_words(question, scope, ["Microsoft", "2023"], ["2025-06-24", "2023-05-02"]) == ["Microsoft"]
    strict = time_scope("Qu'a annoncé Microsoft cette semaine ?", TODAY)  # only ever a publication period
    assert strict.strict and without_time_words("", strict, ["Microsoft", "semaine"], []) == ["Microsoft"]
