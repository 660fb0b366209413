"""Sorting database errors for the consumer's retries: will it fail again, and a reason with
the SQLSTATE but never the statement (pure logic; SQLite's own errors for embedded mode)."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, StatementError

from services.platform.persistence.failures import DatabaseFailure, database_failure

STATEMENT = "UPDATE stock SET reserved = reserved + %(q)s WHERE secret = 'x'"


def wrapped(kind: type[DBAPIError], error: Exception) -> DBAPIError:
    return kind(STATEMENT, {"q": 1}, error)


@pytest.mark.parametrize(
    ("error", "permanent", "reason"),
    [
        (
            wrapped(DataError, psycopg.errors.NumericValueOutOfRange()),
            True,
            "database: data_exception (SQLSTATE 22003 numeric_value_out_of_range)",
        ),
        (
            wrapped(DataError, psycopg.errors.InvalidTextRepresentation()),
            True,
            "database: data_exception (SQLSTATE 22P02 invalid_text_representation)",
        ),
        (
            wrapped(IntegrityError, psycopg.errors.CheckViolation()),
            True,
            "database: integrity_constraint_violation (SQLSTATE 23514 check_violation)",
        ),
        (
            wrapped(IntegrityError, psycopg.errors.ForeignKeyViolation()),
            True,
            "database: integrity_constraint_violation (SQLSTATE 23503 foreign_key_violation)",
        ),
        # A concurrent delivery of the same event: the retry sees the winner's row.
        (
            wrapped(IntegrityError, psycopg.errors.UniqueViolation()),
            False,
            "database: integrity_constraint_violation (SQLSTATE 23505 unique_violation)",
        ),
        (
            wrapped(OperationalError, psycopg.errors.DeadlockDetected()),
            False,
            "database: transaction_rollback (SQLSTATE 40P01 deadlock_detected)",
        ),
        (
            wrapped(OperationalError, psycopg.errors.AdminShutdown()),
            False,
            "database: operator_intervention (SQLSTATE 57P01 admin_shutdown)",
        ),
        (
            wrapped(OperationalError, psycopg.OperationalError("connection refused")),
            False,
            "database: OperationalError",
        ),
        # Straight from psycopg (the kit's Sql hot paths do not go through SQLAlchemy).
        (
            psycopg.errors.NumericValueOutOfRange("integer out of range"),
            True,
            "database: data_exception (SQLSTATE 22003 numeric_value_out_of_range)",
        ),
        (
            StatementError("could not bind", STATEMENT, {"q": 1}, ValueError("no")),
            False,
            "database: StatementError",
        ),
    ],
)
def test_database_errors_are_sorted_by_sqlstate(
    error: Exception, permanent: bool, reason: str
) -> None:
    assert database_failure(error) == DatabaseFailure(permanent, reason)
    assert "secret" not in reason
    assert "UPDATE" not in reason


def _sqlite_error(sql: str) -> sqlite3.Error:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, q INTEGER CHECK (q > 0))")
    connection.execute("INSERT INTO t VALUES (1, 1)")
    try:
        connection.execute(sql)
    except sqlite3.Error as error:
        return error
    finally:
        connection.close()
    raise AssertionError(f"{sql} did not fail")


def test_sqlite_errors_in_embedded_mode() -> None:
    check = wrapped(IntegrityError, _sqlite_error("INSERT INTO t VALUES (2, -1)"))
    assert database_failure(check) == DatabaseFailure(
        True, "database: integrity_constraint_violation (SQLITE_CONSTRAINT_CHECK)"
    )
    duplicate = wrapped(IntegrityError, _sqlite_error("INSERT INTO t VALUES (1, 5)"))
    failure = database_failure(duplicate)
    assert failure is not None
    assert not failure.permanent


def test_a_database_error_behind_another_exception_is_found() -> None:
    try:
        try:
            raise wrapped(DataError, psycopg.errors.NumericValueOutOfRange())
        except DataError as error:
            raise RuntimeError("reserving failed") from error
    except RuntimeError as outer:
        failure = database_failure(outer)
    assert failure is not None
    assert failure.permanent


def test_other_errors_are_not_database_failures() -> None:
    assert database_failure(ValueError("no")) is None
    assert database_failure(ConnectionError("smtp")) is None
