"""Outcomes: learning outcomes, groups, links, results, proficiencies, alignment clones.

Also the outcome calculation methods, mastery scales (outcome proficiencies), the outcomes'
friendly descriptions and the ``rubric_assessed`` event.

Canvas's source (``lib/canvas/live_events.rb``) sends more than the docs show: the uuid of
the context of each outcome, group and link (``*_context_uuid``), and the ``workflow_state``
of outcome results; its result events carry no ``id`` (the docs' ``learning_outcome_result_updated``
example has one), so they are identified by ``learning_outcome_id``.
"""

from __future__ import annotations

from datetime import datetime

from bridge.events._base import UNSET, CanvasBody, CanvasObject, Expected, ExternalId, Id


class OutcomesRetryOutcomeAlignmentClone(CanvasBody, kw_only=True):
    """An outcome alignment clone was retried (network issue or missing alignment)."""

    # The course the alignments are cloned into identifies the event.
    new_course_uuid: str
    original_course_uuid: Expected[str] = UNSET
    new_course_resource_link_id: ExternalId | None = None
    domain: str | None = None
    original_assignment_resource_link_id: ExternalId | None = None
    new_assignment_resource_link_id: ExternalId | None = None
    status: str | None = None


class RubricCriterionRating(CanvasObject, kw_only=True):
    """One rating level of an outcome's rubric criterion."""

    description: str | None = None
    points: float | None = None


class RubricCriterion(CanvasObject, kw_only=True):
    """The rubric criterion (mastery points and rating levels) of a learning outcome."""

    # Also the title of the outcome.
    description: str | None = None
    mastery_points: float | None = None
    points_possible: float | None = None
    ratings: list[RubricCriterionRating] | None = None


class LearningOutcomeCreated(CanvasBody, kw_only=True):
    """A learning outcome was created by an end user or API request."""

    learning_outcome_id: Id
    # Included only if calculation_method uses it.
    calculation_int: int | None = None
    # e.g. decaying_average, n_mastery, latest, highest, average.
    calculation_method: str | None = None
    context_id: Id | None = None
    context_type: str | None = None
    description: str | None = None
    display_name: str | None = None
    short_description: str | None = None
    title: str | None = None
    vendor_guid: str | None = None
    # e.g. active, deleted.
    workflow_state: str | None = None
    rubric_criterion: RubricCriterion | None = None
    # Source (get_learning_outcome_data), not in the docs: the uuid of the outcome's context;
    # for a copied outcome, the original's local id, and the uuid of its root account when the
    # original is on another shard (else null).
    context_uuid: str | None = None
    copied_from_outcome_id: Id | None = None
    original_outcome_root_account_uuid: str | None = None


class LearningOutcomeUpdated(CanvasBody, kw_only=True):
    """A learning outcome was updated by an end user or API request."""

    learning_outcome_id: Id
    # Included only if calculation_method uses it.
    calculation_int: int | None = None
    # e.g. decaying_average, n_mastery, latest, highest, average.
    calculation_method: str | None = None
    context_id: Id | None = None
    context_type: str | None = None
    description: str | None = None
    display_name: str | None = None
    short_description: str | None = None
    title: str | None = None
    updated_at: datetime | None = None
    vendor_guid: str | None = None
    # e.g. active, deleted; defaults to active.
    workflow_state: str | None = None
    rubric_criterion: RubricCriterion | None = None
    # Source (get_learning_outcome_data), not in the docs: see LearningOutcomeCreated.
    context_uuid: str | None = None
    copied_from_outcome_id: Id | None = None
    original_outcome_root_account_uuid: str | None = None


class LearningOutcomeGroupCreated(CanvasBody, kw_only=True):
    """A learning outcome group was created by an end user or API request."""

    learning_outcome_group_id: Id
    context_id: Id | None = None
    # Usually "Course".
    context_type: str | None = None
    description: str | None = None
    parent_outcome_group_id: Id | None = None
    title: str | None = None
    vendor_guid: str | None = None
    # Defaults to active.
    workflow_state: str | None = None
    # Source (get_learning_outcome_group_data), not in the docs: the uuids of the group's
    # context and of its parent group's context.
    context_uuid: str | None = None
    parent_outcome_group_context_uuid: str | None = None


class LearningOutcomeGroupUpdated(CanvasBody, kw_only=True):
    """A learning outcome group was updated by an end user or API request."""

    learning_outcome_group_id: Id
    context_id: Id | None = None
    # Usually "Course".
    context_type: str | None = None
    description: str | None = None
    parent_outcome_group_id: Id | None = None
    title: str | None = None
    updated_at: datetime | None = None
    vendor_guid: str | None = None
    # Defaults to active.
    workflow_state: str | None = None
    # Source (get_learning_outcome_group_data), not in the docs: see LearningOutcomeGroupCreated.
    context_uuid: str | None = None
    parent_outcome_group_context_uuid: str | None = None


