"""What a database error means for whoever retries: will it fail again, and how to say why
without the statement.

A consumer retries a failing handler (DESIGN §4), which helps only when the failure is
transient. A value the database refuses (numeric out of range, a check constraint) is refused
again on every attempt, so retrying only delays the dead letter; and the error's text carries
the SQL statement and its parameters, which belong in the log, not in a header anyone reading
the DLQ sees. `database_failure` sorts by SQLSTATE class (PostgreSQL, through psycopg) or by the
SQLite extended result code (embedded mode):

* permanent: class 22 (data exception) and class 23 (integrity constraint violation) — except
  23505 unique_violation, which is what two concurrent deliveries of one event produce (the
  retry then sees the winner's row and changes nothing);
* everything else (connection, serialization failure, deadlock, lock timeout, server
  shutdown, ...) is left to the retries.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Final

import psycopg
from sqlalchemy import exc as sa_exc

PERMANENT_CLASSES: Final = frozenset({"22", "23"})
RACE_SQLSTATES: Final = frozenset({"23505"})  # unique_violation: a concurrent duplicate
SQLITE_RACE_CODES: Final = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})

# PostgreSQL's names of the SQLSTATE classes (Appendix A of its manual) a handler may meet.
SQLSTATE_CLASSES: Final = {
    "08": "connection_exception",
    "0A": "feature_not_supported",
    "21": "cardinality_violation",
    "22": "data_exception",
    "23": "integrity_constraint_violation",
    "25": "invalid_transaction_state",
    "28": "invalid_authorization_specification",
    "40": "transaction_rollback",
    "42": "syntax_error_or_access_rule_violation",
    "53": "insufficient_resources",
    "54": "program_limit_exceeded",
    "55": "object_not_in_prerequisite_state",
    "57": "operator_intervention",
    "58": "system_error",
    "P0": "plpgsql_error",
    "XX": "internal_error",
}
_MAX_CAUSES = 10


@dataclass(frozen=True, slots=True)
class DatabaseFailure:
    permanent: bool  # the same statement on the same data will fail again: do not retry
    reason: str  # e.g. "database: data_exception (SQLSTATE 22003 numeric_value_out_of_range)"


def database_failure(error: BaseException) -> DatabaseFailure | None:
    """The database failure behind `error` (itself or one of its causes), or None when it is
    not one. The reason names the SQLSTATE (class and condition), never the statement."""
    cause: BaseException | None = error
    for _ in range(_MAX_CAUSES):
        if cause is None:
            return None
        found = _classify(cause)
        if found is not None:
            return found
        cause = cause.__cause__ or cause.__context__
    return None


def _classify(error: BaseException) -> DatabaseFailure | None:
    driver: BaseException | None = error
    if isinstance(error, sa_exc.DBAPIError):
        driver = error.orig
    elif isinstance(error, sa_exc.SQLAlchemyError):
        # Not from the driver (e.g. a bind parameter the ORM could not process): its text holds
        # the statement, so only its kind is told.
        return DatabaseFailure(permanent=False, reason=f"database: {type(error).__name__}")
    if isinstance(driver, psycopg.Error):
        return _postgresql(driver)
    if isinstance(driver, sqlite3.Error):
        return _sqlite(driver, wrapped=error)
    return None


def _postgresql(error: psycopg.Error) -> DatabaseFailure:
    sqlstate = error.sqlstate
    if sqlstate is None:  # the client side: connection lost, pool timeout, ...
        return DatabaseFailure(permanent=False, reason=f"database: {type(error).__name__}")
    klass = SQLSTATE_CLASSES.get(sqlstate[:2], f"class_{sqlstate[:2]}")
    condition = _snake(type(error).__name__)  # psycopg raises the SQLSTATE's own class
    permanent = sqlstate[:2] in PERMANENT_CLASSES and sqlstate not in RACE_SQLSTATES
    return DatabaseFailure(permanent, f"database: {klass} (SQLSTATE {sqlstate} {condition})")


def _sqlite(error: sqlite3.Error, *, wrapped: BaseException) -> DatabaseFailure:
    code = getattr(error, "sqlite_errorname", type(error).__name__)
    if isinstance(wrapped, sa_exc.IntegrityError) or isinstance(error, sqlite3.IntegrityError):
        permanent = code not in SQLITE_RACE_CODES
        return DatabaseFailure(permanent, f"database: integrity_constraint_violation ({code})")
    if isinstance(wrapped, sa_exc.DataError) or isinstance(error, sqlite3.DataError):
        return DatabaseFailure(True, f"database: data_exception ({code})")
    return DatabaseFailure(False, f"database: {type(error).__name__} ({code})")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
