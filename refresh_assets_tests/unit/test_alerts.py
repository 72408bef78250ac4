"""Alerts on failure: the JSONL file, the webhook against a real local server, redaction, and the sensor."""

import json
import socket
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context

import pytest

from refresh_assets.core.alerts import (
    AlertRecord,
    append_alert,
    build_record,
    deliver,
    error_text,
    format_alert_text,
    post_webhook,
    redact,
    redact_record,
    secrets_from_env,
    webhook_payload,
)

FAKE_TOKEN = "fake-slack-token-0000-for-tests"  # not xox-shaped: only the env redaction can catch it


def record(**changes) -> AlertRecord:
    base = {"job": "refresh_job", "partition": "2026-06-01", "run_id": "run-1", "failing_step": "candidate_logreg",
            "error": "ValueError: kaput", "link": "http://127.0.0.1:3000/runs/run-1",
            "at": "2026-06-01T00:00:00+00:00"}
    return AlertRecord(**{**base, **changes})


def read_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class Server:
    """A real HTTP server on a free local port that records every request and answers ``status``."""

    def __init__(self, status=200, body=b"ok", content_type="text/plain"):
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": self.rfile.read(length)})
                self.send_response(outer.status)
                self.send_header("Content-Type", outer.content_type)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.status, self.body, self.content_type = status, body, content_type
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def unreachable_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# --------------------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------------------


def test_append_alert_writes_one_valid_json_line_per_record(tmp_path):
    path = tmp_path / "deep" / "alerts" / "alerts.jsonl"  # parent folders are created
    append_alert(path, record(error="line one\nline two"))
    append_alert(path, record(run_id="run-2", partition=None, failing_step=None))
    lines = read_lines(path)
    assert [line["run_id"] for line in lines] == ["run-1", "run-2"]
    assert lines[0]["error"] == "line one\nline two"  # a multi-line error stays one JSONL line
    assert lines[1]["partition"] is None and set(lines[1]) == set(AlertRecord.__dataclass_fields__)


def _append_many(path, writer, count):
    pad = "x" * 5000  # each line is larger than PIPE_BUF: atomicity must not rely on small writes
    for index in range(count):
        append_alert(path, record(run_id=f"{writer}-{index}", error=pad))
    return count


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_concurrent_appends_give_intact_lines(tmp_path, pool):
    path = tmp_path / "alerts.jsonl"
    executor = (ThreadPoolExecutor(2) if pool == "threads"
                else ProcessPoolExecutor(2, mp_context=get_context("spawn")))
    with executor:
        assert sum(executor.map(_append_many, [path, path], ["a", "b"], [200, 200])) == 400
    lines = read_lines(path)  # json.loads fails on any torn or interleaved line
    assert len(lines) == 400
    assert {line["run_id"] for line in lines} == {f"{w}-{i}" for w in "ab" for i in range(200)}
    assert all(len(line["error"]) == 5000 for line in lines)


# --------------------------------------------------------------------------------------------------------
# Text, record, redaction
# --------------------------------------------------------------------------------------------------------


def test_format_alert_text_is_one_line_with_what_and_where():
    text = format_alert_text(record(error="Traceback\n  boom\n\nValueError: kaput"))
    assert "\n" not in text
    for part in ("refresh_job", "2026-06-01", "candidate_logreg", "run-1", "ValueError: kaput",
                 "http://127.0.0.1:3000/runs/run-1"):
        assert part in text


def test_build_record_takes_first_failed_step_and_names_the_others():
    rec = build_record(job="refresh_job", partition=None, run_id="r1",
                       step_failures=[("a", "ValueError: first"), ("b", "KeyError: second")],
                       run_failure_message="run failed", ui_url="http://dagster.internal:3000/")
    assert rec.failing_step == "a" and rec.error.startswith("ValueError: first") and "also failed: b" in rec.error
    assert rec.link == "http://dagster.internal:3000/runs/r1"
    fallback = build_record(job="j", partition="p", run_id="r2", step_failures=[],
                            run_failure_message="run worker crashed")
    assert fallback.failing_step is None and fallback.error == "run worker crashed"
    assert fallback.link == "http://127.0.0.1:3000/runs/r2"


