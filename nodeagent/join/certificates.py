"""A node's credentials on disk under `<state-dir>/pki/`: joined once, renewed before they
expire (`NodeCertificates`).

Renewal: past two thirds of the certificate's life (`fraction`), through `handshake.renew`;
a failure is retried with backoff while the current certificate still serves.

Invariants: the files (key 0600) are replaced only by a complete set; credentials of another
node, of another cluster (CA hash) or past their expiry are never used: the node joins again,
which needs a token; the agent's server and every new channel follow a renewal without a
restart.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from pathlib import Path

import grpc
import structlog

from nodeagent.join.handshake import JoinError, NodeCredentials, join, renew
from pilothouse import credentials, pki

log = structlog.get_logger(__name__)

_RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


class NodeCertificates:
    """A node's credentials on disk: joined once, renewed before they expire.

    `ensure()` before the agent talks to anyone; `run()` as a runnable; `material()` for each
    new channel to the control plane and `server_credentials()` for the agent's own server
    (both follow renewals without a restart)."""

    def __init__(
        self,
        directory: Path,
        *,
        node_name: str,
        server: str,
        join_server: str = "",
        token: str = "",
        token_file: Path | None = None,
        ca_cert_hash: str = "",
        now: Callable[[], datetime.datetime] = pki.utcnow,
        fraction: float = 2 / 3,
    ) -> None:
        self._directory = directory
        self._node_name = node_name
        self._server = server
        self._join_server = join_server or server
        self._token = token
        self._token_file = token_file
        self._ca_cert_hash = ca_cert_hash
        self._now = now
        self._fraction = fraction
        self._current: NodeCredentials | None = None

    @property
    def current(self) -> NodeCredentials:
        if self._current is None:
            raise RuntimeError("NodeCertificates.ensure() has not run")
        return self._current

    def material(self) -> credentials.TlsMaterial:
        return self.current.material

    async def ensure(self) -> NodeCredentials:
        found = NodeCredentials.load(self._directory)
        now = self._now()
        if found is not None and self._usable(found, now):
            self._current = found
            if pki.needs_renewal(found.cert, now, self._fraction):
                await self.renew_once()
            return self.current
        token = self._token or self._read_token_file()
        if not token or not self._ca_cert_hash:
            raise JoinError(
                f"node {self._node_name!r} has no valid certificate in {self._directory}; "
                "join it with --token-file (or --token -) and --ca-cert-hash "
                "(`pilothouse token create --print-join-command` prints how)"
            )
        joined = await join(
            join_address=self._join_server,
            token=token,
            ca_cert_hash=self._ca_cert_hash,
            node_name=self._node_name,
        )
        joined.save(self._directory)
        self._current = joined
        return joined

    def _read_token_file(self) -> str:
        """The token in --token-file ("" without one); a file others may read is used, with a
        warning."""
        path = self._token_file
        if path is None:
            return ""
        try:
            mode = path.stat().st_mode
            text = path.read_text().strip()
        except OSError as error:
            raise JoinError(f"cannot read the join token file {path}: {error.strerror}") from None
        if mode & 0o077:
            log.warning(
                "node.token_file_readable",
                path=str(path),
                mode=oct(mode & 0o777),
                note="other users can read the join token: chmod 600 it",
            )
        return text.splitlines()[0].strip() if text else ""

    async def renew_once(self) -> NodeCredentials:
        renewed = await renew(address=self._server, current=self.current)
        renewed.save(self._directory)
        self._current = renewed
        return renewed

    async def run(self) -> None:
        """Renew at two thirds of each certificate's life; retry with backoff on failure."""
        failures = 0
        while True:
            due = pki.renewal_time(self.current.cert, self._fraction)
            wait = (due - self._now()).total_seconds()
            if wait > 0:
                await asyncio.sleep(min(wait, 3600.0))
                continue
            try:
                await self.renew_once()
                failures = 0
            except JoinError as error:
                delay = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("node.cert_renewal_failed", node=self._node_name, error=str(error))
                await asyncio.sleep(delay)

    def server_credentials(self) -> grpc.ServerCredentials:
        """mTLS for the agent's server with the node certificate; picks up renewals."""
        served = self.current

        def config(found: NodeCredentials) -> object:
            return grpc.ssl_server_certificate_configuration(
                [(found.key_pem, found.cert_pem + found.ca_pem)], root_certificates=found.ca_pem
            )

        def fetch() -> object | None:
            nonlocal served
            if self._current is None or self._current is served:
                return None
            served = self._current
            return config(served)

        return grpc.dynamic_ssl_server_credentials(
            config(served), fetch, require_client_authentication=True
        )

    def _usable(self, found: NodeCredentials, now: datetime.datetime) -> bool:
        if found.node_name != self._node_name:
            log.warning(
                "node.cert_other_node", node=self._node_name, cert_node=found.node_name or ""
            )
            return False
        if now >= found.cert.not_valid_after_utc:
            log.warning("node.cert_expired", node=self._node_name)
            return False
        if self._ca_cert_hash:
            try:
                same = pki.ca_cert_hash(found.ca_pem) == pki.check_hash_format(self._ca_cert_hash)
            except pki.PkiError:
                same = False
            if not same:
                log.warning("node.cert_other_cluster", node=self._node_name)
                return False
        return True
