"""Alerts on failure: one record per failed run, kept in a JSONL file and sent to optional channels.

Plain Python (no Dagster) so that it can be tested without a run. The rules, kept here so the sensor
stays thin:

* the file line and the log line come FIRST, before any network call: a dead webhook or Slack outage
  must never cost the alert itself;
* each channel fails on its own: its failure is logged with the reason and returned, never raised and
  never silent;
* every text that leaves this module (file, log, webhook, Slack) is redacted first, so that a token,
  password or webhook URL that found its way into an error message is written as '***'.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_UI_URL",
    "MAX_ERROR_CHARS",
    "AlertRecord",
    "append_alert",
    "build_record",
    "deliver",
    "error_text",
    "format_alert_text",
    "post_webhook",
    "redact",
    "redact_record",
    "secrets_from_env",
    "webhook_payload",
]

DEFAULT_UI_URL = "http://127.0.0.1:3000"
#: Bounds one JSONL line (and the Slack message); the full stack trace is in the run's logs.
MAX_ERROR_CHARS = 4000
REDACTED = "***"


def _utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class AlertRecord:
    """One failed run, as written to the alert file and sent to the channels."""

    job: str
    partition: str | None
    run_id: str
    failing_step: str | None
    error: str
    link: str | None
    at: str = field(default_factory=_utc_now_iso)
    #: "run_failure", or "degraded": the run succeeded but left something out (a candidate that failed to train)
    kind: str = "run_failure"


# ---------------------------------------------------------------------------------------------------------
# Building a record
# ---------------------------------------------------------------------------------------------------------


def error_text(error: Any) -> str | None:
    """The innermost message of an error chain (e.g. Dagster's SerializableErrorInfo), or None.

    Dagster wraps a user exception in 'DagsterExecutionStepExecutionError: Error occurred while executing
    op ...'; the useful part ('ValueError: ...') is the last ``cause``. Duck-typed: anything with
    ``message`` and ``cause`` attributes.
    """
    innermost = None
    seen = 0
    while error is not None and seen < 20:  # bounded: a cyclic chain must not hang the sensor
        innermost = error
        error = getattr(error, "cause", None)
        seen += 1
    message = getattr(innermost, "message", None)
    if message is None:
        return None
    return str(message).strip() or None


def build_record(*, job: str, partition: str | None, run_id: str,
                 step_failures: Sequence[tuple[str | None, str | None]], run_failure_message: str | None,
                 ui_url: str | None = None, at: str | None = None) -> AlertRecord:
    """The record of a failed run: the first failed step and its error, else the run failure message.

    ``step_failures`` is (step key, error message) per failed step, in the order they failed; other
    failed steps are named at the end of the error so that none is hidden.
    """
    failing_step = error = None
    if step_failures:
        failing_step, error = step_failures[0]
        others = [key for key, _ in step_failures[1:] if key]
        if others:
            error = f"{error or 'step failed'} (also failed: {', '.join(others)})"
    error = error or run_failure_message or "run failed (no error message recorded)"
    if len(error) > MAX_ERROR_CHARS:
        error = error[:MAX_ERROR_CHARS] + f"... [{len(error) - MAX_ERROR_CHARS} more chars in the run logs]"
    base = (ui_url or DEFAULT_UI_URL).rstrip("/")
    return AlertRecord(job=job, partition=partition, run_id=run_id, failing_step=failing_step, error=error,
                       link=f"{base}/runs/{run_id}", at=at or _utc_now_iso())


def build_degraded_record(*, job: str, partition: str | None, run_id: str,
                          left_out: Sequence[tuple[str, str]], ui_url: str | None = None,
                          at: str | None = None) -> AlertRecord:
    """The record of a run that succeeded without some of its parts: (step, why) per part left out."""
    error = f"the run succeeded without {len(left_out)} part(s): " + "; ".join(f"{s}: {why}" for s, why in left_out)
    record = build_record(job=job, partition=partition, run_id=run_id, step_failures=[(left_out[0][0], error)],
                          run_failure_message=None, ui_url=ui_url, at=at)
    return replace(record, kind="degraded")


def format_alert_text(record: AlertRecord) -> str:
    """One readable line for Slack and the log (the error's whitespace, newlines included, collapsed)."""
    error = " ".join(record.error.split())
    if len(error) > 500:
        error = error[:500] + "..."
    parts = [f"Run {'DEGRADED' if record.kind == 'degraded' else 'FAILED'}: job {record.job}"]
    if record.partition:
        parts.append(f"partition {record.partition}")
    if record.failing_step:
        parts.append(f"step {record.failing_step}")
    parts.append(f"run {record.run_id}")
    text = ", ".join(parts) + f" -- {error}"
    return f"{text} ({record.link})" if record.link else text


# ---------------------------------------------------------------------------------------------------------
# Redaction
# ---------------------------------------------------------------------------------------------------------

#: Environment variables whose values are treated as secrets (matched on the upper-cased name).
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|WEBHOOK|DSN")
#: Shorter values ('1', 'true') would redact ordinary words; real secrets are longer.
_MIN_SECRET_LEN = 6
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/:@]+:[^\s/@]+@")
_SLACK_TOKEN = re.compile(r"\bxox[a-z]-[A-Za-z0-9-]{8,}")


def secrets_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (TOKEN, PASSWORD, WEBHOOK ...)."""
    environ = os.environ if environ is None else environ
    return [value for name, value in environ.items()
            if _SECRET_NAME.search(name.upper()) and len(value) >= _MIN_SECRET_LEN]


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret value, URL credentials ('user:pw@') and Slack token replaced by '***'."""
    if not text:
        return text
    # Longest first, so that a secret containing another is replaced whole.
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)
    return _SLACK_TOKEN.sub(REDACTED, text)


