"""The IMS Caliper 1.1 side of the Canvas Live Events catalog as msgspec Structs.

A Caliper payload is an envelope (:class:`CaliperEnvelope`) whose ``data`` list holds
Caliper 1.1 events. The lead decodes each element of ``data`` separately: first as a
:class:`CaliperEventHead` (lenient, only what routing needs), then
:func:`caliper_event_name` names the Canvas event type, then the element is decoded
strictly as ``CALIPER_EVENTS[name]``.

Conventions (the same as ``bridge.events._base``):

- Python attributes are snake_case; the wire keeps Caliper's names (``eventTime``,
  ``edApp``, ``@context``, ``com.instructure.canvas``) through ``msgspec.field(name=...)``.
- Ids are ``str`` (Caliper ids are IRIs; Canvas ``entity_id`` values exceed 2**53).
- Timestamps are ``datetime``.
- A field is ``T | None = None`` when it is optional. Only ``id``, ``type``, ``action``
  and ``eventTime`` are required on an event; ``id`` and ``type`` on an entity.
- ``forbid_unknown_fields=True`` everywhere (except the head), so that a field the catalog
  does not know makes the strict decode fail and the lead's lenient path carries it.
- Every ``extensions`` object is ``{"com.instructure.canvas": {...}}``: it is a
  :class:`CanvasExtensions` parameterised with the Struct of the Canvas fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

import msgspec

from bridge.events._base import ExternalId

__all__ = [
    "CALIPER_EVENTS",
    "CaliperEnvelope",
    "CaliperEvent",
    "CaliperEventHead",
    "CaliperObject",
    "caliper_event_name",
]

# ---------------------------------------------------------------------------
# Base classes and the envelope
# ---------------------------------------------------------------------------


class CaliperObject(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Any JSON object inside a Caliper event."""


class CaliperEnvelope(msgspec.Struct):
    """The Caliper envelope; each ``data`` element is decoded separately by the lead."""

    sensor: str
    send_time: datetime = msgspec.field(name="sendTime")
    data_version: str = msgspec.field(name="dataVersion")
    data: list[msgspec.Raw]


ExtT = TypeVar("ExtT")


class CanvasExtensions(CaliperObject, Generic[ExtT], kw_only=True, forbid_unknown_fields=True):
    """An ``extensions`` object: ``{"com.instructure.canvas": {...}}``."""

    canvas: ExtT | None = msgspec.field(name="com.instructure.canvas", default=None)


