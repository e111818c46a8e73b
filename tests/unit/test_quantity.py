"""Quantities read and print as Kubernetes reads and prints them."""

from __future__ import annotations

import pytest

from pilothouse import quantity


@pytest.mark.parametrize(
    ("text", "millicores"),
    [
        ("250m", 250),
        ("0.5", 500),
        ("2", 2000),
        (2, 2000),
        (0.25, 250),
        ("1.5", 1500),
        ("100u", 1),  # rounded up: a request never shrinks
        ("1k", 1_000_000),
        ("+3", 3000),
        (".5", 500),
        ("5e-1", 500),
    ],
)
def test_cpu(text: str | int | float, millicores: int) -> None:
    assert quantity.parse_cpu(text) == millicores


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("128Mi", 128 * 2**20),
        ("1G", 10**9),
        ("512", 512),
        ("1e3", 1000),
        ("1E3", 1000),
        ("1.5Gi", 3 * 2**29),
        ("1Ki", 1024),
        ("2Ti", 2 * 2**40),
        ("1Ei", 2**60),
        ("1E", 10**18),
        ("1k", 1000),
        ("500m", 1),  # half a byte rounds up
        (64, 64),
        (1.5, 2),
    ],
)
def test_memory(text: str | int | float, count: int) -> None:
    assert quantity.parse_memory(text) == count


@pytest.mark.parametrize("bad", ["12Zi", "", "Mi", "1.2.3", "12 Mi", "1KiB", "1e", "ten", "0x10"])
def test_bad_quantity_names_the_value_and_the_grammar(bad: str) -> None:
    with pytest.raises(quantity.QuantityError) as caught:
        quantity.parse_memory(bad)
    message = str(caught.value)
    assert f'"{bad}"' in message, "the message must quote the value the user wrote"
    assert "quantities must match the regular expression" in message


@pytest.mark.parametrize("bad", [True, None, [1], float("nan")])
def test_non_quantity_types_are_refused(bad: object) -> None:
    with pytest.raises(quantity.QuantityError):
        quantity.parse_cpu(bad)  # type: ignore[arg-type]


def test_quantity_error_is_a_value_error() -> None:
    assert issubclass(quantity.QuantityError, ValueError)


@pytest.mark.parametrize(
    ("millis", "text"), [(250, "250m"), (1000, "1"), (2500, "2500m"), (0, "0"), (4000, "4")]
)
def test_format_cpu(millis: int, text: str) -> None:
    assert quantity.format_cpu(millis) == text
    assert quantity.parse_cpu(text) == millis


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (128 * 2**20, "128Mi"),
        (2**30, "1Gi"),
        (10**9, "1G"),
        (1536, "1536"),
        (3 * 2**29, "1536Mi"),
        (1000, "1k"),
        (1001, "1001"),
        (0, "0"),
    ],
)
def test_format_memory(count: int, text: str) -> None:
    assert quantity.format_memory(count) == text
    assert quantity.parse_memory(text) == count


@pytest.mark.parametrize(
    ("number", "text"), [(2, "2"), (0.5, "500m"), (1.0, "1"), (0.0001, "100u"), (110, "110")]
)
def test_bare_yaml_numbers_take_the_kubernetes_string_form(number: float, text: str) -> None:
    assert quantity.canonical(number) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (24683772 * 1024, "24Gi"),
        (268435456, "256Mi"),
        (16 * 1024**2, "16Mi"),
        (1536, "1.5Ki"),
        (1000, "1000"),
        (5 * 1024**3 + 1, "5Gi"),
        (int(9.96 * 1024**3), "10Gi"),
        (int(9.94 * 1024**3), "9.9Gi"),
    ],
)
def test_human_memory_is_what_a_table_shows(count: int, text: str) -> None:
    assert quantity.human_memory(count) == text
