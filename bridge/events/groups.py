"""Groups: group categories (group sets), groups and group memberships."""

from __future__ import annotations

from bridge.events._base import CanvasBody, Id


class _GroupCategoryBody(CanvasBody, kw_only=True):
    """Fields shared by GroupCategoryCreated and GroupCategoryUpdated."""

    group_category_id: Id
    context_id: Id | None = None
    # Usually "Course" (or "Account").
    context_type: str | None = None
    group_category_name: str | None = None
    # Null when the category has no cap.
    group_limit: int | None = None


class GroupCategoryCreated(_GroupCategoryBody, kw_only=True):
    """A new group category was added to a course by an end user or API request."""


class GroupCategoryUpdated(_GroupCategoryBody, kw_only=True):
    """A group category was updated by an end user or API request."""


class _GroupBody(CanvasBody, kw_only=True):
    """Fields shared by GroupCreated and GroupUpdated."""

    group_id: Id
    account_id: Id | None = None
    context_id: Id | None = None
    # "Account" or "Course".
    context_type: str | None = None
    group_category_id: Id | None = None
    group_category_name: str | None = None
    group_name: str | None = None
    # Null when the group has no cap.
    max_membership: int | None = None
    uuid: str | None = None
    # available, deleted.
    workflow_state: str | None = None


class GroupCreated(_GroupBody, kw_only=True):
    """A new group was added to a course by an end user or API request."""


class GroupUpdated(_GroupBody, kw_only=True):
    """An existing group was updated by an end user or API request."""


class _GroupMembershipBody(CanvasBody, kw_only=True):
    """Fields shared by GroupMembershipCreated and GroupMembershipUpdated."""

    group_membership_id: Id
    group_id: Id | None = None
    user_id: Id | None = None
    group_name: str | None = None
    group_category_id: Id | None = None
    group_category_name: str | None = None
    # e.g. accepted, invited, requested, rejected, deleted.
    workflow_state: str | None = None


class GroupMembershipCreated(_GroupMembershipBody, kw_only=True):
    """A new member was added to a course group by an end user or API request."""


class GroupMembershipUpdated(_GroupMembershipBody, kw_only=True):
    """An existing group membership was updated by an end user or API request."""


EVENTS: dict[str, type[CanvasBody]] = {
    "group_category_created": GroupCategoryCreated,
    "group_category_updated": GroupCategoryUpdated,
    "group_created": GroupCreated,
    "group_updated": GroupUpdated,
    "group_membership_created": GroupMembershipCreated,
    "group_membership_updated": GroupMembershipUpdated,
}
