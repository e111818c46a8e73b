"""A small structural model of one nftables table, and its text for `nft -f`.

The renderer builds a `Table` (sets, maps, chains and their rules as nft statements) instead of
concatenating text, so tests can assert on structure (which chain jumps where, which map holds
which key) and the bench can count rules without parsing nft's output.

Invariants:
- `Table.replace_text()` is one transaction for `nft -f`: `add table` (so `delete` never
  fails), `delete table`, then the whole table: the kernel swaps old for new atomically, and
  no packet ever sees a half-built table;
- `Table.delete_text()` removes the table and is a no-op when it does not exist;
- names and elements are put in the text as given: the caller passes only validated values
  (see `services.model`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class NftSet:
    """A named set (`verdict` map when `map_to` is given) with its elements."""

    name: str
    key_type: str
    elements: tuple[str, ...] = ()
    map_to: str = ""
    flags: tuple[str, ...] = ()
    timeout_s: int = 0

    @property
    def kind(self) -> str:
        return "map" if self.map_to else "set"

    def text(self) -> str:
        parts = [f"type {self.key_type}" + (f" : {self.map_to}" if self.map_to else "")]
        if self.flags:
            parts.append("flags " + ",".join(self.flags))
        if self.timeout_s:
            parts.append(f"timeout {self.timeout_s}s")
        if self.elements:
            parts.append("elements = { " + ",\n\t\t\t".join(self.elements) + " }")
        body = "; ".join(parts)
        return f"\t{self.kind} {self.name} {{ {body}; }}\n"


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain; `hook` is the base-chain declaration (`type nat hook ... priority ...`)."""

    name: str
    rules: tuple[str, ...] = ()
    hook: str = ""

    def text(self) -> str:
        lines = [f"\tchain {self.name} {{\n"]
        if self.hook:
            lines.append(f"\t\t{self.hook}; policy accept;\n")
        lines.extend(f"\t\t{rule}\n" for rule in self.rules)
        lines.append("\t}\n")
        return "".join(lines)


@dataclass(frozen=True, slots=True)
class Table:
    """One nftables table: `family` (ip, inet), `name`, its sets/maps and chains."""

    family: str
    name: str
    sets: tuple[NftSet, ...] = ()
    chains: tuple[Chain, ...] = ()
    comment: str = ""
    _by_name: dict[str, Chain | NftSet] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for item in (*self.sets, *self.chains):
            if item.name in self._by_name:
                raise ValueError(f"nft table {self.name}: {item.name!r} is defined twice")
            self._by_name[item.name] = item

    @property
    def spec(self) -> str:
        return f"{self.family} {self.name}"

    def chain(self, name: str) -> Chain:
        found = self._by_name.get(name)
        if not isinstance(found, Chain):
            raise KeyError(f"no chain {name!r} in table {self.name}")
        return found

    def set(self, name: str) -> NftSet:
        found = self._by_name.get(name)
        if not isinstance(found, NftSet):
            raise KeyError(f"no set or map {name!r} in table {self.name}")
        return found

    def has(self, name: str) -> bool:
        return name in self._by_name

    @property
    def rule_count(self) -> int:
        return sum(len(chain.rules) for chain in self.chains)

    @property
    def element_count(self) -> int:
        return sum(len(s.elements) for s in self.sets)

    def text(self) -> str:
        """The table's definition (`table FAMILY NAME { ... }`)."""
        out = [f"table {self.spec} {{\n"]
        if self.comment:
            out.append(f'\tcomment "{self.comment}"\n')
        out.extend(s.text() for s in self.sets)
        out.extend(c.text() for c in self.chains)
        out.append("}\n")
        return "".join(out)

    def replace_text(self) -> str:
        """One `nft -f` transaction that replaces whatever table of this name exists."""
        return delete_text(self.family, self.name) + self.text()


def delete_text(family: str, name: str) -> str:
    """One `nft -f` transaction that removes the table `family name` if it exists."""
    return f"add table {family} {name}\ndelete table {family} {name}\n"


def vmap(key: str, verdicts: Sequence[tuple[str, str]]) -> str:
    """An anonymous verdict map statement: `KEY vmap { k : verdict, ... }`."""
    inner = ", ".join(f"{k} : {v}" for k, v in verdicts)
    return f"{key} vmap {{ {inner} }}"
