"""Settings read from a given mapping of environment variables (tests pass a dict, txmon os.environ)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over ``environ`` (any mapping) instead of ``os.environ``.

    Only upper-case names with the settings' prefix count (the source itself matches names in any
    case). Text that is not JSON where JSON is read goes to the field's validation, whose error then
    names the variable. Two hooks below are underscored ones of pydantic-settings (pinned in
    pyproject.toml): with them reading settings costs tens of microseconds, not hundreds.
    """

    # Each field's variable names and whether it is JSON: fixed per field, worked out once.
    _field_info: ClassVar[dict[tuple[type, str], list[tuple[str, str, bool]]]] = {}

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:  # as DotEnvSettingsSource reads its file
        return {
            name.lower(): value
            for name, value in self.environ.items()
            if name.startswith(self.env_prefix) and name.isupper() and (value or not self.env_ignore_empty)
        }

    def _extract_field_info(
        self, field: FieldInfo, field_name: str, model_config: Mapping[str, Any] | None = None
    ) -> list[tuple[str, str, bool]]:
        key = (self.settings_cls, field_name)
        if key not in self._field_info:
            self._field_info[key] = super()._extract_field_info(field, field_name, model_config)
        return self._field_info[key]

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        # Unset: nothing to decode (no nested delimiter to assemble a value from), no type analysis.
        return None if value is None else super().prepare_field_value(field_name, field, value, value_is_complex)

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value
