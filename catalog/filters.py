"""Search filters: a JSON object of conditions on `meta` fields -> a Milvus boolean expression.

The only place user input becomes expression text, so every piece is checked or quoted here:

- field names must match `FIELD_PATTERN` (letters, digits, underscore; not starting with a digit);
- string values are quoted and escaped with `json.dumps` (Go-compatible escapes for Milvus's parser);
- numbers must be finite; booleans become `true`/`false`; nothing else is accepted as a value.

Grammar (a filter is an object; several keys in one object mean "and"):

    {"category": "shoes"}                         equality (string, number or boolean)
    {"category": {"in": ["shoes", "bags"]}}       membership; also "not_in"
    {"price": {"gte": 10, "lt": 100}}             ranges: gt, gte, lt, lte; also "eq", "ne"
    {"and": [{...}, {...}]}, {"or": [...]}        combinations (lists of filters)
    {"not": {...}}                                negation

A field declared as a real scalar field of the collection (`scalar_fields`) is compared as that field;
any other is looked up in the `meta` JSON field (`meta["category"]`). Bad filters raise `FilterError`,
whose message says what to fix.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from catalog import schema as S

FIELD_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
COMPARISONS = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
MEMBERSHIP = {"in": "in", "not_in": "not in"}
COMBINATIONS = ("and", "or", "not")
MAX_DEPTH = 8
MAX_TERMS = 64
MAX_LIST = 1000


class FilterError(ValueError):
    """The filter cannot be turned into an expression; the message says what is wrong."""


def parse_filter(raw: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A filter from a form field (JSON text) or a JSON body value; None when absent or empty."""
    if raw is None or raw == "" or raw == {}:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise FilterError(f"filter is not valid JSON ({exc.msg} at position {exc.pos}): "
                              'send an object such as {"category": "shoes"}') from None
    if not isinstance(raw, Mapping):
        raise FilterError(f'filter must be a JSON object such as {{"category": "shoes"}}, not {type(raw).__name__}')
    return dict(raw)


def to_expression(filt: Mapping[str, Any] | None, scalar_fields: Collection[str] = ()) -> str:
    """The Milvus boolean expression for a filter ("" for none); raises FilterError."""
    if not filt:
        return ""
    counter = [0]
    return _object(filt, set(scalar_fields), counter, depth=0)


def _object(filt: Any, scalar: set[str], counter: list[int], depth: int) -> str:
    if depth > MAX_DEPTH:
        raise FilterError(f"filter is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(filt, Mapping) or not filt:
        raise FilterError(f"each filter must be a non-empty JSON object, not {_show(filt)}")
    parts = []
    for key, value in filt.items():
        if key in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f'"{key}" takes a non-empty list of filters, not {_show(value)}')
            inner = [_object(v, scalar, counter, depth + 1) for v in value]
            parts.append("(" + f" {key} ".join(inner) + ")")
        elif key == "not":
            parts.append(f"not ({_object(value, scalar, counter, depth + 1)})")
        else:
            parts.append(_field(key, value, scalar, counter))
    return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"


def _field(name: Any, cond: Any, scalar: set[str], counter: list[int]) -> str:
    if not isinstance(name, str) or not FIELD_PATTERN.match(name):
        raise FilterError(f"field name {_show(name)} is not allowed: use letters, digits and underscores, "
                          "starting with a letter or underscore (at most 64)")
    target = name if name in scalar else f'{S.META_FIELD}[{json.dumps(name)}]'
    if not isinstance(cond, Mapping):
        return _term(target, "==", _literal(name, cond), counter)
    if not cond:
        raise FilterError(f'the condition on "{name}" is an empty object')
    terms = []
    for op, value in cond.items():
        if op in COMPARISONS:
            if op in ("gt", "gte", "lt", "lte") and not _is_number(value):
                raise FilterError(f'"{name}": {op} needs a number, not {_show(value)}')
            terms.append(_term(target, COMPARISONS[op], _literal(name, value), counter))
        elif op in MEMBERSHIP:
            if not isinstance(value, list) or not value:
                raise FilterError(f'"{name}": {op} needs a non-empty list of values, not {_show(value)}')
            if len(value) > MAX_LIST:
                raise FilterError(f'"{name}": {op} lists {len(value)} values; at most {MAX_LIST}')
            items = ", ".join(_literal(name, v) for v in value)
            terms.append(_term(target, MEMBERSHIP[op], f"[{items}]", counter))
        else:
            allowed = ", ".join([*COMPARISONS, *MEMBERSHIP])
            raise FilterError(f'"{name}": unknown operator {_show(op)}; use one of {allowed}')
    return terms[0] if len(terms) == 1 else "(" + " and ".join(terms) + ")"


def _term(target: str, op: str, literal: str, counter: list[int]) -> str:
    counter[0] += 1
    if counter[0] > MAX_TERMS:
        raise FilterError(f"filter has more than {MAX_TERMS} conditions")
    return f"{target} {op} {literal}"


def _literal(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return repr(int(value)) if isinstance(value, int) else repr(float(value))
    if isinstance(value, str):
        if len(value) > 1024:
            raise FilterError(f'"{name}": a value of {len(value)} characters; at most 1024')
        return json.dumps(value, ensure_ascii=False)
    raise FilterError(f'"{name}": values must be strings, numbers or booleans, not {_show(value)}')


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def names_filter(names: Iterable[str]) -> str:
    """Return `name in [...]` with every name quoted and escaped, never spliced in raw.

    pymilvus's own `ids=` path wraps names in quotes without escaping, so a name holding a quote would
    break (or change) the expression; json.dumps gives Go-compatible escapes for the Milvus parser.
    """
    quoted = ",".join(json.dumps(str(n), ensure_ascii=False) for n in names)
    return f"{S.NAME_FIELD} in [{quoted}]"


def keys_filter(field: str, keys: Iterable[int]) -> str:
    """Return `<field> in [...]` over integer keys (each checked to be an int: nothing else is spliced in)."""
    if not FIELD_PATTERN.match(field):
        raise FilterError(f"not a field name: {field!r}")
    return f"{field} in [{', '.join(str(operator.index(k)) for k in keys)}]"


def names_after(last: str | None) -> str:
    """Return the cursor expression `name > "<last>"` (escaped like names_filter), or every row for None."""
    return f"{S.NAME_FIELD} > {json.dumps(last, ensure_ascii=False)}" if last is not None else f'{S.NAME_FIELD} != ""'
