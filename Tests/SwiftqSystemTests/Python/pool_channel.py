"""The pool channel as the fake pool children of the system tests speak it: length-prefixed JSON frames on fd 3
(a 4-byte big-endian length and a flags byte, then the payload; `ChannelFrame` in swiftq)."""
import json
import os
import struct

CHANNEL = 3


def send_bytes(payload):
    os.write(CHANNEL, struct.pack(">IB", len(payload), 0) + payload)


def send(message):
    send_bytes(json.dumps(message).encode())


def frames():
    """The frames the pool sends, decoded, until the channel closes."""
    buffer = b""
    while True:
        chunk = os.read(CHANNEL, 65536)
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= 5:
            (length,) = struct.unpack(">I", buffer[:4])
            if len(buffer) < 5 + length:
                break
            yield json.loads(buffer[5:5 + length])
            buffer = buffer[5 + length:]
