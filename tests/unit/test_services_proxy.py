"""DataPlane errors a user reads when the node lacks nft or nft refuses, without root."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.services.model import NodeFacts, ProxyState
from nodeagent.services.proxy import DataPlane, DataPlaneError, Step

STATE = ProxyState(node=NodeFacts(node_ips=("192.0.2.1",)))


async def test_a_missing_nft_is_named() -> None:
    plane = DataPlane(nft="/nonexistent/nft")
    with pytest.raises(DataPlaneError, match="/nonexistent/nft is not installed") as caught:
        await plane.program(STATE)
    assert caught.value.step is Step.APPLY


async def test_nft_refusing_is_reported_with_its_words(tmp_path: Path) -> None:
    fake = tmp_path / "nft"
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho 'Error: Could not process rule' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(DataPlaneError, match="apply failed: Error: Could not process rule"):
        await DataPlane(nft=str(fake)).program(STATE)
    with pytest.raises(DataPlaneError, match="remove failed"):
        await DataPlane(nft=str(fake)).remove()
