"""Compact tool definitions for ``tools/list``: every field keeps its description, each thing is said once.

Hosts put the tool list in the model's context, so its size is paid on every conversation. The schemas pydantic
generates are correct but verbose; this rewrites them to equivalent, shorter ones:

* ``title`` keywords go (pydantic derives one from every property and model name: "Per Core" for ``per_core``);
* an object's own description goes when it sits behind a described property (a model's docstring next to the
  field that holds it) or is a whole result (the tool's description says what it returns);
* in input schemas ``"default": null`` goes: an argument outside ``required`` is optional already;
* in output schemas ``default`` and ``required`` go: a result always carries every field (an absent value as null),
  while pydantic lists as required only the fields without a Python default, which says nothing about a result;
  and a union of one plain type with null becomes a type list (``{"type": ["number", "null"]}``, not an ``anyOf``),
  and an enum of strings loses its ``type`` (the values say it);
* a nested object that several tools return is listed in full once, in the output schema of the smallest tool that
  returns it; the other tools list it as an object whose description says where its fields are; a nested object
  listed in full drops ``"type": "object"``, which its properties already say;
* tool descriptions lose the indentation of the docstrings they come from.

Input schemas keep their structure otherwise: hosts translate them for the model's function calling, and some
translators know ``anyOf`` but not type lists. Results are validated by the server's own models before they are
sent, so a shorter output schema never lets a wrong result through.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mcp.types import Tool

_SUBSCHEMAS = frozenset({"properties", "$defs", "patternProperties"})  # maps of name -> schema (names are data)
_DATA = frozenset({"enum", "const", "default", "examples", "required"})  # values, not schemas: kept as they are
DEFS_PREFIX = "#/$defs/"


def compact_tools(tools: Sequence[Tool]) -> list[Tool]:
    """The same tools with compact definitions (see the module docstring)."""
    outputs = {t.name: _objects_undescribed(_slim(t.output_schema, output=True)) for t in tools if t.output_schema}
    homes = _homes(outputs)
    roots = {_canonical(_root_body(schema)) for schema in outputs.values()}
    compacted: list[Tool] = []
    for tool in tools:
        output = outputs.get(tool.name)
        update = {
            "description": inspect.cleandoc(tool.description) if tool.description else tool.description,
            "input_schema": _objects_undescribed(_slim(tool.input_schema, output=False), root=False),
            "output_schema": None if output is None else _point_to_homes(tool.name, output, homes, roots),
        }
        compacted.append(tool.model_copy(update=update))
    return compacted


def definitions_size(tools: Sequence[Tool]) -> int:
    """Bytes of the tool list as JSON, as the server sends it."""
    listed = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    return len(json.dumps(listed, separators=(",", ":"), ensure_ascii=False).encode())


def _slim(node: Any, *, output: bool) -> Any:
    """``node`` without titles, and without what the module docstring lists for input or output schemas."""
    if isinstance(node, list):
        return [_slim(item, output=output) for item in node]
    if not isinstance(node, dict):
        return node
    slimmed: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SUBSCHEMAS and isinstance(value, dict):
            slimmed[key] = {name: _slim(sub, output=output) for name, sub in value.items()}
        elif _dropped(key, value, output=output):
            continue
        elif key in _DATA:
            slimmed[key] = value
        else:
            slimmed[key] = _slim(value, output=output)
    return _enum_untyped(_fold_nullable(slimmed)) if output else slimmed


def _enum_untyped(node: dict[str, Any]) -> dict[str, Any]:
    """An output's enum of strings (and null) without its ``type``: the values say it (same meaning)."""
    values = node.get("enum")
    if not isinstance(values, list) or not values or "type" not in node:
        return node
    if all(isinstance(v, str) or v is None for v in values) and node["type"] in ("string", ["string", "null"]):
        return {k: v for k, v in node.items() if k != "type"}
    return node


def _dropped(key: str, value: Any, *, output: bool) -> bool:
    if key == "title":
        return isinstance(value, str)
    if key == "default":
        return output or value is None
    return output and key == "required"


