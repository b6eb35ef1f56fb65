"""``POST /api/platform/auth/<op>`` against a live host: answers, refusals, rate limiting, and a
real registration starting the example app's ``onboarding-after-signup`` trigger."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.host.hosting import REPO, assert_error, running_host
from tests.support.hostproc import HostProcess
from tests.support.waiting import wait_until

AUTH = "/api/platform/auth"


def test_register_login_validate(http: httpx.Client, host: HostProcess) -> None:
    user = http.post(
        f"{AUTH}/register", json={"email": "h1@example.com", "password": "pw-long-enough"}
    )
    assert user.status_code == 200, user.text
    session = http.post(
        f"{AUTH}/login", json={"email": "h1@example.com", "password": "pw-long-enough"}
    )
    token = session.json()["access_token"]
    assert http.post(f"{AUTH}/validate", json={"token": token}).json()["id"] == user.json()["id"]
    assert_error(
        http.post(f"{AUTH}/validate", json={"token": token + "x"}), 401, "invalid or expired"
    )
    assert_error(
        http.post(
            f"{AUTH}/register", json={"email": "H1@example.com", "password": "pw-long-enough"}
        ),
        409,
    )
    # The signing secret lives in the data folder and no route serves it.
    secret = (host.data / "auth-secret.key").read_text()
    for path in (
        "/api/storage/auth-secret.key",
        "/api/storage/../auth-secret.key",
        "/openapi.json",
    ):
        assert secret not in http.get(path).text
    assert "pw-long-enough" not in host.log()


@pytest.mark.parametrize(
    ("op", "body", "status", "needle"),
    [
        ("register", {"email": "x", "password": "pw-long-enough"}, 400, "email"),
        ("register", {"email": "a@b.co", "password": "short"}, 400, "8 to 1024"),
        ("register", {"email": "a@b.co", "password": 12345678}, 400, "password"),
        ("login", {"email": "a@b.co", "password": None}, 401, "invalid email or password"),
        ("refresh", {"token": "ses_x.y"}, 401, "invalid or expired"),
        ("get-user", {}, 400, "user_id"),
        ("list-users", {"limit": "ten"}, 400, "limit"),
        ("update-user", {"user_id": "usr_nope"}, 404, "usr_nope"),
        ("verify-email", {"token": "nope"}, 400, "invalid or expired"),
    ],
)
def test_refusals(http: httpx.Client, op: str, body: object, status: int, needle: str) -> None:
    assert_error(http.post(f"{AUTH}/{op}", json=body), status, needle)


def test_unknown_op_and_bad_json(http: httpx.Client) -> None:
    assert_error(http.post(f"{AUTH}/steal-everything", json={}), 404)
    assert_error(http.post(f"{AUTH}/login", content=b"{nope"), 400, "malformed JSON")
    assert_error(http.get(f"{AUTH}/login"), 405)


def test_login_rate_limit_answers_429_with_retry_after(http: httpx.Client) -> None:
    http.post(f"{AUTH}/register", json={"email": "rl@example.com", "password": "pw-long-enough"})
    for _ in range(5):
        assert_error(
            http.post(
                f"{AUTH}/login", json={"email": "rl@example.com", "password": "wrong-password"}
            ),
            401,
        )
    limited = http.post(
        f"{AUTH}/login", json={"email": "rl@example.com", "password": "pw-long-enough"}
    )
    assert_error(limited, 429, "too many failed logins")
    assert 0 < int(limited.headers["retry-after"]) <= 900


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    with running_host(tmp_path_factory.mktemp("signup"), project=REPO) as host:
        yield host


def test_a_registration_starts_onboarding_after_signup(example: HostProcess) -> None:
    http = example.client()
    user = http.post(
        f"{AUTH}/register", json={"email": "sam@example.com", "password": "sam-secret-1"}
    )
    assert user.status_code == 200, user.text
    runs = wait_until(
        lambda: http.get(
            "/api/workflows/runs", params={"workflowId": "onboarding-after-signup"}
        ).json()
    )
    [run] = runs
    assert run["input"]["t"] == "auth.user.registered"
    assert run["input"]["r"] == "auth"
    assert run["input"]["data"]["email"] == "sam@example.com"
    assert "password" not in str(run["input"])


def test_openapi_lists_the_auth_and_realtime_routes(http: httpx.Client) -> None:
    from host.api.auth import OPS

    paths = http.get("/openapi.json").json()["paths"]
    assert {f"{AUTH}/{op}" for op in OPS} <= set(paths)
    assert {
        "/api/realtime/publish",
        "/api/realtime/channels",
        "/api/realtime/presence/{channel}/join",
        "/api/realtime/presence/{channel}/leave",
        "/api/realtime/presence/{channel}",
        "/api/realtime/history/{channel}",
    } <= set(paths)
