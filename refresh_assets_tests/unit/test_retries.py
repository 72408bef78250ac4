"""Only transient failures are retried: the retry count of each failure kind under the jobs' RetryPolicy.

A toy asset wrapped like every step (``retry_only_transient``) raises one kind of error per case, in a job
with the same kind of policy as jobs.py (2 retries): a lock, a timeout or a lost connection is retried twice;
a configuration, contract, dataset-rule, missing-file or programming error fails at once, its message kept.
"""

import duckdb
import dagster as dg
import pytest

from refresh_assets.core.features import DatasetContractError
from refresh_assets.core.registry import RegistryDamagedError, RegistryLockedError
from refresh_assets.core.transient import is_transient
from refresh_assets.retries import retry_only_transient

MAX_RETRIES = 2

CASES = [  # (kind, error, retries)
    ("registry lock", RegistryLockedError("registry stayed locked for 120s"), MAX_RETRIES),
    ("timeout", TimeoutError("object store read timed out"), MAX_RETRIES),
    ("lost connection", ConnectionResetError(104, "Connection reset by peer"), MAX_RETRIES),
    ("duckdb file lock", duckdb.IOException('IO Error: Could not set lock on file "raw.duckdb": Conflicting lock'),
     MAX_RETRIES),
    ("configuration", ValueError("slice column(s) ['region'] are not in the holdout"), 0),
    ("query contract", DatasetContractError("query output is missing required column(s) ['label']"), 0),
    ("sql error", duckdb.CatalogException("Catalog Error: Table with name orders does not exist!"), 0),
    ("missing file", FileNotFoundError(2, "No such file or directory", "my_query.sql"), 0),
    ("damaged registry", RegistryDamagedError("the registry file registry.duckdb is damaged"), 0),
    ("damaged duckdb file", duckdb.IOException('IO Error: The file "raw.duckdb" exists, but it is not a valid '
                                               'DuckDB database file!'), 0),
    ("dataset rule", dg.Failure(description="training_dataset refused by 1 blocking check(s)", allow_retries=False), 0),
    ("bug", KeyError("roc_auc"), 0),
]


def run_failing(error: BaseException, generator: bool = False):
    if generator:
        @dg.asset
        @retry_only_transient
        def step():
            yield dg.MaterializeResult()
            raise error
    else:
        @dg.asset
        @retry_only_transient
        def step():
            raise error

    job = dg.define_asset_job("one_step", selection=[step], op_retry_policy=dg.RetryPolicy(max_retries=MAX_RETRIES))
    result = dg.Definitions(assets=[step], jobs=[job]).resolve_job_def("one_step").execute_in_process(
        raise_on_error=False)
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return result, len(retries), failure.step_failure_data.error


@pytest.mark.parametrize("kind, error, retries", CASES, ids=[c[0] for c in CASES])
def test_the_retry_count_of_each_failure_kind(kind, error, retries):
    result, count, error_info = run_failing(error)
    assert not result.success
    assert count == retries, f"{kind}: retried {count} times, expected {retries}"
    assert is_transient(error) == (retries > 0) or isinstance(error, dg.Failure)
    # the user's message survives the wrapping, in the failure or its cause
    text = error_info.message + (error_info.cause.message if error_info.cause else "")
    assert str(error).strip("'")[:30] in text or (error.description or "")[:30] in text


def test_a_check_or_generator_step_is_wrapped_the_same_way():
    _, count, error_info = run_failing(ValueError("no such column"), generator=True)
    assert count == 0 and "not retried" in error_info.message
    _, count, _ = run_failing(TimeoutError("slow"), generator=True)
    assert count == MAX_RETRIES


def test_a_wrong_postgres_password_is_not_a_lost_connection():
    class OperationalError(Exception):  # psycopg2's name: classified without importing the driver
        pass

    assert is_transient(OperationalError("server closed the connection unexpectedly"))
    assert not is_transient(OperationalError('password authentication failed for user "dagster"'))
