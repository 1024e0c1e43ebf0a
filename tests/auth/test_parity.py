"""client.auth's sync methods and their ``a``-prefixed async twins match."""

from __future__ import annotations

import inspect

from palyra._auth import Auth


def test_every_method_has_an_async_twin_with_the_same_parameters() -> None:
    methods = {
        name: member
        for name, member in inspect.getmembers(Auth, inspect.isfunction)
        if not name.startswith("_")
    }
    sync = {
        name for name in methods if not name.startswith("a") or name[1:] not in methods
    }
    assert sync == {
        "connect_api_key",
        "start_oauth",
        "complete_oauth",
        "login_oauth",
        "list",
        "get",
        "refresh",
        "revoke",
        "health",
        "set_default",
        "clear_default",
    }
    for name in sync:
        twin = methods["a" + name]
        assert inspect.iscoroutinefunction(twin), name
        assert (
            inspect.signature(twin).parameters
            == inspect.signature(methods[name]).parameters
        ), name
        assert twin.__doc__, name
        assert methods[name].__doc__, name
