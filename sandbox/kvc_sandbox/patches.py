"""The three patch formats the API server accepts: JSON merge patch (RFC 7386), strategic merge patch
(merge patch where lists of objects merge by their merge key — `type` for conditions, as the API's
`patchMergeKey` says, else `name` — and `$`-directives are honoured or dropped),
and JSON patch (RFC 6902).

Pure functions over plain dicts (they return new values, never mutate their inputs); safe from any thread.
"""

from __future__ import annotations

from .errors import ApiError, bad_request
from .jsoncopy import copy_json

#: list fields whose merge key is not `name` (k8s.io/api's `patchMergeKey`): pod and node conditions.
MERGE_KEYS = {"conditions": "type"}


def merge(target, patch, strategic: bool = False):
    if not isinstance(patch, dict):
        return copy_json(patch)
    result = copy_json(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif strategic and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_keyed_list(result[key], value, MERGE_KEYS.get(key, "name"))
        else:
            result[key] = merge(result.get(key), value, strategic)
    return result


def _merge_keyed_list(current: list, patch: list, key: str) -> list:
    """Strategic merge of a list: items with a `key` merge with the item of the same key, `$patch: delete`
    removes one; a list of anything else is replaced."""
    if not all(isinstance(i, dict) and key in i for i in current + patch):
        return copy_json(patch)
    result = [copy_json(i) for i in current]
    for item in patch:
        index = next((n for n, old in enumerate(result) if old[key] == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(merge({}, item, strategic=True))
        else:
            result[index] = merge(result[index], item, strategic=True)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc, parts: list[str]):
    for part in parts[:-1]:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def json_patch(target: dict, operations: list) -> dict:
    """RFC 6902: add, remove, replace, move, copy, test."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy_json(target)
    try:
        for op in operations:
            parts = _pointer(op["path"])
            kind = op["op"]
            if kind in ("move", "copy"):
                source = _pointer(op["from"])
                holder = _parent(doc, source)
                value = holder[int(source[-1])] if isinstance(holder, list) else holder[source[-1]]
                if kind == "move":
                    holder.pop(int(source[-1]) if isinstance(holder, list) else source[-1])
                op = {"op": "add", "path": op["path"], "value": copy_json(value)}
                kind = "add"
            if not parts:
                if kind in ("add", "replace"):
                    doc = copy_json(op["value"])
                continue
            holder, last = _parent(doc, parts), parts[-1]
            if kind == "test":
                current = holder[int(last)] if isinstance(holder, list) else holder[last]
                if current != op["value"]:
                    raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our "
                                                   f"request: test failed at {op['path']}")
            elif kind == "remove":
                holder.pop(int(last) if isinstance(holder, list) else last)
            elif kind == "add" and isinstance(holder, list):
                holder.insert(len(holder) if last == "-" else int(last), copy_json(op["value"]))
            elif kind in ("add", "replace"):
                if isinstance(holder, list):
                    holder[int(last)] = copy_json(op["value"])
                else:
                    if kind == "replace" and last not in holder:
                        raise KeyError(last)
                    holder[last] = copy_json(op["value"])
            else:
                raise bad_request(f"unknown json patch operation {kind!r}")
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}") from e
    return doc
