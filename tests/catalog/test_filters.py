"""Filters -> Milvus expressions: every value quoted, every name checked, bad filters named."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from catalog.filters import FilterError, parse_filter, to_expression


@pytest.mark.parametrize("filt, expr", [
    ({"category": "shoes"}, 'meta["category"] == "shoes"'),
    ({"category": {"in": ["shoes", "bags"]}}, 'meta["category"] in ["shoes", "bags"]'),
    ({"category": {"not_in": ["hats"]}}, 'meta["category"] not in ["hats"]'),
    ({"price": {"gte": 10, "lt": 99.5}}, '(meta["price"] >= 10 and meta["price"] < 99.5)'),
    ({"sale": True, "shop": "berlin"}, '(meta["sale"] == true and meta["shop"] == "berlin")'),
    ({"or": [{"a": 1}, {"b": {"ne": "x"}}]}, '(meta["a"] == 1 or meta["b"] != "x")'),
    ({"not": {"a": 1}}, 'not (meta["a"] == 1)'),
    ({"category": "shoes"}, 'meta["category"] == "shoes"'),
])
def test_filters_become_expressions(filt, expr):
    assert to_expression(filt) == expr


def test_declared_scalar_fields_are_compared_as_fields():
    assert to_expression({"category": "shoes", "size": 42}, scalar_fields={"category"}) == (
        '(category == "shoes" and meta["size"] == 42)')


def test_values_are_quoted_so_text_cannot_change_the_expression():
    expr = to_expression({"name": 'x" or name != "'})
    assert expr == 'meta["name"] == "x\\" or name != \\""'
    assert to_expression({"q": "a\\b\nc"}) == 'meta["q"] == "a\\\\b\\nc"'


@pytest.mark.parametrize("filt, words", [
    ({"na me": 1}, "field name \"na me\" is not allowed"),
    ({'a"]) or (1==1': 1}, "is not allowed"),
    ({"1abc": 1}, "is not allowed"),
    ({"a": {"like": "x%"}}, 'unknown operator "like"'),
    ({"a": {"gt": "ten"}}, "gt needs a number"),
    ({"a": [1, 2]}, "values must be strings, numbers or booleans"),
    ({"a": None}, "values must be strings, numbers or booleans"),
    ({"a": float("nan")}, "values must be strings, numbers or booleans"),
    ({"a": {"in": []}}, "in needs a non-empty list"),
    ({"and": []}, '"and" takes a non-empty list'),
    ({"a": {}}, "empty object"),
    ({"not": 3}, "must be a non-empty JSON object"),
])
def test_bad_filters_say_what_is_wrong(filt, words):
    with pytest.raises(FilterError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        to_expression(filt)


def test_parse_accepts_json_text_or_objects_and_names_the_problem():
    assert parse_filter('{"a": 1}') == {"a": 1}
    assert parse_filter({"a": 1}) == {"a": 1}
    assert parse_filter("") is None and parse_filter(None) is None
    with pytest.raises(FilterError, match="not valid JSON"):
        parse_filter("{category: shoes}")
    with pytest.raises(FilterError, match="must be a JSON object"):
        parse_filter("[1, 2]")


def test_size_limits():
    with pytest.raises(FilterError, match="more than 64 conditions"):
        to_expression({"or": [{"a": i} for i in range(65)]})
    deep: dict = {"a": 1}
    for _ in range(10):
        deep = {"not": deep}
    with pytest.raises(FilterError, match="nested more than"):
        to_expression(deep)


@given(st.text(max_size=40))
def test_any_string_value_is_one_json_literal(value):
    expr = to_expression({"k": value})
    prefix = 'meta["k"] == '
    assert expr.startswith(prefix)
    assert json.loads(expr[len(prefix):]) == value  # exactly one quoted literal, nothing spliced
