"""The cluster's DNS names (Kubernetes DNS spec) from plain data, and the answer to a question.

Names, under the cluster domain D (default cluster.local), TTL 5 s (CoreDNS' default and floor):
- `<svc>.<ns>.svc.D` A: the ClusterIP; for a headless Service, every ready endpoint's IP;
- `<host>.<svc>.<ns>.svc.D` A, headless only: one endpoint, by its hostname or else its
  dashed IP (`10-244-1-5`);
- `_<port>._<proto>.<svc>.<ns>.svc.D` SRV for each named port: target the Service name
  (ClusterIP) or each endpoint's name (headless), with the matching A records as additional;
- `<a-b-c-d>.<ns>.pod.D` A: the IP spelt by the name (CoreDNS `pods insecure`, the default of
  Kubernetes' Corefile), or only IPs of known pods with `PodRecords.VERIFIED`.

`Zone.lookup(name, rtype)` gives NOERROR with records, NODATA (NOERROR, none: the name exists
with other types, or has names below it), NXDOMAIN (a name under D that does not exist), or
FORWARD (a name outside D: the node's resolvers answer it). Names are compared in lowercase,
without the final dot.

Invariants: a `Zone` is immutable and built whole from `ClusterRecords`, so a server swaps
zones by assignment and never answers from half an update; only ready endpoints are given.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field

TTL_S = 5
DEFAULT_DOMAIN = "cluster.local"
_DASHED = re.compile(r"^(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})$")


class RType(enum.Enum):
    A = "A"
    AAAA = "AAAA"
    SRV = "SRV"
    SOA = "SOA"
    OTHER = "OTHER"


class Outcome(enum.Enum):
    ANSWER = "answer"  # NOERROR; `records` may be empty (NODATA)
    NXDOMAIN = "nxdomain"
    FORWARD = "forward"


class PodRecords(enum.Enum):
    INSECURE = "insecure"  # any well-formed dashed IP, as CoreDNS' `pods insecure`
    VERIFIED = "verified"  # only (namespace, IP) pairs listed in `ClusterRecords.pods`


@dataclass(frozen=True, slots=True)
class DnsPort:
    """A Service port (or, on an endpoint, the port its pod serves it on)."""

    name: str
    port: int
    protocol: str = "tcp"


@dataclass(frozen=True, slots=True)
class DnsEndpoint:
    """A ready endpoint of a headless Service; `ports` by name, else the Service's ports."""

    ip: str
    hostname: str = ""
    ports: tuple[DnsPort, ...] = ()


