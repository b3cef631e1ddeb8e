"""Migrations: content migrations (imports, course copies), content exports, blueprint syncs.

The blueprint course itself (templates, subscriptions, restrictions) is in
``bridge/events/blueprints.py``; exports of a classic quiz to New Quizzes in
``bridge/events/quizzes.py`` (``quiz_export_complete``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.events._base import UNSET, CanvasBody, Expected, ExternalId, Id


class _ContentMigrationBody(CanvasBody, kw_only=True):
    """Fields shared by ``content_migration_started`` and ``content_migration_completed``."""

    content_migration_id: Id
    context_id: Expected[Id] = UNSET
    context_type: Expected[str] = UNSET  # usually Course
    context_uuid: Expected[str] = UNSET
    # Whether quizzes are to be created in Quizzes.Next (true) or native Canvas (false).
    import_quizzes_next: Expected[bool] = UNSET
    # e.g. academic_benchmark_importer, angel_exporter, blackboard_exporter,
    # canvas_cartridge_importer, common_cartridge_importer, course_copy_importer,
    # d2l_exporter, master_course_import, moodle_converter, qti_converter, webct_scraper,
    # zip_file_importer, context_external_tool_<id>.
    migration_type: Expected[str] = UNSET
    # LTI context ids are opaque strings, not Canvas ids; a course gets one lazily.
    lti_context_id: ExternalId | None = None
    destination_course_lti_id: ExternalId | None = None  # alias of lti_context_id
    source_course_lti_id: ExternalId | None = None  # when the migration has a source course
    domain: str | None = None
    # When the migration has a source course (the docs show it on content_migration_started;
    # the source, content_migration_data, sends it on both).
    source_course_uuid: str | None = None
    # The URL of the migration's asset map, when one is needed (source:
    # content_migration_data; not in the docs).
    resource_map_url: str | None = None


class ContentMigrationCompleted(_ContentMigrationBody, kw_only=True):
    """A content migration request completed."""


class ContentMigrationStarted(_ContentMigrationBody, kw_only=True):
    """A content migration began importing content."""


class _MasterMigrationBody(CanvasBody, kw_only=True):
    """Fields shared by ``master_migration_started`` and ``master_migration_completed``."""

    master_migration_id: Id
    master_template_id: Expected[Id] = UNSET
    account_id: Expected[Id] = UNSET
    account_uuid: Expected[str] = UNSET
    blueprint_course_id: Expected[Id] = UNSET
    blueprint_course_uuid: Expected[str] = UNSET


class MasterMigrationStarted(_MasterMigrationBody, kw_only=True):
    """A blueprint (master course) migration began, before content reaches child courses."""


class MasterMigrationCompleted(_MasterMigrationBody, kw_only=True):
    """A blueprint sync finished (source: ``master_migration_completed``; not in the docs)."""


class ContentExportCreated(CanvasBody, kw_only=True):
    """A content export (course export, QTI, New Quizzes...) was created.

    Source: ``Canvas::LiveEvents.content_export_created`` (not in the docs).
    """

    content_export_id: Id
    # e.g. common_cartridge, qti, zip, quizzes2, course_copy, master_course_copy, user_data.
    export_type: Expected[str] = UNSET
    created_at: Expected[datetime] = UNSET
    context_id: Expected[Id] = UNSET
    context_uuid: Expected[str] = UNSET
    context_type: Expected[str] = UNSET  # usually Course
    # The export's settings hash (selected content, job id, errors...): no fixed shape.
    settings: dict[str, Any] | None = None


EVENTS: dict[str, type[CanvasBody]] = {
    "content_export_created": ContentExportCreated,
    "content_migration_completed": ContentMigrationCompleted,
    "content_migration_started": ContentMigrationStarted,
    "master_migration_completed": MasterMigrationCompleted,
    "master_migration_started": MasterMigrationStarted,
}
