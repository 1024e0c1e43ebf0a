"""Child processes for the client ledger tests: ``python -m
tests.governance.client_child <mode> <home> <count> [<go-file>]``.

Each makes chat calls through a real `Palyra` on the offline deterministic
provider, whose default ledger lives in ``<home>``. ``burst`` prints each
call's session once the call has returned to it (the parent kills this
process mid-burst); ``write`` waits for the go-file, so that several
children call at once, then makes ``count`` calls, sync and async by turns.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import palyra

CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [
        {"id": "bot", "provider": "local", "pricing": {"input": "1", "output": "2"}}
    ],
}


def main() -> None:
    mode, home, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = palyra.Palyra(CONFIG, home=home)
    user = [{"role": "user", "content": "hello"}]
    if mode == "write":
        while not os.path.exists(sys.argv[4]):
            time.sleep(0.001)
    agent = f"pid{os.getpid()}"
    for i in range(count):
        session = f"{agent}-{i}"
        if i % 2:
            asyncio.run(client.achat(user, agent=agent, session=session))
        else:
            client.chat(user, agent=agent, session=session)
        if mode == "burst":
            print(session, flush=True)
    bad = client.usage.health()
    print("done" if bad.ok else f"unhealthy: {bad.last_error}", flush=True)


if __name__ == "__main__":
    main()