class LearningOutcomeLinkCreated(CanvasBody, kw_only=True):
    """A learning outcome was linked to a context by an end user or API request."""

    learning_outcome_link_id: Id
    context_id: Id | None = None
    # Usually "Course".
    context_type: str | None = None
    learning_outcome_group_id: Id | None = None
    learning_outcome_id: Id | None = None
    # Defaults to active.
    workflow_state: str | None = None
    # Source (get_learning_outcome_link_data), not in the docs: the uuids of the contexts of
    # the linked outcome and of its group.
    learning_outcome_context_uuid: str | None = None
    learning_outcome_group_context_uuid: str | None = None


class LearningOutcomeLinkUpdated(CanvasBody, kw_only=True):
    """An outcome's context link was changed by an end user or API request."""

    learning_outcome_link_id: Id
    context_id: Id | None = None
    # Usually "Course".
    context_type: str | None = None
    learning_outcome_group_id: Id | None = None
    learning_outcome_id: Id | None = None
    updated_at: datetime | None = None
    # e.g. active, deleted.
    workflow_state: str | None = None
    # Source (get_learning_outcome_link_data), not in the docs: see LearningOutcomeLinkCreated.
    learning_outcome_context_uuid: str | None = None
    learning_outcome_group_context_uuid: str | None = None


class LearningOutcomeResultCreated(CanvasBody, kw_only=True):
    """A submission was assessed against a learning outcome."""

    learning_outcome_id: Id
    assessed_at: datetime | None = None
    attempt: int | None = None
    created_at: datetime | None = None
    mastery: bool | None = None
    original_mastery: bool | None = None
    original_possible: float | None = None
    original_score: float | None = None
    percent: float | None = None
    possible: float | None = None
    score: float | None = None
    user_uuid: str | None = None
    artifact_id: Id | None = None
    # RubricAssessment, Submission, Quizzes::QuizSubmission, LiveAssessments::Submission.
    artifact_type: str | None = None
    associated_asset_id: Id | None = None
    # AssessmentQuestion, Assignment, Quizzes::Quiz, LiveAssessments::Assessment.
    associated_asset_type: str | None = None
    # Source (get_learning_outcome_result_data), not in the docs: the uuid of the outcome's
    # context and the result's state (active, deleted); title in older Canvas versions.
    learning_outcome_context_uuid: str | None = None
    workflow_state: str | None = None
    title: str | None = None


class LearningOutcomeResultUpdated(CanvasBody, kw_only=True):
    """An existing outcome rating for a submission was updated."""

    # The source sends no id of the result (the docs' example has one): the outcome
    # identifies the event, as for learning_outcome_result_created.
    learning_outcome_id: Id
    id: Id | None = None
    assessed_at: datetime | None = None
    attempt: int | None = None
    created_at: datetime | None = None
    learning_outcome_context_uuid: str | None = None
    result_context_id: Id | None = None
    # Account or Course.
    result_context_type: str | None = None
    result_context_uuid: str | None = None
    mastery: bool | None = None
    original_mastery: bool | None = None
    original_possible: float | None = None
    original_score: float | None = None
    percent: float | None = None
    possible: float | None = None
    score: float | None = None
    updated_at: datetime | None = None
    user_uuid: str | None = None
    artifact_id: Id | None = None
    # RubricAssessment, Submission, Quizzes::QuizSubmission, LiveAssessments::Submission.
    artifact_type: str | None = None
    artifact_updated_at: datetime | None = None
    artifact_created_at: datetime | None = None
    associated_asset_id: Id | None = None
    # AssessmentQuestion, Assignment, Quizzes::Quiz, LiveAssessments::Assessment.
    associated_asset_type: str | None = None
    # Source, not in the docs: see LearningOutcomeResultCreated.
    workflow_state: str | None = None
    title: str | None = None


class OutcomeCalculationMethodCreated(CanvasBody, kw_only=True):
    """An outcome calculation method was created by an end user or API request."""

    outcome_calculation_method_id: Id
    context_type: str | None = None
    context_id: Id | None = None
    # e.g. active, deleted.
    workflow_state: str | None = None
    # Included only if calculation_method uses it.
    calculation_int: int | None = None
    # e.g. decaying_average, standard_decaying_average, n_mastery, latest, highest, average.
    calculation_method: str | None = None


