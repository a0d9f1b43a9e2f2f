"""Who may read what: bearer keys (TXMON_API_KEYS) to a role and regions, the role to its database role."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from txmon.core.settings import ApiGrant, Role

# What each role of a key may call, and the database role its reads use.
DATABASE_ROLE = {"regulator": Role.API_REGULATOR, "analyst": Role.API_ANALYST}


class Denied(Exception):
    """A request the key may not make: ``status`` 401 (no or unknown key) or 403 (outside its grant)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    role: str  # regulator | analyst
    regions: tuple[str, ...]  # the configured regions the key may read, in the configured order
    digest: bytes = field(default=b"", repr=False)  # the key's SHA-256: what its rate limit counts by

    @property
    def database_role(self) -> Role:
        return DATABASE_ROLE[self.role]

    def may(self, *roles: str) -> None:
        if self.role not in roles:
            raise Denied(403, f"a {self.role} key may not read this path")

    def scope(self, region: str | None) -> tuple[str, ...]:
        """The regions a request reads: the one asked for (if the key holds it), else all of the key's."""
        if region is None:
            return self.regions
        if region not in self.regions:
            raise Denied(403, f"this key may not read region {region}")
        return (region,)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Keys:
    """The keys, held as digests: a lookup compares digests, never the keys' text."""

    def __init__(self, digests: Mapping[str, ApiGrant], configured: tuple[str, ...]) -> None:
        """``digests``: each key's SHA-256 digest, hex (``credentials.api_keys``) -> its grant."""
        self._grants = {
            bytes.fromhex(d): Caller(g.role, g.region_list(configured), bytes.fromhex(d)) for d, g in digests.items()
        }

    def caller(self, authorization: str | None) -> Caller:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Denied(401, "send the key as `Authorization: Bearer KEY`")
        found = self._grants.get(_digest(key.strip()))
        if found is None:
            raise Denied(401, "unknown key")
        return found