@dataclass(frozen=True, slots=True)
class DnsService:
    namespace: str
    name: str
    cluster_ip: str  # "" for a headless Service
    ports: tuple[DnsPort, ...] = ()
    endpoints: tuple[DnsEndpoint, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterRecords:
    """What the node's DNS answers for the cluster."""

    services: tuple[DnsService, ...] = ()
    domain: str = DEFAULT_DOMAIN
    pod_records: PodRecords = PodRecords.INSECURE
    pods: frozenset[tuple[str, str]] = frozenset()  # (namespace, IP), for VERIFIED


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record; `value` in presentation format (`10.96.0.1`, `0 100 80 a.b.`)."""

    name: str
    rtype: RType
    value: str
    ttl: int = TTL_S


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    records: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    soa: Record | None = None  # the zone's SOA, for negative answers


@dataclass(frozen=True, slots=True)
class Zone:
    """An index of the cluster's names, built once per update."""

    domain: str
    names: dict[str, dict[RType, tuple[Record, ...]]] = field(default_factory=dict)
    pod_records: PodRecords = PodRecords.INSECURE
    pods: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def build(cls, records: ClusterRecords) -> Zone:
        domain = records.domain.lower().strip(".")
        zone = cls(domain, {}, records.pod_records, records.pods)
        zone._add(Record(domain, RType.SOA, soa_value(domain), TTL_S))
        zone._touch(f"pod.{domain}")
        for svc in records.services:
            zone._service(svc)
        return zone

    @property
    def soa(self) -> Record:
        return self.names[self.domain][RType.SOA][0]

    def lookup(self, name: str, rtype: RType) -> Answer:
        qname = name.lower().rstrip(".")
        if qname != self.domain and not qname.endswith("." + self.domain):
            return Answer(Outcome.FORWARD)
        found = self.names.get(qname)
        if found is None:
            pod = self._pod(qname)
            if pod is None:
                return Answer(Outcome.NXDOMAIN, soa=self.soa)
            found = {RType.A: (pod,)}
        records = found.get(rtype, ())
        if not records:
            return Answer(Outcome.ANSWER, soa=self.soa)
        extra: list[Record] = []
        if rtype is RType.SRV:
            for srv in records:
                target = srv.value.split()[-1].rstrip(".")
                extra.extend(self.names.get(target, {}).get(RType.A, ()))
        return Answer(Outcome.ANSWER, records, tuple(extra))

    # -- building ----------------------------------------------------------------------------

    def _service(self, svc: DnsService) -> None:
        base = f"{svc.name}.{svc.namespace}.svc.{self.domain}".lower()
        if svc.cluster_ip:
            self._add(Record(base, RType.A, svc.cluster_ip))
            for port in svc.ports:
                if port.name:
                    self._add(_srv(port, base, port.port, base, weight=100))
            return
        self._touch(base)
        targets: list[tuple[str, DnsEndpoint]] = []
        for endpoint in svc.endpoints:
            self._add(Record(base, RType.A, endpoint.ip))
            host = f"{endpoint.hostname or endpoint.ip.replace('.', '-')}.{base}".lower()
            self._add(Record(host, RType.A, endpoint.ip))
            targets.append((host, endpoint))
        weight = max(1, 100 // max(1, len(targets)))
        for port in svc.ports:
            if not port.name:
                continue
            for host, endpoint in targets:
                served = {p.name: p.port for p in endpoint.ports}.get(port.name, port.port)
                self._add(_srv(port, base, served, host, weight=weight))
            if not targets:
                self._touch(_srv_name(port, base))

    def _add(self, record: Record) -> None:
        kinds = self.names.setdefault(record.name, {})
        kept = kinds.get(record.rtype, ())
        if record not in kept:
            kinds[record.rtype] = (*kept, record)
        self._touch(record.name)

    def _touch(self, name: str) -> None:
        """`name` and every name between it and the domain exist (possibly with no data)."""
        while name != self.domain and name.endswith("." + self.domain):
            self.names.setdefault(name, {})
            name = name.split(".", 1)[1]

    def _pod(self, qname: str) -> Record | None:
        labels = qname[: -len(self.domain) - 1].split(".")
        if len(labels) != 3 or labels[2] != "pod":
            return None
        match = _DASHED.match(labels[0])
        if match is None:
            return None
        try:
            ip = str(ipaddress.IPv4Address(".".join(match.groups())))
        except ValueError:
            return None
        if self.pod_records is PodRecords.VERIFIED and (labels[1], ip) not in self.pods:
            return None
        return Record(qname, RType.A, ip)


def soa_value(domain: str) -> str:
    """CoreDNS' SOA for the cluster zone; the last field is the negative-caching TTL."""
    return f"ns.dns.{domain}. hostmaster.{domain}. 1 7200 1800 86400 {TTL_S}"


def _srv_name(port: DnsPort, base: str) -> str:
    return f"_{port.name}._{port.protocol.lower()}.{base}".lower()


def _srv(port: DnsPort, base: str, number: int, target: str, *, weight: int) -> Record:
    return Record(_srv_name(port, base), RType.SRV, f"0 {weight} {number} {target}.")


def rtype_of(name: str) -> RType:
    """The RType for a type mnemonic (`A`, `SRV`, ...); OTHER for any type not served here."""
    try:
        return RType(name.upper())
    except ValueError:
        return RType.OTHER
