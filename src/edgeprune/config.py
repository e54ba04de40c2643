"""Read YAML data files into frozen pydantic models, with error messages a user can act on.

Every data file edgeprune reads (targets, calibration recipes, pipeline recipes) goes through
:func:`load_yaml_model`. Each problem becomes one line that starts with the file path and the
dotted field path, says what was expected and what was found, and points at the YAML line::

    recipe.yaml: steps[0].ratio: expected a number greater than 0, got -1 (line 7)

YAML syntax errors give the line and column, duplicate keys are reported (YAML would silently
keep the last one), and unknown keys list the allowed ones with a did-you-mean hint. Messages
never mention pydantic. All problems are raised together as one
:class:`~edgeprune.errors.ConfigError`.

Example:
    >>> from pydantic import BaseModel
    >>> class Recipe(BaseModel):
    ...     model_config = STRICT_CONFIG
    ...     images: int
    >>> recipe = load_yaml_model("recipe.yaml", Recipe, what="a mapping of recipe fields")  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, NamedTuple, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from edgeprune.errors import ConfigError

__all__ = [
    "STRICT_CONFIG",
    "Problem",
    "choice",
    "load_yaml_model",
    "non_blank",
    "one_of",
    "show_value",
    "validate_model",
]

M = TypeVar("M", bound=BaseModel)

# Strict: YAML already gives typed scalars, so "640" (a quoted string) or 640.0 is not silently
# coerced into an int, and `true` is not accepted as a number. Ints are still accepted for floats.
STRICT_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True)
"""The ``model_config`` of every data-file model: immutable, no unknown keys, no type coercion."""

_Lines = dict[tuple[str, ...], int]


class Problem(NamedTuple):
    """One extra problem found by a ``check`` callback of :func:`load_yaml_model`.

    Attributes:
        loc: Field path, e.g. ``("name",)`` or ``("budget", "latency_ms")``; list items are ints.
        message: What was expected and what was found, e.g. ``"expected 'a', got 'b'"``.
    """

    loc: tuple[str | int, ...]
    message: str


def load_yaml_model(
    path: str | Path,
    model: type[M],
    *,
    what: str = "a mapping of fields",
    example: str | None = None,
    check: Callable[[M], Iterable[Problem]] | None = None,
) -> M:
    """Read a YAML file and validate it into ``model``.

    Args:
        path: The YAML file.
        model: The pydantic model class (normally with ``model_config = STRICT_CONFIG``).
        what: What the top level should be, used in messages such as
            ``"the file is empty; expected a mapping of target fields"``.
        example: Optional hint shown in parentheses after ``what`` when the top level is not a
            mapping, e.g. ``"name: ..., runtime: ..."``.
        check: Optional callback run on the validated model; it returns extra problems (e.g. a
            name that must equal the file stem), reported in the same format as the others.

    Returns:
        The validated model instance.

    Raises:
        ConfigError: If the file is missing or unreadable, is not valid YAML, is empty or not a
            mapping, or has invalid fields; one line per problem.
    """
    path = Path(path)
    shown = str(path)
    if not path.exists():
        raise ConfigError(f"{shown}: no such file")
    if not path.is_file():
        raise ConfigError(f"{shown}: not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read the file: {exc}") from None

    data, lines, problems = _parse_yaml(text, shown)
    if data is None:
        raise ConfigError(f"{shown}: the file is empty; expected {what}")
    if not isinstance(data, dict):
        hint = f" ({example})" if example else ""
        raise ConfigError(f"{shown}: expected {what}{hint} at the top level, got {_kind(data)}")
    try:
        result: M | None = model.model_validate(data)
    except ValidationError as exc:
        problems += _problems(exc, model, shown, lines)
        result = None
    if result is not None and check is not None:
        problems += [_line(shown, tuple(p.loc), p.message, lines) for p in check(result)]
    if problems:
        raise ConfigError("\n".join(problems))
    assert result is not None
    return result


def validate_model(model: type[M], data: dict[str, Any], *, label: str) -> M:
    """Validate in-memory data (e.g. a copy with overrides) into ``model``.

    Args:
        model: The pydantic model class.
        data: Field values, as they would be read from YAML.
        label: What the data is, starting every message line instead of a file path,
            e.g. ``"target 'cpu-ort-int8' with overrides"``.

    Returns:
        The validated model instance.

    Raises:
        ConfigError: One line per problem, e.g. ``"LABEL: imgsz: expected an integer, got ..."``.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("\n".join(_problems(exc, model, label, {}))) from None


def non_blank(value: str) -> str:
    """Field-validator helper: reject empty or whitespace-only text.

    Raises:
        ValueError: With an "expected ..., got ..." message.
    """
    if not value.strip():
        raise ValueError(f"expected a non-empty text, got {show_value(value)}")
    return value


def choice(value: str, known: Sequence[str]) -> str:
    """Field-validator helper: ``value`` must be one of ``known`` (a registry's names, say).

    Raises:
        ValueError: With an "expected one of ..., got ..." message.
    """
    if value not in known:
        raise ValueError(f"expected one of {one_of(known)}, got {show_value(value)}")
    return value


def one_of(choices: Sequence[str]) -> str:
    """Quote choices for a message: ``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def show_value(value: Any) -> str:
    """Show a value as it would be written in YAML (``null``, ``true``, ``.inf``, ``'text'``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, (int, float, str)):
        return repr(value)
    return _kind(value)


# --------------------------------------------------------------------------------------------
# YAML parsing


