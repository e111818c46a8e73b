"""Resource quantities in Kubernetes notation: cpu in millicores, memory in bytes.

Invariants: the grammar is Kubernetes' (`resource.Quantity`): a signed decimal number followed by
a binary suffix (Ki Mi Gi Ti Pi Ei), a decimal suffix (n u m "" k M G T P E) or a decimal
exponent (e3, E-2). Parsing rounds up to the unit (a millicore, a byte), as Kubernetes'
`MilliValue()`/`Value()` do, so a request never shrinks. Anything else is a `QuantityError`
whose message names the value and the expected form.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

# The expression Kubernetes quotes in its own error message.
K8S_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"

_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_QUANTITY = re.compile(
    rf"^(?P<number>{_NUMBER})(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


class QuantityError(ValueError):
    """A value that is not a quantity in Kubernetes notation."""


def parse(value: str | int | float) -> Decimal:
    """The exact value of a quantity: `parse("1.5Gi") == Decimal(1610612736)`."""
    if isinstance(value, bool):
        raise QuantityError(f"quantity must be a string or a number, got {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"quantity must be a finite number, got {value!r}")
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise QuantityError(f"quantity must be a string or a number, got {value!r}")
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise QuantityError(
            f'"{value}": quantities must match the regular expression {K8S_PATTERN!r}'
        )
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise QuantityError(f'"{value}": not a number') from exc
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * (1024 ** _BINARY[suffix])
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    return number.scaleb(int(suffix[1:]))  # decimal exponent


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def parse_cpu(value: str | int | float) -> int:
    """Millicores: "250m" -> 250, "0.5" -> 500, "2" -> 2000, 2 -> 2000."""
    return _ceil(parse(value) * 1000)


def parse_memory(value: str | int | float) -> int:
    """Bytes: "128Mi" -> 134217728, "1G" -> 10**9, "512" -> 512, "1e3" -> 1000."""
    return _ceil(parse(value))


def format_cpu(millis: int) -> str:
    """The Kubernetes form of a cpu amount: 2000 -> "2", 250 -> "250m"."""
    if millis % 1000 == 0:
        return str(millis // 1000)
    return f"{millis}m"


def format_memory(count: int) -> str:
    """The shortest exact Kubernetes form of a byte count: 134217728 -> "128Mi", 10**9 -> "1G"."""
    if count == 0:
        return "0"
    for suffix, power in sorted(_BINARY.items(), key=lambda item: -item[1]):
        if count % (1024**power) == 0:
            return f"{count // 1024**power}{suffix}"
    for suffix, exponent in sorted(_DECIMAL.items(), key=lambda item: -item[1]):
        if exponent > 0 and count % (10**exponent) == 0:
            return f"{count // 10**exponent}{suffix}"
    return str(count)


def human_memory(count: int) -> str:
    """A byte count as a person reads it in a table, in the largest binary unit that keeps it at
    or above 1, rounded to a whole number (one decimal below 10): 25275662336 (23.5 GiB) ->
    "24Gi", 268435456 -> "256Mi", 1536 -> "1.5Ki". Exact forms stay `format_memory`'s."""
    if count < 1024:
        return str(count)
    for suffix, power in sorted(_BINARY.items(), key=lambda item: -item[1]):
        scaled = count / 1024**power
        if scaled >= 1:
            text = f"{scaled:.0f}" if scaled >= 9.95 else f"{scaled:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return str(count)


def canonical(value: int | float) -> str:
    """The Kubernetes string form of a bare YAML number: 2 -> "2", 0.5 -> "500m", 1e-9 -> "1n"."""
    exact = parse(value)
    for suffix, exponent in (("", 0), ("m", -3), ("u", -6), ("n", -9)):
        scaled = exact.scaleb(-exponent)
        if scaled == scaled.to_integral_value():
            return f"{int(scaled)}{suffix}"
    return f"{_ceil(exact.scaleb(9))}n"


def is_negative(value: str | int | float) -> bool:
    return parse(value) < 0
