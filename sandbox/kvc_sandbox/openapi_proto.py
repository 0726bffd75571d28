"""`/openapi/v2` in protobuf, the only form kubectl takes it in.

client-go's discovery client (0.31, `DiscoveryClient.OpenAPISchema`) asks `/openapi/v2` for
`application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and unmarshals whatever comes back as gnostic's
`openapi_v2.Document`: there is no JSON fallback. kube-apiserver (kube-openapi's handler) makes that body by
parsing its JSON document into gnostic's messages; `encode` does the same for the fields openapi.swagger()
uses, with the field numbers of gnostic-models' `openapiv2/OpenAPIv2.proto`. A vendor extension (`x-…`
key) becomes a `NamedAny` whose `yaml` holds the value as JSON text (JSON is YAML; kube-openapi reads it
with a YAML parser). A key without a field here raises ValueError: nothing is dropped silently.

Pure functions; safe from any thread.
"""

from __future__ import annotations

import json
from typing import Any, Callable

#: the Accept values kube-openapi answers with protobuf, and the Content-Type it answers with.
ACCEPTED = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
MEDIA_TYPE = ACCEPTED[1]
_JSON = ("application/json", "application/*", "*/*")


def wanted(accept: str) -> bool:
    """Does this Accept header ask for protobuf before JSON? (In the order written; q-values are ignored.)"""
    for clause in accept.split(","):
        media = clause.split(";")[0].strip().lower()
        if media in ACCEPTED:
            return True
        if media in _JSON:
            return False
    return False


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): a string or an embedded message."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _field(number, text.encode())


def _message(obj: dict, fields: dict[str, Callable[[Any], bytes]], extensions: int | None = None) -> bytes:
    """`obj`'s keys through `fields`; `x-…` keys as repeated NamedAny field `extensions`."""
    out = bytearray()
    for key, value in obj.items():
        if key in fields:
            out += fields[key](value)
        elif extensions is not None and key.startswith("x-"):
            out += _field(extensions, _string(1, key) + _field(2, _string(2, json.dumps(value))))
        else:
            raise ValueError(f"no protobuf field for OpenAPI v2 key {key!r}")
    return bytes(out)


def _schema(schema: dict) -> bytes:
    return _message(schema, {"description": lambda v: _string(4, v),
                             "type": lambda v: _field(22, _string(1, v))},  # TypeItem{repeated string value = 1}
                    extensions=31)


def _definitions(definitions: dict) -> bytes:
    """Definitions{repeated NamedSchema additional_properties = 1}, NamedSchema{name = 1, value = 2}."""
    return b"".join(_field(1, _string(1, name) + _field(2, _schema(s))) for name, s in definitions.items())


def encode(doc: dict) -> bytes:
    """The gnostic `openapi_v2.Document` of openapi.swagger()'s document."""
    return _message(doc, {
        "swagger": lambda v: _string(1, v),
        "info": lambda v: _field(2, _message(v, {"title": lambda t: _string(1, t),
                                                 "version": lambda t: _string(2, t)})),
        "paths": lambda v: _field(8, _message(v, {}, extensions=1)),  # no path items: see openapi.py
        "definitions": lambda v: _field(9, _definitions(v)),
    }, extensions=16)
