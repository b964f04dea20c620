from __future__ import annotations

import pytest

from ..harness import NodeProcess


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = NodeProcess("api-node", tmp_path_factory.mktemp("api-node"),
                          settings={"limits": {"max_body_bytes": 65536, "max_metadata_bytes": 256}})
    process.start()
    yield process
    process.terminate()


@pytest.fixture
def client(node):
    with node.client() as c:
        yield c
