"""Load a YAML config: ``${ENV}`` placeholders, HUB_* overrides, errors with file and line."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hub.config import AdapterConfig, HubConfig, parse_camera, parse_source
from hub.errors import ConfigError

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

#: Environment variables that override config fields (DESIGN.md, API contract v1).
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "HUB_STATE_DIR": ("hub", "state_dir"),
    "HUB_HTTP_PORT": ("http", "port"),
    "HUB_DATABASE_URL": ("database", "url"),
    "HUB_MQTT_URL": ("mqtt", "url"),
}


def _substitute(value: Any, env: Mapping[str, str], path: list[str | int], file: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, env, [*path, k], file) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, [*path, i], file) for i, v in enumerate(value)]
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable ${{{name}}} is not set",
                file=file,
                field=".".join(str(p) for p in path),
                hint=f"export {name}=... or write ${{{name}:-default}}",
            )

        return _PLACEHOLDER.sub(repl, value)
    return value


def _substitute_located(raw: Any, env: Mapping[str, str], file: str,
                        lines: Mapping[tuple[str | int, ...], int]) -> Any:
    """``${ENV}`` substitution whose errors carry the line of the value."""
    try:
        return _substitute(raw, env, [], file)
    except ConfigError as exc:
        path = tuple(int(p) if p.isdecimal() else p for p in (exc.field or "").split(".") if p)
        exc.line = _line(lines, path)
        raise


def _line_index(node: yaml.Node, path: tuple[str | int, ...] = ()) -> dict[tuple[str | int, ...], int]:
    """Map every key path in a YAML document to its 1-based line."""
    lines: dict[tuple[str | int, ...], int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            for sub, line in _line_index(value_node, (*path, key)).items():
                if sub != (*path, key):
                    lines[sub] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_index(item, (*path, i)))
    return lines


def _model_for(loc: tuple[str | int, ...], root: type[BaseModel] = HubConfig) -> type[BaseModel] | None:
    """Walk the model tree along ``loc`` to find the model that owns the last key."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        model = _unwrap_model(ann)
    return model


