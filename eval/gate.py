"""Thresholds (eval/thresholds.toml), the quality gate, and item-by-item comparison with a baseline."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ConfigError
from eval.metrics import SupportTest

DEFAULT_THRESHOLDS = Path(__file__).resolve().parent / "thresholds.toml"


@dataclass(frozen=True)
class Cutoffs:
    """Per-item pass marks: an item passes a metric when its value reaches the mark."""

    f1: float = 0.3
    recall: float = 0.5
    similarity: float = 0.85
    citation_precision: float = 0.5
    groundedness: float = 1.0
    judge: float = 0.5


@dataclass(frozen=True)
class EvalConfig:
    """Everything eval/thresholds.toml sets: item pass marks, the support test and the gates per set."""

    cutoffs: Cutoffs = Cutoffs()
    support: SupportTest = SupportTest()
    gates: dict = field(default_factory=dict)  # set name -> {"min": {metric: v}, "max": {metric: v}}

    def gate_for(self, set_name: str, backend: str = "") -> dict:
        """The gate of a set (its file stem, e.g. ``items``), or of that set with one backend
        (``[gate."items:openai"]``) when there is one; empty when the set has none."""
        return self.gates.get(f"{set_name}:{backend}") or self.gates.get(set_name, {})


def load_config(path: str | Path | None = None) -> EvalConfig:
    """The thresholds file, checked; a ConfigError says which entry is wrong."""
    path = Path(path) if path else DEFAULT_THRESHOLDS
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no thresholds file; "
                          "pass --thresholds FILE or restore eval/thresholds.toml") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    try:
        cutoffs = Cutoffs(**raw.get("per_item", {}))
        support = SupportTest(**raw.get("support", {}))
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}; see the comments in eval/thresholds.toml for the known names") from exc
    gates = raw.get("gate", {})
    for name, gate in gates.items():
        if set(gate) - {"min", "max"} or not all(isinstance(v, (int, float))
                                                 for s in gate.values() for v in s.values()):
            raise ConfigError(f"{path}: [gate.{name}] may only hold min and max tables of numbers")
    return EvalConfig(cutoffs, support, gates)


def check_gate(summary: dict, gate: dict) -> list[str]:
    """The thresholds a summary misses, as sentences; empty when it passes."""
    failures = []
    for metric, bound in gate.get("min", {}).items():
        value = summary.get(metric)
        if value is None or value < bound:
            failures.append(f"{metric} = {_fmt(value)} is below the minimum {bound}")
    for metric, bound in gate.get("max", {}).items():
        value = summary.get(metric)
        if value is None or value > bound:
            failures.append(f"{metric} = {_fmt(value)} is above the maximum {bound}")
    return failures


def gate_rows(summary: dict, gate: dict) -> list[dict]:
    """One row per summary metric: its value, its bound (if any) and whether it passes."""
    rows = []
    for metric, value in summary.items():
        low, high = gate.get("min", {}).get(metric), gate.get("max", {}).get(metric)
        ok = None if low is None and high is None else not check_gate(
            {metric: value}, {"min": {metric: low} if low is not None else {},
                              "max": {metric: high} if high is not None else {}})
        bound = f">= {low}" if low is not None else f"<= {high}" if high is not None else ""
        rows.append({"metric": metric, "value": value, "bound": bound, "ok": ok})
    return rows


LOWER_IS_BETTER = frozenset({"wrong_abstention", "wrong_abstention_rate"})


def compare_runs(current: dict, baseline: dict) -> dict:
    """What changed from a baseline run (both as ``EvalRun.to_dict()``): summary deltas and per-item changes."""
    before = {r["item_id"]: r for r in baseline.get("results", [])}
    changes = []
    for result in current.get("results", []):
        old = before.get(result["item_id"])
        if old is None:
            continue
        deltas = {m: round(v - old["metrics"][m], 4) for m, v in result["metrics"].items()
                  if v is not None and old["metrics"].get(m) is not None and abs(v - old["metrics"][m]) > 1e-6}
        if deltas or result["ok"] != old["ok"]:
            changes.append({"item_id": result["item_id"], "question": result["item"]["question"],
                            "was_ok": old["ok"], "ok": result["ok"], "deltas": deltas,
                            "verdict": _direction(old["ok"], result["ok"], deltas)})
    ids = {r["item_id"] for r in current.get("results", [])}
    summary = {m: round(v - baseline["summary"][m], 4) for m, v in current.get("summary", {}).items()
               if isinstance(v, (int, float)) and isinstance(baseline.get("summary", {}).get(m), (int, float))}
    return {"summary": summary, "items": changes, "new": sorted(ids - set(before)), "gone": sorted(set(before) - ids),
            "better": sum(c["verdict"] == "better" for c in changes),
            "worse": sum(c["verdict"] == "worse" for c in changes)}


def _direction(was_ok: bool, ok: bool, deltas: dict) -> str:
    if was_ok != ok:
        return "better" if ok else "worse"
    score = sum(-d if m in LOWER_IS_BETTER else d for m, d in deltas.items())
    return "better" if score > 0 else "worse" if score < 0 else "changed"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
