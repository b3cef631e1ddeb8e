"""Accounts: account creation and updates, account notifications, user-account associations."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import UNSET, CanvasBody, Expected, Id


class _AccountBody(CanvasBody, kw_only=True):
    """Fields shared by ``account_created`` and ``account_updated``."""

    account_id: Id
    name: Expected[str] = UNSET
    # active, deleted (Canvas may add states).
    workflow_state: Expected[str] = UNSET
    external_status: Expected[str] = UNSET
    # A root account has no parent (and no separate root account).
    parent_account_id: Id | None = None
    root_account_id: Id | None = None
    root_account_uuid: str | None = None
    domain: str | None = None
    # Unset on accounts that inherit them from their parent.
    default_time_zone: str | None = None
    default_locale: str | None = None


class AccountCreated(_AccountBody, kw_only=True):
    """An account was created by an end user or an API request."""


class AccountUpdated(_AccountBody, kw_only=True):
    """An account was updated by an end user or an API request."""


class AccountNotificationCreated(CanvasBody, kw_only=True):
    """An account-level notification (global announcement) was created."""

    account_notification_id: Id
    subject: Expected[str] = UNSET  # truncated to 8192 characters
    message: Expected[str] = UNSET  # HTML, truncated to 8192 characters
    # warning (default), information, question, error, calendar.
    icon: Expected[str] = UNSET
    start_at: Expected[datetime] = UNSET
    end_at: Expected[datetime] = UNSET


class UserAccountAssociationCreated(CanvasBody, kw_only=True):
    """A user was associated with (added to) an account."""

    user_id: Id
    account_id: Id
    account_uuid: Expected[str] = UNSET
    is_admin: Expected[bool] = UNSET
    created_at: Expected[datetime] = UNSET
    updated_at: Expected[datetime] = UNSET


EVENTS: dict[str, type[CanvasBody]] = {
    "account_created": AccountCreated,
    "account_notification_created": AccountNotificationCreated,
    "account_updated": AccountUpdated,
    "user_account_association_created": UserAccountAssociationCreated,
}
