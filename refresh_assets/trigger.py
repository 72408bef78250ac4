"""External triggers: launch, wait for and cancel runs of this code location over the webserver's GraphQL API.

These are the calls a scheduler, a CI job or another service makes against a running ``dagster-webserver``
(``make serve``); the run is queued on that instance and executed by its ``dagster-daemon``, exactly like a
run launched from the UI's launchpad. Nothing here touches the local instance or the data folder.

A partition of a partitioned asset job (``refresh_job``, ``propagation_job``, ``scoring_job``: partition key =
the refresh date D) is chosen by the run tag ``dagster/partition`` = D. That is the tag the launchpad sets, and
in Dagster 1.13 ``instance.create_run`` turns that tag into the run's partition (the asset partitions the
run materializes, and ``context.partition_key`` in every step). The range tags
``dagster/asset_partition_range_start``/``_end`` are for multi-partition runs and are not needed (Dagster
refuses them together with ``dagster/partition``).

Errors are raised as :class:`TriggerError`, a ``DagsterGraphQLClientError`` whose ``args`` are
``(error type, the server's message)`` as with the client itself, and whose ``str`` reads as one line.
Invalid run inputs of ``refresh_job`` are refused before anything is sent, by ``config.preflight``
(:class:`~refresh_assets.config.ConfigError`), and so is a partition the job does not have (the server would
accept it, then the run would fail in its first step).

The CLI calls these functions; ``RAW_GRAPHQL_EXAMPLE`` is the same launch for a system without Python.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

__all__ = [
    "PARTITION_TAG",
    "RAW_GRAPHQL_EXAMPLE",
    "REPOSITORY_NAME",
    "TERMINAL_STATUSES",
    "TriggerError",
    "cancel",
    "launch",
    "status",
    "wait",
]

#: The run tag that selects the partition of a partitioned job's run.
PARTITION_TAG = "dagster/partition"
#: The repository name Dagster gives the single repository of a ``Definitions`` object.
REPOSITORY_NAME = "__repository__"
#: Statuses after which a run never changes again (CANCELING and STARTING are not among them).
TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
#: Jobs whose run config ``preflight`` knows (the refresh's op configs).
PREFLIGHT_JOBS = frozenset({"refresh_job"})

RAW_GRAPHQL_EXAMPLE = """\
curl -sS -X POST http://localhost:3000/graphql \\
  -H 'Content-Type: application/json' \\
  -d '{
  "query": "mutation LaunchRefresh($executionParams: ExecutionParams!) { launchRun(executionParams: $executionParams) { __typename ... on LaunchRunSuccess { run { runId status } } ... on RunConfigValidationInvalid { errors { message } } ... on Error { message } } }",
  "variables": {
    "executionParams": {
      "selector": {
        "repositoryLocationName": "refresh_assets",
        "repositoryName": "__repository__",
        "jobName": "refresh_job"
      },
      "runConfigData": {"ops": {"model_comparison": {"config": {"min_improvement": 0.001}}}},
      "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2026-04-06"}]}
    }
  }
}'
"""
"""How a system without Python launches the refresh of D = 2026-04-06: one POST to ``/graphql``.

The answer is ``{"data": {"launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": "...",
"status": "QUEUED"}}}}``; any other ``__typename`` is a refusal whose ``message`` (or, for
``RunConfigValidationInvalid``, ``errors[].message``) says why. ``runConfigData`` holds only the inputs to
override (``{}`` runs on the defaults); the partition is the ``dagster/partition`` tag. Then poll
``{ runOrError(runId: "...") { ... on Run { status } } }`` until SUCCESS, FAILURE or CANCELED, and cancel with
``mutation { terminateRun(runId: "...") { __typename ... on Error { message } } }``.
The server does not check that D is a partition of the job (``launch`` does): a date outside the partitions
gives a run that fails in its first step. Behind TLS or a path prefix, change the URL only.
"""


class TriggerError(DagsterGraphQLClientError):
    """A refusal or failure from the webserver: ``args`` = (error type, message), printed as one line."""

    def __str__(self) -> str:
        if len(self.args) >= 2:
            return f"{self.args[0]}: {self.args[1]}"
        return str(self.args[0]) if self.args else "GraphQL request failed"


def _client(host: str, port: int | None, use_https: bool = False) -> DagsterGraphQLClient:
    return DagsterGraphQLClient(host, port_number=port, use_https=use_https)


def _url(host: str, port: int | None, use_https: bool) -> str:
    return f"{'https' if use_https else 'http'}://{host}{f':{port}' if port else ''}/graphql"


def _is_connection_error(exc: BaseException) -> bool:
    """The client wraps an unreachable server in a generic error; the cause tells (requests or gql 4)."""
    import requests
    from gql.transport.exceptions import TransportConnectionFailed

    return isinstance(exc.__cause__, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                                      TransportConnectionFailed))


def _as_trigger_error(exc: DagsterGraphQLClientError, doing: str, url: str) -> TriggerError:
    """One readable TriggerError from whatever the client raised, keeping the server's message."""
    if isinstance(exc, TriggerError):
        return exc
    if len(exc.args) >= 2:  # (error type, message) from a GraphQL answer
        kind, body = exc.args[0], exc.args[1]
        if isinstance(body, list):  # RunConfigValidationInvalid: a list of {message, path, reason}
            body = "; ".join(e.get("message", str(e)) if isinstance(e, dict) else str(e) for e in body)
        error = TriggerError(kind, f"{doing}: {body}", body=exc.body)
    elif _is_connection_error(exc):
        error = TriggerError("ConnectionError", f"{doing}: cannot reach the webserver at {url}: {exc.__cause__}")
    else:  # the client's text holds the whole query, not the reason: the reason is in the cause
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc).strip().splitlines()[0]
        error = TriggerError("GraphQLError", f"{doing}: {reason}")
    error.__cause__ = exc
    return error


