"""A session keeps no constraint (--schema / --json-mode are given each time): saving one with a
constraint writes none, and loading it gives a session without one."""

from __future__ import annotations

import json

from falconchat import sessions
from falconchat.conversation import Conversation
from falconchat.types import Constraint, SamplingParams, Turn


def test_a_constraint_is_left_out_of_the_saved_session(tmp_path):
    params = SamplingParams(temperature=0.2, constraint=Constraint("json_schema", {"type": "object"}))
    conversation = Conversation(system="s", turns=[Turn(user="who?", assistant='{"name": "Ada"}')])
    path = tmp_path / "s.json"
    sessions.save(path, sessions.Session(conversation, "smollm2", params))
    assert "constraint" not in json.loads(path.read_text())["params"]
    loaded = sessions.load(path)
    assert loaded.params == SamplingParams(temperature=0.2)  # everything else round-trips
    assert loaded.conversation.turns[0].assistant == '{"name": "Ada"}'
