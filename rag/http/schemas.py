"""The shapes of the HTTP API's requests and responses (pydantic models at the edge), with examples."""
from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from common.dates import iso_date
from common.errors import InputError

_DAY = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"  # the month's length is checked by RealDate
ISO_DATE = rf"^{_DAY}$"
ISO_DATETIME = rf"^{_DAY}([T ][0-9:.+\-Z]*)?$"
ARTICLE_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
EXAMPLE_QUESTION = "Combien Microsoft a-t-il investi dans OpenAI ?"
def _invisible_ranges() -> str:
    """A regex class body of what a question or an article may not consist of only: control characters
    and Unicode's invisible format characters (category Cf: zero-width spaces, bidi controls, tags…),
    which the pipeline removes (``common.injection.normalise``)."""
    codes = [i for i in range(0x110000) if unicodedata.category(chr(i)) in ("Cc", "Cf")]
    runs, start = [], codes[0]
    for prev, code in zip(codes, codes[1:] + [None]):
        if code != prev + 1:
            runs.append((start, prev))
            start = code
    return "".join(_escaped(a) if a == b else f"{_escaped(a)}-{_escaped(b)}" for a, b in runs)


def _escaped(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


# A character that is neither a space nor invisible: a question or an article must have one.
NOT_BLANK = rf"[^\s{_invisible_ranges()}]"
LANGUAGE = r"^[a-z]{2}$"
ROLE = "^(user|assistant)$"
# What each pattern means, said in words in a 422 (instead of the regular expression).
PATTERN_TEXT = {
    NOT_BLANK: "is empty (only spaces or invisible characters); give it visible text",
    ISO_DATE: "must be a date written YYYY-MM-DD, e.g. 2025-06-24",
    ISO_DATETIME: "must be an ISO 8601 date, YYYY-MM-DD (a time may follow, e.g. 2025-06-24T10:00Z)",
    ARTICLE_ID: "must be letters, digits, '.', '_', ':' or '-' (at most 200), starting with a letter or digit",
    LANGUAGE: "must be a two-letter ISO 639-1 code in lower case, such as fr or en",
    ROLE: "must be user or assistant",
}


def _no_text_or_bool(value):
    if isinstance(value, (str, bool)):
        raise ValueError("must be a JSON integer")
    return value


def _real_date(value: str | None) -> str | None:
    """A date that exists (the pattern checks only its shape: 2025-02-30 has the shape)."""
    if value is not None:
        try:
            iso_date(value, "date")
        except InputError as exc:
            raise ValueError(str(exc).removeprefix("date: ")) from None
    return value


RealDate = AfterValidator(_real_date)


# JSON Schema's integer: 5 or 5.0, but not "5" nor true (pydantic's strict mode refuses 5.0, its lax mode takes "5")
# (the Field must come before the validator, or the schema says "ge"/"le" instead of minimum/maximum)
MAX_TOP_K = 20  # each passage is read sentence by sentence: past 20 an answer costs seconds, not milliseconds
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K), BeforeValidator(_no_text_or_bool)]


class FiltersIn(BaseModel):
    """Restrict the search to some articles, a date range (inclusive), a language or some sources.

    A date range set here is kept as it is; a period named in the question ("en 2024", "this week") is only
    preferred (README "Dates")."""

    model_config = ConfigDict(extra="forbid")

    article_ids: list[str] | None = Field(None, max_length=1000, examples=[["openai-microsoft-partenariat"]])
    date_from: Annotated[str | None, RealDate] = Field(None, pattern=ISO_DATE, examples=["2025-01-01"])
    date_to: Annotated[str | None, RealDate] = Field(None, pattern=ISO_DATE, examples=["2025-12-31"])
    language: str | None = Field(None, pattern=LANGUAGE, examples=["fr"])
    sources: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        None, max_length=100, examples=[["Le Monde", "AFP"]],
        description="Only articles of these sources (the article's `source`, compared without case or accents)")


