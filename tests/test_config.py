"""The generic YAML -> frozen model loader: every problem names the file, the field and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pydantic
import pytest
from pydantic import BaseModel, Field, field_validator

from edgeprune.config import (
    STRICT_CONFIG,
    Problem,
    load_yaml_model,
    non_blank,
    one_of,
    show_value,
    validate_model,
)
from edgeprune.errors import ConfigError


class Section(BaseModel):
    model_config = STRICT_CONFIG

    rate: float = Field(gt=0, description="rate in hertz")
    mode: Literal["fast", "slow"] = "fast"


class Step(BaseModel):
    model_config = STRICT_CONFIG

    ratio: float = Field(gt=0, le=1)
    label: str = ""


class Recipe(BaseModel):
    model_config = STRICT_CONFIG

    name: str = Field(description="recipe name")
    count: int = Field(ge=1)
    section: Section = Field(description="mapping with rate and mode")
    steps: list[Step] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return non_blank(value)


GOOD = """\
name: demo
count: 3
section:
  rate: 2.5
  mode: slow
steps:
  - ratio: 0.5
    label: first
  - ratio: 1
"""


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_yaml_model(path, Recipe, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "Input should be" not in message and "pydantic" not in message.lower()
    return message


def test_valid_file_gives_frozen_model(tmp_path: Path):
    recipe = load_yaml_model(write(tmp_path, GOOD), Recipe)
    assert isinstance(recipe, Recipe)
    assert (recipe.name, recipe.count, recipe.section.rate, recipe.section.mode) == ("demo", 3, 2.5, "slow")
    assert [s.ratio for s in recipe.steps] == [0.5, 1.0]
    with pytest.raises(pydantic.ValidationError):
        recipe.count = 4  # type: ignore[misc]


def test_accepts_str_path(tmp_path: Path):
    assert load_yaml_model(str(write(tmp_path, GOOD)), Recipe).name == "demo"


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path):
    path = write(tmp_path, "name: demo\nsection:\n  rate: [1, 2\n  mode: fast\n")
    assert error_of(path) == (
        f"{path}: line 4, column 7: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started at line 3, column 9)"
    )


def test_unknown_key_with_did_you_mean(tmp_path: Path):
    path = write(tmp_path, GOOD.replace("  mode: slow", "  mdoe: slow"))
    assert error_of(path) == (
        f"{path}: section.mdoe: unknown field; did you mean 'mode'? (allowed here: rate, mode) (line 5)"
    )


def test_unknown_top_level_key_lists_allowed_fields(tmp_path: Path):
    path = write(tmp_path, GOOD + "colour: red\n")
    assert error_of(path) == (
        f"{path}: colour: unknown field (allowed here: name, count, section, steps) (line 10)"
    )


def test_unknown_key_inside_list_item(tmp_path: Path):
    path = write(tmp_path, GOOD.replace("  - ratio: 1", "  - ratoi: 1"))
    message = error_of(path)
    assert (
        f"{path}: steps[1].ratoi: unknown field; did you mean 'ratio'? (allowed here: ratio, label) (line 9)"
        in message
    )
    assert f"{path}: steps[1].ratio: required field is missing (line 9)" in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "count: 3",
            "count: '3'",
            "count: expected an integer, got '3' (a text value; write it as 3, without quotes) (line 2)",
        ),
        ("count: 3", "count: 3.0", "count: expected an integer, got 3.0 (a float) (line 2)"),
        ("count: 3", "count: 0", "count: expected a number greater than or equal to 1, got 0 (line 2)"),
        ("rate: 2.5", "rate: true", "section.rate: expected a number, got true (a boolean) (line 4)"),
        ("rate: 2.5", "rate: -1", "section.rate: expected a number greater than 0, got -1 (line 4)"),
        (
            "mode: slow",
            "mode: medium",
            "section.mode: expected one of 'fast' or 'slow', got 'medium' (line 5)",
        ),
        (
            "section:\n  rate: 2.5\n  mode: slow",
            "section: fast",
            "section: expected a mapping of fields, got 'fast' (a text value) (line 3)",
        ),
        (
            "ratio: 1\n",
            "ratio: 2\n",
            "steps[1].ratio: expected a number less than or equal to 1, got 2 (line 9)",
        ),
        ("name: demo", "name: ' '", "name: expected a non-empty text, got ' ' (line 1)"),
    ],
    ids=[
        "quoted-int",
        "float-for-int",
        "below-ge",
        "bool-for-float",
        "below-gt",
        "literal",
        "not-mapping",
        "above-le",
        "validator",
    ],
)
def test_wrong_value_has_field_and_line(tmp_path: Path, old: str, new: str, expected: str):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    assert error_of(path) == f"{path}: {expected}"


def test_missing_fields(tmp_path: Path):
    path = write(tmp_path, GOOD.replace("name: demo\n", "").replace("  rate: 2.5\n", ""))
    assert error_of(path).splitlines() == [
        f"{path}: name: required field is missing (recipe name)",
        f"{path}: section.rate: required field is missing (rate in hertz) (line 2)",  # line of `section:`
    ]


def test_one_line_per_problem(tmp_path: Path):
    path = write(
        tmp_path, GOOD.replace("count: 3", "count: 0").replace("mode: slow", "mode: x") + "extra: 1\n"
    )
    lines = error_of(path).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["count", "section.mode", "extra"]
    assert all(line.startswith(f"{path}: ") for line in lines)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"], ids=["blank", "comment", "marker"])
def test_empty_file(tmp_path: Path, text: str):
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: the file is empty; expected a mapping of fields"
    assert error_of(path, what="a mapping of recipe fields") == (
        f"{path}: the file is empty; expected a mapping of recipe fields"
    )


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a text value"), ("42\n", "an integer")]
)
def test_non_mapping_file(tmp_path: Path, text: str, kind: str):
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: expected a mapping of fields at the top level, got {kind}"
    message = error_of(path, what="a mapping of recipe fields", example="name: ..., count: ...")
    assert message == (
        f"{path}: expected a mapping of recipe fields (name: ..., count: ...) at the top level, got {kind}"
    )


def test_duplicate_keys(tmp_path: Path):
    path = write(tmp_path, GOOD.replace("  mode: slow\n", "  mode: slow\n  mode: fast\n") + "count: 4\n")
    assert error_of(path).splitlines() == [
        f"{path}: section.mode: duplicate key (lines 5 and 6); each field may appear once",
        f"{path}: count: duplicate key (lines 2 and 11); each field may appear once",
    ]


def test_missing_path_and_directory(tmp_path: Path):
    assert error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such file"
    assert error_of(tmp_path) == f"{tmp_path}: not a file"


def test_undecodable_file(tmp_path: Path):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    assert error_of(path).startswith(f"{path}: cannot read the file: ")


def test_check_problems_use_the_same_format(tmp_path: Path):
    path = write(tmp_path, GOOD)
    seen: list[Recipe] = []

    def check(recipe: Recipe) -> list[Problem]:
        seen.append(recipe)
        return [
            Problem(("name",), "expected 'recipe', got 'demo'"),
            Problem(("steps", 0, "label"), "too short"),
        ]

    assert error_of(path, check=check).splitlines() == [
        f"{path}: name: expected 'recipe', got 'demo' (line 1)",
        f"{path}: steps[0].label: too short (line 8)",
    ]
    assert len(seen) == 1
    assert load_yaml_model(path, Recipe, check=lambda recipe: []).name == "demo"


def test_check_is_skipped_when_validation_fails(tmp_path: Path):
    path = write(tmp_path, GOOD.replace("count: 3", "count: 0"))

    def check(recipe: Recipe) -> list[Problem]:
        raise AssertionError("check must only see a valid model")

    assert error_of(path, check=check).splitlines() == [
        f"{path}: count: expected a number greater than or equal to 1, got 0 (line 2)"
    ]


def test_validate_model_uses_the_label():
    data = {"name": "demo", "count": 3, "section": {"rate": 1.0}}
    assert validate_model(Recipe, data, label="recipe 'demo'").section.mode == "fast"
    bad = {**data, "count": "3", "section": {"rate": 1.0, "mdoe": "slow"}, "steps": [{"ratio": 0}]}
    with pytest.raises(ConfigError) as info:
        validate_model(Recipe, bad, label="recipe 'demo' with overrides")
    assert str(info.value).splitlines() == [
        "recipe 'demo' with overrides: count: expected an integer, got '3' (a text value; write it as 3, without quotes)",
        "recipe 'demo' with overrides: section.mdoe: unknown field; did you mean 'mode'? (allowed here: rate, mode)",
        "recipe 'demo' with overrides: steps[0].ratio: expected a number greater than 0, got 0",
    ]


def test_value_helpers():
    assert [show_value(v) for v in (None, True, False, 3, 2.5, float("inf"), float("-inf"), "x")] == [
        "null",
        "true",
        "false",
        "3",
        "2.5",
        ".inf",
        "-.inf",
        "'x'",
    ]
    assert show_value(float("nan")) == ".nan"
    assert show_value([1]) == "a list" and show_value({}) == "a mapping"
    assert one_of(["a"]) == "'a'"
    assert one_of(["a", "b", "c"]) == "'a', 'b' or 'c'"
    assert non_blank("ok") == "ok"
    with pytest.raises(ValueError, match="expected a non-empty text, got '  '"):
        non_blank("  ")
