"""A tiny service used to test the kit's data side: one table, one event, its migrations, and
`KitEnvelope[Payload]`, standing for the generated envelope model of a test event."""

from __future__ import annotations

from pathlib import Path
from typing import Generic, TypeVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.orm import registry
from sqlmodel import Field as Column
from sqlmodel import SQLModel

from services.platform.core.contracts import EventSpec
from services.platform.runtime.service import ServiceDefinition

NAME = "kitdemo"


class KitDemoTable(SQLModel, registry=registry()):
    pass


class Widget(KitDemoTable, table=True):
    __tablename__ = "widgets"

    id: UUID = Column(default_factory=uuid4, primary_key=True)
    name: str = Column(max_length=100, unique=True)


class WidgetCreated(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    widget_id: UUID = Field(alias="widgetId")
    name: str = Field(min_length=1)


P = TypeVar("P", bound=BaseModel)


class KitMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str
    user_id: UUID | None = None
    trace_id: str | None = None


class KitEnvelope(BaseModel, Generic[P]):
    """A whole event, as a generated envelope model states it (`KitEnvelope[WidgetCreated]`):
    nothing else allowed, `payload` typed. What consumer methods of test services receive."""

    model_config = ConfigDict(extra="forbid")

    event_id: UUID
    event_name: str
    event_version: str
    occurred_at: AwareDatetime
    correlation_id: UUID
    causation_id: UUID | None = None
    payload: P
    metadata: KitMetadata


WIDGET_CREATED = EventSpec(
    name="kitdemo.widget.created",
    version="1.0",
    exchange="kitdemo.events",
    routing_key="kitdemo.widget.created",
    producer=NAME,
    payload_model=WidgetCreated,
    priority=5,
    ttl_ms=60_000,
)

DEFINITION = ServiceDefinition(
    name=NAME,
    default_port=8099,
    handlers="tests.platform.kit_service",
    operations={},
    metadata=KitDemoTable.metadata,
    migrations=Path(__file__).parent / "migrations",
)