_JOB_QUERY = """
query TriggerJob($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { partitionKeysOrError { partitionKeys } }
    ... on Error { message }
  }
}"""

_JOBS_QUERY = """
query TriggerJobs($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository { jobs { name } }
  }
}"""

_LOCATIONS_QUERY = "query TriggerLocations { workspaceOrError { ... on Workspace { locationEntries { name } } } }"


def _unknown_job(client: DagsterGraphQLClient, job_name: str, location: str, repository: str) -> TriggerError:
    """The error for a job the server does not know, listing the jobs it does know (or the locations)."""
    try:
        answer = client._execute(_JOBS_QUERY, {"selector": {"repositoryLocationName": location,
                                                            "repositoryName": repository}})
        result = answer.get("repositoryOrError") or {}
        if result.get("__typename") == "Repository":
            jobs = sorted(j["name"] for j in result["jobs"] if not j["name"].startswith("__"))
            return TriggerError("JobNotFoundError",
                                f"no job {job_name!r} in code location {location!r}; its jobs: {', '.join(jobs)}")
        answer = client._execute(_LOCATIONS_QUERY)
        entries = (answer.get("workspaceOrError") or {}).get("locationEntries") or []
        locations = ", ".join(sorted(e["name"] for e in entries)) or "-"
    except DagsterGraphQLClientError:
        locations = "?"
    return TriggerError("JobNotFoundError", f"no job {job_name!r}: no code location {location!r} with repository "
                                            f"{repository!r} on this webserver; its code locations: {locations}")


def _check_job_and_partition(client: DagsterGraphQLClient, url: str, job_name: str, partition: str | None,
                             location: str, repository: str) -> None:
    """Refuse an unknown job, a missing partition of a partitioned job and a partition it does not have.

    Without this the server accepts both (dagster does not check the ``dagster/partition`` tag at launch): the
    run is created, fails in its first step, and is retried once by ``run_retries``.
    """
    selector = {"repositoryLocationName": location, "repositoryName": repository, "pipelineName": job_name}
    try:
        answer = client._execute(_JOB_QUERY, {"selector": selector})
    except DagsterGraphQLClientError as exc:
        if _is_connection_error(exc):
            raise _as_trigger_error(exc, f"launch of {job_name}", url) from exc
        return  # e.g. a job without partitions whose keys cannot be listed: the launch itself will tell
    result = answer["pipelineOrError"]
    if result["__typename"] == "PipelineNotFoundError":
        raise _unknown_job(client, job_name, location, repository)
    if result["__typename"] != "Pipeline":
        raise TriggerError(result["__typename"], f"launch of {job_name}: {result.get('message')}")
    keys = (result.get("partitionKeysOrError") or {}).get("partitionKeys") or []
    if not keys:
        if partition is not None:
            raise TriggerError("PartitionError", f"{job_name} has no partitions; launch it without a partition")
        return
    if partition is None:
        raise TriggerError("PartitionError", f"{job_name} is partitioned: give a partition ({keys[0]} .. {keys[-1]})")
    if partition not in set(keys):
        moved = (f"; start the server with REFRESH_ASSETS_PARTITION_START={partition[:8]}01 or earlier "
                 "(`refresh-assets serve --partition-start`) to offer it") if partition < keys[0] else ""
        raise TriggerError("PartitionError", f"{partition!r} is not a partition of {job_name} "
                                             f"(partitions: {keys[0]} .. {keys[-1]}){moved}")


