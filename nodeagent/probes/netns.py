"""Connections made from inside a container's network namespace, for httpGet and tcpSocket.

A socket belongs to the network namespace it was created in, whatever thread later uses it.
So a short-lived thread of its own enters the container's namespace (setns on
/proc/<pid>/ns/net affects only the calling thread), creates the socket and ends; the event
loop then connects and talks over that socket as over any other.

Invariants: no thread of the agent other than that throwaway one ever changes namespace; the
namespace file descriptor is closed before the thread ends; pid 0 means "the node's own
namespace" (no setns at all).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading

from pilothouse import libc


class NamespaceError(OSError):
    """The container's network namespace cannot be entered (the process is gone, or no root)."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def socket_in(pid: int, family: socket.AddressFamily) -> socket.socket:
    """A non-blocking TCP socket of process `pid`'s network namespace (blocking call)."""
    if pid <= 0:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_make() -> None:
        path = f"/proc/{pid}/ns/net"
        try:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise NamespaceError(
                    exc.errno,
                    f"cannot open the container's network namespace {path}: {exc.strerror}",
                ) from None
            try:
                libc.setns(fd, libc.CLONE_NEWNET)
            except OSError as exc:
                raise NamespaceError(
                    exc.errno,
                    f"cannot enter the container's network namespace {path}: " + exc.strerror,
                ) from None
            finally:
                os.close(fd)
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            made.append(sock)
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=enter_and_make, name=f"netns-{pid}", daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


async def connect(host: str, port: int, *, pid: int) -> socket.socket:
    """A TCP connection to host:port made from the namespace of `pid` (0: the node's).

    `host` must be an IP literal when `pid` is set (names resolve in the node's context).
    The caller bounds the time (asyncio.timeout) and owns the returned socket.
    """
    sock = await asyncio.to_thread(socket_in, pid, _family(host))
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock
