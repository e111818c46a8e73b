"""One DNS message in, one out: cluster names from the zone, the rest from upstream.

Wire format is dnspython's. Local answers are authoritative (AA), TTL 5 s, with the zone's
SOA in the authority section of negative answers (NXDOMAIN, NODATA) so resolvers cache them
for 5 s. A query that does not parse gets no answer (nothing to address it to), one with
other than one question FORMERR, a non-QUERY opcode NOTIMP, a class other than IN in the
cluster zone REFUSED, and a forward that found no resolver SERVFAIL.

Over UDP an answer larger than the client accepts (512 bytes, or its EDNS payload size) is
sent truncated (TC, no records), and the client retries over TCP.
"""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from nodeagent.dns.records import Answer, Outcome, Record, Zone, rtype_of
from nodeagent.dns.upstream import Upstream

UDP_DEFAULT_PAYLOAD = 512


class Responder:
    """Answers from `zone` (swapped whole by `update`) and forwards through `upstream`."""

    def __init__(self, zone: Zone, upstream: Upstream | None) -> None:
        self.zone = zone
        self.upstream = upstream

    async def respond(self, wire: bytes, *, tcp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        response = await self._response(query, tcp=tcp)
        limit = 65535 if tcp else _payload(query)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.flags |= dns.flags.TC
            for section in (response.answer, response.authority, response.additional):
                section.clear()
            return response.to_wire(max_size=limit)

    async def _response(self, query: dns.message.Message, *, tcp: bool) -> dns.message.Message:
        if query.opcode() != dns.opcode.QUERY:
            return _error(query, dns.rcode.NOTIMP)
        if len(query.question) != 1:
            return _error(query, dns.rcode.FORMERR)
        question = query.question[0]
        answer = self.zone.lookup(
            question.name.to_text(), rtype_of(dns.rdatatype.to_text(question.rdtype))
        )
        if answer.outcome is Outcome.FORWARD:
            return await self._forward(query, tcp=tcp)
        if question.rdclass != dns.rdataclass.IN:
            return _error(query, dns.rcode.REFUSED)
        return _local(query, answer)

    async def _forward(self, query: dns.message.Message, *, tcp: bool) -> dns.message.Message:
        if self.upstream is None:
            return _error(query, dns.rcode.SERVFAIL)
        forwarded = await self.upstream.forward(query, tcp=tcp)
        if forwarded.response is None:
            return _error(query, dns.rcode.SERVFAIL)
        return forwarded.response


def _local(query: dns.message.Message, answer: Answer) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    response.flags &= ~dns.flags.RA
    qname = query.question[0].name
    if answer.outcome is Outcome.NXDOMAIN:
        response.set_rcode(dns.rcode.NXDOMAIN)
    response.answer.extend(_rrsets(answer.records, name=qname))
    response.additional.extend(_rrsets(answer.additional))
    if answer.soa is not None:
        response.authority.extend(_rrsets((answer.soa,)))
    return response


def _rrsets(
    records: tuple[Record, ...], *, name: dns.name.Name | None = None
) -> list[dns.rrset.RRset]:
    """Records grouped by (name, type) into RRsets; `name` spells the owner as asked."""
    grouped: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        grouped.setdefault((record.name, record.rtype.value), []).append(record)
    out = []
    for (owner, rtype), group in grouped.items():
        out.append(
            dns.rrset.from_text_list(
                name if name is not None else owner + ".",
                group[0].ttl,
                dns.rdataclass.IN,
                rtype,
                [r.value for r in group],
            )
        )
    return out


def _error(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    return response


def _payload(query: dns.message.Message) -> int:
    return max(UDP_DEFAULT_PAYLOAD, query.payload) if query.edns >= 0 else UDP_DEFAULT_PAYLOAD


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR, echoing the id, for a message with a header; None (no answer) for garbage."""
    if len(wire) < 12:
        return None
    response = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    response.flags = dns.flags.QR
    response.set_rcode(dns.rcode.FORMERR)
    return response.to_wire()