class Turn(BaseModel):
    """One earlier message of the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(..., pattern=ROLE, description="`user` or `assistant`")
    content: str = Field(..., max_length=20_000)


class AskIn(BaseModel):
    """A question about the articles."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"question": EXAMPLE_QUESTION, "top_k": 5, "backend": "reader"},
        {"question": "What did Altman say?", "filters": {"language": "fr", "date_from": "2025-06-01"},
         "history": [{"role": "user", "content": "Parle-moi d'OpenAI."},
                     {"role": "assistant", "content": "OpenAI est un partenaire de Microsoft [1]."}],
         "stream": True}]})

    question: str = Field(..., pattern=NOT_BLANK,
                          description="The question; its length limit is RAG_MAX_QUESTION_CHARS",
                          examples=[EXAMPLE_QUESTION])
    top_k: TopK | None = Field(None, description="Passages to retrieve (default RAG_TOP_K)")
    mode: str | None = Field(None, description="Retrieval mode: dense, lexical or hybrid (default RAG_RETRIEVAL_MODE)",
                             examples=["hybrid"])
    backend: str | None = Field(None, description="Answer backend (default RAG_BACKEND); GET /v1/models lists them",
                                examples=["reader"])
    history: list[Turn] | None = Field(None, max_length=50, description="Earlier turns, oldest first")
    filters: FiltersIn | None = None
    stream: bool = Field(False, strict=True,
                         description="Send Server-Sent Events (citations, delta..., done) instead of JSON")


class CopyOut(BaseModel):
    """Another version of a cited story: the same text republished by another outlet."""

    article_id: str
    title: str
    source: str
    date: str
    url: str


class CitationOut(BaseModel):
    """Passage ``n`` of an answer; the ``[n]`` marks in the answer refer to it."""

    n: int
    chunk_id: str
    article_id: str
    title: str
    date: str
    url: str
    text: str
    start: int = Field(..., description="Offset of the passage in the article's text")
    end: int
    score: float = Field(..., description="The ranking score of the retrieval mode (hybrid: the fused score, "
                         "min-max scaled, so the top passage is often 1.0); the components are in `scores`")
    highlights: list[list[int]] = Field(default_factory=list,
                                        description="(start, end) in `text` of the sentences used")
    cited: bool = Field(False, description="The answer cites this passage ([n] in its text); false for passages "
                        "retrieved but not used (and for all of them when the answer abstains)")
    scores: dict[str, float] = Field(default_factory=dict, examples=[{"dense": 0.861, "bm25": 7.42, "fused": 1.0}],
                                     description="Each score under its own name: `dense` (cosine of the question "
                                     "and passage embeddings), `bm25`, `fused` (hybrid), `rerank`")
    source: str = Field("", description="The article's source (outlet, agency)")
    copies: list[CopyOut] = Field(default_factory=list, description="The same story published elsewhere (wire "
                                  "copies, kept once in retrieval), oldest first")


class ReadingOut(BaseModel):
    """The reader's best span in the passages: accepted (the answer) or rejected (why it abstained)."""

    text: str = Field(..., examples=["13 milliards de dollars cumulés"])
    n: int = Field(..., description="The passage [n] holding the span")
    confidence: float = Field(..., description="The verifier's chance that the span answers the question")
    reader_confidence: float | None = Field(None, description="The reader's own calibrated confidence in its span")
    margin: float = Field(..., description="Span score minus the passage's no-answer score")
    threshold: float = Field(..., description="Confidence below which the reader abstains")
    accepted: bool
    features: dict[str, float] = Field(default_factory=dict, description="What the verifier weighed: the margin, "
                                       "retrieval cosines, the share of the question's words the span's sentence, "
                                       "window and passage say, echo of the question, type mismatch")


class AskOut(BaseModel):
    """An answer with its numbered sources and step timings in milliseconds."""

    question: str = Field(..., description="The question as it was answered: a follow-up made standalone")
    asked: str = Field("", description="The question as asked, when `history` made it a follow-up that was "
                       "rewritten into `question` (\"\" otherwise)")
    answer: str = Field(..., examples=["Microsoft a investi 13 milliards de dollars cumulés [1]"])
    abstained: bool = Field(..., description="True when the articles don't say; `answer` then says so")
    citations: list[CitationOut]
    timings_ms: dict[str, float] = Field(..., examples=[{"embed": 9.1, "search": 0.2, "generate": 12.5, "total": 22.0}])
    backend: str
    model: str
    language: str = ""
    notes: list[str] = []
    fallback_from: str = Field("", description="The generative backend that failed, when the fallback answered")
    evidence: float | None = Field(None, description="Best dense cosine among the passages "
                                   "(the abstention gate's input)")
    reading: ReadingOut | None = Field(None, description="The reader's verdict: its best span, also when rejected")


