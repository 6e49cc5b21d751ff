"""Lenient pydantic models of the OpenMetadata 1.5–2.x REST shapes the bot reads (unknown keys ignored)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Below this an epoch value cannot be milliseconds of a real run (1973-03-03) but is seconds until the year 5138.
_EPOCH_MS_FLOOR = 100_000_000_000


class OMModel(BaseModel):
    """Base for every OpenMetadata payload: unknown keys are ignored so newer servers never break parsing."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class EntityRef(OMModel):
    id: str | None = None
    type: str | None = None
    name: str | None = None
    fullyQualifiedName: str | None = None
    displayName: str | None = None
    description: str | None = None
    deleted: bool | None = None
    href: str | None = None


class TagLabel(OMModel):
    tagFQN: str
    source: str | None = None
    labelType: str | None = None
    state: str | None = None


class UsageStats(OMModel):
    count: int = 0
    percentileRank: float | None = None


class UsageSummary(OMModel):
    dailyStats: UsageStats | None = None
    weeklyStats: UsageStats | None = None
    monthlyStats: UsageStats | None = None
    date: str | None = None


class Column(OMModel):
    name: str
    displayName: str | None = None
    dataType: str | None = None
    arrayDataType: str | None = None
    dataLength: int | None = None
    precision: int | None = None
    scale: int | None = None
    dataTypeDisplay: str | None = None
    description: str | None = None
    fullyQualifiedName: str | None = None
    tags: list[TagLabel] = Field(default_factory=list)
    constraint: str | None = None
    ordinalPosition: int | None = None
    children: list[Column] = Field(default_factory=list)


class TableConstraint(OMModel):
    constraintType: str | None = None
    columns: list[str] = Field(default_factory=list)
    referredColumns: list[str] = Field(default_factory=list)


class EntityBase(OMModel):
    """Fields common to every data asset the bot syncs."""

    id: str
    name: str
    fullyQualifiedName: str | None = None
    displayName: str | None = None
    description: str | None = None
    version: float | None = None
    updatedAt: int | None = None
    updatedBy: str | None = None
    deleted: bool = False
    owners: list[EntityRef] = Field(default_factory=list)
    tags: list[TagLabel] = Field(default_factory=list)
    followers: list[EntityRef] = Field(default_factory=list)
    domains: list[EntityRef] = Field(default_factory=list)
    domain: EntityRef | None = None  # 1.5–1.8 name one domain; `domains` (a list) from 1.9
    service: EntityRef | None = None
    serviceType: str | None = None
    sourceUrl: str | None = None

    @model_validator(mode="after")
    def _one_domain_is_a_list(self) -> EntityBase:
        if self.domain is not None and not self.domains:
            self.domains = [self.domain]
        return self


class Table(EntityBase):
    tableType: str | None = None
    columns: list[Column] = Field(default_factory=list)
    tableConstraints: list[TableConstraint] = Field(default_factory=list)
    usageSummary: UsageSummary | None = None
    database: EntityRef | None = None
    databaseSchema: EntityRef | None = None


class Chart(EntityBase):
    chartType: str | None = None
    dashboards: list[EntityRef] = Field(default_factory=list)


class Dashboard(EntityBase):
    dashboardType: str | None = None
    charts: list[EntityRef] = Field(default_factory=list)
    dataModels: list[EntityRef] = Field(default_factory=list)
    usageSummary: UsageSummary | None = None
    project: str | None = None


class DashboardDataModel(EntityBase):
    dataModelType: str | None = None
    columns: list[Column] = Field(default_factory=list)
    sql: str | None = None


class TaskStatus(OMModel):
    name: str
    executionStatus: str | None = None
    startTime: int | None = None
    endTime: int | None = None


class PipelineStatus(OMModel):
    timestamp: int | None = None
    executionStatus: str | None = None
    taskStatus: list[TaskStatus] = Field(default_factory=list)


class Task(OMModel):
    name: str
    displayName: str | None = None
    taskType: str | None = None
    downstreamTasks: list[str] = Field(default_factory=list)


class Pipeline(EntityBase):
    tasks: list[Task] = Field(default_factory=list)
    pipelineStatus: PipelineStatus | None = None
    scheduleInterval: str | None = None


class MessageSchema(OMModel):
    schemaType: str | None = None
    schemaText: str | None = None
    schemaFields: list[Column] = Field(default_factory=list)


class Topic(EntityBase):
    messageSchema: MessageSchema | None = None
    partitions: int | None = None


class TestResultValue(OMModel):
    name: str | None = None
    value: str | None = None


