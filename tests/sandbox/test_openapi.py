"""The sandbox's OpenAPI documents: one schema per kind in v2 and v3, and v2's protobuf encoding (no root needed;
kubectl parsing it for real is in test_kubectl.py)."""

from __future__ import annotations

import json

import pytest
from kvc_sandbox import openapi, openapi_proto
from kvc_sandbox.resources import RESOURCES

KUBECTL_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return value, i


def fields(data: bytes) -> list[tuple[int, bytes]]:
    """A protobuf message's fields in order, each length-delimited (the only wire type the encoder writes)."""
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        assert key & 7 == 2, f"wire type {key & 7} at {i}"
        length, i = _varint(data, i)
        out.append((key >> 3, data[i:i + length]))
        i += length
    return out


def test_v2_definitions_are_the_v3_component_schemas():
    definitions = openapi.swagger()["definitions"]
    assert len(definitions) == len(RESOURCES)
    for r in RESOURCES:
        v3 = openapi.group_version_doc(r.group, r.version)["components"]["schemas"]
        assert definitions[openapi.model_name(r)] == v3[openapi.model_name(r)]
    assert "io.k8s.api.apps.v1.Deployment" in definitions and "io.k8s.api.events.v1.Event" in definitions


def test_protobuf_is_a_gnostic_document_with_every_definition_and_its_kind():
    doc = openapi.swagger()
    top = fields(openapi_proto.encode(doc))
    assert [n for n, _ in top] == [1, 2, 8, 9]  # swagger, info, paths, definitions
    assert top[0][1] == b"2.0" and fields(top[1][1]) == [(1, b"Kubernetes"), (2, b"v1.31.0")]
    named = [dict(fields(entry)) for _, entry in fields(top[3][1])]  # NamedSchema{name = 1, value = 2}
    assert [n[1].decode() for n in named] == list(doc["definitions"])
    pod = dict((k, v) for k, v in fields(named[0][2]) if k != 31)  # Schema; 31: vendor extensions
    assert pod == {4: doc["definitions"]["io.k8s.api.core.v1.Pod"]["description"].encode(), 22: b"\n\x06object"}
    (extension,) = [dict(fields(v)) for k, v in fields(named[0][2]) if k == 31]  # NamedAny{name, value: Any}
    assert extension[1] == b"x-kubernetes-group-version-kind"
    assert json.loads(dict(fields(extension[2]))[2]) == [{"group": "", "kind": "Pod", "version": "v1"}]


@pytest.mark.parametrize("doc", [{"swagger": "2.0", "basePath": "/"},
                                 {"paths": {"/api/v1/pods": {}}},
                                 {"definitions": {"x": {"properties": {}}}}])
def test_a_key_the_encoder_has_no_field_for_is_an_error_not_a_silent_drop(doc):
    with pytest.raises(ValueError):
        openapi_proto.encode(doc)


@pytest.mark.parametrize("accept, protobuf", [
    (KUBECTL_ACCEPT, True),
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", True),
    (f"{KUBECTL_ACCEPT}, application/json", True),
    (f"application/json, {KUBECTL_ACCEPT}", False),
    ("application/json", False),
    ("*/*", False),
    ("", False),
])
def test_protobuf_only_when_asked_for_before_json(accept, protobuf):
    assert openapi_proto.wanted(accept) is protobuf
