"""The loop whose instructions ``bench/ab.py --instructions`` counts.

``python bench/icount.py SUBJECT N``: after a warm-up, N calls of one subject
over ``httpx.MockTransport`` (no socket): ``palyra`` (`Palyra.chat`) or
``raw`` (``httpx.Client.post`` and ``.json()``). Run under ``valgrind
--tool=callgrind`` twice with different N, the difference of the totals over
the difference of N is the instructions of one call: a count that does not
move with the machine's load, unlike a timing.
"""

from __future__ import annotations

import json
import sys

import httpx

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name three primary colours."},
]
REPLY = json.dumps(
    {
        "id": "chatcmpl-icount",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Red, yellow, blue."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }
).encode()
URL = "http://127.0.0.1:9/v1"


def main() -> None:
    """Run the subject's warm-up, then N calls."""
    subject, calls = sys.argv[1], int(sys.argv[2])
    headers = {"content-type": "application/json", "x-request-id": "req_icount"}
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers=headers, content=REPLY)
    )
    if subject == "raw":
        http = httpx.Client(transport=transport)
        payload = {"model": "m", "messages": MESSAGES}

        def call() -> object:
            return http.post(URL + "/chat/completions", json=payload).json()

    else:
        import palyra

        config = {
            "providers": [
                {"id": "up", "kind": "openai", "base_url": URL, "auth_header": "none"}
            ],
            "models": [{"id": "m", "provider": "up", "context_window": 128000}],
        }
        # No ledger: its writer thread drains the spool on its own schedule,
        # which would make the count depend on timing (the ledger's cost is
        # bench/governance.py's and bench/ledger.py's to measure).
        client = palyra.Palyra(config, transport=transport, ledger=False)

        def call() -> object:
            return client.chat(MESSAGES)

    for _ in range(100):
        call()
    for _ in range(calls):
        call()


if __name__ == "__main__":
    main()