def _fold_nullable(node: dict[str, Any]) -> dict[str, Any]:
    """``{"anyOf": [{"type": T, ...}, {"type": "null"}], ...}`` as ``{"type": [T, "null"], ...}``, and an ``anyOf``
    of bare types as one type list (same meaning)."""
    branches = node.get("anyOf")
    if isinstance(branches, list) and branches and all(_bare_type(b) for b in branches) and "type" not in node:
        return {**{k: v for k, v in node.items() if k != "anyOf"}, "type": [b["type"] for b in branches]}
    if not isinstance(branches, list) or len(branches) != 2 or {"type": "null"} not in branches:
        return node
    (other,) = [b for b in branches if b != {"type": "null"}]
    if not isinstance(other, dict) or not isinstance(other.get("type"), str) or set(other) & (set(node) - {"anyOf"}):
        return node  # a $ref, a union of several types, or keywords that would collide: left as it is
    folded = {k: v for k, v in node.items() if k != "anyOf"}
    folded.update(other)
    folded["type"] = [other["type"], "null"]
    if "enum" in other:
        folded["enum"] = [*other["enum"], None]
    return folded


def _bare_type(branch: Any) -> bool:
    return isinstance(branch, dict) and set(branch) == {"type"} and isinstance(branch["type"], str)


def _objects_undescribed(schema: dict[str, Any], *, root: bool = True) -> dict[str, Any]:
    """``schema`` without the descriptions of its definitions (and of its root, with ``root``): the properties that
    hold them, and the tool's description, say what they are. In output schemas (``root``) a definition with
    properties also loses ``"type": "object"``, which its properties already say (the root keeps it: MCP needs it)."""
    defs = {
        name: {k: v for k, v in d.items() if k != "description" and not (root and _implied_object(k, v, d))}
        for name, d in schema.get("$defs", {}).items()
    }
    trimmed = {k: v for k, v in schema.items() if not (root and k == "description")}
    return {**trimmed, "$defs": defs} if defs else trimmed


def _implied_object(key: str, value: Any, definition: Mapping[str, Any]) -> bool:
    return key == "type" and value == "object" and "properties" in definition


def _canonical(schema: Any) -> str:
    """One text per object shape (a root keeps ``"type": "object"``, a definition need not: the same shape)."""
    if isinstance(schema, Mapping):
        schema = {k: v for k, v in schema.items() if not _implied_object(k, v, schema)}
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _root_body(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "$defs"}


def _homes(outputs: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """For each nested object (by its canonical schema) that several tools return: the tool that lists it in full,
    the one with the smallest output schema (the most specific: a tool that returns just that object wins)."""
    holders: dict[str, list[str]] = {}
    for tool, schema in outputs.items():
        bodies = {_canonical(d) for d in schema.get("$defs", {}).values()} | {_canonical(_root_body(schema))}
        for body in bodies:
            holders.setdefault(body, []).append(tool)
    size = {tool: len(_canonical(schema)) for tool, schema in outputs.items()}
    return {body: min(tools, key=lambda t: (size[t], t)) for body, tools in holders.items() if len(tools) > 1}


def _point_to_homes(tool: str, schema: dict[str, Any], homes: Mapping[str, str], roots: set[str]) -> dict[str, Any]:
    """``schema`` with the nested objects another tool lists in full replaced by a described pointer to it."""
    defs: dict[str, Any] = dict(schema.get("$defs", {}))
    for name, definition in defs.items():
        body = _canonical(definition)
        home = homes.get(body, tool)
        if home != tool:
            where = f"{home}'s result" if body in roots else f"{name} in {home}"
            pointer = {"description": f"See {where}."}
            defs[name] = {"type": definition["type"], **pointer} if "type" in definition else pointer
    root = _root_body(schema)
    used = _reachable(root, defs)
    return {**root, "$defs": {n: d for n, d in defs.items() if n in used}} if used else root


def _reachable(body: Any, defs: Mapping[str, Any]) -> set[str]:
    """Names of the definitions ``body`` refers to, directly or through other definitions."""
    seen: set[str] = set()
    pending = list(_refs(body))
    while pending:
        name = pending.pop()
        if name not in seen and name in defs:
            seen.add(name)
            pending += _refs(defs[name])
    return seen


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(DEFS_PREFIX):
                yield value.removeprefix(DEFS_PREFIX)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)
