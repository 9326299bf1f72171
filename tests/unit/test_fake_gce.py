"""The Compute Engine fake's pure pieces: list filters, links, pages, ssh-keys, credentials."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from goldenimage_dev.edge import matches
from goldenimage_dev.fakes.gce import filters, links, tokens
from goldenimage_dev.fakes.gce.errors import ApiError
from goldenimage_dev.fakes.gce.state import DEFAULT_USER, check_labels, page, ssh_keys

IMAGES: list[dict[str, Any]] = [
    {
        "name": "web-1",
        "labels": {"role": "web", "version": "1-0-0"},
        "diskSizeGb": "10",
        "creationTimestamp": "2024-01-01T00:00:00.000+00:00",
    },
    {
        "name": "web-2",
        "labels": {"role": "web", "version": "2-0-0"},
        "diskSizeGb": "20",
        "creationTimestamp": "2024-02-01T00:00:00.000+00:00",
        "deprecated": {"state": "DEPRECATED"},
    },
    {
        "name": "db-1",
        "labels": {"role": "db"},
        "diskSizeGb": "30",
        "creationTimestamp": "2024-03-01T00:00:00.000+00:00",
    },
    {"name": "bare", "diskSizeGb": "5", "creationTimestamp": "2023-01-01T00:00:00.000+00:00"},
]


def _names(expression: str) -> list[str]:
    predicate = filters.parse(expression)
    return [image["name"] for image in IMAGES if predicate(image)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("", ["web-1", "web-2", "db-1", "bare"]),
        ('labels.role = "web"', ["web-1", "web-2"]),
        ("labels.role = web", ["web-1", "web-2"]),
        ('(labels.role = "web") AND (labels.version = "2-0-0")', ["web-2"]),
        ('labels.role = "web" labels.version = "1-0-0"', ["web-1"]),  # side by side: AND
        ('labels.role = "db" OR labels.version = "1-0-0"', ["web-1", "db-1"]),
        ('name = "web-1" OR name = "db-1" AND labels.role = "db"', ["db-1"]),  # OR binds tighter
        ("name != web-1", ["web-2", "db-1", "bare"]),
        ("labels.role != web", ["db-1", "bare"]),  # a missing field is "not equal"
        ("labels.version:*", ["web-1", "web-2"]),
        ("labels:role", ["web-1", "web-2", "db-1"]),
        ("NOT deprecated.state:*", ["web-1", "db-1", "bare"]),
        ("-deprecated.state:*", ["web-1", "db-1", "bare"]),
        ('deprecated.state = "DEPRECATED"', ["web-2"]),
        ("name = web-*", ["web-1", "web-2"]),
        ("diskSizeGb > 10", ["web-2", "db-1"]),
        ("diskSizeGb <= 10", ["web-1", "bare"]),
        ('creationTimestamp >= "2024-02-01"', ["web-2", "db-1"]),
        ("name eq 'web-.*'", ["web-1", "web-2"]),
        ("name ne 'web-.*'", ["db-1", "bare"]),
    ],
)
def test_filter_selects(expression: str, expected: list[str]) -> None:
    assert _names(expression) == expected


@pytest.mark.parametrize(
    "expression",
    ['(labels.role = "web"', "labels.role =", "= web", "name eq '('", 'name = "web" )', "labels.role web"],
)
def test_a_filter_that_does_not_parse_is_refused(expression: str) -> None:
    with pytest.raises(filters.FilterError):
        filters.parse(expression)


def test_a_bad_filter_is_a_400_of_the_list() -> None:
    with pytest.raises(ApiError) as caught:
        page("compute#imageList", "projects/p/global/images", IMAGES, {"filter": "labels.role ="})
    assert caught.value.code == 400
    assert caught.value.body()["error"]["errors"][0]["reason"] == "invalid"


@pytest.mark.parametrize(
    ("link", "project", "parts"),
    [
        # Packer 1.6.6's sourceDisk: no "projects/"
        (
            "https://compute.googleapis.com/compute/v1/p1/zones/us-central1-a/disks/d",
            "p1",
            ("zones", "us-central1-a", "disks", "d"),
        ),
        ("projects/p2/zones/us-central1-a/disks/d", "p2", ("zones", "us-central1-a", "disks", "d")),
        ("zones/us-central1-a/disks/d", "default", ("zones", "us-central1-a", "disks", "d")),
        (
            "https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/family/debian-12",
            "debian-cloud",
            ("global", "images", "family", "debian-12"),
        ),
        ("global/networks/default", "default", ("global", "networks", "default")),
    ],
)
def test_links_name_their_project(link: str, project: str, parts: tuple[str, ...]) -> None:
    parsed = links.parse(link, project="default")
    assert (parsed.project, parsed.parts) == (project, parts)


def test_pages_follow_one_another_to_the_end() -> None:
    seen: list[str] = []
    query: dict[str, str] = {"maxResults": "3"}
    pages = 0
    while True:
        result = page("compute#imageList", "projects/p/global/images", IMAGES * 2, query)
        pages += 1
        seen += [item["name"] for item in result.get("items", [])]
        if "nextPageToken" not in result:
            break
        query = {"maxResults": "3", "pageToken": result["nextPageToken"]}
    assert pages == 3
    assert seen == sorted(image["name"] for image in IMAGES * 2)


def test_a_page_is_ordered_by_name_or_newest_first() -> None:
    newest = page("k", "p", IMAGES, {"orderBy": "creationTimestamp desc"})
    assert [i["name"] for i in newest["items"]] == ["db-1", "web-2", "web-1", "bare"]
    with pytest.raises(ApiError):
        page("k", "p", IMAGES, {"orderBy": "diskSizeGb"})
    with pytest.raises(ApiError):
        page("k", "p", IMAGES, {"pageToken": "not a token"})


def test_an_empty_page_has_no_items() -> None:
    assert "items" not in page("k", "p", [], {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice:ssh-ed25519 AAAA alice@host", ("alice", ("ssh-ed25519 AAAA alice@host",))),
        (
            "alice:ssh-ed25519 AAAA\nbob:ssh-rsa BBBB\nalice:ssh-rsa CCCC",
            ("alice", ("ssh-ed25519 AAAA", "ssh-rsa CCCC")),
        ),
        (":ssh-rsa AAAA ", (DEFAULT_USER, ())),  # Packer without a communicator: no user, no login
    ],
)
def test_ssh_keys_name_the_login_user(value: str, expected: tuple[str, tuple[str, ...]]) -> None:
    assert ssh_keys([{"key": "startup-script", "value": ""}, {"key": "ssh-keys", "value": value}]) == expected


@pytest.mark.parametrize(
    "labels", [{"Role": "web"}, {"roLe": "web"}, {"role": "Web"}, {"role": "1.0.0"}, {"-role": "x"}, {"r": "x" * 64}]
)
def test_labels_are_checked_as_gce_does(labels: dict[str, str]) -> None:
    with pytest.raises(ApiError) as caught:
        check_labels(labels)
    assert caught.value.code == 400


def test_valid_labels_pass() -> None:
    assert check_labels({"managed-by": "operator", "version": "1-0-0", "empty": ""}) == {
        "managed-by": "operator",
        "version": "1-0-0",
        "empty": "",
    }


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("compute.googleapis.com", "compute.googleapis.com", True),
        ("compute.googleapis.com", "xcompute.googleapis.com", False),
        ("*.googleapis.com", "compute.googleapis.com", True),
        ("*.blob.core.windows.net", "a.b.blob.core.windows.net", True),
        ("*.googleapis.com", "googleapis.com", False),
        ("*.googleapis.com", "evilgoogleapis.com", False),
    ],
)
def test_edge_routes_match_names_and_suffixes(pattern: str, host: str, expected: bool) -> None:
    assert matches(pattern, host) is expected


# Credentials


@pytest.fixture(scope="module")
def issued() -> tuple[tokens.Tokens, dict[str, str]]:
    store = tokens.Tokens()
    return store, store.create_key("proj", "builder")


def _assertion(key: dict[str, str], **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": key["client_email"],
        "scope": tokens.CLOUD_PLATFORM,
        "aud": tokens.TOKEN_URI,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key["private_key"], algorithm="RS256", headers={"kid": key["private_key_id"]})


def _grant(store: tokens.Tokens, assertion: str) -> dict[str, object]:
    return store.grant({"grant_type": tokens.JWT_BEARER, "assertion": assertion})


def test_a_key_is_a_service_account_key_file(issued: tuple[tokens.Tokens, dict[str, str]]) -> None:
    _, key = issued
    assert key["type"] == "service_account"
    assert key["client_email"] == "builder@proj.iam.gserviceaccount.com"
    assert key["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert key["token_uri"] == tokens.TOKEN_URI


def test_a_signed_assertion_gets_an_access_token_the_api_accepts(
    issued: tuple[tokens.Tokens, dict[str, str]],
) -> None:
    store, key = issued
    granted = _grant(store, _assertion(key))
    assert granted["token_type"] == "Bearer"
    principal = store.authenticate(f"Bearer {granted['access_token']}", host="compute.googleapis.com")
    assert principal.email == key["client_email"]


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://example.com/token"},
        {"iss": "someone@proj.iam.gserviceaccount.com"},
        {"iat": int(time.time()) - 7300, "exp": int(time.time()) - 3700},
        {"exp": int(time.time()) + 7200},  # longer than an hour
        {"scope": None},
    ],
)
def test_a_bad_assertion_is_refused(issued: tuple[tokens.Tokens, dict[str, str]], claims: dict[str, Any]) -> None:
    store, key = issued
    with pytest.raises(tokens.OAuthError) as caught:
        _grant(store, _assertion(key, **claims))
    assert caught.value.error in ("invalid_grant", "invalid_scope")


def test_an_assertion_signed_by_another_key_is_refused(issued: tuple[tokens.Tokens, dict[str, str]]) -> None:
    store, key = issued
    forged = {**tokens.Tokens().create_key("proj", "builder"), "private_key_id": key["private_key_id"]}
    with pytest.raises(tokens.OAuthError, match="Signature"):
        _grant(store, _assertion(forged))


def test_a_deleted_key_signs_nothing() -> None:
    store = tokens.Tokens()
    key = store.create_key("proj", "gone")
    store.delete_keys(key["client_email"])
    with pytest.raises(tokens.OAuthError):
        _grant(store, _assertion(key))


def test_self_signed_jwts_are_accepted_for_the_api(issued: tuple[tokens.Tokens, dict[str, str]]) -> None:
    store, key = issued
    for_api = _assertion(key, aud="https://compute.googleapis.com/", scope=None)
    assert store.authenticate(f"Bearer {for_api}", host="compute.googleapis.com").email == key["client_email"]
    with_scope = _assertion(key, aud=None)
    assert store.authenticate(f"Bearer {with_scope}", host="compute.googleapis.com").may("POST")
    with pytest.raises(ApiError) as caught:
        store.authenticate(f"Bearer {for_api}", host="storage.googleapis.com")
    assert caught.value.code == 401


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ya29.unknown", "Bearer a.b.c"])
def test_requests_without_valid_credentials_are_401(
    issued: tuple[tokens.Tokens, dict[str, str]], header: str | None
) -> None:
    store, _ = issued
    with pytest.raises(ApiError) as caught:
        store.authenticate(header, host="compute.googleapis.com")
    assert caught.value.code == 401
    assert "WWW-Authenticate" in caught.value.headers


def test_a_read_only_scope_cannot_write(issued: tuple[tokens.Tokens, dict[str, str]]) -> None:
    store, key = issued
    granted = _grant(store, _assertion(key, scope=tokens.COMPUTE_READONLY))
    principal = store.authenticate(f"Bearer {granted['access_token']}", host="compute.googleapis.com")
    store.check(principal, "GET")
    with pytest.raises(ApiError) as caught:
        store.check(principal, "POST")
    assert caught.value.code == 403
