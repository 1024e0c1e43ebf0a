"""Who a call is for: agents, sessions, principals and tags, offline.

Two agents share one client through `Palyra.bind` views: same connections,
breakers and scripted backend, each with its own defaults. A call's own
values win over the bound ones, tags merge, and a bad value is refused with a
typed error naming the field before anything is sent.
"""

from __future__ import annotations

import palyra


def main() -> None:
    """Run the tour."""
    client = palyra.Palyra()  # the offline deterministic provider
    planner = client.bind(agent="planner", tags={"team": "travel"})
    writer = client.bind(agent="writer", tags={"team": "travel"})
    print(repr(planner))

    plan = planner.chat(
        [{"role": "user", "content": "Plan a day in Lisbon"}],
        session="trip-7",
        principal="user:1234",
    )
    draft = writer.chat(
        [{"role": "user", "content": "Write it up"}],
        session="trip-7",
        principal="user:1234",
        tags={"step": "draft"},
    )
    for reply in (plan, draft):
        who = reply.palyra
        assert who is not None
        print(f"{who.agent:8} session={who.session} principal={who.principal}", end="")
        print(f" tags={who.tags}")

    # A view of a view: the writer's review step, in the same session.
    review = writer.bind(session="trip-7", tags={"step": "review"})
    with review.stream([{"role": "user", "content": "Check the draft"}]) as stream:
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    print(f"streamed {text!r} for {stream.palyra.agent}, tags {stream.palyra.tags}")

    # Every view shares the backend: the three calls went to the same one.
    print("requests seen by the shared backend:", len(client.deterministic().history))

    try:
        client.chat([{"role": "user", "content": "hi"}], agent="not valid!")
    except palyra.InvalidRequestError as exc:
        print(f"refused: {exc}")


if __name__ == "__main__":
    main()
