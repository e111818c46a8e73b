"""ListNodeImages: each node's images, asked of its agent (the way pod logs are proxied).

The nodes are asked at once, each over its own mutual-TLS channel (`controlplane.nodes.agent`);
a node whose agent cannot answer (no address registered, unreachable, cut off) is listed
with the reason in `error` instead of failing the whole answer. A node named that does not
exist is NOT_FOUND (the store's error, mapped where every error is).
"""

from __future__ import annotations

import asyncio

from controlplane.nodes import conditions
from controlplane.nodes.agent import AgentCallFailed, Connect
from controlplane.objects import ObjectStore
from pilothouse import kinds
from pilothouse.v1 import controlplane_pb2 as api
from pilothouse.v1 import objects_pb2


async def list_node_images(
    objects: ObjectStore, *, connect: Connect, node: str = ""
) -> api.ListNodeImagesResponse:
    """The images of `node`, or of every node (sorted by name)."""
    if node:
        nodes = [await objects.get(kinds.Kind.NODE, "", node)]
    else:
        nodes = list((await objects.list(kinds.Kind.NODE, None)).items)
    answers = await asyncio.gather(*(_images_of(n, connect=connect) for n in nodes))
    return api.ListNodeImagesResponse(nodes=sorted(answers, key=lambda a: a.node))


async def _images_of(node: objects_pb2.Node, *, connect: Connect) -> api.NodeImages:
    name = node.metadata.name
    address = conditions.endpoint(node)
    if address is None:
        return api.NodeImages(node=name, error=f'node "{name}" has not registered an agent address')
    try:
        async with connect(address, name) as agent:
            listed = await agent.list_images()
    except AgentCallFailed as error:
        return api.NodeImages(node=name, error=error.message)
    return api.NodeImages(
        node=name,
        images=listed.images,
        filesystem_capacity_bytes=listed.filesystem_capacity_bytes,
        filesystem_available_bytes=listed.filesystem_available_bytes,
    )
