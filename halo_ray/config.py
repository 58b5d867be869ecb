"""Strict typed configuration: frozen dataclasses, YAML that mirrors them, dotted overrides.

Loading collects every problem (unknown keys with the closest known name, wrong types, failed
cross-field checks) and raises them together as one ``ConfigError``; nothing is silently corrected.
The section dataclasses that jobs compose live in ``halo_ray.sections``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

from halo_ray.errors import ConfigError

C = TypeVar("C")


def opt(default: Any, doc: str, *, choices: Any = None) -> Any:
    """Declare a config field: its default, a one-line doc (shown by ``--help``), optional choices.

    ``choices`` is a ``Registry`` or a tuple of allowed values; mutable defaults must be tuples.
    """
    meta = {"doc": doc, "choices": choices}
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _allowed(choices: Any) -> list | None:
    if choices is None:
        return None
    return choices.names() if hasattr(choices, "names") else list(choices)


def _type_name(tp: Any) -> str:
    if tp in (int, float, str, bool):
        return tp.__name__
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, errors: list[str], base: Any = None) -> Any:
    """Check ``value`` against type ``tp``; append a message to ``errors`` on mismatch.

    A section (dataclass) given as a partial mapping overlays ``base``, the field's default.
    """
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping (section {tp.__name__}), got {value!r}")
            return None
        return _build(tp, value, key, errors, base)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _convert(value, arg, key, trial)
            if not trial:
                return out
        errors.append(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return None
    if origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and item_tp is not str:
            value = [value]
        if isinstance(value, str) and item_tp is str:
            value = [value]
        if not isinstance(value, (list, tuple)):
            errors.append(f"{key}: expected a list of {_type_name(item_tp)}, got {value!r}")
            return None
        return tuple(_convert(v, item_tp, f"{key}[{i}]", errors) for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"config type {tp!r} at {key} is not supported")
    errors.append(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    return None


def _field_default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _build(cls: type[C], data: dict, prefix: str, errors: list[str], base: Any = None) -> C | None:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {name: getattr(base, name) for name in fields} if base is not None else {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields and key in getattr(cls, "moved_keys", {}):  # a key a release replaced
            errors.append(f"{path}: {cls.moved_keys[key]}")
            continue
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{(prefix + '.' if prefix else '') + close[0]}'?" if close else ""
            errors.append(f"{path}: unknown key{hint} (known in {cls.__name__}: {', '.join(fields)})")
            continue
        before = len(errors)
        default = getattr(base, key) if base is not None else _field_default(fields[key])
        out = _convert(value, hints[key], path, errors, default if dataclasses.is_dataclass(default) else None)
        allowed = _allowed(fields[key].metadata.get("choices"))
        if len(errors) == before and allowed is not None:
            for item in out if isinstance(out, tuple) else (out,):
                if item not in allowed and item is not None:
                    close = difflib.get_close_matches(str(item), [str(a) for a in allowed], n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    errors.append(f"{path}: {item!r} is not one of {', '.join(map(str, allowed))}{hint}")
        kwargs[key] = out
    if any(e.startswith(prefix) for e in errors) if prefix else errors:
        return None
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        errors.extend(f"{prefix or cls.__name__}: {msg}" for msg in check())
    return obj


def from_dict(cls: type[C], data: dict | None, *, source: str = "") -> C:
    """Build config ``cls`` from a nested dict, strictly.

    Args:
        cls: the job's config dataclass.
        data: nested mapping mirroring ``cls``; missing keys take their defaults.
        source: where ``data`` came from (a file), prefixed to every error.
    Returns:
        The frozen config. Raises ``ConfigError`` listing every problem.
    """
    errors: list[str] = []
    obj = _build(cls, data or {}, "", errors)
    if errors:
        at = f"{source}: " if source else ""
        raise ConfigError([f"{at}{e}" for e in errors])
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected dotted.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def set_path(data: dict, keys: list[str], value: Any) -> None:
    """Set ``data[k0][k1]...[kn] = value``, creating (or replacing non-mapping) parents."""
    node = data
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


def merge_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of ``data`` with each ``dotted.key=value`` override applied."""
    out = _deepcopy(data)
    for text in overrides:
        set_path(out, *parse_override(text))
    return out


def _deepcopy(data: dict) -> dict:
    return {k: _deepcopy(v) if isinstance(v, dict) else v for k, v in data.items()}


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; a missing file, a parse error or a non-mapping raises ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(cls: type[C], path: str | os.PathLike | None = None, overrides: Iterable[str] = (),
                base: dict | None = None) -> C:
    """Load ``cls`` from an optional YAML file, then ``base`` values, then dotted overrides.

    Args:
        cls: the job's config dataclass.
        path: a YAML file mirroring ``cls`` (optional).
        overrides: ``dotted.key=value`` strings, applied last.
        base: values applied after the file and before the overrides (CLI shortcut flags).
    Raises:
        ConfigError listing every problem, each labelled with where its value came from: the
        ``--set KEY=VALUE`` that gave it, or the file.
    """
    data = read_yaml(path) if path else {}
    for dotted, value in (base or {}).items():
        set_path(data, dotted.split("."), value)
    sets = []
    for text in overrides:
        keys, value = parse_override(text)
        set_path(data, keys, value)
        sets.append((".".join(keys), text))
    errors: list[str] = []
    obj = _build(cls, data, "", errors)
    if errors:
        raise ConfigError([_origin(e, str(path) if path else "", sets, base or {}) + e for e in errors])
    return obj


def _origin(error: str, path: str, sets: list[tuple[str, str]], base: dict) -> str:
    """``"--set KEY=VALUE: "`` when the error's key came from an override, else ``"FILE: "`` (or nothing)."""
    key = error.split(":", 1)[0].strip()

    def touches(dotted: str) -> bool:
        return dotted == key or key.startswith((dotted + ".", dotted + "[")) or dotted.startswith(key + ".")

    for dotted, text in reversed(sets):  # the last override of a key wins, so it is the one to name
        if touches(dotted):
            return f"--set {text}: "
    if any(touches(dotted) for dotted in base):
        return "command line: "
    return f"{path}: " if path else ""


def to_dict(cfg: Any) -> dict:
    """The config as plain YAML-ready data (tuples become lists)."""

    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def describe(cls: type, prefix: str = "", base: Any = None) -> list[tuple[str, str, Any, str]]:
    """Every leaf field as ``(dotted key, type name, default, doc)``, for help and docs.

    Defaults are those in force: a section's own default instance (``base``) wins over its class.
    """
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        default = getattr(base, f.name) if base is not None else _field_default(f)
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, key + ".", default))
            continue
        doc = f.metadata.get("doc", "")
        allowed = _allowed(f.metadata.get("choices"))
        if allowed:
            doc = f"{doc} (one of: {', '.join(map(str, allowed))})"
        rows.append((key, _type_name(tp), default, doc))
    return rows


def validated(cfg: C) -> C:
    """``cfg`` checked as strictly as a loaded file (every section's ``validate``, choices, types), for
    configs built in Python (the driver API); raises ``ConfigError`` listing every problem."""
    return from_dict(type(cfg), to_dict(cfg), source="config")
