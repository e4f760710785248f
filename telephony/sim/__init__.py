"""A PBX simulator that behaves like Asterisk 22.10.1 over ARI (REST + events websocket) and AudioSocket.

It stands in for Asterisk in tests, in the demo and in load benchmarks: scripted callees (answer, busy,
no answer, voicemail, DTMF, ...) follow a plan, event sequences match the recorded traces, and an
inspection API under /sim tells what each simulated party heard and did. It imports nothing else of the
project except the AudioSocket codec, ``wire.audiosocket`` (standard library only), so that the wire
format is written once for the simulator and the media worker.
Run it with ``python -m telephony.sim --help``.
"""