def launch(host: str, port: int | None, job_name: str, partition: str | None = None,
           run_config: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
           repository_location_name: str = "refresh_assets", use_https: bool = False, *,
           repository_name: str = REPOSITORY_NAME, validate: bool = True) -> str:
    """Submit one run of ``job_name`` to the webserver at host:port and return its run id (the run is queued).

    ``partition`` is the partition key (refresh date D, YYYY-MM-DD), sent as the ``dagster/partition`` tag;
    ``run_config`` holds only the inputs to override (e.g. from ``cli.run_config_from_sets``), ``{}`` or None
    runs on the defaults; ``tags`` are extra run tags (values are sent as strings).

    With ``validate`` (default), before anything is launched: ``refresh_job``'s inputs are checked by
    ``config.preflight`` (ConfigError naming the field), and the server is asked whether the job exists and
    has that partition (one extra query).

    Raises TriggerError (a DagsterGraphQLClientError) with the server's message: unknown job (the message lists
    the code location's jobs), unknown or missing partition, run config not matching the job's schema
    (RunConfigValidationInvalid), unreachable webserver (ConnectionError).
    """
    run_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    if partition is not None:
        partition = str(partition)
        if run_tags.get(PARTITION_TAG, partition) != partition:
            raise ValueError(f"partition {partition!r} and tag {PARTITION_TAG}={run_tags[PARTITION_TAG]!r} differ")
        run_tags[PARTITION_TAG] = partition
    if validate and job_name in PREFLIGHT_JOBS:
        from refresh_assets.config import preflight

        preflight(dict(run_config or {}), partition, local_partitions=False)  # the server's partitions: below

    url = _url(host, port, use_https)
    client = _client(host, port, use_https)
    if validate:
        _check_job_and_partition(client, url, job_name, run_tags.get(PARTITION_TAG), repository_location_name,
                                 repository_name)
    try:
        return client.submit_job_execution(
            job_name,
            repository_location_name=repository_location_name,
            repository_name=repository_name,
            run_config=dict(run_config or {}),
            tags=run_tags or None,
        )
    except DagsterGraphQLClientError as exc:
        if len(exc.args) >= 2 and exc.args[0] in ("PipelineNotFoundError", "JobNotFoundError"):
            raise _unknown_job(client, job_name, repository_location_name, repository_name) from exc
        doing = f"launch of {job_name}" + (f" for partition {partition}" if partition else "")
        raise _as_trigger_error(exc, doing, url) from exc


def status(host: str, port: int | None, run_id: str, use_https: bool = False) -> str:
    """The run's current status name (QUEUED, STARTING, STARTED, CANCELING, SUCCESS, FAILURE, CANCELED, ...)."""
    try:
        return _client(host, port, use_https).get_run_status(run_id).value
    except DagsterGraphQLClientError as exc:
        raise _as_trigger_error(exc, f"status of run {run_id}", _url(host, port, use_https)) from exc


def wait(host: str, port: int | None, run_id: str, timeout: float, poll: float = 2.0,
         use_https: bool = False) -> str:
    """Poll the run's status every ``poll`` seconds until it is terminal; return it (SUCCESS/FAILURE/CANCELED).

    A webserver that does not answer for a while (a restart) is polled again until the timeout; an unknown
    run id fails at once (TriggerError RunNotFoundError). Raises TimeoutError naming the last status seen.
    With ``run_retries`` on (dagster.yaml), a FAILURE may be followed by a retry run with another run id.
    """
    client = _client(host, port, use_https)
    deadline = time.monotonic() + timeout
    last: str | None = None
    while True:
        try:
            last = client.get_run_status(run_id).value
        except DagsterGraphQLClientError as exc:
            if not _is_connection_error(exc) or time.monotonic() >= deadline:
                raise _as_trigger_error(exc, f"status of run {run_id}", _url(host, port, use_https)) from exc
        else:
            if last in TERMINAL_STATUSES:
                return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"run {run_id} not finished after {timeout:g}s (status {last or 'unknown'})")
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))


_CANCEL_MUTATION = """
mutation TriggerCancel($runId: String!, $policy: TerminateRunPolicy!) {
  terminateRun(runId: $runId, terminatePolicy: $policy) {
    __typename
    ... on TerminateRunFailure { message run { status } }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}"""


def cancel(host: str, port: int | None, run_id: str, use_https: bool = False, force: bool = False) -> None:
    """Ask the instance to cancel the run: a queued run is canceled at once, a started one is sent a termination
    (status CANCELING, then CANCELED once its process stopped: ``wait`` for it). Raises TriggerError if the
    run is unknown or can no longer be canceled (e.g. it has already ended).

    Dagster refuses to terminate a STARTING run (launched, its worker not yet reporting): that state lasts
    seconds, so retry, or ``force``. ``force`` (the UI's "force termination") marks any unfinished run
    CANCELED at once and asks its process, if there is one, to stop: for a run whose worker is gone or
    never came up. Run monitoring fails such a run by itself after ``start_timeout_seconds`` (dagster.yaml).
    """
    policy = "MARK_AS_CANCELED_IMMEDIATELY" if force else "SAFE_TERMINATE"
    try:
        answer = _client(host, port, use_https)._execute(_CANCEL_MUTATION, {"runId": run_id, "policy": policy})
    except DagsterGraphQLClientError as exc:
        raise _as_trigger_error(exc, f"cancel of run {run_id}", _url(host, port, use_https)) from exc
    result = answer["terminateRun"]
    if result["__typename"] == "TerminateRunSuccess":
        return
    message = f"{'forced ' if force else ''}cancel of run {run_id}: {result.get('message', '')}"
    if (result.get("run") or {}).get("status") == "STARTING":
        message += " (it is being launched: retry in a few seconds, or force the cancel)"
    raise TriggerError(result["__typename"], message)