class OutcomeCalculationMethodUpdated(CanvasBody, kw_only=True):
    """An outcome calculation method was updated by an end user or API request."""

    outcome_calculation_method_id: Id
    context_type: str | None = None
    context_id: Id | None = None
    # e.g. active, deleted.
    workflow_state: str | None = None
    # Included only if calculation_method uses it.
    calculation_int: int | None = None
    # e.g. decaying_average, standard_decaying_average, n_mastery, latest, highest, average.
    calculation_method: str | None = None
    # Not in the spec's schema; present in its example.
    updated_at: datetime | None = None


class OutcomeProficiencyRating(CanvasObject, kw_only=True):
    """One rating of a mastery scale; the docs and the source always send every key."""

    outcome_proficiency_rating_id: Expected[Id] = UNSET
    description: Expected[str] = UNSET
    points: Expected[float] = UNSET
    mastery: Expected[bool] = UNSET
    # Hex RGB without "#", e.g. "0B874B".
    color: Expected[str] = UNSET
    workflow_state: Expected[str] = UNSET


class OutcomeProficiencyCreated(CanvasBody, kw_only=True):
    """An outcome proficiency (mastery scale) was created by an end user or API request."""

    outcome_proficiency_id: Id
    context_type: str | None = None
    context_id: Id | None = None
    # e.g. active, deleted.
    workflow_state: str | None = None
    outcome_proficiency_ratings: list[OutcomeProficiencyRating] | None = None


class OutcomeProficiencyUpdated(CanvasBody, kw_only=True):
    """An outcome proficiency (mastery scale) or its ratings were updated."""

    outcome_proficiency_id: Id
    context_type: str | None = None
    context_id: Id | None = None
    # e.g. active, deleted.
    workflow_state: str | None = None
    updated_at: datetime | None = None
    outcome_proficiency_ratings: list[OutcomeProficiencyRating] | None = None


class RubricAssessed(CanvasBody, kw_only=True):
    """A rubric aligned to an active rubric association was assessed."""

    id: Id
    aligned_to_outcomes: bool | None = None
    artifact_id: Id | None = None
    # Submission, ModeratedGrading::ProvisionalGrade or Assignment.
    artifact_type: str | None = None
    # grading, peer_review or provisional_grade.
    assessment_type: str | None = None
    # Absent when the context has no uuid.
    context_uuid: str | None = None
    submitted_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Null unless the artifact is a submitted Submission.
    attempt: int | None = None


class _OutcomeFriendlyDescriptionBody(CanvasBody, kw_only=True):
    """A friendly (student-facing) description of an outcome in a context.

    Source: ``get_outcome_friendly_description_data`` (not in the docs).
    """

    outcome_friendly_description_id: Id
    context_type: Expected[str] = UNSET
    context_id: Expected[Id] = UNSET
    description: Expected[str] = UNSET
    workflow_state: Expected[str] = UNSET
    learning_outcome_id: Expected[Id] = UNSET
    root_account_id: Expected[Id] = UNSET
    # Newer Canvas versions: the uuid of the outcome's context.
    learning_outcome_context_uuid: str | None = None


class OutcomeFriendlyDescriptionCreated(_OutcomeFriendlyDescriptionBody, kw_only=True):
    """A friendly description was given to an outcome."""


class OutcomeFriendlyDescriptionUpdated(_OutcomeFriendlyDescriptionBody, kw_only=True):
    """A friendly description of an outcome was changed."""

    updated_at: Expected[datetime] = UNSET


EVENTS: dict[str, type[CanvasBody]] = {
    "outcomes.retry_outcome_alignment_clone": OutcomesRetryOutcomeAlignmentClone,
    "learning_outcome_created": LearningOutcomeCreated,
    "learning_outcome_updated": LearningOutcomeUpdated,
    "learning_outcome_group_created": LearningOutcomeGroupCreated,
    "learning_outcome_group_updated": LearningOutcomeGroupUpdated,
    "learning_outcome_link_created": LearningOutcomeLinkCreated,
    "learning_outcome_link_updated": LearningOutcomeLinkUpdated,
    "learning_outcome_result_created": LearningOutcomeResultCreated,
    "learning_outcome_result_updated": LearningOutcomeResultUpdated,
    "outcome_calculation_method_created": OutcomeCalculationMethodCreated,
    "outcome_calculation_method_updated": OutcomeCalculationMethodUpdated,
    "outcome_friendly_description_created": OutcomeFriendlyDescriptionCreated,
    "outcome_friendly_description_updated": OutcomeFriendlyDescriptionUpdated,
    "outcome_proficiency_created": OutcomeProficiencyCreated,
    "outcome_proficiency_updated": OutcomeProficiencyUpdated,
    "rubric_assessed": RubricAssessed,
}
