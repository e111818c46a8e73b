"""The node's DNS server loads dnspython on its first query, not before: an agent whose pods
never ask pays nothing for it, and the first query is answered all the same."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, socket, sys
    from nodeagent.dns.records import ClusterRecords
    from nodeagent.dns.server import DnsServer

    async def main() -> None:
        server = DnsServer(host="127.0.0.1", port=0, resolv_conf=None, records=ClusterRecords())
        host, port = await server.start()
        print("before", "dns" in sys.modules)
        import dns.message, dns.rcode
        query = dns.message.make_query("web.default.svc.cluster.local.", "A")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        await loop.sock_sendto(sock, query.to_wire(), (host, port))
        reply = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(sock, 4096), 10))
        print("answered", reply.id == query.id, dns.rcode.to_text(reply.rcode()))
        sock.close()
        await server.close()

    asyncio.run(main())
    """
)


def test_dnspython_loads_on_the_first_query() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(("before", "answer"))]
    assert lines == ["before False", "answered True NXDOMAIN"], done.stdout
