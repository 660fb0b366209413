"""Bundle an OpenAPI document and the documents it references into one self-contained document.

Rules (docs/adr/0001-foundation.md):

* A reference into another file's components (`common.yaml#/components/schemas/Problem`) is
  hoisted: the target is copied into the root document's components under the same kind and
  name, and the reference becomes local (`#/components/schemas/Problem`). References inside
  the copied target are hoisted the same way, relative to the file they were written in.
* Any other external reference (a path item such as `common.yaml#/paths/~1health`) is inlined.
* A root component that is nothing but a reference to the same-named external component (for
  example `securitySchemes: {bearerAuth: {$ref: 'common.yaml#/.../bearerAuth'}}`) is replaced by
  the target itself.
* Two different definitions under one component name are an error, never a silent choice.
* Tags used by inlined operations and declared only in the referenced file are copied into the
  root document's `tags`.
* House rule: text never carries U+0000 (PostgreSQL text columns cannot hold it), so every
  free-text string schema (no `format`, `enum` or `pattern` of its own) gets `NO_NUL` as its
  pattern: the published contract says what the server enforces.

The result keeps the root document's key order (deterministic: it comes from the YAML file);
hoisted components are sorted by name within their kind.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

from tools.codegen.common import CodegenError

JsonObject = dict[str, Any]


class BundleError(CodegenError):
    """The document cannot be bundled (unknown file, bad pointer, conflicting component)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys in one mapping; a spec that says a thing twice
    (two `routing-key`s in one binding after a merge) would silently lose one of them."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                mark = key_node.start_mark
                raise BundleError(
                    f"{mark.name}:{mark.line + 1}: the key {key!r} appears twice in one mapping"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path) -> Any:
    """The YAML document at `path`; a key repeated within one mapping is an error."""
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_UniqueKeyLoader)


def split_ref(ref: str) -> tuple[str, str]:
    """`'common.yaml#/a/b'` → `('common.yaml', '/a/b')`; `'#/a'` → `('', '/a')`."""
    file_part, _, pointer = ref.partition("#")
    return file_part, pointer


def pointer_tokens(pointer: str) -> list[str]:
    if pointer in ("", "/"):
        return []
    if not pointer.startswith("/"):
        raise BundleError(f"not a JSON pointer: {pointer!r}")
    return [
        unquote(token).replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")
    ]


def resolve_pointer(document: Any, pointer: str, where: str) -> Any:
    node = document
    for token in pointer_tokens(pointer):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise BundleError(f"{where}: pointer {pointer!r} does not resolve")
    return node