def test_error_text_unwraps_to_the_innermost_cause():
    class Info:
        def __init__(self, message, cause=None):
            self.message, self.cause = message, cause

    wrapped = Info('DagsterExecutionStepExecutionError: Error occurred while executing op "x":\n',
                   Info("ValueError: kaput\n"))
    assert error_text(wrapped) == "ValueError: kaput"
    assert error_text(None) is None


def test_redact_removes_secrets_url_credentials_and_slack_tokens():
    text = (f"auth failed with {FAKE_TOKEN} posting to https://hooks.example.com/T0/B0/s3cr3tpath "
            "db postgresql://user:hunter22@db:5432/x; other xoxp-1234567890-abcdef")
    clean = redact(text, ["https://hooks.example.com/T0/B0/s3cr3tpath", FAKE_TOKEN, "", None, "ab"])
    for leaked in (FAKE_TOKEN, "s3cr3tpath", "hunter22", "xoxp-1234567890"):
        assert leaked not in clean
    assert "postgresql://***@db:5432/x" in clean and "auth failed with ***" in clean


def test_secrets_from_env_picks_secret_looking_names_only():
    env = {"REFRESH_ASSETS_SLACK_TOKEN": FAKE_TOKEN, "DAGSTER_PG_PASSWORD": "pg-password-1",
           "REFRESH_ASSETS_ALERT_WEBHOOK_URL": "https://hooks.example.com/x", "HOME": "/root/home",
           "REFRESH_ASSETS_RETRY_MAX": "0", "SOME_TOKEN_FLAG": "1"}
    assert sorted(secrets_from_env(env)) == sorted([FAKE_TOKEN, "pg-password-1", "https://hooks.example.com/x"])
    assert redact_record(record(error=f"t={FAKE_TOKEN}"), [FAKE_TOKEN]).error == "t=***"


# --------------------------------------------------------------------------------------------------------
# Webhook and deliver
# --------------------------------------------------------------------------------------------------------


def test_post_webhook_sends_exactly_the_json():
    rec = record()
    with Server(status=204, body=b"") as server:
        assert post_webhook(server.url + "/hook", rec, timeout=5) == 204
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request["path"] == "/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    assert json.loads(request["body"]) == webhook_payload(rec)
    assert json.loads(request["body"])["text"] == format_alert_text(rec)


def test_post_webhook_raises_on_non_2xx_and_refuses_non_http():
    with Server(status=500) as server, pytest.raises(Exception, match="500"):
        post_webhook(server.url, record(), timeout=5)
    with pytest.raises(ValueError, match="http"):
        post_webhook("file:///etc/passwd", record())


@pytest.mark.parametrize("failure", ["http_500", "unreachable"])
def test_deliver_files_and_logs_even_when_the_webhook_fails(tmp_path, failure):
    path = tmp_path / "alerts.jsonl"
    logged, warned = [], []
    if failure == "http_500":
        with Server(status=500) as server:
            result = deliver(record(), alert_file=path, webhook_url=server.url + "/hook?key=s3cr3tkey",
                             log=logged.append, warn=warned.append, secrets=[], timeout=5)
        assert len(server.requests) == 1
    else:
        result = deliver(record(), alert_file=path, webhook_url=unreachable_url(), log=logged.append,
                         warn=warned.append, secrets=[], timeout=5)
    assert [line["run_id"] for line in read_lines(path)] == ["run-1"]
    assert logged and logged[0].startswith("ALERT ") and "run-1" in logged[0]
    assert result["file"]["status"] == "sent" and result["slack"] == {"status": "skipped"}
    assert result["webhook"]["status"] == "failed" and result["webhook"]["error"]
    assert len(warned) == 1 and "webhook FAILED" in warned[0] and result["webhook"]["error"] in warned[0]
    assert "s3cr3tkey" not in "".join(logged + warned) + json.dumps(result)


