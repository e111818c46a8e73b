"""Label and field selectors select what `kubectl get -l/--field-selector` would select."""

from __future__ import annotations

import pytest

from pilothouse import selectors

WEB = {"app": "web", "tier": "frontend", "env": "a", "key": "x"}


@pytest.mark.parametrize(
    ("text", "labels", "selected"),
    [
        ("app=web", WEB, True),
        ("app==web", WEB, True),
        ("app=db", WEB, False),
        ("app!=db", WEB, True),
        ("missing!=x", WEB, True),  # != selects objects without the key
        ("env in (a,b)", WEB, True),
        ("env in (b, c)", WEB, False),
        ("env notin (b,c)", WEB, True),
        ("missing notin (b)", WEB, True),
        ("key", WEB, True),
        ("!key", WEB, False),
        ("!missing", WEB, True),
        ("app=web,tier!=db,env in (a,b),!nope,key", WEB, True),
        ("app=web,tier=db", WEB, False),
        (" app = web , tier != db ", WEB, True),
        ("", WEB, True),
        ("", {}, True),
        ("app=", {"app": ""}, True),
        ("app=", WEB, False),
        ("app.kubernetes.io/name=nginx", {"app.kubernetes.io/name": "nginx"}, True),
        ("replicas>2", {"replicas": "3"}, True),
        ("replicas<2", {"replicas": "3"}, False),
        ("replicas>2", {"replicas": "many"}, False),
        ("replicas>2", {}, False),
    ],
)
def test_label_selector(text: str, labels: dict[str, str], selected: bool) -> None:
    assert selectors.parse(text).matches(labels) is selected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("app=web,", "found end of selector"),
        ("app in a,b", "expected '(' opening the set of values"),
        ("app in (a,b", "expected ',' or ')'"),
        ("app in ()", "at least one value"),
        ("app web", "expected one of"),
        ("=web", "expected a label key"),
        ("bad key!=x y", "expected"),
        ("app=we b", "',' between requirements"),
        ("a/b/c=x", 'key "a/b/c"'),
        ("app=-web-", 'value "-web-"'),
        ("n>two", "an integer"),
    ],
)
def test_bad_label_selector_says_what_was_expected(text: str, fragment: str) -> None:
    with pytest.raises(selectors.SelectorError) as caught:
        selectors.parse(text)
    assert fragment in str(caught.value)
    assert f'"{text}"' in str(caught.value), "the message must quote the selector"
    assert isinstance(caught.value, ValueError)


def test_selector_prints_canonically() -> None:
    selector = selectors.parse("tier!=db, app=web,env in (b,a),!key,other")
    assert str(selector) == "app=web,env in (a,b),!key,other,tier!=db"
    assert selectors.parse(str(selector)) == selector


def test_match_labels() -> None:
    selector = selectors.from_match_labels({"app": "web", "tier": "frontend"})
    assert selector.matches(WEB)
    assert not selector.matches({"app": "web"})
    assert str(selector) == "app=web,tier=frontend"
    assert selectors.from_match_labels({}).empty
    assert selectors.from_match_labels({}).matches({"anything": "at all"})


def test_field_selector() -> None:
    parsed = selectors.parse_fields("spec.nodeName=n1, metadata.name!=web ,status.phase==Running")
    assert parsed == [
        ("spec.nodeName", "=", "n1"),
        ("metadata.name", "!=", "web"),
        ("status.phase", "=", "Running"),
    ]
    path, op, value = parsed[1]
    assert (path, op, value) == ("metadata.name", selectors.Operator.NOT_EQUALS, "web")
    fields = {"spec.nodeName": "n1", "metadata.name": "api", "status.phase": "Running"}
    assert selectors.fields_match(parsed, fields)
    assert not selectors.fields_match(parsed, {**fields, "metadata.name": "web"})


def test_field_selector_empty_value_selects_unset_fields() -> None:
    unscheduled = selectors.parse_fields("spec.nodeName=")
    assert unscheduled == [("spec.nodeName", "=", "")]
    assert selectors.fields_match(unscheduled, {})
    assert not selectors.fields_match(unscheduled, {"spec.nodeName": "n1"})
    assert selectors.parse_fields("") == []


def test_field_selector_escapes() -> None:
    assert selectors.parse_fields(r"metadata.name=a\,b") == [("metadata.name", "=", "a,b")]


@pytest.mark.parametrize("text", ["spec.nodeName", "=n1", "spec..nodeName=n1", "a=b,c"])
def test_bad_field_selector(text: str) -> None:
    with pytest.raises(selectors.SelectorError, match="invalid field selector"):
        selectors.parse_fields(text)