class CaliperEntity(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """A Caliper entity reference: the ``id`` (an IRI) and the Caliper ``type``."""

    id: ExternalId
    type: str


class CaliperNamedEntity(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """An entity reference that may carry its ``name``."""

    name: str | None = None


# ---------------------------------------------------------------------------
# Fields common to every event: actor, edApp, session, group, membership, extensions
# ---------------------------------------------------------------------------


class ActorCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``actor.extensions["com.instructure.canvas"]`` (caliper/actor_extensions.json)."""

    entity_id: ExternalId | None = None
    root_account_id: ExternalId | None = None
    root_account_lti_guid: str | None = None
    root_account_uuid: str | None = None
    user_login: str | None = None
    user_sis_id: ExternalId | None = None
    real_user_id: ExternalId | None = None


class CaliperActor(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """The ``actor``: a ``Person``, or the ``SoftwareApplication`` for system events."""

    extensions: CanvasExtensions[ActorCanvasExtensions] | None = None


class EventCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """The event's ``extensions["com.instructure.canvas"]`` (caliper/extensions.json)."""

    client_ip: str | None = None
    hostname: str | None = None
    job_id: ExternalId | None = None
    job_tag: str | None = None
    request_id: ExternalId | None = None
    request_url: str | None = None
    user_agent: str | None = None
    version: str | None = None


class GroupCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``group.extensions["com.instructure.canvas"]``."""

    context_type: str | None = None
    entity_id: ExternalId | None = None


class CaliperGroup(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """The event's ``group``: the Canvas context (a ``CourseOffering``)."""

    extensions: CanvasExtensions[GroupCanvasExtensions] | None = None


class CaliperOrganization(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """``membership.organization``: a course, or a section inside a course."""

    sub_organization_of: CaliperEntity | None = msgspec.field(name="subOrganizationOf", default=None)


class CaliperMembership(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """The event's ``membership``: the actor's membership of the context."""

    member: CaliperEntity | None = None
    organization: CaliperOrganization | None = None
    roles: list[str] | None = None


class CaliperEvent(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """Fields common to every Caliper event; subclasses narrow ``object``/``generated``."""

    context: str | None = msgspec.field(name="@context", default=None)
    id: ExternalId
    type: str
    actor: CaliperActor | None = None
    action: str
    object: CaliperEntity | None = None
    event_time: datetime = msgspec.field(name="eventTime")
    ed_app: CaliperEntity | None = msgspec.field(name="edApp", default=None)
    referrer: str | None = None
    generated: CaliperEntity | None = None
    group: CaliperGroup | None = None
    membership: CaliperMembership | None = None
    session: CaliperEntity | None = None
    federated_session: CaliperEntity | None = msgspec.field(name="federatedSession", default=None)
    extensions: CanvasExtensions[EventCanvasExtensions] | None = None


class EntityIdCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``extensions["com.instructure.canvas"]`` holding only the Canvas ``entity_id``."""

    entity_id: ExternalId | None = None


# ---------------------------------------------------------------------------
# asset_accessed
# ---------------------------------------------------------------------------


class AssetAccessedCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``asset_accessed``."""

    asset_name: str | None = None
    asset_subtype: str | None = None
    asset_type: str | None = None
    context_account_id: ExternalId | None = None
    entity_id: ExternalId | None = None
    http_method: str | None = None
    developer_key_id: ExternalId | None = None
    filename: str | None = None
    display_name: str | None = None
    url: str | None = None
    domain: str | None = None


class AssetAccessedObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """The accessed asset (``Entity``, ``AssignableDigitalResource``, ``Page``, ``Thread``...)."""

    extensions: CanvasExtensions[AssetAccessedCanvasExtensions] | None = None


class AssetAccessedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``asset_accessed``: ``NavigationEvent`` / ``NavigatedTo``."""

    object: AssetAccessedObject | None = None


# ---------------------------------------------------------------------------
# assignments
# ---------------------------------------------------------------------------


class AssignmentCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``assignment_created/updated``."""

    entity_id: ExternalId | None = None
    lock_at: datetime | None = None
    workflow_state: str | None = None


class AssignmentObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """An ``AssignableDigitalResource``."""

    description: str | None = None
    date_created: datetime | None = msgspec.field(name="dateCreated", default=None)
    date_modified: datetime | None = msgspec.field(name="dateModified", default=None)
    date_to_show: datetime | None = msgspec.field(name="dateToShow", default=None)
    date_to_submit: datetime | None = msgspec.field(name="dateToSubmit", default=None)
    max_score: float | None = msgspec.field(name="maxScore", default=None)
    extensions: CanvasExtensions[AssignmentCanvasExtensions] | None = None


class AssignmentCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``assignment_created``: ``Event`` / ``Created`` / ``AssignableDigitalResource``."""

    object: AssignmentObject | None = None


class AssignmentUpdatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``assignment_updated``: ``Event`` / ``Modified`` / ``AssignableDigitalResource``."""

    object: AssignmentObject | None = None


class AssignmentOverrideCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``assignment_override_*``."""

    entity_id: ExternalId | None = None
    assignment_id: ExternalId | None = None
    all_day: bool | None = None
    all_day_date: datetime | None = None
    lock_at: datetime | None = None
    type: str | None = None
    course_section_id: ExternalId | None = None
    group_id: ExternalId | None = None
    workflow_state: str | None = None


class AssignmentOverrideObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """An assignment override (``Entity``)."""

    date_to_show: datetime | None = msgspec.field(name="dateToShow", default=None)
    date_to_submit: datetime | None = msgspec.field(name="dateToSubmit", default=None)
    extensions: CanvasExtensions[AssignmentOverrideCanvasExtensions] | None = None


class AssignmentOverrideCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``assignment_override_created``: ``Event`` / ``Created`` / ``Entity`` (override)."""

    object: AssignmentOverrideObject | None = None


class AssignmentOverrideUpdatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``assignment_override_updated``: ``Event`` / ``Modified`` / ``Entity`` (override)."""

    object: AssignmentOverrideObject | None = None


# ---------------------------------------------------------------------------
# attachments
# ---------------------------------------------------------------------------


class AttachmentCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``attachment_*``."""

    context_id: ExternalId | None = None
    context_type: str | None = None
    entity_id: ExternalId | None = None
    filename: str | None = None
    folder_id: ExternalId | None = None


class AttachmentObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """A file (``Document``)."""

    media_type: str | None = msgspec.field(name="mediaType", default=None)
    date_created: datetime | None = msgspec.field(name="dateCreated", default=None)
    date_modified: datetime | None = msgspec.field(name="dateModified", default=None)
    extensions: CanvasExtensions[AttachmentCanvasExtensions] | None = None


class AttachmentCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``attachment_created``: ``Event`` / ``Created`` / ``Document`` (attachment)."""

    object: AttachmentObject | None = None


class AttachmentDeletedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``attachment_deleted``: ``Event`` / ``Deleted`` / ``Document`` (attachment)."""

    object: AttachmentObject | None = None


class AttachmentUpdatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``attachment_updated``: ``Event`` / ``Modified`` / ``Document`` (attachment)."""

    object: AttachmentObject | None = None


# ---------------------------------------------------------------------------
# courses
# ---------------------------------------------------------------------------


class CourseCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``course_created/updated``."""

    entity_id: ExternalId | None = None
    workflow_state: str | None = None


class CourseObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """A course (``CourseOffering``)."""

    extensions: CanvasExtensions[CourseCanvasExtensions] | None = None


class CourseCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``course_created``: ``Event`` / ``Created`` / ``CourseOffering``."""

    object: CourseObject | None = None


class CourseUpdatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``course_updated``: ``Event`` / ``Modified`` / ``CourseOffering``."""

    object: CourseObject | None = None


class SyllabusObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """A course syllabus (``Document`` whose id is the course's)."""

    creators: list[CaliperEntity] | None = None
    body: str | None = None
    extensions: CanvasExtensions[EntityIdCanvasExtensions] | None = None


class SyllabusUpdatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``syllabus_updated``: ``Event`` / ``Modified`` / ``Document`` (course)."""

    object: SyllabusObject | None = None


# ---------------------------------------------------------------------------
# discussions
# ---------------------------------------------------------------------------


class DiscussionEntryObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """A discussion reply (``Message``), part of its ``Thread``."""

    body: str | None = None
    is_part_of: CaliperNamedEntity | None = msgspec.field(name="isPartOf", default=None)
    extensions: CanvasExtensions[EntityIdCanvasExtensions] | None = None


class DiscussionEntryCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``discussion_entry_created``: ``MessageEvent`` / ``Posted``."""

    object: DiscussionEntryObject | None = None


class DiscussionTopicCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``discussion_topic_created``."""

    entity_id: ExternalId | None = None
    is_announcement: bool | None = None


class DiscussionTopicObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """A discussion topic (``Thread``)."""

    extensions: CanvasExtensions[DiscussionTopicCanvasExtensions] | None = None


class DiscussionTopicCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``discussion_topic_created``: ``ThreadEvent`` / ``Created``."""

    object: DiscussionTopicObject | None = None


# ---------------------------------------------------------------------------
# enrollments
# ---------------------------------------------------------------------------


class EnrollmentCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``enrollment_created/updated``."""

    course_id: ExternalId | None = None
    course_section_id: ExternalId | None = None
    entity_id: ExternalId | None = None
    limit_privileges_to_course_section: bool | None = None
    type: str | None = None
    user_id: ExternalId | None = None
    user_name: str | None = None
    workflow_state: str | None = None


class EnrollmentObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """An enrollment (``Entity``)."""

    date_created: datetime | None = msgspec.field(name="dateCreated", default=None)
    date_modified: datetime | None = msgspec.field(name="dateModified", default=None)
    extensions: CanvasExtensions[EnrollmentCanvasExtensions] | None = None


class EnrollmentCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``enrollment_created``: ``Event`` / ``Created`` / ``Entity`` (enrollment)."""

    object: EnrollmentObject | None = None


class EnrollmentUpdatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``enrollment_updated``: ``Event`` / ``Modified`` / ``Entity`` (enrollment)."""

    object: EnrollmentObject | None = None


class EnrollmentStateCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``enrollment_state_*``."""

    access_is_current: bool | None = None
    entity_id: ExternalId | None = None
    restricted_access: bool | None = None
    state: str | None = None
    state_is_current: bool | None = None
    state_valid_until: datetime | None = None


class EnrollmentStateObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """An enrollment state (``Entity`` whose id is the enrollment's)."""

    started_at_time: datetime | None = msgspec.field(name="startedAtTime", default=None)
    extensions: CanvasExtensions[EnrollmentStateCanvasExtensions] | None = None


class EnrollmentStateCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``enrollment_state_created``: ``Event`` / ``Created`` / ``Entity`` (state fields)."""

    object: EnrollmentStateObject | None = None


class EnrollmentStateUpdatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``enrollment_state_updated``: ``Event`` / ``Modified`` / ``Entity`` (state fields)."""

    object: EnrollmentStateObject | None = None


# ---------------------------------------------------------------------------
# grades and submissions
# ---------------------------------------------------------------------------


class AssigneeCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``assignee.extensions["com.instructure.canvas"]``."""

    sis_id: ExternalId | None = None


class CaliperAssignee(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """``assignee``: the ``Person`` the attempt belongs to."""

    extensions: CanvasExtensions[AssigneeCanvasExtensions] | None = None


class GradeCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``extensions["com.instructure.canvas"]`` of the graded ``Attempt`` and ``Score``."""

    entity_id: ExternalId | None = None
    grade: str | None = None


class GradedAttempt(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """The graded submission (``Attempt``)."""

    assignee: CaliperAssignee | None = None
    assignable: CaliperEntity | None = None
    extensions: CanvasExtensions[GradeCanvasExtensions] | None = None


class GradeScore(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """``generated``: the ``Score``."""

    attempt: GradedAttempt | None = None
    max_score: float | None = msgspec.field(name="maxScore", default=None)
    score_given: float | None = msgspec.field(name="scoreGiven", default=None)
    scored_by: str | None = msgspec.field(name="scoredBy", default=None)
    extensions: CanvasExtensions[GradeCanvasExtensions] | None = None


class GradeChangeEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``grade_change``: ``GradeEvent`` / ``Graded``."""

    object: GradedAttempt | None = None
    generated: GradeScore | None = None


class SubmissionCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``submission_created/updated``."""

    entity_id: ExternalId | None = None
    submission_type: str | None = None
    url: str | None = None


class SubmissionObject(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """A submission (``Attempt``)."""

    assignee: CaliperAssignee | None = None
    assignable: CaliperEntity | None = None
    count: int | None = None
    body: str | None = None
    date_created: datetime | None = msgspec.field(name="dateCreated", default=None)
    date_modified: datetime | None = msgspec.field(name="dateModified", default=None)
    extensions: CanvasExtensions[SubmissionCanvasExtensions] | None = None


class SubmissionCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``submission_created``: ``AssignableEvent`` / ``Submitted``."""

    object: SubmissionObject | None = None


class SubmissionUpdatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``submission_updated``: ``Event`` / ``Modified`` / ``Attempt``."""

    object: SubmissionObject | None = None


# ---------------------------------------------------------------------------
# groups
# ---------------------------------------------------------------------------


class GroupCategoryObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """A group category (``Entity``)."""

    extensions: CanvasExtensions[EntityIdCanvasExtensions] | None = None


class GroupCategoryCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``group_category_created``: ``Event`` / ``Created`` / ``Entity`` (group category)."""

    object: GroupCategoryObject | None = None


class GroupObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """A group (``Group``), part of its group category."""

    is_part_of: CaliperNamedEntity | None = msgspec.field(name="isPartOf", default=None)
    extensions: CanvasExtensions[EntityIdCanvasExtensions] | None = None


class GroupCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``group_created``: ``Event`` / ``Created`` / ``Group``."""

    object: GroupObject | None = None


class GroupMembershipObject(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """A group membership (``Membership``) of ``member`` in the ``organization`` group."""

    member: CaliperEntity | None = None
    organization: GroupObject | None = None
    extensions: CanvasExtensions[EntityIdCanvasExtensions] | None = None


class GroupMembershipCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``group_membership_created``: ``Event`` / ``Created`` / ``Membership``."""

    object: GroupMembershipObject | None = None


# ---------------------------------------------------------------------------
# sessions
# ---------------------------------------------------------------------------


class LoggedInCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``logged_in``."""

    redirect_url: str | None = None


class LoggedInObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """The ``SoftwareApplication`` logged into."""

    extensions: CanvasExtensions[LoggedInCanvasExtensions] | None = None


class LoggedInEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``logged_in``: ``SessionEvent`` / ``LoggedIn``."""

    object: LoggedInObject | None = None


class LoggedOutObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """The ``SoftwareApplication`` logged out of."""


class LoggedOutEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``logged_out``: ``SessionEvent`` / ``LoggedOut``."""

    object: LoggedOutObject | None = None


# ---------------------------------------------------------------------------
# quizzes
# ---------------------------------------------------------------------------


class QuizCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``quiz_created/updated``."""

    entity_id: ExternalId | None = None
    quiz_type: str | None = None
    time_limit: int | None = None
    access_code: bool | None = None
    workflow_state: str | None = None


class QuizObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """A classic quiz (``Assessment``)."""

    date_created: datetime | None = msgspec.field(name="dateCreated", default=None)
    date_modified: datetime | None = msgspec.field(name="dateModified", default=None)
    date_to_show: datetime | None = msgspec.field(name="dateToShow", default=None)
    date_to_submit: datetime | None = msgspec.field(name="dateToSubmit", default=None)
    max_score: float | None = msgspec.field(name="maxScore", default=None)
    extensions: CanvasExtensions[QuizCanvasExtensions] | None = None


class QuizCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``quiz_created``: ``Event`` / ``Created`` / ``Assessment``."""

    object: QuizObject | None = None


class QuizUpdatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``quiz_updated``: ``Event`` / ``Modified`` / ``Assessment``."""

    object: QuizObject | None = None


class QuizSubmissionObject(CaliperEntity, kw_only=True, forbid_unknown_fields=True):
    """A quiz submission (``Attempt`` whose ``assignable`` is the ``Assessment``)."""

    assignee: CaliperAssignee | None = None
    assignable: CaliperEntity | None = None
    extensions: CanvasExtensions[EntityIdCanvasExtensions] | None = None


class QuizSubmittedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``quiz_submitted``: ``AssessmentEvent`` / ``Submitted``."""

    object: QuizSubmissionObject | None = None


# ---------------------------------------------------------------------------
# accounts
# ---------------------------------------------------------------------------


class UserAccountAssociationCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``user_account_association_created``."""

    is_admin: bool | None = None
    user_id: ExternalId | None = None


class UserAccountAssociationObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """The association (``Entity`` whose id is the account's)."""

    date_created: datetime | None = msgspec.field(name="dateCreated", default=None)
    date_modified: datetime | None = msgspec.field(name="dateModified", default=None)
    extensions: CanvasExtensions[UserAccountAssociationCanvasExtensions] | None = None


class UserAccountAssociationCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``user_account_association_created``: ``Event`` / ``Created`` / ``Entity`` (account)."""

    object: UserAccountAssociationObject | None = None


# ---------------------------------------------------------------------------
# wiki pages
# ---------------------------------------------------------------------------


class WikiPageCanvasExtensions(CaliperObject, kw_only=True, forbid_unknown_fields=True):
    """``object.extensions["com.instructure.canvas"]`` of ``wiki_page_*``."""

    body: str | None = None
    entity_id: ExternalId | None = None


class WikiPageObject(CaliperNamedEntity, kw_only=True, forbid_unknown_fields=True):
    """A wiki page (``Page``)."""

    extensions: CanvasExtensions[WikiPageCanvasExtensions] | None = None


class WikiPageCreatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``wiki_page_created``: ``Event`` / ``Created`` / ``Page``."""

    object: WikiPageObject | None = None


class WikiPageDeletedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``wiki_page_deleted``: ``Event`` / ``Deleted`` / ``Page``."""

    object: WikiPageObject | None = None


class WikiPageUpdatedEvent(CaliperEvent, kw_only=True, forbid_unknown_fields=True):
    """``wiki_page_updated``: ``Event`` / ``Modified`` / ``Page``."""

    object: WikiPageObject | None = None


# ---------------------------------------------------------------------------
# The catalog
# ---------------------------------------------------------------------------

CALIPER_EVENTS: dict[str, type[CaliperEvent]] = {
    "asset_accessed": AssetAccessedEvent,
    "assignment_created": AssignmentCreatedEvent,
    "assignment_override_created": AssignmentOverrideCreatedEvent,
    "assignment_override_updated": AssignmentOverrideUpdatedEvent,
    "assignment_updated": AssignmentUpdatedEvent,
    "attachment_created": AttachmentCreatedEvent,
    "attachment_deleted": AttachmentDeletedEvent,
    "attachment_updated": AttachmentUpdatedEvent,
    "course_created": CourseCreatedEvent,
    "course_updated": CourseUpdatedEvent,
    "discussion_entry_created": DiscussionEntryCreatedEvent,
    "discussion_topic_created": DiscussionTopicCreatedEvent,
    "enrollment_created": EnrollmentCreatedEvent,
    "enrollment_state_created": EnrollmentStateCreatedEvent,
    "enrollment_state_updated": EnrollmentStateUpdatedEvent,
    "enrollment_updated": EnrollmentUpdatedEvent,
    "grade_change": GradeChangeEvent,
    "group_category_created": GroupCategoryCreatedEvent,
    "group_created": GroupCreatedEvent,
    "group_membership_created": GroupMembershipCreatedEvent,
    "logged_in": LoggedInEvent,
    "logged_out": LoggedOutEvent,
    "quiz_created": QuizCreatedEvent,
    "quiz_submitted": QuizSubmittedEvent,
    "quiz_updated": QuizUpdatedEvent,
    "submission_created": SubmissionCreatedEvent,
    "submission_updated": SubmissionUpdatedEvent,
    "syllabus_updated": SyllabusUpdatedEvent,
    "user_account_association_created": UserAccountAssociationCreatedEvent,
    "wiki_page_created": WikiPageCreatedEvent,
    "wiki_page_deleted": WikiPageDeletedEvent,
    "wiki_page_updated": WikiPageUpdatedEvent,
}
"""Canvas event name -> Struct of the full Caliper event (32 entries)."""


# ---------------------------------------------------------------------------
# Routing: the head and caliper_event_name
# ---------------------------------------------------------------------------


class CaliperHeadExtensions(msgspec.Struct):
    """``object.extensions`` as the head reads it: only which Canvas fields are present."""

    canvas: dict[str, msgspec.Raw] | None = msgspec.field(name="com.instructure.canvas", default=None)


class CaliperHeadObject(msgspec.Struct):
    """``object`` as the head reads it."""

    id: ExternalId | None = None
    type: str | None = None
    extensions: CaliperHeadExtensions | None = None


class CaliperEventHead(msgspec.Struct):
    """The minimum of a Caliper event needed to route it; unknown fields are ignored.

    Everything is optional so that the head decodes whenever the element is a JSON
    object with the right value types; :func:`caliper_event_name` returns None when
    the head is not enough to name the event. ``object`` may be an IRI string (Caliper
    allows entity references by IRI).
    """

    id: ExternalId | None = None
    type: str | None = None
    action: str | None = None
    object: CaliperHeadObject | str | None = None


_BY_EVENT_TYPE: dict[tuple[str, str], str] = {
    ("NavigationEvent", "NavigatedTo"): "asset_accessed",
    ("SessionEvent", "LoggedIn"): "logged_in",
    ("SessionEvent", "LoggedOut"): "logged_out",
    ("GradeEvent", "Graded"): "grade_change",
    ("MessageEvent", "Posted"): "discussion_entry_created",
    ("ThreadEvent", "Created"): "discussion_topic_created",
    ("AssessmentEvent", "Submitted"): "quiz_submitted",
    ("AssignableEvent", "Submitted"): "submission_created",
}
"""(event type, action) -> event name, for the events with a specific Caliper type."""

_ACTION_SUFFIX: dict[str, str] = {
    "Created": "created",
    "Modified": "updated",
    "Deleted": "deleted",
}
"""Caliper action of a generic ``Event`` -> suffix of the Canvas event name."""

_BY_OBJECT_TYPE: dict[str, str] = {
    "AssignableDigitalResource": "assignment",
    "Assessment": "quiz",
    "CourseOffering": "course",
    "Group": "group",
    "Membership": "group_membership",
    "Attempt": "submission",
    "Page": "wiki_page",
}
"""Object type of a generic ``Event`` -> stem of the Canvas event name (unambiguous types)."""

_URN_PREFIX = "urn:instructure:canvas:"

_ATTACHMENT_HINTS = frozenset({"filename", "folder_id"})
_OVERRIDE_HINTS = frozenset({"assignment_id", "all_day", "all_day_date"})
_ENROLLMENT_STATE_HINTS = frozenset(
    {"state", "state_is_current", "access_is_current", "restricted_access", "state_valid_until"}
)
_ENROLLMENT_HINTS = frozenset(
    {"course_id", "course_section_id", "limit_privileges_to_course_section", "user_name"}
)
_ACCOUNT_ASSOCIATION_HINTS = frozenset({"is_admin"})


def _urn_kind(iri: str | None) -> str | None:
    """The entity kind of a Canvas URN, normalised: ``urn:instructure:canvas:wikiPage:1`` ->
    ``wikipage``, ``...:assignment_override:1`` -> ``assignmentoverride``."""
    if iri is None or not iri.startswith(_URN_PREFIX):
        return None
    kind, sep, _ = iri[len(_URN_PREFIX) :].rpartition(":")
    if not sep or not kind:
        return None
    return kind.replace("_", "").lower()


def _named(stem: str, action: str) -> str | None:
    """``stem`` + the action's suffix, if that names an event of the catalog."""
    suffix = _ACTION_SUFFIX.get(action)
    if suffix is None:
        return None
    name = f"{stem}_{suffix}"
    return name if name in CALIPER_EVENTS else None


def caliper_event_name(head: CaliperEventHead) -> str | None:
    """The Canvas event name of a Caliper event, or None when it cannot tell.

    The name is chosen from Caliper semantics: the event ``type`` and ``action``, the
    ``object.type``, and, where Caliper's types are not enough, the entity kind in the
    Canvas URN of ``object.id`` (``urn:instructure:canvas:<kind>:<id>``, compared without
    ``_`` and case) or the keys present in ``object.extensions["com.instructure.canvas"]``.

    Events with a specific Caliper type (any object):

    =================  ===========  ============================
    type               action       event name
    =================  ===========  ============================
    NavigationEvent    NavigatedTo  asset_accessed
    SessionEvent       LoggedIn     logged_in
    SessionEvent       LoggedOut    logged_out
    GradeEvent         Graded       grade_change
    MessageEvent       Posted       discussion_entry_created
    ThreadEvent        Created      discussion_topic_created
    AssessmentEvent    Submitted    quiz_submitted
    AssignableEvent    Submitted    submission_created
    =================  ===========  ============================

    Generic ``Event``: the action gives the suffix (``Created`` -> ``_created``,
    ``Modified`` -> ``_updated``, ``Deleted`` -> ``_deleted``) and the object the stem;
    the result must be one of the 32 names of ``CALIPER_EVENTS``, else None:

    ==========================  =====================================  ======================
    object.type                 further test                           stem (actions)
    ==========================  =====================================  ======================
    AssignableDigitalResource                                          assignment (C, M)
    Assessment                                                         quiz (C, M)
    CourseOffering                                                     course (C, M)
    Group                                                              group (C)
    Membership                                                         group_membership (C)
    Attempt                                                            submission (M)
    Page                                                               wiki_page (C, M, D)
    Document                    URN kind attachment, or canvas ext     attachment (C, M, D)
                                has filename / folder_id
    Document                    URN kind course                        syllabus (M)
    Entity                      canvas ext has assignment_id /         assignment_override
                                all_day / all_day_date, or URN kind    (C, M)
                                assignment_override
    Entity                      canvas ext has state /                 enrollment_state (C, M)
                                state_is_current / access_is_current
                                / restricted_access / state_valid_until
    Entity                      canvas ext has course_id /             enrollment (C, M)
                                course_section_id / user_name /
                                limit_privileges_to_course_section,
                                or URN kind enrollment
    Entity                      URN kind group_category                group_category (C)
    Entity                      canvas ext has is_admin, or URN kind   user_account_association
                                account with user_id in canvas ext     (C)
    ==========================  =====================================  ======================

    (C = Created, M = Modified, D = Deleted; the ``Entity`` rows are tried in order.)
    """
    if head.type is None or head.action is None:
        return None
    specific = _BY_EVENT_TYPE.get((head.type, head.action))
    if specific is not None:
        return specific
    if head.type != "Event":
        return None

    obj = head.object
    if isinstance(obj, str):
        obj = CaliperHeadObject(id=obj)
    if obj is None:
        return None
    kind = _urn_kind(obj.id)
    ext: frozenset[str] = frozenset()
    if obj.extensions is not None and obj.extensions.canvas is not None:
        ext = frozenset(obj.extensions.canvas)

    action = head.action
    stem = _BY_OBJECT_TYPE.get(obj.type or "")
    if stem is not None:
        return _named(stem, action)
    if obj.type == "Document":
        if kind == "attachment" or ext & _ATTACHMENT_HINTS:
            return _named("attachment", action)
        if kind == "course":
            return _named("syllabus", action)
        return None
    if obj.type == "Entity":
        if kind == "assignmentoverride" or ext & _OVERRIDE_HINTS:
            return _named("assignment_override", action)
        if ext & _ENROLLMENT_STATE_HINTS:
            return _named("enrollment_state", action)
        if kind == "enrollment" or ext & _ENROLLMENT_HINTS:
            return _named("enrollment", action)
        if kind == "groupcategory":
            return _named("group_category", action)
        if ext & _ACCOUNT_ASSOCIATION_HINTS or (kind == "account" and "user_id" in ext):
            return _named("user_account_association", action)
    return None
