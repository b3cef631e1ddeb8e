"""Users: user records created and updated, logins and logouts."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import CanvasBody, ExternalId, Id


class UserCreated(CanvasBody, kw_only=True):
    """A user was added to an account."""

    user_id: Id
    created_at: datetime | None = None
    name: str | None = None
    short_name: str | None = None
    updated_at: datetime | None = None
    # The unique_id of the primary login; null without a login.
    user_login: str | None = None
    user_sis_id: ExternalId | None = None
    uuid: str | None = None
    # e.g. pre_registered, registered, deleted.
    workflow_state: str | None = None


class UserUpdated(CanvasBody, kw_only=True):
    """A user's details were updated."""

    user_id: Id
    created_at: datetime | None = None
    name: str | None = None
    short_name: str | None = None
    updated_at: datetime | None = None
    # The unique_id of the primary login; null without a login.
    user_login: str | None = None
    user_sis_id: ExternalId | None = None
    uuid: str | None = None
    # deleted, pre_registered, registered.
    workflow_state: str | None = None


class LoggedIn(CanvasBody, kw_only=True):
    """An end user logged into Canvas (who: see the metadata's user_* fields)."""

    # Set when the user logged in after following a deep link into Canvas.
    redirect_url: str | None = None


class LoggedOut(CanvasBody, kw_only=True):
    """An end user logged out of Canvas; the body is empty."""


EVENTS: dict[str, type[CanvasBody]] = {
    "user_created": UserCreated,
    "user_updated": UserUpdated,
    "logged_in": LoggedIn,
    "logged_out": LoggedOut,
}