def _unwrap_model(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _hint(
    err: Mapping[str, Any], loc: tuple[str | int, ...], root: type[BaseModel] = HubConfig
) -> str | None:
    if err["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
        model = _model_for(loc, root)
        if model is not None:
            close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
            if close:
                return f"did you mean {close[0]!r}?"
            return f"allowed keys here: {', '.join(model.model_fields)}"
    if err["type"] == "missing":
        return "add this key"
    if err["type"] == "union_tag_invalid":
        return "type must be one of opencv-dnn, ultralytics, onnxruntime"
    return None


def _clean_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    # Discriminated unions add the tag ('opencv-dnn') as a path element; drop it.
    return tuple(p for p in loc if not (isinstance(p, str) and p in {"opencv-dnn", "ultralytics",
                                                                     "onnxruntime"}))


def _load_yaml(text: str, file: str) -> tuple[yaml.Node | None, Any]:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            file=file,
            line=mark.line + 1 if mark else None,
            hint="check indentation and quoting on this line",
        ) from None


def parse_config(text: str, file: str = "<config>", env: Mapping[str, str] | None = None) -> HubConfig:
    """Parse YAML text into a validated :class:`HubConfig` (raises :class:`ConfigError`)."""
    env = os.environ if env is None else env
    node, raw = _load_yaml(text, file)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping (keys like hub:, cameras:)", file=file, line=1)
    lines = _line_index(node) if node is not None else {}
    data = _substitute_located(raw, env, file, lines)
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            data.setdefault(section, {})
            if not isinstance(data[section], dict):
                continue
            data[section][key] = env[var]
    # Cameras and sources are validated one by one with their adapter kind's model first, so an error
    # names the entry's own keys (and the line), whatever adapter — in-tree or third-party — it is.
    for section, parse in (("cameras", parse_camera), ("sources", parse_source)):
        items = data.get(section)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            where = (section, i)
            try:
                items[i] = parse(item)
            except ValidationError as exc:
                raise _located(exc, lines, file, where, _model_named(exc.title)) from None
            except ConfigError as exc:
                raise ConfigError(exc.message, file=file, line=_line(lines, (*where, exc.field or "kind")),
                                  field=".".join(str(p) for p in (*where, exc.field or "kind")),
                                  hint=exc.hint) from None
            except ValueError as exc:
                raise ConfigError(str(exc), file=file, line=_line(lines, where),
                                  field=f"{section}.{i}") from None
    try:
        return HubConfig.model_validate(data)
    except ValidationError as exc:
        raise _located(exc, lines, file) from None


def _line(lines: Mapping[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _located(
    exc: ValidationError,
    lines: Mapping[tuple[str | int, ...], int],
    file: str,
    prefix: tuple[str | int, ...] = (),
    root: type[BaseModel] = HubConfig,
) -> ConfigError:
    """The first validation error as a ConfigError with file, line, dotted field and a hint."""
    errors = exc.errors()
    typo = _misspelt_required(errors)
    if typo is not None:  # `pasword:` is both an unknown key and a missing `password:` — say so
        wrong, right = typo
        loc = (*prefix, *wrong)
        return ConfigError(f"unknown key {wrong[-1]!r}", file=file, line=_line(lines, loc),
                           field=".".join(str(p) for p in loc), hint=f"did you mean {right!r}?")
    first = errors[0]
    rel = _clean_loc(tuple(first["loc"]))
    loc = (*prefix, *rel)
    msg = first["msg"]
    if len(exc.errors()) > 1:
        msg += f" (and {len(exc.errors()) - 1} more error(s))"
    return ConfigError(
        msg,
        file=file,
        line=_line(lines, loc),
        field=".".join(str(p) for p in loc) or None,
        hint=_hint(first, rel if root is not HubConfig else loc, root),
    )


def _misspelt_required(errors: list[Any]) -> tuple[tuple[str | int, ...], str] | None:
    """(location of an unknown key, the required key it is a typo of), when both errors occur."""
    missing = [tuple(e["loc"]) for e in errors if e["type"] == "missing"]
    for err in errors:
        if err["type"] != "extra_forbidden" or not err["loc"] or not isinstance(err["loc"][-1], str):
            continue
        extra = _clean_loc(tuple(err["loc"]))
        siblings = [m[-1] for m in missing
                    if _clean_loc(m)[:-1] == extra[:-1] and isinstance(m[-1], str)]
        close = difflib.get_close_matches(str(extra[-1]), [str(s) for s in siblings], n=1)
        if close:
            return extra, close[0]
    return None


def _model_named(title: str) -> type[BaseModel]:
    """The adapter config model a ValidationError came from (by its title), for hints."""
    from adapters.registry import entries

    return next((e.cls.config_model for e in entries() if e.cls.config_model.__name__ == title), HubConfig)


def parse_adapter_config(text: str, file: str = "<snippet>", env: Mapping[str, str] | None = None
                         ) -> AdapterConfig:
    """One camera or source entry (YAML or JSON, optionally a one-item list), as ``hub probe`` takes it."""
    env = os.environ if env is None else env
    node, raw = _load_yaml(text, file)
    if isinstance(raw, list) and len(raw) == 1 and isinstance(node, yaml.SequenceNode):
        raw, node = raw[0], node.value[0]
    if not isinstance(raw, dict):
        raise ConfigError("a camera or source entry must be a mapping with at least kind: and id:",
                          file=file, line=1)
    lines = _line_index(node) if node is not None else {}
    data = _substitute_located(raw, env, file, lines)
    camera = "url" in data and "kind" not in data
    if isinstance(data.get("kind"), str):
        from adapters.base import Capability
        from adapters.registry import adapter_class

        try:
            camera = Capability.STREAMS in adapter_class(data["kind"]).capabilities
        except ConfigError as exc:
            raise ConfigError(exc.message, file=file, line=_line(lines, ("kind",)), field="kind",
                              hint=exc.hint) from None
    try:
        cfg = (parse_camera if camera else parse_source)(data)
    except ValidationError as exc:
        raise _located(exc, lines, file, (), _model_named(exc.title)) from None
    except ConfigError as exc:
        raise ConfigError(exc.message, file=file, line=_line(lines, (exc.field or "kind",)),
                          field=exc.field or "kind", hint=exc.hint) from None
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, line=1) from None
    assert isinstance(cfg, AdapterConfig)
    return cfg


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> HubConfig:
    """Read and validate a config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(p), hint="pass -c config/demo.yaml") from None
    # A relative state_dir is relative to the working directory, like every CLI path.
    return parse_config(text, str(p), env)
