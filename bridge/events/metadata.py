"""The ``metadata`` object common to every Canvas-format event."""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import CanvasObject, ExternalId, Id


class CanvasMetadata(CanvasObject, kw_only=True):
    """Who, where and when of a Canvas-format event.

    Exact fields vary with the event type and with whether the event is user-generated
    (an HTTP request: ``user_*``, ``request_id``, ``session_id``, ``client_ip``...) or
    system-generated (an asynchronous job: ``job_id``, ``job_tag``). Only ``event_name``
    and ``event_time`` are always present.
    """

    event_name: str
    event_time: datetime
    producer: str | None = None
    root_account_uuid: str | None = None
    root_account_id: Id | None = None
    root_account_lti_guid: str | None = None
    job_id: Id | None = None
    job_tag: str | None = None
    user_login: str | None = None
    user_account_id: Id | None = None
    user_sis_id: ExternalId | None = None
    user_id: Id | None = None
    time_zone: str | None = None
    developer_key_id: Id | None = None
    context_type: str | None = None
    context_id: Id | None = None
    context_sis_source_id: ExternalId | None = None
    context_account_id: Id | None = None
    context_role: str | None = None
    request_id: ExternalId | None = None
    session_id: ExternalId | None = None
    hostname: str | None = None
    http_method: str | None = None
    user_agent: str | None = None
    client_ip: str | None = None
    url: str | None = None
    referrer: str | None = None
    real_user_id: Id | None = None
