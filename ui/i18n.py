"""Interface text in English and French, and how the language is chosen."""
from __future__ import annotations

LANGUAGES = ("en", "fr")

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Ask the articles",
        "intro": "Answers are taken from the news articles; every sentence cites its passage [n]. "
                 "Click a number to see the passage.",
        "tab_chat": "Ask", "tab_review": "Review room",
        "placeholder": "Ask a question about the articles…", "send": "Ask", "reset": "New conversation",
        "examples": "Examples from the articles", "settings": "Settings", "backend": "Answer backend",
        "top_k": "Passages retrieved", "mode": "Retrieval mode", "language": "Language",
        "sources": "Sources", "related": "Closest passages (related, not an answer):",
        "copies": "Also published by:", "date_from": "Published from (YYYY-MM-DD)",
        "date_to": "Published until (YYYY-MM-DD)", "source_filter": "Only these sources",
        "searching": "Searching the articles…", "abstained": "The articles don't say.",
        "score": "score",
        "reader_found": "Reader: answer span", "reader_rejected": "Reader: best rejected span",
        "confidence": "confidence", "threshold": "threshold",
        # errors
        "error": "Sorry, the question could not be answered", "error_input": "Please check the question",
        "error_index": "The article index is not available", "error_backend": "The answer backend is not responding",
        "error_config": "The server is misconfigured", "error_model": "The embedding model could not be loaded",
        "error_unknown": "Something went wrong on the server; the details are in its log. Try again in a moment.",
        "error_key": "Sign-in needed", "understood": "Understood as:", "read_article": "read the article ↗",
        "coverage": "{n} article(s) to ask about", "and_more": "and {n} more",
        "no_articles": "No article is indexed yet.", "thanks": "Thank you: the editors will see it.",
        "feedback": "Readers' feedback (👎)", "c_at": "when", "c_reason": "reason", "c_answer": "answer",
        "past_runs": "Past runs", "run_a": "Run", "run_b": "Compared with", "compare": "Compare",
        "no_change": "No item changed between these runs.", "better": "better", "worse": "worse",
        "pick_two_runs": "Pick two saved runs to compare.",
        "editor_key": "Editor key", "editor_key_hint": "needed to change the eval set",
        "key": "Key", "key_hint": "this server needs a key to answer",
        # review room
        "review_intro": "The evaluation set: pick an item to see the system's answer, record a verdict or fix it.",
        "f_tag": "Tag", "f_verdict": "Verdict", "f_run": "Last run", "all": "all", "none": "none",
        "pass": "pass", "fail": "fail", "not_run": "not run",
        "c_id": "id", "c_question": "question", "c_lang": "lang", "c_tags": "tags", "c_answerable": "answerable",
        "c_verdict": "verdict", "c_run": "last run",
        "question": "Question", "expected": "Expected answer", "evidence": "Evidence (text from the article)",
        "answerable": "Answerable from the articles", "tags": "Tags (comma-separated)", "item_lang": "Language",
        "current": "System's current answer", "metrics": "Metrics", "history": "Verdicts so far",
        "verdict": "Verdict", "comment": "Comment", "record": "Record verdict", "save": "Save edits",
        "run_item": "Run eval on this item", "run_all": "Run eval on the whole set", "summary": "Last run summary",
        "new_item": "Add a new item", "from_chat": "Use the last chat question", "add": "Add item",
        "transfer": "Export, import, delete", "f_search": "Search", "edits": "Edits", "mark": "pass mark",
        "evidence_at": "The evidence is in passage {rank} of the {n} retrieved.",
        "evidence_missing": "The evidence is in none of the {n} retrieved passages.",
        "record_shown": "Record this verdict on every item shown", "pick_verdict": "Pick a verdict first.",
        "filter_first": "Narrow the table first (a filter or a search): a verdict for every item of the set is "
        "not what this button is for.",
        "f_search_hint": "words of the id, question, answer, evidence or tags",
        "export_jsonl": "Export JSON Lines", "export_csv": "Export CSV",
        "exported": "Exported", "import_file": "File to import (.jsonl or .csv, as exported)",
        "import": "Import", "imported": "Imported", "updated": "updated", "pick_file": "Choose a file to import first.",
        "delete": "Delete the selected item", "deleted": "Deleted",
        "select_first": "Select an item in the table first.", "saved": "Saved", "recorded": "Verdict recorded",
        "added": "Added item", "ran": "Eval run on", "items": "items", "no_run": "No run yet.",
        "metric": "metric", "value": "value", "passed": "passed", "pick": "Pick an item in the table.",
        "refresh": "Reload from disk", "unavailable": "The review room is unavailable",
        "v_correct": "correct", "v_incorrect": "incorrect", "v_needs work": "needs work",
        "yes": "yes", "no": "no", "running": "Running the eval…", "empty_filter": "No item matches the filters.",
    },
    "fr": {
        "title": "Interrogez les articles",
        "intro": "Les réponses sont tirées des articles ; chaque phrase cite son passage [n]. "
                 "Cliquez sur un numéro pour voir le passage.",
        "tab_chat": "Questions", "tab_review": "Salle de relecture",
        "placeholder": "Posez une question sur les articles…", "send": "Demander", "reset": "Nouvelle conversation",
        "examples": "Exemples tirés des articles", "settings": "Réglages", "backend": "Moteur de réponse",
        "top_k": "Passages retrouvés", "mode": "Mode de recherche", "language": "Langue",
        "sources": "Sources", "related": "Passages les plus proches (liés, pas une réponse) :",
        "copies": "Aussi publié par :", "date_from": "Publié à partir du (AAAA-MM-JJ)",
        "date_to": "Publié jusqu’au (AAAA-MM-JJ)", "source_filter": "Seulement ces sources",
        "searching": "Recherche dans les articles…", "abstained": "Les articles ne le disent pas.",
        "score": "score",
        "reader_found": "Lecteur : réponse extraite", "reader_rejected": "Lecteur : meilleur passage rejeté",
        "confidence": "confiance", "threshold": "seuil",
        "error": "Désolé, impossible de répondre à la question", "error_input": "Vérifiez la question",
        "error_index": "L'index des articles n'est pas disponible",
        "error_backend": "Le moteur de réponse ne répond pas",
        "error_config": "Le serveur est mal configuré", "error_model": "Le modèle d'embeddings n'a pas pu être chargé",
        "error_unknown": "Une erreur est survenue sur le serveur ; le détail est dans son journal. "
                         "Réessayez dans un instant.",
        "error_key": "Connexion requise", "understood": "Compris comme :", "read_article": "lire l'article ↗",
        "coverage": "{n} article(s) à interroger", "and_more": "et {n} autre(s)",
        "no_articles": "Aucun article n'est encore indexé.",
        "thanks": "Merci : les éditeurs le verront.", "feedback": "Avis des lecteurs (👎)", "c_at": "quand",
        "c_reason": "raison", "c_answer": "réponse",
        "past_runs": "Évaluations passées", "run_a": "Évaluation", "run_b": "Comparée à", "compare": "Comparer",
        "no_change": "Aucune question n'a changé entre ces évaluations.", "better": "meilleures",
        "worse": "moins bonnes", "pick_two_runs": "Choisissez deux évaluations enregistrées à comparer.",
        "editor_key": "Clé d'éditeur", "editor_key_hint": "nécessaire pour modifier le jeu d'évaluation",
        "key": "Clé", "key_hint": "ce serveur demande une clé pour répondre",
        "review_intro": "Le jeu d'évaluation : choisissez une question pour voir la réponse du système, "
                        "donner un verdict ou la corriger.",
        "f_tag": "Étiquette", "f_verdict": "Verdict", "f_run": "Dernière évaluation", "all": "toutes",
        "none": "aucun", "pass": "réussie", "fail": "échouée", "not_run": "non évaluée",
        "c_id": "id", "c_question": "question", "c_lang": "langue", "c_tags": "étiquettes",
        "c_answerable": "répondable", "c_verdict": "verdict", "c_run": "dernière évaluation",
        "question": "Question", "expected": "Réponse attendue", "evidence": "Preuve (texte de l'article)",
        "answerable": "Les articles y répondent", "tags": "Étiquettes (séparées par des virgules)",
        "item_lang": "Langue", "current": "Réponse actuelle du système", "metrics": "Métriques",
        "history": "Verdicts précédents", "verdict": "Verdict", "comment": "Commentaire",
        "record": "Enregistrer le verdict", "save": "Enregistrer les modifications",
        "run_item": "Évaluer cette question", "run_all": "Évaluer tout le jeu",
        "summary": "Résumé de la dernière évaluation",
        "new_item": "Ajouter une question", "from_chat": "Reprendre la dernière question du chat", "add": "Ajouter",
        "transfer": "Exporter, importer, supprimer", "f_search": "Rechercher", "edits": "Modifications",
        "mark": "seuil", "evidence_at": "La preuve est dans le passage {rank} des {n} retrouvés.",
        "evidence_missing": "La preuve n'est dans aucun des {n} passages retrouvés.",
        "record_shown": "Enregistrer ce verdict pour toutes les questions affichées",
        "pick_verdict": "Choisissez d'abord un verdict.",
        "filter_first": "Réduisez d'abord le tableau (un filtre ou une recherche) : ce bouton n'est pas fait pour "
        "juger tout le jeu d'un coup.",
        "f_search_hint": "mots de l'identifiant, la question, la réponse, la preuve ou les étiquettes",
        "export_jsonl": "Exporter en JSON Lines",
        "export_csv": "Exporter en CSV", "exported": "Exporté", "import_file": "Fichier à importer (.jsonl ou .csv, "
        "comme exporté)", "import": "Importer", "imported": "Importé", "updated": "mises à jour",
        "pick_file": "Choisissez d'abord un fichier à importer.", "delete": "Supprimer la question choisie",
        "deleted": "Supprimée",
        "select_first": "Choisissez d'abord une question dans le tableau.", "saved": "Enregistré",
        "recorded": "Verdict enregistré", "added": "Question ajoutée", "ran": "Évaluation faite sur",
        "items": "questions", "no_run": "Pas encore d'évaluation.", "metric": "métrique", "value": "valeur",
        "passed": "réussie", "pick": "Choisissez une question dans le tableau.",
        "refresh": "Recharger depuis le disque",
        "unavailable": "La salle de relecture n'est pas disponible",
        "v_correct": "correcte", "v_incorrect": "incorrecte", "v_needs work": "à retravailler",
        "yes": "oui", "no": "non", "running": "Évaluation en cours…",
        "empty_filter": "Aucune question ne correspond aux filtres.",
    },
}

# The browser's language is read on page load; anything not French gets English.
BROWSER_LANGUAGE_JS = """() => {
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  return String(langs[0]).toLowerCase().startsWith('fr') ? 'fr' : 'en';
}"""


def pick(language: str | None) -> str:
    """A supported interface language for a code such as "fr-CA"; English otherwise."""
    code = (language or "").lower()[:2]
    return code if code in LANGUAGES else "en"


def t(language: str | None, key: str) -> str:
    """The interface text ``key`` in ``language``."""
    return LABELS[pick(language)][key]
