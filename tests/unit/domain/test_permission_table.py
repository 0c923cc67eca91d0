"""The role -> permission table."""

from __future__ import annotations

import pytest

from omnicrm.domain.permissions import ROLE_PERMISSIONS, Permission, allowed
from omnicrm.domain.vocabulary import ROLES

P = Permission


@pytest.mark.parametrize("permission", list(Permission))
def test_admin_has_everything(permission: Permission) -> None:
    assert allowed("admin", permission)


@pytest.mark.parametrize("role", ["", "root", "Admin", "ADMIN", "guest", "admin "])
@pytest.mark.parametrize("permission", list(Permission))
def test_unknown_role_has_nothing(role: str, permission: Permission) -> None:
    assert not allowed(role, permission)


@pytest.mark.parametrize(
    ("role", "permission", "expected"),
    [
        ("auditor", P.READ_AUDIT, True),
        ("auditor", P.READ_CATALOGUE, True),
        ("auditor", P.READ_PROFILE, False),
        ("auditor", P.READ_TIMELINE, False),
        ("auditor", P.WRITE_PROFILE, False),
        ("operator", P.READ_PROFILE, True),
        ("operator", P.WRITE_PROFILE, True),
        ("operator", P.WRITE_INTERACTIONS, True),
        ("operator", P.MASS_UPDATE, False),
        ("operator", P.MERGE_PROFILES, False),
        ("operator", P.READ_AUDIT, False),
        ("operator", P.MANAGE_USERS, False),
        ("marketer", P.MASS_UPDATE, True),
        ("marketer", P.WRITE_CONSENT, False),
        ("compliance", P.MERGE_PROFILES, True),
        ("compliance", P.READ_AUDIT, True),
        ("compliance", P.MANAGE_USERS, False),
        ("integration", P.WRITE_EVENTS, True),
        ("integration", P.READ_TIMELINE, False),
        ("integration", P.READ_AUDIT, False),
        ("integration", P.MANAGE_USERS, False),
    ],
)
def test_role_table(role: str, permission: Permission, expected: bool) -> None:
    assert allowed(role, permission) is expected


def test_every_role_of_the_vocabulary_is_in_the_table() -> None:
    assert set(ROLE_PERMISSIONS) == set(ROLES)


def test_only_admin_manages_users() -> None:
    assert [r for r in ROLES if allowed(r, P.MANAGE_USERS)] == ["admin"]


def test_permission_values_are_stable_strings() -> None:
    assert P.READ_PROFILE.value == "profile:read"
    assert P.MASS_UPDATE.value == "profile:mass-update"
    assert len({p.value for p in Permission}) == len(Permission)
