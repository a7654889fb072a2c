"""forewarn.toml for every command: the file, FOREWARN_* variables over it, flags over both; log lines; templates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from forewarn.cli import main
from forewarn.engine import render
from forewarn.engine.draft import Draft

EVENTS = [
    {"id": "c1", "type": "customer.upserted", "at": "2026-01-01T00:00:00Z", "customer": "acme", "name": "Acme",
     "plan": "enterprise", "timezone": "Asia/Kolkata", "contacts": ["ops@acme.example"]},
    {"id": "i1", "type": "incident.declared", "at": "2026-03-02T10:00:00Z", "incident": "inc-1", "title": "Outage",
     "severity": "critical", "customers": ["acme"], "summary": "Errors"},
]


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EVENTS), encoding="utf-8")
    return path


def test_config_file_then_environment_then_flag(tmp_path: Path, events: Path) -> None:
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "forewarn.toml"
    config.write_text('db = "from-file.db"\n', encoding="utf-8")  # relative to the file's directory
    env = {"FOREWARN_DB": "", "FOREWARN_CONFIG": ""}
    assert cli("import", str(events), "--config", str(config), env=env)[0] == 0
    assert (tmp_path / "etc" / "from-file.db").exists()
    env_db = tmp_path / "from-env.db"
    assert cli("import", str(events), "--config", str(config), env={**env, "FOREWARN_DB": str(env_db)})[0] == 0
    assert env_db.exists()
    flag_db = tmp_path / "from-flag.db"
    code, _, _ = cli("import", str(events), "--db", str(flag_db), env={**env, "FOREWARN_CONFIG": str(config),
                                                                       "FOREWARN_DB": str(env_db)})
    assert code == 0 and flag_db.exists()
    code, out, _ = cli("plan", "--as-of", "2026-03-02T10:05:00Z", "--format", "json",
                       env={**env, "FOREWARN_CONFIG": str(config)})
    assert code == 0 and json.loads(out)["due"][0]["subject"] == "inc-1"  # the file's db, via $FOREWARN_CONFIG


def test_bad_config_files_are_clear_errors(tmp_path: Path, events: Path) -> None:
    config = tmp_path / "forewarn.toml"
    config.write_text('[smtp]\nservr = "mail:25"\n', encoding="utf-8")
    code, _, err = cli("import", str(events), "--config", str(config))
    assert code == 2 and "unknown key 'smtp.servr'" in err
    config.write_text("poll = [1]\n", encoding="utf-8")
    code, _, err = cli("run", "--config", str(config))
    assert code == 2 and "poll: must be float" in err
    config.write_text("db = \n", encoding="utf-8")
    code, _, err = cli("audit", "--config", str(config))
    assert code == 2 and "not valid TOML" in err
    code, _, err = cli("run", "--once", env={"FOREWARN_SMTP_STARTTLS": "maybe"})
    assert code == 2 and "$FOREWARN_SMTP_STARTTLS: must be true or false" in err


def test_run_logs_json_lines_for_pass_decision_and_send(tmp_path: Path, events: Path) -> None:
    db = tmp_path / "log.db"
    assert cli("import", str(events), "--db", str(db))[0] == 0
    code, _, err = cli("run", "--once", "--now", "2026-03-02T10:05:00Z", "--db", str(db), "--outbox",
                       str(tmp_path / "out"), "--log-format", "json")
    assert code == 0
    lines = [json.loads(line) for line in err.splitlines()]
    kinds = [line["event"] for line in lines]
    assert kinds == ["decision", "sent", "pass"]
    assert lines[-1]["sent"] == 1 and lines[-1]["level"] == "info" and lines[-1]["ts"].endswith("Z")
    assert lines[0]["subject"] == "inc-1" and lines[0]["because"][0].startswith("incident-notice/")
    code, _, err = cli("run", "--once", "--now", "2026-03-02T10:06:00Z", "--db", str(db), "--outbox",
                       str(tmp_path / "out"))
    assert code == 0 and err.startswith("20") and "INFO forewarn.engine: sent 0, failed 0" in err


def draft() -> Draft:
    return Draft(
        communication="fw-1", message_id="<fw-1@example.com>", kind="incident", subject_kind="incident",
        subject="inc-1", subject_title="Outage", customer="acme", customer_name="Acme", timezone="Asia/Kolkata",
        sender="support@example.com", to=("ops@acme.example",), support_contact="support@example.com",
        context={"severity": "critical", "summary": "Errors"},
    )


def test_own_templates_fall_back_to_the_bundled_ones(tmp_path: Path) -> None:
    (tmp_path / "incident.txt.j2").write_text("Dear {{ customer_name }}: {{ title }} (our own words)\n")
    try:
        render.use_templates(str(tmp_path))
        message = render.render(draft(), datetime(2026, 3, 2, 10, 5, tzinfo=UTC))
        text, html = (part.get_content() for part in message.iter_parts())
        assert text == "Dear Acme: Outage (our own words)\n"
        assert "Outage" in html and "<html" in html.lower()  # the bundled HTML template
        (tmp_path / "incident.html.j2").write_text("{% if %}\n")
        with pytest.raises(render.RenderError, match=r"incident.html.j2:1"):
            render.use_templates(str(tmp_path))
    finally:
        render.use_templates(None)
    message = render.render(draft(), datetime(2026, 3, 2, 10, 5, tzinfo=UTC))
    assert "our own words" not in next(message.iter_parts()).get_content()


def test_run_refuses_a_bad_template_directory(tmp_path: Path) -> None:
    (tmp_path / "layout.txt.j2").write_text("{{ unclosed\n")
    code, _, err = cli("run", "--once", "--templates", str(tmp_path), "--db", str(tmp_path / "x.db"))
    render.use_templates(None)
    assert code == 2 and "layout.txt.j2" in err


def test_the_example_config_file_reads_and_serve_takes_its_tokens(tmp_path: Path) -> None:
    from forewarn import config

    example = Path(__file__).resolve().parents[1] / "deploy" / "forewarn.toml"
    values = config.load(str(example), environ={})
    assert values["db"] == "/var/lib/forewarn/forewarn.db" and values["smtp.starttls"] is True
    assert values["api.tokens"].startswith("writer:") and values["api.listen"] == "127.0.0.1:8080"
    own = tmp_path / "forewarn.toml"
    own.write_text('[api]\ntokens = ["boss:sekrit-value"]\n', encoding="utf-8")
    code, _, err = cli("serve", "--config", str(own), env={"FOREWARN_API_TOKENS": ""})
    assert code == 2 and "role 'boss'" in err and "sekrit" not in err


def test_run_takes_its_delivery_limits_from_the_file_also_given_before_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forewarn.engine import runner

    seen: dict[str, object] = {}
    real_init = runner.Engine.__init__

    def spy(self: runner.Engine, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        seen.update(pass_deadline=self.pass_deadline, give_up_after=self.give_up_after)
        seen.update(timeout=self.delivery.timeout, auth=self.webhook.headers.get("Authorization"))  # type: ignore[union-attr]

    monkeypatch.setattr(runner.Engine, "__init__", spy)
    config = tmp_path / "forewarn.toml"
    config.write_text(
        'db = "log.db"\ntimeout = 2.5\npass_deadline = 42\ngive_up_after = 7\n'
        '[smtp]\nserver = "127.0.0.1:9"\n'
        '[webhook]\nurl = "http://127.0.0.1:9/hook"\nauth_header = "Bearer sekrit-tok"\n',
        encoding="utf-8",
    )
    (tmp_path / "events.jsonl").write_text(json.dumps(EVENTS[0]) + "\n", encoding="utf-8")
    env = {"FOREWARN_DB": "", "FOREWARN_CONFIG": "", "FOREWARN_TICKET_AUTH": ""}
    assert cli("import", str(tmp_path / "events.jsonl"), "--config", str(config), env=env)[0] == 0
    expected = {"pass_deadline": 42.0, "give_up_after": 7, "timeout": 2.5, "auth": "Bearer sekrit-tok"}
    for args in (["--config", str(config), "run", "--once"], ["run", "--once", "--config", str(config)]):
        seen.clear()
        code, _, err = cli(*args, env=env)
        assert code == 0, err
        assert seen == expected and "sekrit" not in err
    seen.clear()
    code, _, err = cli("--config", str(config), "run", "--once", "--give-up-after", "1",
                       env={**env, "FOREWARN_TIMEOUT": "4"})
    assert code == 0, err
    assert seen == {**expected, "give_up_after": 1, "timeout": 4.0}  # flag over environment over file