class TestCaseResult(OMModel):
    timestamp: int
    testCaseStatus: str | None = None
    result: str | None = None
    testResultValue: list[TestResultValue] = Field(default_factory=list)
    incidentId: str | None = None

    @field_validator("timestamp")
    @classmethod
    def _epoch_ms(cls, value: int) -> int:
        # OpenMetadata 0.12 stamped results in seconds (real-responses/testCaseList_TableData_mock.json)
        return value * 1000 if 0 < value < _EPOCH_MS_FLOOR else value


class TestCase(OMModel):
    id: str
    name: str
    fullyQualifiedName: str | None = None
    entityLink: str
    entityFQN: str | None = None
    testDefinition: EntityRef | None = None
    testSuite: EntityRef | None = None
    testCaseResult: TestCaseResult | None = None
    testCaseStatus: str | None = None
    incidentId: str | None = None
    owners: list[EntityRef] = Field(default_factory=list)


class TestCaseResolutionStatus(OMModel):
    id: str | None = None
    stateId: str
    timestamp: int | None = None
    testCaseResolutionStatusType: str
    testCaseResolutionStatusDetails: dict[str, Any] | None = None
    updatedBy: EntityRef | None = None
    updatedAt: int | None = None
    testCaseReference: EntityRef | None = None
    severity: str | None = None


class ColumnLineage(OMModel):
    fromColumns: list[str] = Field(default_factory=list)
    toColumn: str | None = None


class LineageDetails(OMModel):
    sqlQuery: str | None = None
    columnsLineage: list[ColumnLineage] = Field(default_factory=list)
    pipeline: EntityRef | None = None
    source: str | None = None
    description: str | None = None


class Edge(OMModel):
    fromEntity: str
    toEntity: str
    lineageDetails: LineageDetails | None = None


class EntityLineage(OMModel):
    entity: EntityRef
    nodes: list[EntityRef] = Field(default_factory=list)
    upstreamEdges: list[Edge] = Field(default_factory=list)
    downstreamEdges: list[Edge] = Field(default_factory=list)


class FieldChange(OMModel):
    name: str | None = None
    oldValue: Any = None
    newValue: Any = None


class ChangeDescription(OMModel):
    fieldsAdded: list[FieldChange] = Field(default_factory=list)
    fieldsUpdated: list[FieldChange] = Field(default_factory=list)
    fieldsDeleted: list[FieldChange] = Field(default_factory=list)
    previousVersion: float | None = None


class ChangeEvent(OMModel):
    id: str
    eventType: str
    entityType: str
    entityId: str
    timestamp: int
    entityFullyQualifiedName: str | None = None
    previousVersion: float | None = None
    currentVersion: float | None = None
    userName: str | None = None
    changeDescription: ChangeDescription | None = None
    entity: Any = None  # a JSON-encoded string on the wire; parse it twice when needed

    @model_validator(mode="before")
    @classmethod
    def _stable_id_when_absent(cls, data: Any) -> Any:
        # Old servers send events without `id` (real-responses/changeEvent_followers_added.json, OM 0.9): derive
        # one from what identifies the event, so a redelivery or a re-read still de-duplicates.
        if isinstance(data, dict) and not data.get("id"):
            parts = [data.get(key) for key in ("entityId", "eventType", "timestamp")]
            if all(part is not None for part in parts):
                key = "dnabot:changeEvent:" + ":".join(str(part) for part in parts)
                data = {**data, "id": str(uuid.uuid5(uuid.NAMESPACE_URL, key))}
        return data


class ServerVersion(OMModel):
    version: str
    revision: str | None = None
    timestamp: int | None = None


# Entity types the sync covers, with their REST collection and model (the `fields` per version:
# storage.openmetadata.versions).
ENTITY_COLLECTIONS: dict[str, tuple[str, type[EntityBase]]] = {
    "table": ("tables", Table),
    "dashboard": ("dashboards", Dashboard),
    "chart": ("charts", Chart),
    "dashboardDataModel": ("dashboard/datamodels", DashboardDataModel),
    "pipeline": ("pipelines", Pipeline),
    "topic": ("topics", Topic),
}


class OMPrincipal(OMModel):
    """An OpenMetadata user or team, as far as @-mentions need it (name, email, display name)."""

    name: str
    email: str | None = None
    displayName: str | None = None
    deleted: bool | None = None


class OMUser(OMPrincipal):
    isBot: bool | None = None


class OMTeam(OMPrincipal):
    teamType: str | None = None
