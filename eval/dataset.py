"""The editors' eval set: items in a JSON Lines file, read, added, edited and judged safely.

Every write takes an exclusive lock on ``<file>.lock``, re-reads the file, applies one change,
writes a temporary file beside it and renames it into place, so two editors saving at the same
time never lose each other's change and a crash never leaves half a file.
SQuAD-format files (such as PIAF) are read as sets of answerable items.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from common.errors import InputError, NotFoundError

DEFAULT_SET = Path(__file__).resolve().parent / "items.jsonl"
VERDICTS = ("correct", "incorrect", "needs work")
EDITABLE = ("question", "expected_answer", "evidence", "tags", "answerable", "language")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_FIELDS = ("id", "question", "expected_answer", "evidence", "answerable", "language", "tags", "verdicts", "edits")


@dataclass(frozen=True)
class EvalItem:
    """One question of the eval set, what it should be answered with, and the editors' verdicts.

    ``evidence`` quotes the article sentence that supports the answer ("" for unanswerable items);
    each verdict is ``{"verdict": "correct"|"incorrect"|"needs work", "comment": str, "at": ISO UTC,
    "by": editor}`` (``by`` is the signed-in editor's name; verdicts recorded before sign-in have none).
    """

    id: str
    question: str
    expected_answer: str
    evidence: str
    answerable: bool
    language: str
    tags: tuple[str, ...] = ()
    verdicts: tuple[dict, ...] = ()
    edits: tuple[dict, ...] = ()  # {"at", "by", "changed": {field: [old, new]}}, oldest first

    def to_dict(self) -> dict:
        """The item as one JSON Lines record (``edits`` only when there are some)."""
        record = {**dataclasses.asdict(self), "tags": list(self.tags), "verdicts": [dict(v) for v in self.verdicts],
                  "edits": [dict(e) for e in self.edits]}
        if not self.edits:
            del record["edits"]
        return record

    @classmethod
    def from_dict(cls, record: dict, where: str = "item") -> EvalItem:
        """An item from a record, checked; InputError names the bad field and what is allowed."""
        if not isinstance(record, dict):
            raise InputError(f"{where}: expected an object with fields {', '.join(_FIELDS)}")
        unknown = set(record) - set(_FIELDS)
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(_FIELDS)}")
        fields = {"id": "", "expected_answer": "", "evidence": "", "answerable": True, "language": "fr", **record}
        if "question" not in fields:
            raise InputError(f"{where}: the item has no question")
        return check_item(cls(**fields), where)


def check_item(item: EvalItem, where: str = "item") -> EvalItem:
    """The item with its text fields stripped, or an InputError saying what is allowed."""
    for name in ("id", "question", "expected_answer", "evidence", "language"):
        if not isinstance(getattr(item, name), str):
            raise InputError(f"{where}: {name} must be text")
    item = dataclasses.replace(item, tags=_tags(item.tags, where),
                               verdicts=(tuple(item.verdicts) if isinstance(item.verdicts, (list, tuple))
                                         else item.verdicts),
                               **{n: getattr(item, n).strip() for n in ("id", "question", "expected_answer",
                                                                        "evidence", "language")})
    if item.id and not _ID.fullmatch(item.id):
        raise InputError(f"{where}: invalid id {item.id!r}; use letters, digits, '.', '_', ':' or '-' (at most 100)")
    if not item.question:
        raise InputError(f"{where}: the question is empty; write the question a reader would ask")
    if not isinstance(item.answerable, bool):
        raise InputError(f"{where}: answerable must be true or false, not {item.answerable!r}")
    if item.answerable and not item.expected_answer:
        raise InputError(f"{where}: an answerable item needs an expected answer; or set answerable to false")
    if not re.fullmatch(r"[a-z]{2}", item.language):
        raise InputError(f"{where}: language {item.language!r} is not allowed; use a two-letter code such as fr or en")
    if not isinstance(item.verdicts, tuple):
        raise InputError(f"{where}: verdicts must be a list of verdicts")
    edits = tuple(item.edits) if isinstance(item.edits, (list, tuple)) else None
    if edits is None or not all(isinstance(e, dict) and isinstance(e.get("changed"), dict) for e in edits):
        raise InputError(f"{where}: edits must be a list of {{at, by, changed}} records")
    item = dataclasses.replace(item, edits=edits)
    for verdict in item.verdicts:
        _check_verdict(verdict, where)
    return item


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _tags(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
        raise InputError(f"{where}: tags must be a list of words, or one comma-separated text")
    return tuple(dict.fromkeys(t.strip() for t in value if t.strip()))


def _check_verdict(verdict, where: str) -> None:
    if not isinstance(verdict, dict) or verdict.get("verdict") not in VERDICTS:
        raise InputError(f"{where}: a verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}")
    if not all(isinstance(verdict.get(k, ""), str) for k in ("comment", "at", "by")):
        raise InputError(f"{where}: a verdict's comment, time and editor must be text")


def utc_now() -> str:
    """The current time as ISO 8601 UTC, to the second: ``2025-06-24T10:00:00Z``."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class EvalSet:
    """The items of one JSON Lines file (default ``eval/items.jsonl``); writes are locked and atomic."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else DEFAULT_SET
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def items(self) -> list[EvalItem]:
        """Every item, in file order; an empty list when the file does not exist yet."""
        if not self.path.exists():
            return []
        items, seen = [], set()
        for lineno, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{self.path}:{lineno}"
            try:
                item = EvalItem.from_dict(json.loads(line), where)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg}); fix or remove the line") from exc
            if not item.id or item.id in seen:
                raise InputError(f"{where}: {'duplicate' if item.id else 'missing'} id {item.id!r}; "
                                 "give each item a unique id")
            seen.add(item.id)
            items.append(item)
        return items

    def get(self, item_id: str) -> EvalItem:
        """The item with this id, or NotFoundError."""
        return _find(self.items(), item_id, self.path)[1]

    def add(self, item: EvalItem) -> EvalItem:
        """Append an item (an empty id gets the next ``qNNN``); a duplicate id is an InputError."""
        item = check_item(item)
        with self._editing() as items:
            ids = {i.id for i in items}
            if item.id in ids:
                raise InputError(f"item id {item.id!r} is already used in {self.path}; "
                                 "choose another or leave it empty")
            item = item if item.id else dataclasses.replace(item, id=_next_id(ids))
            items.append(item)
        return item

    def update(self, item_id: str, by: str = "", **fields) -> EvalItem:
        """Change some of an item's fields (question, expected_answer, evidence, tags, answerable, language);
        what changed, when and by whom (``by``) is added to the item's ``edits``."""
        bad = set(fields) - set(EDITABLE)
        if bad:
            raise InputError(f"cannot edit {', '.join(sorted(bad))}; editable fields: {', '.join(EDITABLE)}")
        with self._editing() as items:
            pos, old = _find(items, item_id, self.path)
            new = check_item(dataclasses.replace(old, **fields), f"item {item_id}")
            changed = {name: [_plain(getattr(old, name)), _plain(getattr(new, name))] for name in fields
                       if getattr(old, name) != getattr(new, name)}
            if changed:
                edit = {"at": utc_now(), **({"by": by} if by else {}), "changed": changed}
                new = dataclasses.replace(new, edits=(*old.edits, edit))
            items[pos] = new
        return items[pos]

    def record_verdict(self, item_id: str, verdict: str, comment: str = "", by: str = "") -> EvalItem:
        """Add editor ``by``'s verdict (correct, incorrect or needs work) with a comment, stamped now (UTC)."""
        entry = {"verdict": verdict, "comment": comment, "at": utc_now(), **({"by": by} if by else {})}
        _check_verdict(entry, f"item {item_id}")
        with self._editing() as items:
            pos, old = _find(items, item_id, self.path)
            items[pos] = dataclasses.replace(old, verdicts=(*old.verdicts, entry))
        return items[pos]

    def delete(self, item_id: str) -> EvalItem:
        """Remove an item (with its verdicts); NotFoundError when there is none with this id."""
        with self._editing() as items:
            pos, old = _find(items, item_id, self.path)
            del items[pos]
        return old

    def import_items(self, records: list[dict], where: str = "import") -> dict:
        """Add the records' items, all checked before anything is written: an item whose id is in the
        set replaces its fields and gains the verdicts it does not have yet; one without an id gets the
        next ``qNNN``. Returns the ids added and updated."""
        incoming = [EvalItem.from_dict(r, f"{where}: item {n}") for n, r in enumerate(records, 1)]
        named = [i.id for i in incoming if i.id]
        if len(named) != len(set(named)):
            raise InputError(f"{where}: the same id appears twice; give each item a unique id")
        added, updated = [], []
        with self._editing() as items:
            position = {item.id: pos for pos, item in enumerate(items)}
            for item in incoming:
                if item.id in position:
                    old = items[position[item.id]]
                    verdicts = old.verdicts + tuple(v for v in item.verdicts if v not in old.verdicts)
                    edits = old.edits + tuple(e for e in item.edits if e not in old.edits)
                    items[position[item.id]] = dataclasses.replace(item, verdicts=verdicts, edits=edits)
                    updated.append(item.id)
                else:
                    item = item if item.id else dataclasses.replace(item, id=_next_id({i.id for i in items}))
                    position[item.id] = len(items)
                    items.append(item)
                    added.append(item.id)
        return {"added": added, "updated": updated}

    @contextlib.contextmanager
    def _editing(self):
        """Lock, read the items, let the caller change the list, write it back atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                items = self.items()
                yield items
                self._write(items)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, items: list[EvalItem]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(i.to_dict(), ensure_ascii=False) + "\n" for i in items)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def load_items(path: str | Path | None = None) -> list[EvalItem]:
    """The items of an eval set (JSON Lines) or of a SQuAD-format file (``.json``, such as PIAF)."""
    path = Path(path) if path else DEFAULT_SET
    if not path.is_file():
        raise InputError(f"{path}: no such eval set; give a .jsonl eval set or a SQuAD .json file")
    items = squad_items(path) if path.suffix.lower() == ".json" else EvalSet(path).items()
    if not items:
        raise InputError(f"{path}: the eval set has no items")
    return items


def squad_items(path: str | Path) -> list[EvalItem]:
    """SQuAD questions as items: the first answer is expected, its sentence is the evidence."""
    from common.sentences import split_sentences
    from common.text import detect_language
    from index.squad import read_squad

    items = []
    for entry in read_squad(path):
        for paragraph in entry.paragraphs:
            context = paragraph.context.strip()
            language = detect_language(context, default="fr")
            lead = len(paragraph.context) - len(paragraph.context.lstrip())
            for qa in paragraph.questions:
                start = qa.answer_start - lead
                evidence = next((context[a:b] for a, b in split_sentences(context) if a <= start < b), "")
                items.append(check_item(EvalItem(
                    qa.id, qa.question, qa.answer, evidence, not qa.impossible and qa.answer_start >= 0,
                    language, ("squad", entry.title)), f"{path}: question {qa.id}"))
    return items


def _find(items: list[EvalItem], item_id: str, path: Path) -> tuple[int, EvalItem]:
    for pos, item in enumerate(items):
        if item.id == item_id:
            return pos, item
    raise NotFoundError(f"no eval item {item_id!r} in {path}; list the ids with EvalSet(path).items()")


def _next_id(ids: set[str]) -> str:
    numbers = [int(m.group(1)) for i in ids if (m := re.fullmatch(r"q(\d+)", i))]
    return f"q{max(numbers, default=0) + 1:03d}"


CSV_COLUMNS = ("id", "question", "expected_answer", "evidence", "answerable", "language", "tags", "verdicts", "edits")


def items_to_jsonl(items: list[EvalItem]) -> str:
    """The items as the eval set's own JSON Lines."""
    return "".join(json.dumps(i.to_dict(), ensure_ascii=False) + "\n" for i in items)


def items_to_csv(items: list[EvalItem]) -> str:
    """The items as CSV for a spreadsheet: tags joined by "|", verdicts and edits as JSON lists in one cell."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for i in items:
        writer.writerow([i.id, i.question, i.expected_answer, i.evidence, "true" if i.answerable else "false",
                         i.language, "|".join(i.tags), json.dumps([dict(v) for v in i.verdicts], ensure_ascii=False),
                         json.dumps([dict(e) for e in i.edits], ensure_ascii=False) if i.edits else ""])
    return out.getvalue()


def parse_items(text: str, name: str) -> list[dict]:
    """Records from an export: CSV when ``name`` ends in .csv (the columns ``items_to_csv`` writes, id
    and question at least), else JSON Lines. InputError names the line and what is wrong."""
    if name.lower().endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text)))
        if rows and not {"question"} <= set(rows[0]):
            raise InputError(f"{name}: a CSV of eval items needs a header with at least: question "
                             f"(columns: {', '.join(CSV_COLUMNS)})")
        return [_csv_record(row, f"{name}:{n}") for n, row in enumerate(rows, 2)]
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(f"{name}:{lineno}: not valid JSON ({exc.msg}); one item per line") from exc
    return records


def _csv_record(row: dict, where: str) -> dict:
    record = {k: v for k, v in row.items() if k in CSV_COLUMNS and v not in (None, "")}
    if "answerable" in record:
        value = record["answerable"].strip().lower()
        if value not in ("true", "false", "yes", "no", "1", "0"):
            raise InputError(f"{where}: answerable is {record['answerable']!r}; write true or false")
        record["answerable"] = value in ("true", "yes", "1")
    if "tags" in record:
        record["tags"] = [t.strip() for t in record["tags"].split("|") if t.strip()]
    for name in ("verdicts", "edits"):
        if name in record:
            try:
                record[name] = json.loads(record[name])
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: {name} is not a JSON list ({exc.msg})") from exc
    return record