class Bundler:
    """Bundles one root document; `loader` reads referenced files (injectable for tests)."""

    def __init__(self, root_path: Path, loader: Callable[[Path], Any] = load_yaml) -> None:
        self.root_path = root_path.resolve()
        self._loader = loader
        self._documents: dict[Path, Any] = {}
        self._hoisted: dict[tuple[str, str], Any] = {}
        self._origins: dict[tuple[str, str], tuple[Path, str]] = {}
        self._inlining: list[tuple[Path, str]] = []
        self._external_tags: list[str] = []
        self._tag_docs: dict[str, Any] = {}

    def document(self, path: Path) -> Any:
        path = path.resolve()
        if path not in self._documents:
            if not path.is_file():
                raise BundleError(f"referenced file not found: {path}")
            self._documents[path] = self._loader(path)
        return self._documents[path]

    def bundle(self) -> JsonObject:
        root = self.document(self.root_path)
        if not isinstance(root, dict):
            raise BundleError(f"{self.root_path}: not a mapping")
        root_components: JsonObject = root.get("components") or {}
        result: JsonObject = {}
        for key, value in root.items():
            if key == "components":
                continue
            result[key] = self._walk(value, self.root_path)
        components: JsonObject = {}
        for kind, entries in root_components.items():
            if not isinstance(entries, dict):
                components[kind] = self._walk(entries, self.root_path)
                continue
            walked: JsonObject = {}
            for name, entry in entries.items():
                walked[name] = self._root_component(kind, name, entry)
            components[kind] = walked
        for (kind, name), value in sorted(self._hoisted.items()):
            entries = components.setdefault(kind, {})
            existing = entries.get(name)
            if existing is None or existing == {"$ref": f"#/components/{kind}/{name}"}:
                entries[name] = value
            elif existing != value:
                origin = self._origins[(kind, name)]
                raise BundleError(
                    f"component {kind}/{name} is defined in {self.root_path.name} and differs "
                    f"from the one in {origin[0].name}"
                )
        if components:
            result["components"] = components
        self._add_tags(result)
        return result

    # ------------------------------------------------------------------ internals

    def _root_component(self, kind: str, name: str, entry: Any) -> Any:
        if isinstance(entry, dict) and set(entry) == {"$ref"}:
            file_part, pointer = split_ref(entry["$ref"])
            tokens = pointer_tokens(pointer)
            if file_part and tokens == ["components", kind, name]:
                # A same-named alias of an external component: the component is the target.
                target_path = (self.root_path.parent / file_part).resolve()
                self._hoist(target_path, kind, name)
                return self._hoisted.pop((kind, name))
        return self._walk(entry, self.root_path)

    def _walk(self, node: Any, base: Path) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                return self._reference(ref, base)
            return {key: self._walk(value, base) for key, value in node.items()}
        if isinstance(node, list):
            return [self._walk(item, base) for item in node]
        return node

    def _reference(self, ref: str, base: Path) -> Any:
        file_part, pointer = split_ref(ref)
        target_path = (base.parent / file_part).resolve() if file_part else base
        tokens = pointer_tokens(pointer)
        if len(tokens) == 3 and tokens[0] == "components":
            kind, name = tokens[1], tokens[2]
            if target_path != self.root_path:
                self._hoist(target_path, kind, name)
            else:
                resolve_pointer(self.document(target_path), pointer, str(base))
            return {"$ref": f"#/components/{kind}/{name}"}
        if target_path == self.root_path and not file_part:
            resolve_pointer(self.document(target_path), pointer, str(base))
            return {"$ref": ref}
        # Anything else (a path item, a nested node) is inlined.
        key = (target_path, pointer)
        if key in self._inlining:
            raise BundleError(f"circular reference through {ref!r} in {base.name}")
        self._inlining.append(key)
        try:
            target = resolve_pointer(self.document(target_path), pointer, str(base))
            self._collect_tags(target, target_path)
            return self._walk(copy.deepcopy(target), target_path)
        finally:
            self._inlining.pop()

    def _hoist(self, path: Path, kind: str, name: str) -> None:
        key = (kind, name)
        origin = self._origins.get(key)
        if origin is not None:
            if origin != (path, name):
                raise BundleError(
                    f"component {kind}/{name} is defined in both {origin[0].name} and {path.name}"
                )
            return
        self._origins[key] = (path, name)
        target = resolve_pointer(
            self.document(path), f"/components/{kind}/{name}", f"{path.name}: {kind}/{name}"
        )
        self._hoisted[key] = self._walk(copy.deepcopy(target), path)

    def _collect_tags(self, node: Any, path: Path) -> None:
        if not isinstance(node, dict):
            return
        declared = {
            tag.get("name"): tag
            for tag in (self.document(path).get("tags") or [])
            if isinstance(tag, dict)
        }
        for operation in node.values():
            if isinstance(operation, dict):
                for tag in operation.get("tags") or []:
                    if tag in declared and tag not in self._external_tags:
                        self._external_tags.append(tag)
                        self._tag_docs[tag] = declared[tag]

    def _add_tags(self, result: JsonObject) -> None:
        if not self._external_tags:
            return
        tags: list[Any] = result.setdefault("tags", [])
        present = {tag.get("name") for tag in tags if isinstance(tag, dict)}
        for name in self._external_tags:
            if name not in present:
                tags.append(copy.deepcopy(self._tag_docs[name]))


NO_NUL = "^[^\\x00]*$"


def bundle_openapi(path: Path, loader: Callable[[Path], Any] = load_yaml) -> JsonObject:
    """The bundled, self-contained form of the OpenAPI document at `path`."""
    document = Bundler(path, loader).bundle()
    _forbid_nul(document)
    return document


def _forbid_nul(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "string" and not {"format", "enum", "pattern"} & node.keys():
            node["pattern"] = NO_NUL
        for value in node.values():
            _forbid_nul(value)
    elif isinstance(node, list):
        for item in node:
            _forbid_nul(item)
