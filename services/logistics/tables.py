"""The logistics service's tables (SQLModel, in the service's own registry — see
platform/tables.py). Migration 0001 creates exactly these, with the kit tables."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column, MetaData
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.platform import utc_timestamp


class LogisticsTable(SQLModel, registry=registry()):
    """Base of the logistics tables; gives them their own MetaData."""


metadata: MetaData = LogisticsTable.metadata


class Carrier(LogisticsTable, table=True):
    """A carrier: its code unique, the service types it offers (domain.ServiceType values, in
    the order given, each once)."""

    __tablename__ = "carriers"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    name: str = Field(max_length=255)
    service_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    active: bool = Field(default=True)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = Field(default=1)
