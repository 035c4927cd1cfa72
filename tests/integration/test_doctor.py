"""`hist doctor`: one line per check, each ok or the reason, the exit code saying whether all passed,
and never a secret."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Gateway, HistRunner, free_port

CHECKS = ("config", "api key", "gateway", "database", "lake", "manifest")


def lines(text: str) -> dict[str, str]:
    return {name: line for line in text.splitlines() for name in CHECKS if line[6:].startswith(name)}


def test_doctor_given_everything_in_place_says_ok_for_each_check(hist: HistRunner, gateway: Gateway) -> None:
    hist("db", "init")

    result = hist("doctor")

    found = lines(result.stdout)
    assert set(found) == set(CHECKS) and all(line.startswith("ok") for line in found.values()), result.stdout
    assert "migrations current" in found["database"] and gateway.key not in result.stdout + result.stderr


def test_doctor_given_what_a_new_user_gets_wrong_names_each_problem(hist: HistRunner, gateway: Gateway,
                                                                    tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    hist.env["HIST_LAKE"] = str(blocker / "lake")
    password = "s3cret" + "-pw"  # built at run time: no DSN with a password is committed
    hist.env["HIST_DATABASE_URL"] = "postgresql://hist:" + password + f"@127.0.0.1:{free_port()}/hist"
    del hist.env["DATABENTO_API_KEY"]

    result = hist("doctor", check=False)

    found = lines(result.stdout)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert found["config"].startswith("ok") and found["api key"].startswith("FAIL")
    assert "DATABENTO_API_KEY is not set" in found["api key"]
    assert found["database"].startswith("FAIL") and "unreachable" in found["database"]
    assert found["lake"].startswith("FAIL") and password not in result.stdout


def test_doctor_given_database_without_migrations_says_run_db_init(hist: HistRunner) -> None:
    result = hist("doctor", check=False)

    assert result.returncode == 1 and "run hist db init" in lines(result.stdout)["database"]
