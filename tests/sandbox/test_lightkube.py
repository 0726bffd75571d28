"""The sandbox as lightkube (httpx) sees it (root only: pods are network namespaces).

lightkube raises its `ApiError` (with the Status) only when an error response says `Content-Type:
application/json` exactly; with `; charset=utf-8` a new user got a plain httpx error for a 409.
"""

from __future__ import annotations

import pytest
from apihelpers import pod_manifest
from lightkube import ApiError, Client, KubeConfig, codecs
from lightkube.resources.core_v1 import Pod

pytestmark = pytest.mark.root


@pytest.fixture
def lightkube(sandbox):
    with Client(config=KubeConfig.from_file(sandbox.kubeconfig), namespace="default") as client:
        yield client


def test_lightkube_gets_api_errors_for_a_conflict_and_a_missing_pod_and_lists_pods(lightkube):
    created = lightkube.create(codecs.from_dict(pod_manifest("lk")))
    assert isinstance(created, Pod) and created.metadata.uid

    with pytest.raises(ApiError) as conflict:
        lightkube.create(codecs.from_dict(pod_manifest("lk")))
    assert conflict.value.status.code == 409 and conflict.value.status.reason == "AlreadyExists"

    with pytest.raises(ApiError) as missing:
        lightkube.get(Pod, "missing")
    assert missing.value.status.code == 404 and missing.value.status.reason == "NotFound"

    assert [p.metadata.name for p in lightkube.list(Pod)] == ["lk"]
    event, pod = next(iter(lightkube.watch(Pod, namespace="default")))
    assert (event, pod.metadata.uid) == ("ADDED", created.metadata.uid)
