"""palyra's admin console under uvicorn, driven over its JSON admin API.

It starts `/v1` and the console on a free loopback port, makes an admin
token, makes a few calls, then signs in as a browser would (a session
cookie and a CSRF token), reads the usage totals, adds a budget, reads the
overview page, and stops. With ``--serve`` it keeps serving instead, so that
you can open the console in your browser (it prints the address and the
token, which is shown only then). The offline deterministic provider
answers, so no key is needed. Needs the server extra: ``pip install
'palyra[server]'``.

Run it with ``python examples/console_admin.py`` (or ``--serve``).
"""

from __future__ import annotations

import re
import socket
import sys
import tempfile
import threading
import time

import httpx

import palyra
from palyra.asgi import create_app

CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [
        {"id": "assistant", "provider": "local", "pricing": {"input": 1, "output": 2}}
    ],
}


def main(argv: list[str] | None = None) -> None:
    """Serve, administer over HTTP, stop (or keep serving with --serve)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        import uvicorn
    except ImportError:
        sys.exit("this example needs uvicorn: pip install 'palyra[server]'")

    home = tempfile.mkdtemp(prefix="palyra-console-")  # tokens and the ledger
    client = palyra.Palyra(CONFIG, home=home)
    info, admin = client.tokens.create("ops", scopes=["admin"])
    print(f"admin token {info.id} with scopes {list(info.scopes)}")
    for question in ("Hello", "What is palyra?", "Goodbye"):
        client.chat([{"role": "user", "content": question}], agent="example")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(client, console=True)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}/console"
    try:
        if "--serve" in args:
            print(f"open {base}/ and sign in with: {admin}")
            print("Ctrl-C stops it")
            thread.join()
            return
        with httpx.Client(base_url=base) as http:
            signed = http.post("/login", json={"token": admin})
            csrf = {"x-palyra-csrf": signed.json()["csrf"]}
            print("session cookie:", "palyra_console" in http.cookies)
            totals = http.get("/v1/usage/totals", params={"by": "agent"}).json()
            print("calls by agent:", [(t["key"][0], t["calls"]) for t in totals])
            budget = {"id": "daily", "window": "day", "hard_limit": "5"}
            refused = http.post("/v1/budgets", json=budget)  # no CSRF token
            print("without CSRF:", refused.status_code)
            added = http.post("/v1/budgets", json=budget, headers=csrf)
            print("budget added:", added.json()["id"])
            page = http.get("/").text
            cards = re.findall(r'<div class="label">([^<]+)</div>', page)
            print("overview shows:", cards)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        client.close()


if __name__ == "__main__":
    main()
