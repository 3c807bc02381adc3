"""Loading protocol files: YAML (safe-loaded) -> validated :class:`~leukosim.protocol.schema.Protocol`.

Every problem is reported as a :class:`ProtocolError` naming the file, the field as it is written in the
YAML (``arms[0].phases[1].drugs[0].dose``), the line, and what was expected. Bundled protocols live in
``leukosim/protocols/*.yaml`` and are addressed by their file stem (``load_protocol("eliana")``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from collections.abc import Iterator, Sequence
from importlib import metadata, resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from leukosim.protocol.schema import Protocol

__all__ = [
    "ProtocolError",
    "load_protocol",
    "parse_protocol",
    "bundled_protocols",
    "protocol_json_schema",
    "protocol_hash",
]

_SUFFIXES = (".yaml", ".yml")

Location = tuple[str | int, ...]


class ProtocolError(Exception):
    """A protocol file that cannot be read or does not validate.

    ``errors`` holds every problem found as ``(field, message)``; ``field`` is the YAML location
    (``arms[0].phases[1].drugs[0].dose``, or ``line 3, column 7`` for a YAML syntax error, or ``""`` for
    the file as a whole) and ``message`` says what was expected and what was found. ``field`` and
    ``expected`` are those of the first problem; ``lines`` gives the 1-based YAML line of each problem
    when it is known.
    """

    def __init__(
        self, path: str, errors: Sequence[tuple[str, str]], lines: Sequence[int | None] | None = None
    ):
        self.path = str(path)
        self.errors: list[tuple[str, str]] = [(str(field), str(message)) for field, message in errors]
        if not self.errors:
            raise ValueError("a ProtocolError needs at least one error")
        self.lines: list[int | None] = list(lines) if lines is not None else [None] * len(self.errors)
        if len(self.lines) != len(self.errors):
            raise ValueError("a ProtocolError needs one line (or None) per error")
        super().__init__(self.path, self.errors, self.lines)

    @property
    def field(self) -> str:
        return self.errors[0][0]

    @property
    def expected(self) -> str:
        return self.errors[0][1]

    def __str__(self) -> str:
        out = []
        for (field, message), line in zip(self.errors, self.lines, strict=True):
            where = f"{field}: " if field else ""
            at = f" (line {line})" if line is not None and not field.startswith("line ") else ""
            out.append(f"{self.path}: {where}{message}{at}")
        return "\n".join(out)


# --------------------------------------------------------------------------------------------- sources


def _bundled_dir() -> Traversable:
    return resources.files("leukosim").joinpath("protocols")


def bundled_protocols() -> list[str]:
    """Names of the protocols shipped with leukosim (file stems in ``leukosim/protocols/``), sorted."""
    folder = _bundled_dir()
    if not folder.is_dir():
        return []
    return sorted(
        entry.name.rsplit(".", 1)[0]
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.endswith(_SUFFIXES)
    )


def _bundled_file(name: str) -> Traversable | None:
    for suffix in _SUFFIXES:
        candidate = _bundled_dir().joinpath(name + suffix)
        if candidate.is_file():
            return candidate
    return None


def _choices() -> str:
    return ", ".join(bundled_protocols()) or "none"


def _read_source(source: str | Path) -> tuple[str, str]:
    """Return ``(label, text)``: the label names the file in error messages."""
    if not isinstance(source, (str, Path)):
        raise TypeError(
            f"load_protocol expects a bundled protocol name or a path, got {type(source).__name__}"
        )
    if isinstance(source, str) and source in bundled_protocols():
        found = _bundled_file(source)
        assert found is not None
        return found.name, found.read_text(encoding="utf-8")
    path = Path(source)
    looks_like_path = isinstance(source, Path) or path.suffix in _SUFFIXES or len(path.parts) > 1
    label = str(source)
    if not path.exists():
        if looks_like_path:
            message = f"file not found; expected a YAML file or a bundled protocol name ({_choices()})"
        else:
            message = (
                f"unknown protocol {label!r}; expected a bundled protocol name ({_choices()}) "
                "or a path to a YAML file"
            )
        raise ProtocolError(label, [("", message)])
    if not path.is_file():
        raise ProtocolError(label, [("", "expected a YAML file, got a directory")])
    try:
        return label, path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(
            label, [("", f"expected UTF-8 text, got undecodable bytes at offset {exc.start}")]
        ) from None
    except OSError as exc:
        raise ProtocolError(label, [("", f"expected a readable file: {exc.strerror or exc}")]) from None


# --------------------------------------------------------------------------------------------- loading


def load_protocol(source: str | Path) -> Protocol:
    """Load and validate a protocol: ``source`` is a bundled protocol name (``"eliana"``, see
    :func:`bundled_protocols`) or a path to a YAML file. A string that names a bundled protocol is
    taken as that name even if a file of that name exists in the working directory; pass a
    :class:`~pathlib.Path` to force a file. Raises :class:`ProtocolError`."""
    label, text = _read_source(source)
    return parse_protocol(text, label)


def parse_protocol(text: str, path: str = "<string>") -> Protocol:
    """Validate protocol YAML given as text; ``path`` only labels error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ProtocolError(path, [(where, f"expected valid YAML: {problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise ProtocolError(path, [("", f"expected valid YAML: {exc}")]) from None

    duplicates = list(_duplicate_keys(root))
    if duplicates:
        raise ProtocolError(
            path, [(field, message) for field, message, _ in duplicates], [line for _, _, line in duplicates]
        )
    if not isinstance(data, dict):
        got = "an empty document" if data is None else f"{_kind(data)} {_show(data)}"
        fields = ", ".join(_allowed_fields(Protocol))
        message = f"expected a mapping of protocol fields at the top level ({fields}), got {got}"
        raise ProtocolError(path, [("", message)])
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        errors, lines = [], []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if not _is_schema_tag(part))
            loc += tuple((error.get("ctx") or {}).get("loc", ()))
            errors.append((_format_loc(loc), _message(error, loc)))
            lines.append(_line_of(root, loc))
        raise ProtocolError(path, errors, lines) from None


# --------------------------------------------------------------------------------------------- schema, hash


def protocol_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a protocol file, with YAML key names (aliases such as ``if``).

    Cross-field rules (units per drug, decision targets, days within a phase, ...) are checked by
    :func:`load_protocol`, not expressed in the schema."""
    try:
        version = metadata.version("leukosim")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "0"
    schema = Protocol.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:leukosim:protocol-schema:{version}",
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
        "title": "leukosim protocol",
        "description": (schema.get("description") or "").strip()
        + " Research use only; not a medical device.",
    }


def protocol_hash(protocol: Protocol) -> str:
    """SHA-256 (hex) of the canonical JSON of a validated protocol: every field including defaults,
    YAML key names, sorted keys, no whitespace. Files that differ only in layout, comments, key order
    or spelled-out defaults have the same hash."""
    if not isinstance(protocol, Protocol):
        raise TypeError(f"protocol_hash expects a Protocol, got {type(protocol).__name__}")
    canonical = json.dumps(
        protocol.model_dump(mode="json", by_alias=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------- messages


def _is_schema_tag(part: str | int) -> bool:
    # pydantic inserts validator / union tags such as "function-after[...]" or "tagged-union[...]"
    return isinstance(part, str) and "[" in part and part.endswith("]")


def _format_loc(loc: Location) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def _show(value: object, limit: int = 60) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of a union / optional annotation, without ``None``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return [annotation]


def _field_of(model: type[BaseModel], key: str) -> Any | None:
    for name, info in model.model_fields.items():
        if key == name or key == info.alias:
            return info.annotation
    return None


def _annotation_at(loc: Location) -> Any | None:
    """The annotation of the value at ``loc`` inside a Protocol (None when it cannot be followed)."""
    current: Any = Protocol
    for part in loc:
        nxt = None
        for option in _unwrap(current):
            origin = typing.get_origin(option)
            if isinstance(part, str) and isinstance(option, type) and issubclass(option, BaseModel):
                nxt = _field_of(option, part)
            elif isinstance(part, int) and origin in (list, Sequence):
                nxt = typing.get_args(option)[0]
            elif isinstance(part, int) and origin is tuple:
                args = typing.get_args(option)
                nxt = args[0] if len(args) == 2 and args[1] is Ellipsis else args[min(part, len(args) - 1)]
            if nxt is not None:
                break
        if nxt is None:
            return None
        current = nxt
    return current


def _model_at(loc: Location) -> type[BaseModel] | None:
    annotation = _annotation_at(loc)
    if annotation is None:
        return None
    for option in _unwrap(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _allowed_fields(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _literal_values(loc: Location) -> list[str] | None:
    annotation = _annotation_at(loc)
    if annotation is None:
        return None
    for option in _unwrap(annotation):
        if typing.get_origin(option) is Literal:
            return [str(value) for value in typing.get_args(option)]
    return None


_NOUNS = {
    "dose": "a dose",
    "days": "a number of days",
    "day": "a day",
    "value": "a value",
    "n": "a count",
    "min_weight_kg": "a weight in kg",
    "threshold": "a threshold",
    "timepoint_days": "a time in days",
    "sd": "a standard deviation",
    "cv": "a coefficient of variation",
    "allocation": "an allocation weight",
    "intensity": "an intensity",
    "follow_up_days": "a number of days",
    "mrd_at_least": "an MRD level",
    "mrd_below": "an MRD level",
}


def _noun(loc: Location) -> str:
    for part in reversed(loc):
        if isinstance(part, str):
            return "a fraction" if part.endswith("_fraction") else _NOUNS.get(part, "a value")
    return "a value"


def _did_you_mean(given: object, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(given), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _message(error: dict[str, Any], loc: Location) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    got = f"got {_show(value)}"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        if model is None:
            return f"unknown field {str(loc[-1])!r}; see protocol_json_schema() for the allowed fields"
        fields = _allowed_fields(model)
        return (
            f"unknown field {str(loc[-1])!r}; expected one of: {', '.join(fields)}"
            f"{_did_you_mean(loc[-1], fields)}"
        )
    if kind == "missing":
        if loc and isinstance(loc[-1], int):  # a [low, high] pair (range, ci) with an item missing
            return f"expected a pair [low, high], item [{loc[-1]}] is missing"
        return f"expected required field {str(loc[-1])!r}, which is missing" if loc else "expected a value"
    if kind == "literal_error":
        values = _literal_values(loc)
        allowed = ", ".join(values) if values else str(ctx.get("expected", ""))
        return f"expected one of: {allowed}; {got}{_did_you_mean(value, values or [])}"
    bounds = {
        "greater_than": (">", "gt"),
        "greater_than_equal": (">=", "ge"),
        "less_than": ("<", "lt"),
        "less_than_equal": ("<=", "le"),
    }
    if kind in bounds:
        symbol, key = bounds[kind]
        bound = ctx.get(key)
        bound_text = f"{bound:g}" if isinstance(bound, (int, float)) else str(bound)
        return f"expected {_noun(loc)} {symbol} {bound_text}, {got}"
    if kind == "finite_number":
        return f"expected a finite number, {got}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, {got}"
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, {got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, {got}"
    if kind == "string_type":
        return f"expected text, {got}"
    if kind == "string_too_short":
        return f"expected non-empty text, {got}"
    if kind == "string_pattern_mismatch":
        if loc == ("name",):
            return f"expected a name of lowercase letters, digits and '-' (e.g. eliana), {got}"
        return f"expected text matching {ctx.get('pattern')}, {got}"
    if kind in ("list_type", "tuple_type"):
        return f"expected a list, {got}"
    if kind == "too_short":
        return f"expected at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} item(s), got {ctx.get('actual_length')}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        model = _model_at(loc)
        fields = f" with fields: {', '.join(_allowed_fields(model))}" if model is not None else ""
        return f"expected a mapping{fields}; got {_kind(value)} {_show(value)}"
    if kind == "value_error":
        message = error["msg"]
        return message[len("Value error, ") :] if message.startswith("Value error, ") else message
    return str(error["msg"])


# --------------------------------------------------------------------------------------------- YAML nodes


def _walk(node: yaml.Node | None, loc: Location = ()) -> Iterator[tuple[yaml.Node, Location]]:
    seen: set[int] = set()
    stack = [(node, loc)]
    while stack:
        current, where = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current, where
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.append((value, where + (str(key.value),)))
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                stack.append((item, where + (index,)))


def _duplicate_keys(root: yaml.Node | None) -> Iterator[tuple[str, str, int]]:
    """Keys given twice in one mapping (yaml.safe_load silently keeps the last one)."""
    for node, loc in _walk(root):
        if not isinstance(node, yaml.MappingNode):
            continue
        first: dict[str, int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                continue
            line = key.start_mark.line + 1
            if key.value in first:
                yield (
                    _format_loc(loc + (key.value,)),
                    f"expected each key once in a mapping, got {key.value!r} again (first on line "
                    f"{first[key.value]})",
                    line,
                )
            else:
                first[key.value] = line


def _line_of(root: yaml.Node | None, loc: Location) -> int | None:
    """1-based line of the YAML node at ``loc`` (of its key for a mapping entry), or of the deepest
    node that exists on the way."""
    node = root
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
            if match is None:
                return line
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line