class ArticleIn(BaseModel):
    """An article to index; ``id`` defaults to a slug of the title, ``title`` to the first line of ``text``.

    An article whose id is already indexed replaces it; within one request, a later article with the
    same id replaces an earlier one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"id": "nvidia-resultats-2025", "title": "Nvidia publie des résultats record", "date": "2025-05-28",
         "url": "https://example.org/nvidia", "language": "fr",
         "text": "Nvidia a annoncé un chiffre d'affaires trimestriel de 44 milliards de dollars."}]})

    id: str | None = Field(None, pattern=ARTICLE_ID)
    title: str | None = Field(None, max_length=1000)
    text: str = Field(..., pattern=NOT_BLANK, description="The article's text (not only spaces)")
    date: Annotated[str | None, RealDate] = Field(None, pattern=ISO_DATETIME, description="ISO 8601 date, YYYY-MM-DD")
    url: str | None = Field(None, max_length=2000)
    source: str | None = Field(None, max_length=1000)
    language: str | None = Field(None, pattern=LANGUAGE, description="ISO 639-1 code; detected when absent")
    updated: Annotated[str | None, RealDate] = Field(
        None, pattern=ISO_DATETIME, description="Date of this version when it corrects or updates the article of "
        "`date` (the earlier version's dates stay in the article's `history`)")


class IngestOut(BaseModel):
    """What an add or delete changed in the index."""

    added: list[str]
    replaced: list[str]
    unchanged: list[str]
    deleted: list[str]
    chunks_embedded: int
    chunks_total: int
    articles_total: int
    seconds: dict[str, float]
    same_url: dict[str, str] = Field(default_factory=dict, description="Articles sent with a new id but the URL "
                                     "of an indexed one, which they replaced under its id: sent id -> indexed id")


class JobOut(BaseModel):
    """A batch of articles being indexed in the background (``POST /articles`` of a large batch)."""

    id: str
    status: str = Field(..., description="queued, running, done or failed")
    articles: int
    submitted: str
    finished: str | None
    result: IngestOut | None = Field(None, description="What the write changed, once done")
    error: str | None = Field(None, description="Why it failed (nothing of it was written)")
    url: str = Field(..., description="Where to poll: GET this URL")


class ArticleSummary(BaseModel):
    """An indexed article, without its text."""

    id: str
    title: str
    date: str
    url: str
    language: str
    chunks: int
    source: str = ""
    updated: str = Field("", description="Date of the current version when it corrects or updates the first")
    story: str = Field("", description="The article this one is a copy of (wire copies); empty when none")


class VersionOut(BaseModel):
    """An earlier version of an article (it was replaced by a correction or an update)."""

    date: str
    updated: str
    content_hash: str
    replaced_at: str = Field(..., description="When the next version replaced it (UTC)")


class ArticleOut(BaseModel):
    """An indexed article with its text."""

    id: str
    title: str
    text: str
    date: str
    url: str
    source: str
    language: str
    content_hash: str
    n_chunks: int
    updated: str = Field("", description="The date of this version when it corrects or updates the first")
    history: list[VersionOut] = Field(default_factory=list, description="Earlier versions, oldest first")
    story: str = Field("", description="The article this one is a copy of (wire copies); empty when none")
    copies: list[CopyOut] = Field(default_factory=list, description="Other versions of the same story")


class ReadyOut(BaseModel):
    """The loaded model and index."""

    status: str = "ready"
    articles: int
    chunks: int
    model: str
    backends: list[str]
    default_backend: str
    version: str = Field("", description="The index version served (its folder name; names sort in commit order)")
    manifest: dict


class ErrorOut(BaseModel):
    """Every error: what went wrong and what to do, and the request id to quote."""

    error: str = Field(..., examples=["unknown backend 'x'; known: extractive"])
    request_id: str
    detail: list[dict] | None = None


class OpenAIError(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorOut(BaseModel):
    """Errors under ``/v1`` take OpenAI's shape, so that OpenAI clients show the message."""

    error: OpenAIError
    request_id: str