def _parse_yaml(text: str, shown: str) -> tuple[Any, _Lines, list[str]]:
    """Parse YAML, returning (data, line of each key path, duplicate-key problems)."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters already here
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{shown}: {yaml_problem(exc)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: _Lines = {}
    problems: list[str] = []
    if node is not None:
        _walk(node, (), lines, problems, shown)
    return data, lines, problems


def yaml_problem(exc: yaml.YAMLError | RecursionError) -> str:
    """What went wrong parsing YAML, as 'line L, column C: invalid YAML: ...' (the one wording of
    every YAML file edgeprune reads: targets, recipes, data.yaml, hosts files)."""
    if isinstance(exc, RecursionError):
        return "invalid YAML: nested too deeply"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"invalid YAML: {' '.join(str(exc).split())}"

    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark = exc.problem_mark or exc.context_mark
    where = f"{at(mark)}: " if mark is not None else ""
    what = str(exc.problem or exc.context or "syntax error")
    if exc.context and exc.problem:
        context = str(exc.context)
        if exc.context_mark is not None and exc.context_mark is not mark:
            context += f" started at {at(exc.context_mark)}"
        what += f" ({context})"
    return f"{where}invalid YAML: {what}"


def _walk(node: yaml.Node, prefix: tuple[str, ...], lines: _Lines, problems: list[str], shown: str) -> None:
    """Record the line of every key path (list items by index) and report duplicate keys."""
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            loc = (*prefix, str(index))
            lines.setdefault(loc, item.start_mark.line + 1)
            _walk(item, loc, lines, problems, shown)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        loc = (*prefix, key_node.value)
        line = key_node.start_mark.line + 1
        if loc in lines:
            problems.append(
                f"{shown}: {_dotted(loc)}: duplicate key (lines {lines[loc]} and {line}); "
                "each field may appear once"
            )
        else:
            lines[loc] = line
        _walk(value_node, loc, lines, problems, shown)


# --------------------------------------------------------------------------------------------
# Messages


def _problems(exc: ValidationError, model: type[BaseModel], shown: str, lines: _Lines) -> list[str]:
    return [_line(shown, tuple(err["loc"]), _explain(err, model), lines) for err in exc.errors()]


def _line(shown: str, loc: tuple[Any, ...], message: str, lines: _Lines) -> str:
    """Format 'SHOWN: field.path: MESSAGE (line N)', using the nearest enclosing key's line."""
    field = _dotted(loc) or "(top level)"
    line = None
    for end in range(len(loc), 0, -1):
        line = lines.get(tuple(str(part) for part in loc[:end]))
        if line is not None:
            break
    where = f" (line {line})" if line is not None else ""
    return f"{shown}: {field}: {message}{where}"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_EXPECTED_TYPE = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a text value",
    "bool_type": "true or false",
    "model_type": "a mapping of fields",
    "model_attributes_type": "a mapping of fields",
    "dict_type": "a mapping",
    "list_type": "a list",
}


def _explain(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    """Turn one pydantic error into 'expected X, got Y' (or a clear sentence)."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    loc = tuple(err["loc"])
    value = err.get("input")
    if kind == "missing":
        parent = _model_at(model, loc[:-1]) if loc else None
        field = parent.model_fields.get(loc[-1]) if parent is not None else None
        about = f" ({field.description})" if field is not None and field.description else ""
        return f"required field is missing{about}"
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = list(parent.model_fields) if parent is not None else []
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        listed = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"unknown field{did_you_mean}{listed}"
    if kind in _EXPECTED_TYPE:
        return f"expected {_EXPECTED_TYPE[kind]}, got {_show_typed(value)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '')}, got {show_value(value)}"
    if kind == "greater_than":
        return f"expected a number greater than {_bound(ctx['gt'])}, got {show_value(value)}"
    if kind == "greater_than_equal":
        return f"expected a number greater than or equal to {_bound(ctx['ge'])}, got {show_value(value)}"
    if kind == "less_than":
        return f"expected a number less than {_bound(ctx['lt'])}, got {show_value(value)}"
    if kind == "less_than_equal":
        return f"expected a number less than or equal to {_bound(ctx['le'])}, got {show_value(value)}"
    if kind == "finite_number":
        return f"expected a finite number, got {show_value(value)}"
    msg = str(err["msg"])
    if msg.startswith("Input should be "):
        msg = "expected " + msg[len("Input should be ") :]
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{msg[:1].lower()}{msg[1:]}, got {show_value(value)}"


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class at field path ``loc`` (through nested models, optionals and lists), if any."""
    current: Any = root
    for part in loc:
        current = _strip_optional(current)
        origin = get_origin(current)
        if _is_model(current):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            current = field.annotation if field is not None else None
        elif origin in (list, tuple, set, frozenset) and isinstance(part, int):
            args = [a for a in get_args(current) if a is not Ellipsis]
            current = args[0] if len(args) == 1 else (args[part] if 0 <= part < len(args) else None)
        elif origin in (dict, Mapping) and len(get_args(current)) == 2:
            current = get_args(current)[1]
        else:
            return None
    current = _strip_optional(current)
    return current if _is_model(current) else None


def _is_model(annotation: Any) -> bool:
    # get_origin() first: on Python 3.10 isinstance(list[int], type) is True, but issubclass fails.
    return (
        get_origin(annotation) is None and isinstance(annotation, type) and issubclass(annotation, BaseModel)
    )


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        if len(args) == 1:
            return args[0]
    return annotation


def _bound(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _show_typed(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return _kind(value)
    if isinstance(value, str):
        number = _as_number(value)
        if number is not None:  # "640" (quoted) or 1e-3 (YAML 1.1 reads exponents without a dot as text)
            return f"{show_value(value)} (a text value; write it as {number}, without quotes)"
    return f"{show_value(value)} ({_kind(value)})"


def _as_number(text: str) -> str | None:
    try:
        return str(int(text))
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return repr(number) if math.isfinite(number) else None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a text value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
