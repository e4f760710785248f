"""Webhook signatures: a known vector (computed independently with
``printf '1700000000.{"id":"evt_1","type":"call.ended"}' | openssl dgst -sha256 -hmac whsec_test_vector``),
and the receiver-side check refuses a tampered body, another secret and an old timestamp."""

from __future__ import annotations

from integrations.signing import secret_generate, signature, signature_header, verify

SECRET = "whsec_test_vector"
BODY = b'{"id":"evt_1","type":"call.ended"}'
EXPECTED = "a905c1bc1e888868f51613441a28a1c5fa8edf9a81d8680cafd430b38a1aef53"


def test_known_vector() -> None:
    assert signature(SECRET, 1700000000, BODY) == EXPECTED
    assert signature_header(SECRET, 1700000000, BODY) == f"t=1700000000,v1={EXPECTED}"


def test_verify_accepts_the_signature_and_refuses_tampering_other_secrets_and_replays() -> None:
    header = signature_header(SECRET, 1700000000, BODY)
    assert verify(SECRET, header, BODY, now=1700000100)
    assert not verify(SECRET, header, BODY + b" ", now=1700000100)
    assert not verify("whsec_other", header, BODY, now=1700000100)
    assert not verify(SECRET, header, BODY, now=1700000000 + 301)  # outside the 5-minute window
    assert not verify(SECRET, "v1=" + EXPECTED, BODY, now=1700000000)  # no timestamp
    assert not verify(SECRET, "t=abc,v1=" + EXPECTED, BODY, now=1700000000)
    # A receiver mid-rotation may get several v1 values: one valid is enough.
    assert verify(SECRET, f"t=1700000000,v1={'0' * 64},v1={EXPECTED}", BODY, now=1700000000)


def test_secrets_are_random_and_prefixed() -> None:
    first, second = secret_generate(), secret_generate()
    assert first.startswith("whsec_") and len(first) > 40 and first != second
