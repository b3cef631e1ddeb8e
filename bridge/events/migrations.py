"""Migrations: content migrations (imports, course copies) and blueprint (master) syncs."""

from __future__ import annotations

from bridge.events._base import CanvasBody, Id


class _ContentMigrationBody(CanvasBody, kw_only=True):
    """Fields shared by ``content_migration_started`` and ``content_migration_completed``."""

    content_migration_id: Id
    context_id: Id
    context_type: str  # usually Course
    context_uuid: str
    # Whether quizzes are to be created in Quizzes.Next (true) or native Canvas (false).
    import_quizzes_next: bool
    # e.g. academic_benchmark_importer, angel_exporter, blackboard_exporter,
    # canvas_cartridge_importer, common_cartridge_importer, course_copy_importer,
    # d2l_exporter, master_course_import, moodle_converter, qti_converter, webct_scraper,
    # zip_file_importer, context_external_tool_<id>.
    migration_type: str
    # LTI context ids are opaque strings, not Canvas ids; a course gets one lazily.
    lti_context_id: str | None = None
    destination_course_lti_id: str | None = None  # alias of lti_context_id
    source_course_lti_id: str | None = None  # when the migration has a source course
    domain: str | None = None


class ContentMigrationCompleted(_ContentMigrationBody, kw_only=True):
    """A content migration request completed."""


class ContentMigrationStarted(_ContentMigrationBody, kw_only=True):
    """A content migration began importing content."""

    source_course_uuid: str | None = None  # when the migration has a source course


class MasterMigrationStarted(CanvasBody, kw_only=True):
    """A blueprint (master course) migration began, before content reaches child courses."""

    master_migration_id: Id
    master_template_id: Id
    account_id: Id
    account_uuid: str
    blueprint_course_id: Id
    blueprint_course_uuid: str


EVENTS: dict[str, type[CanvasBody]] = {
    "content_migration_completed": ContentMigrationCompleted,
    "content_migration_started": ContentMigrationStarted,
    "master_migration_started": MasterMigrationStarted,
}
