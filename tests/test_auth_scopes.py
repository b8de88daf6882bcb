"""Docker token-auth scopes: the spec's grammar, names with hosts and ports, merging, grants."""

from __future__ import annotations

import time

import pytest

from ncr_trio.auth.scopes import InvalidScope, Scope, access_entries, format_scope, grant, parse_scope, parse_scopes


def test_repository_scope() -> None:
    assert parse_scope("repository:samalba/my-app:pull,push") == Scope(
        "repository", "samalba/my-app", frozenset({"pull", "push"})
    )


def test_names_with_slashes_and_separators() -> None:
    s = parse_scope("repository:team/sub.group/my__app-x:pull")
    assert s.name == "team/sub.group/my__app-x"


def test_host_with_port_is_part_of_the_name() -> None:
    s = parse_scope("repository:localhost:5000/team/app:pull,push")
    assert (s.type, s.name, s.actions) == ("repository", "localhost:5000/team/app", frozenset({"pull", "push"}))
    assert parse_scope("repository:Registry.Example.com:443/app:*").name == "Registry.Example.com:443/app"


def test_catalog_and_wildcard() -> None:
    assert parse_scope("registry:catalog:*") == Scope("registry", "catalog", frozenset({"*"}))


def test_resource_class() -> None:
    s = parse_scope("repository(plugin):vieux/sshfs:pull")
    assert (s.type, s.resource_class, s.name) == ("repository", "plugin", "vieux/sshfs")
    assert format_scope(s) == "repository(plugin):vieux/sshfs:pull"


def test_format_round_trips_with_sorted_actions() -> None:
    assert format_scope(parse_scope("repository:localhost:5000/a:push,delete,pull")) == (
        "repository:localhost:5000/a:delete,pull,push"
    )


def test_repeated_and_space_separated_parameters_merge_duplicates() -> None:
    scopes = parse_scopes(
        ["repository:a:pull repository:b:push", "repository:a:push", "registry:catalog:*", "repository(plugin):a:pull"]
    )
    assert scopes == [
        Scope("repository", "a", frozenset({"pull", "push"})),
        Scope("repository", "b", frozenset({"push"})),
        Scope("registry", "catalog", frozenset({"*"})),
        Scope("repository", "a", frozenset({"pull"}), "plugin"),
    ]


def test_empty_parameters_give_no_scopes() -> None:
    assert parse_scopes([]) == []
    assert parse_scopes(["", "  "]) == []


@pytest.mark.parametrize(
    "bad",
    [
        "repository",
        "repository:app",
        "repository::pull",
        "repository:app:",
        "repository:app:pull,",
        "repository:app:Pull",
        "repository:App:pull",
        "repository:app:v1:pull",  # ':' outside a host's port
        "repository:localhost:port/app:pull",
        "repository:/app:pull",
        "repository:app/:pull",
        "repository:a//b:pull",
        "Repository:app:pull",
        "repository(:app:pull",
        "repository(plugin:app:pull",
        ":app:pull",
        "repository:app:pu ll",
        "repository:" + "a" * 2000 + ":pull",
    ],
)
def test_bad_scopes_are_refused(bad: str) -> None:
    with pytest.raises(InvalidScope) as info:
        parse_scopes([bad])
    assert isinstance(info.value, ValueError)
    assert "invalid scope" in str(info.value)


def test_a_near_miss_name_fails_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(InvalidScope):
        parse_scope("repository:" + "a-" * 400 + "A:pull")
    assert time.perf_counter() - start < 0.5


def test_grant_is_the_intersection() -> None:
    requested = parse_scopes(["repository:team/app:pull,push,delete repository:other:pull registry:catalog:*"])
    allowed = {"team/app": {"pull", "push"}, "other": set[str](), "catalog": {"*"}}
    granted = grant(requested, lambda s: allowed[s.name])
    assert granted == [
        Scope("repository", "team/app", frozenset({"pull", "push"})),
        Scope("registry", "catalog", frozenset({"*"})),
    ]
    assert access_entries(granted) == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]


def test_requested_wildcard_is_not_expanded_and_allowed_wildcard_covers_all() -> None:
    requested = parse_scopes(["repository:a:* repository:b:pull,push"])
    assert grant(requested, lambda s: {"pull", "push"}) == [Scope("repository", "b", frozenset({"pull", "push"}))]
    assert grant(requested, lambda s: {"*"}) == requested


def test_access_entry_carries_the_class() -> None:
    assert access_entries([parse_scope("repository(plugin):a:pull")]) == [
        {"type": "repository", "name": "a", "actions": ["pull"], "class": "plugin"}
    ]
