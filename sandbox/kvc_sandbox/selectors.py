"""Label and field selectors, parsed the way the API server reads `labelSelector=` and `fieldSelector=`.

Pure functions over plain dicts; no state, safe from any thread.

Label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, joined by commas.
Field selectors: `path=v`, `path==v`, `path!=v` over dotted paths (`metadata.name`, `status.phase`, …).
"""

from __future__ import annotations

import re
from typing import Callable

Predicate = Callable[[dict], bool]


class SelectorError(ValueError):
    """A selector the API server would refuse with 400 BadRequest."""


_SET_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9._/-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside `( … )`."""
    terms, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t for t in (t.strip() for t in terms) if t]


def _equality(term: str) -> tuple[str, str, str] | None:
    for op in ("!=", "==", "="):
        if op in term:
            key, _, value = term.partition(op)
            return key.strip(), op, value.strip()
    return None


def parse_labels(text: str | None) -> Predicate:
    """A predicate over a label dict; raises SelectorError for a malformed selector."""
    checks: list[Callable[[dict], bool]] = []
    for term in _split_terms(text or ""):
        set_match = _SET_TERM.match(term)
        if set_match and set_match.group(3):
            negated, key, op, values = set_match.groups()
            if negated:
                raise SelectorError(f"unable to parse requirement: {term!r}")
            members = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                checks.append(lambda labels, k=key, m=members: labels.get(k) in m)
            else:
                checks.append(lambda labels, k=key, m=members: labels.get(k) not in m)
            continue
        equality = _equality(term)
        if equality:
            key, op, value = equality
            if not key:
                raise SelectorError(f"unable to parse requirement: {term!r}")
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
            continue
        if set_match:
            negated, key = set_match.group(1), set_match.group(2)
            if negated:
                checks.append(lambda labels, k=key: k not in labels)
            else:
                checks.append(lambda labels, k=key: k in labels)
            continue
        raise SelectorError(f"unable to parse requirement: {term!r}")
    return lambda labels: all(check(labels) for check in checks)


def field_value(obj: dict, path: str) -> str:
    """The string value at a dotted path, "" when absent (as the API server compares fields)."""
    value: object = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    return "" if value is None else str(value)


def parse_fields(text: str | None) -> Predicate:
    """A predicate over a whole object; raises SelectorError for a malformed selector."""
    checks: list[Callable[[dict], bool]] = []
    for term in _split_terms(text or ""):
        equality = _equality(term)
        if not equality or not equality[0]:
            raise SelectorError(f"invalid selector: {term!r}; can't understand {term!r}")
        path, op, value = equality
        if op == "!=":
            checks.append(lambda obj, p=path, v=value: field_value(obj, p) != v)
        else:
            checks.append(lambda obj, p=path, v=value: field_value(obj, p) == v)
    return lambda obj: all(check(obj) for check in checks)


def object_filter(label_selector: str | None, field_selector: str | None) -> Predicate:
    """One predicate for both selectors of a list or watch request."""
    labels, fields = parse_labels(label_selector), parse_fields(field_selector)
    return lambda obj: labels((obj.get("metadata") or {}).get("labels") or {}) and fields(obj)
