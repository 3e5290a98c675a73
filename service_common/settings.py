"""Configuration from environment variables, one way for every service and the CLI: pydantic-settings.

Each component declares its settings as a subclass of `EnvSettings` (a `pydantic_settings.BaseSettings`;
field = variable, with its documented default); `load_settings(cls, **overrides)` reads the environment and turns a bad
value into one `ValueError` that names the variable, what it must be, and what it got. Empty or blank
variables count as unset (the documented default applies).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError, field_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)

# The behaviour shared by every settings class: frozen values, other variables ignored, empty variables
# unset, field names usable as keyword arguments next to aliased variable names, and defaults taken as
# written (validating them would send blank defaults such as "" through the blank-means-unset rule).
COMMON = SettingsConfigDict(frozen=True, extra="ignore", env_ignore_empty=True, populate_by_name=True,
                            case_sensitive=False, validate_default=False)

_KIND = {"int_parsing": "a whole number", "int_from_float": "a whole number", "float_parsing": "a number",
         "bool_parsing": "true or false", "json_invalid": "valid JSON", "dict_type": "a JSON object"}


class EnvSettings(BaseSettings):
    """Base of every settings class: COMMON behaviour, and blank values meaning "use the default"."""

    model_config = COMMON

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise PydanticUseDefault()
        return value


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` of `cls`."""
    info = cls.model_fields[field]
    alias = info.validation_alias or info.alias
    if isinstance(alias, str):
        return alias.upper()
    return (cls.model_config.get("env_prefix", "") + field).upper()


class _MappingEnvSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of os.environ (tests, embedding)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # As the parent does for os.environ under COMMON: names case-insensitive, empty values unset.
        return {k.lower(): v for k, v in self._environ.items() if v != ""}


def load_settings(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
    """`cls` from the environment (os.environ, or `environ`), with `overrides` winning; ValueError naming the
    variable on bad input."""
    target: type[S] = cls
    if environ is not None:
        mapping = dict(environ)

        class FromMapping(cls):  # type: ignore[valid-type, misc]
            @classmethod
            def settings_customise_sources(cls_, settings_cls, init_settings, **_sources):
                return init_settings, _MappingEnvSource(settings_cls, mapping)

        FromMapping.__name__ = FromMapping.__qualname__ = cls.__name__
        target = FromMapping
    try:
        return target(**overrides)
    except ValidationError as exc:
        raise ValueError(explain(cls, exc)) from None


def explain(cls: type[BaseSettings], exc: ValidationError) -> str:
    """One line per bad value: `VAR must be <what>. Received: <value>` (or the validator's own message)."""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        var = env_name(cls, field) if field in cls.model_fields else field
        if err["type"] == "value_error":  # our validators' messages already name the variable and value
            lines.append(str(err["ctx"]["error"]) if "ctx" in err else err["msg"])
        else:
            what = _KIND.get(err["type"], err["msg"].lower())
            lines.append(f"{var} must be {what}. Received: {err.get('input')!r}")
    return "; ".join(lines)
