"""An organization's overrides of the instance's defaults: retention per snapshot kind and
snapshot-creation rate limits. Changes merge into the overrides already set and are audited."""

from __future__ import annotations

from typing import Any

from snapshotd import rules
from snapshotd.errors import InvalidValue, NotFound
from snapshotd.services import audit
from snapshotd.services.accounts import account_groups, ensure_org, find_org
from snapshotd.store.db import Database
from snapshotd.store.models import AccountGroup, Organization


class OrgSettings:
    def __init__(self, db: Database) -> None:
        self.db = db

    def ensure(self, slug: str, *, name: str = "") -> Organization:
        """The organization `slug`, created with its default account group when missing."""
        with self.db.session() as session:
            return ensure_org(session, slug, name=name)

    def find(self, slug: str) -> Organization:
        with self.db.session() as session:
            return find_org(session, slug)

    def get(self, org_id: str) -> Organization:
        with self.db.session() as session:
            org = session.get(Organization, org_id)
            if org is None:
                raise NotFound(f"no organization {org_id}")
            return org

    def account_groups(self, org_id: str, user_id: str | None = None) -> list[AccountGroup]:
        """The organization's account groups, or only those `user_id` belongs to."""
        with self.db.session() as session:
            return account_groups(session, org_id, user_id)

    def set_retention(self, org_id: str, days: dict[str, int], *, actor: str) -> Organization:
        """Per-kind retention for the organization's new snapshots (existing ones keep theirs)."""
        try:
            rules.retention_days(days)
        except InvalidValue as error:
            raise InvalidValue(error.detail, field="retention_days") from None
        return self._merge(org_id, "retention_days", days, actor=actor)

    def set_rate_limits(self, org_id: str, limits: dict[str, str], *, actor: str) -> Organization:
        """The operator's override of the instance's creation limits for one organization."""
        try:
            rules.rate_limits(limits)
        except InvalidValue as error:
            raise InvalidValue(error.detail, field="rate_limits") from None
        return self._merge(org_id, "rate_limits", limits, actor=actor)

    def set_cache_ttl(self, org_id: str, seconds: int | None, *, actor: str) -> Organization:
        """Seconds the organization's captures are reused on the caching routes by default
        (services/capture_cache.py); None follows the instance's setting, 0 never reuses."""
        if seconds is not None and not 0 <= seconds <= rules.MAX_CACHE_TTL:
            raise InvalidValue(
                f"cache_ttl is from 0 to {rules.MAX_CACHE_TTL} seconds", field="cache_ttl"
            )
        with self.db.session() as session:
            org = session.get(Organization, org_id)
            if org is None:
                raise NotFound(f"no organization {org_id}")
            org.cache_ttl = seconds
            audit.record(
                session, org_id, actor, "updated", "organization", org_id, cache_ttl=seconds
            )
            return org

    def _merge(self, org_id: str, name: str, values: dict[str, Any], *, actor: str) -> Organization:
        """Merges `values` into the organization's `name` overrides, recorded in the audit log."""
        with self.db.session() as session:
            org = session.get(Organization, org_id)
            if org is None:
                raise NotFound(f"no organization {org_id}")
            setattr(org, name, {**getattr(org, name), **values})
            audit.record(
                session, org_id, actor, "updated", "organization", org_id, **{name: values}
            )
            return org
