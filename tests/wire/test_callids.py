"""Call ids (wire/callids.py): a flow leg's id is a UUID of version 8, an attempt's one of version 4, an
inbound call's Asterisk's own id; the router tells them apart by the id alone."""

from __future__ import annotations

import json
import uuid

from wire.brief import say_message
from wire.callids import is_attempt_call_id, is_flow_call_id, new_flow_call_id


def test_a_flow_call_id_is_a_random_version_8_uuid_in_canonical_form() -> None:
    ids = {new_flow_call_id() for _ in range(200)}
    assert len(ids) == 200
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # canonical: lower case, hyphens (also the ARI channelId)
        assert parsed.version == 8 and parsed.variant == uuid.RFC_4122
        assert is_flow_call_id(value) and is_flow_call_id(value.upper()) and is_flow_call_id(parsed)
        assert not is_attempt_call_id(value)


def test_attempt_inbound_and_other_ids_are_not_flow_ids() -> None:
    attempt = str(uuid.uuid4())
    assert is_attempt_call_id(attempt) and not is_flow_call_id(attempt)
    for other in ("1767650400.17", "", "xfer-abc", str(uuid.uuid1()), None, 8):
        assert not is_flow_call_id(other)
        assert not is_attempt_call_id(other)


def test_say_message_is_the_json_the_media_worker_reads() -> None:
    assert json.loads(say_message('Say "hi"')) == {"type": "say", "text": 'Say "hi"'}


def test_a_caption_rides_in_the_lsbs_and_any_run_of_frames_gives_it_back() -> None:
    from telephony.sim.audio import phrase
    from wire.caption import CaptionReader, embed, read_frame

    text = "My furnace stopped and it is an emergency. Call me back on +1 555 111 2222, I'm Pat Lee."
    pcm = phrase(text, 24000)
    captioned = embed(pcm, text, 24000)
    assert len(captioned) == len(pcm)
    a = memoryview(pcm).cast("h")
    b = memoryview(captioned).cast("h")
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1  # inaudible
    frames = [captioned[i : i + 960] for i in range(0, len(captioned) - 959, 960)]
    count = read_frame(frames[0])[1]  # type: ignore[index]
    assert count > 1
    for start in (0, 1, 7):  # wherever the listener starts
        reader = CaptionReader()
        for frame in frames[start : start + count - 1]:
            reader.feed(frame)
        assert reader.text is None
        reader.feed(frames[start + count - 1])
        assert reader.text == text
    assert read_frame(frames[0][2:] + b"\0\0") is None  # misaligned or altered audio: no caption
    assert read_frame(pcm[:960]) is None  # plain speech carries none