def redact_record(record: AlertRecord, secrets: Iterable[str | None]) -> AlertRecord:
    """The record with every text field redacted."""
    secrets = list(secrets)
    changes = {f.name: redact(value, secrets) for f in fields(record)
               if isinstance(value := getattr(record, f.name), str)}
    return replace(record, **changes)


# ---------------------------------------------------------------------------------------------------------
# Channels
# ---------------------------------------------------------------------------------------------------------


def append_alert(path: str | Path, record: AlertRecord) -> Path:
    """Append the record as one JSON line, safely under concurrent writers.

    O_APPEND plus a single write() of the whole line: the kernel positions each write at the end of the
    file, so lines from concurrent processes never interleave (local filesystems; not NFS). json.dumps
    escapes newlines, so a line is always one record. fsync makes it survive a power cut.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(asdict(record), sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):  # only on a full disk or a quota: say so rather than leave half a line
            raise OSError(f"short write to {target}: {written} of {len(line)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def webhook_payload(record: AlertRecord) -> dict[str, Any]:
    """The JSON posted to the webhook: the record's fields plus 'text' (what Slack-style hooks show)."""
    return {**asdict(record), "text": format_alert_text(record)}


def post_webhook(url: str, record: AlertRecord, timeout: float = 10) -> int:
    """POST the record as JSON to ``url``; returns the status, raises on a non-2xx answer or no answer.

    Redirects are refused (urllib would replay a POST as a GET without the body and report success).
    """
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"webhook URL must be http(s), got scheme {urlsplit(url).scheme!r}")

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None  # urllib then raises HTTPError for the 3xx

    body = json.dumps(webhook_payload(record), sort_keys=True).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "refresh-assets"})
    opener = urllib.request.build_opener(_NoRedirect)
    with opener.open(request, timeout=timeout) as response:
        status = response.status
        response.read()
    if not 200 <= status < 300:
        raise urllib.error.HTTPError(url, status, f"webhook answered HTTP {status}", response.headers, None)
    return status


def _post_slack(token: str, channel: str, text: str, timeout: float) -> None:
    """chat.postMessage through dagster_slack's client (raises SlackApiError when Slack says not ok)."""
    from dagster_slack import SlackResource

    client = SlackResource(token=token).get_client()
    client.timeout = int(timeout)
    client.chat_postMessage(channel=channel, text=text)


def deliver(record: AlertRecord, *, alert_file: str | Path, webhook_url: str | None = None,
            slack_token: str | None = None, slack_channel: str | None = None,
            log: Callable[[str], Any] = print, warn: Callable[[str], Any] | None = None,
            secrets: Iterable[str] | None = None, timeout: float = 10) -> dict[str, Any]:
    """Log and file the alert, then try the webhook and Slack; returns what happened per channel.

    Never raises: each channel's failure is passed to ``warn`` (default ``log``) with its reason and
    reported as {"status": "failed", "error": ...}. ``secrets`` defaults to secrets_from_env(); the
    webhook URL and Slack token are always treated as secrets.
    """
    warn = warn or log
    secret_list = [*(secrets_from_env() if secrets is None else secrets), webhook_url, slack_token]
    safe = redact_record(record, secret_list)
    text = format_alert_text(safe)
    result: dict[str, Any] = {"text": text}

    def failed(channel: str, error: BaseException) -> dict[str, Any]:
        reason = redact(f"{type(error).__name__}: {error}", secret_list)
        warn(f"alert channel {channel} FAILED for run {safe.run_id}: {reason}")
        return {"status": "failed", "error": reason}

    log(f"ALERT {text}")
    try:
        append_alert(alert_file, safe)
        result["file"] = {"status": "sent", "path": str(alert_file)}
    except Exception as error:
        result["file"] = failed("file", error)

    if webhook_url:
        try:
            status = post_webhook(webhook_url, safe, timeout=timeout)
            result["webhook"] = {"status": "sent", "http_status": status}
            log(f"alert sent to webhook (HTTP {status})")
        except Exception as error:
            result["webhook"] = failed("webhook", error)
    else:
        result["webhook"] = {"status": "skipped"}

    if slack_token and slack_channel:
        try:
            _post_slack(slack_token, slack_channel, text, timeout)
            result["slack"] = {"status": "sent", "channel": slack_channel}
            log(f"alert sent to Slack channel {slack_channel}")
        except Exception as error:
            result["slack"] = failed("slack", error)
    elif slack_token or slack_channel:
        result["slack"] = failed("slack", ValueError(
            "Slack needs both REFRESH_ASSETS_SLACK_TOKEN and REFRESH_ASSETS_SLACK_CHANNEL; only one is set"))
    else:
        result["slack"] = {"status": "skipped"}
    return result