def test_deliver_reports_a_broken_file_and_still_tries_the_webhook(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    warned = []
    with Server() as server:
        result = deliver(record(), alert_file=blocker / "alerts.jsonl", webhook_url=server.url, log=lambda m: None,
                         warn=warned.append, secrets=[])
    assert result["file"]["status"] == "failed" and result["webhook"]["status"] == "sent"
    assert len(server.requests) == 1 and "file FAILED" in warned[0]


def test_deliver_half_configured_slack_is_reported_not_silent(tmp_path):
    warned = []
    result = deliver(record(), alert_file=tmp_path / "a.jsonl", slack_token=FAKE_TOKEN, log=lambda m: None,
                     warn=warned.append, secrets=[])
    assert result["slack"]["status"] == "failed" and "SLACK_CHANNEL" in result["slack"]["error"]
    assert warned and FAKE_TOKEN not in "".join(warned)


def slack_api(monkeypatch, server):
    """Point dagster_slack's WebClient at the local server instead of slack.com."""
    import dagster_slack.resources
    from slack_sdk import WebClient

    monkeypatch.setattr(dagster_slack.resources, "WebClient",
                        lambda token: WebClient(token, base_url=server.url + "/api/"))


def test_deliver_posts_to_slack_and_reports_a_slack_error(tmp_path, monkeypatch):
    with Server(body=b'{"ok": true}', content_type="application/json") as server:
        slack_api(monkeypatch, server)
        result = deliver(record(), alert_file=tmp_path / "a.jsonl", slack_token=FAKE_TOKEN,
                         slack_channel="#alerts", log=lambda m: None, secrets=[])
    assert result["slack"] == {"status": "sent", "channel": "#alerts"}
    request = server.requests[0]
    assert request["path"] == "/api/chat.postMessage"
    assert request["headers"]["Authorization"] == f"Bearer {FAKE_TOKEN}"
    assert json.loads(request["body"]) == {"channel": "#alerts", "text": format_alert_text(record())}

    warned = []
    with Server(body=b'{"ok": false, "error": "invalid_auth"}', content_type="application/json") as server:
        slack_api(monkeypatch, server)
        result = deliver(record(), alert_file=tmp_path / "a.jsonl", slack_token=FAKE_TOKEN,
                         slack_channel="#alerts", log=lambda m: None, warn=warned.append, secrets=[])
    assert result["slack"]["status"] == "failed" and "invalid_auth" in result["slack"]["error"]
    assert "slack FAILED" in warned[0] and FAKE_TOKEN not in warned[0]
    assert len(read_lines(tmp_path / "a.jsonl")) == 2


# --------------------------------------------------------------------------------------------------------
# The sensor, on a real (temporary) instance holding a really failed run
# --------------------------------------------------------------------------------------------------------

ALERT_ENV = ("REFRESH_ASSETS_ALERT_FILE", "REFRESH_ASSETS_ALERT_WEBHOOK_URL", "REFRESH_ASSETS_SLACK_TOKEN",
             "REFRESH_ASSETS_SLACK_CHANNEL", "REFRESH_ASSETS_UI_URL")


@pytest.fixture
def failed_run(monkeypatch):
    """A two-step job whose second step raises an error that quotes the (fake) Slack token."""
    import os

    import dagster as dg

    for name in ALERT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REFRESH_ASSETS_SLACK_TOKEN", FAKE_TOKEN)

    @dg.op
    def load():
        return 1

    @dg.op
    def train(value):
        raise ValueError(f"training blew up after {value} try, auth={os.environ['REFRESH_ASSETS_SLACK_TOKEN']}")

    @dg.job
    def tiny_failing_job():
        train(load())

    with dg.instance_for_test() as instance:
        result = tiny_failing_job.execute_in_process(instance=instance, raise_on_error=False,
                                                     tags={"dagster/partition": "2026-06-01"})
        assert not result.success
        yield instance, result


def run_sensor(instance, result):
    import dagster as dg

    from refresh_assets.alerts import failure_alert_sensor

    context = dg.build_run_status_sensor_context(
        sensor_name="failure_alert_sensor", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event()).for_run_failure()
    return failure_alert_sensor(context)


def test_sensor_appends_one_record_and_posts_one_webhook(failed_run, tmp_path, monkeypatch):
    instance, result = failed_run
    path = tmp_path / "alerts.jsonl"
    monkeypatch.setenv("REFRESH_ASSETS_ALERT_FILE", str(path))
    monkeypatch.setenv("REFRESH_ASSETS_UI_URL", "http://dagster.internal:3000/")
    with Server() as server:
        monkeypatch.setenv("REFRESH_ASSETS_ALERT_WEBHOOK_URL", server.url + "/hook")
        run_sensor(instance, result)

    lines = read_lines(path)
    assert len(lines) == 1
    line = lines[0]
    run_id = result.dagster_run.run_id
    assert line["job"] == "tiny_failing_job" and line["run_id"] == run_id and line["partition"] == "2026-06-01"
    assert line["failing_step"] == "train"
    assert line["error"] == "ValueError: training blew up after 1 try, auth=***"
    assert line["link"] == f"http://dagster.internal:3000/runs/{run_id}"

    assert len(server.requests) == 1
    posted = json.loads(server.requests[0]["body"])
    assert {k: posted[k] for k in line} == line and "train" in posted["text"]

    everything = path.read_text() + server.requests[0]["body"].decode()
    assert FAKE_TOKEN not in everything and server.url not in path.read_text()


def test_sensor_defaults_to_the_data_dir_and_survives_a_dead_webhook(failed_run, tmp_path, monkeypatch):
    instance, result = failed_run
    monkeypatch.setenv("REFRESH_ASSETS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REFRESH_ASSETS_ALERT_WEBHOOK_URL", unreachable_url())
    run_sensor(instance, result)  # must not raise
    lines = read_lines(tmp_path / "alerts" / "alerts.jsonl")
    assert len(lines) == 1 and lines[0]["failing_step"] == "train"
    assert lines[0]["link"] == f"http://127.0.0.1:3000/runs/{result.dagster_run.run_id}"
    assert FAKE_TOKEN not in (tmp_path / "alerts" / "alerts.jsonl").read_text()


def test_sensor_definition_watches_this_code_location_and_starts_running():
    import dagster as dg

    from refresh_assets.alerts import failure_alert_sensor

    assert isinstance(failure_alert_sensor, dg.RunStatusSensorDefinition)
    assert failure_alert_sensor.name == "failure_alert_sensor"
    assert failure_alert_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # No public accessor in 1.13: no jobs listed + False = every job of this code location, none elsewhere.
    assert failure_alert_sensor._monitored_jobs == []
    assert failure_alert_sensor._monitor_all_code_locations is False


def test_sensor_ticks_alert_each_failed_run_once(tmp_path, monkeypatch):
    """The daemon's path: a first tick sets the cursor, the next sees the failure, a third sees nothing new."""
    import dagster as dg

    from refresh_assets.alerts import failure_alert_sensor

    for name in ALERT_ENV:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "alerts.jsonl"
    monkeypatch.setenv("REFRESH_ASSETS_ALERT_FILE", str(path))

    @dg.op
    def explode():
        raise RuntimeError("nope")

    @dg.job
    def exploding_job():
        explode()

    repo = dg.Definitions(jobs=[exploding_job], sensors=[failure_alert_sensor]).get_repository_def()
    with dg.instance_for_test() as instance:
        def tick(cursor):
            return failure_alert_sensor.evaluate_tick(
                dg.build_sensor_context(instance=instance, repository_def=repo, cursor=cursor))

        first = tick(None)
        run = exploding_job.execute_in_process(instance=instance, raise_on_error=False).dagster_run
        second = tick(first.cursor)
        tick(second.cursor)
    lines = read_lines(path)
    assert len(lines) == 1
    assert (lines[0]["job"], lines[0]["run_id"], lines[0]["failing_step"], lines[0]["error"]) == (
        "exploding_job", run.run_id, "explode", "RuntimeError: nope")


def test_a_run_that_will_be_retried_is_not_alerted_yet(tmp_path, monkeypatch):
    """Only the last attempt of a retried run raises an alert (run_retries in dagster.yaml)."""
    import dagster as dg

    from refresh_assets.alerts import failure_alert_sensor

    alert_file = tmp_path / "alerts.jsonl"
    monkeypatch.setenv("REFRESH_ASSETS_ALERT_FILE", str(alert_file))

    @dg.op
    def boom():
        raise ValueError("broken")

    @dg.job
    def failing():
        boom()

    with dg.instance_for_test() as instance:
        result = failing.execute_in_process(instance=instance, raise_on_error=False,
                                            tags={"dagster/will_retry": "true"})
        run = instance.get_run_by_id(result.run_id)
        failure = [e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE][0]
        context = dg.build_run_status_sensor_context(
            sensor_name="failure_alert_sensor", dagster_instance=instance, dagster_run=run,
            dagster_event=failure).for_run_failure()
        failure_alert_sensor(context)
    assert not alert_file.exists()
