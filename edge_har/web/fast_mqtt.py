"""paho's client with the per-message costs of a high-rate subscriber taken out.

paho reads a packet with three or more ``recv`` system calls (the command byte, each byte of the remaining
length, the body) after a ``select`` each, and queues every PUBACK as its own packet with a wake-up byte
to its network thread: at tens of thousands of QoS 1 messages a second that is most of a core. This
client (:func:`speed_up` turns the client ``make_client`` built into one, keeping its settings, TLS and
callbacks) reads the socket in large chunks and cuts packets out of its buffer, reading until the socket
has nothing more (or a bounded number of chunks); and :func:`ack_many` sends a batch's PUBACKs as one write. What goes over the wire is
unchanged: the same packets, in the same order.
"""

from __future__ import annotations

import struct
from typing import Any

from paho.mqtt.client import MQTT_LOG_ERR, MQTTErrorCode, MQTTMessage, MQTTv5, mqtt_ms_invalid, time_func

from edge_har.mqtt.client import EdgeHarClient

__all__ = ["BufferedClient", "ack_many", "speed_up"]

RECV_BYTES = 256 * 1024
# Socket reads per loop_read: a flood that never lets the socket run dry still returns to paho's loop
# (its writes: PUBACKs, PINGREQ) after this many chunks (about 4 MiB, a few thousand messages).
MAX_REFILLS = 16
_PUBACK = 0x40
_PUBACK_PACKET = struct.Struct("!BBH")


class BufferedClient(EdgeHarClient):
    """An :class:`EdgeHarClient` that reads whole chunks of the socket and parses packets from them."""

    _rbuf: bytearray
    _rpos: int
    _refills: int = 0

    def _reset_buffer(self) -> None:
        self._rbuf = bytearray()
        self._rpos = 0

    def _sock_close(self) -> None:
        self._reset_buffer()  # what a closed connection left half read belongs to no later one
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Every whole packet the socket holds, up to :data:`MAX_REFILLS` chunks (paho reads one per ``select``).

        What is left in the buffer is a part of a packet, whose rest makes the socket readable again.
        """
        self._refills = 0
        while True:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _packet_read(self) -> MQTTErrorCode:
        """The next packet from the buffer (refilled from the socket when it holds no whole one), handled."""
        if not hasattr(self, "_rbuf"):
            self._reset_buffer()
        while True:
            frame = _frame(self._rbuf, self._rpos)
            if frame is _BROKEN:
                return MQTTErrorCode.MQTT_ERR_PROTOCOL  # a remaining length over four bytes
            if frame is not None:
                break
            if self._rpos:
                del self._rbuf[: self._rpos]
                self._rpos = 0
            if self._refills >= MAX_REFILLS:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            self._refills += 1
            try:
                data = self._sock_recv(RECV_BYTES)
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                self._easy_log(MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not data:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            self._rbuf += data
            with self._msgtime_mutex:
                self._last_bytes_received = time_func()
        command, start, end = frame
        self._rpos = end
        self._in_packet = {
            "command": command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": end - start,
            "packet": self._rbuf[start:end],  # a copy, as paho hands over
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc = self._packet_handle()
        except Exception as exc:  # paho's MalformedPacket, as paho's own reader treats it
            if type(exc).__name__ != "MalformedPacket":
                raise
            self._easy_log(MQTT_LOG_ERR, "received a malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        return rc

    def _handle_publish(self) -> MQTTErrorCode:
        """A QoS 0 or 1 PUBLISH without MQTT 5 properties decoded here; anything else by paho.

        paho builds a ``Properties`` object for every MQTT 5 message and a ``threading.Condition`` for
        every received message's ``info`` (used only for outgoing ones); neither is read by a subscriber
        that has no properties to read. ``message.properties`` and ``message.info`` are None here.
        """
        command = self._in_packet["command"]
        packet = self._in_packet["packet"]
        qos = (command & 0x06) >> 1
        size = len(packet)
        if qos > 1 or size < 2:
            return super()._handle_publish()
        end = 2 + ((packet[0] << 8) | packet[1])
        pos = end + (2 if qos else 0)
        v5 = self._protocol == MQTTv5
        if pos + v5 > size or (v5 and packet[pos] != 0) or (not v5 and end == 2):
            return super()._handle_publish()  # properties to decode, or a packet paho refuses
        message = MQTTMessage.__new__(MQTTMessage)
        message.mid = (packet[end] << 8) | packet[end + 1] if qos else 0
        message._topic = bytes(packet[2:end])
        message.dup = bool(command & 0x08)
        message.qos = qos
        message.retain = bool(command & 0x01)
        message.payload = packet[pos + v5 :]
        message.state = mqtt_ms_invalid
        message.info = None  # type: ignore[assignment]
        message.properties = None
        message.timestamp = time_func()
        self._handle_on_message(message)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(message.mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message: Any) -> None:
        """paho's dispatch without its per-message topic matching when no per-topic callback is set."""
        if self._on_message_filtered._root._children or self.on_message is None:
            super()._handle_on_message(message)
            return
        with self._in_callback_mutex:
            self.on_message(self, self._userdata, message)


_BROKEN = (0, 0, 0)


def _frame(buf: bytearray, pos: int) -> Any:
    """(command, body start, body end) of the whole packet at ``pos``; None when it is not all there yet,
    :data:`_BROKEN` when its remaining length runs over the four bytes MQTT allows."""
    size = len(buf)
    if size - pos < 2:
        return None
    length = 0
    mult = 1
    i = pos + 1
    while True:
        if i > pos + 4:
            return _BROKEN
        if i >= size:
            return None
        byte = buf[i]
        length += (byte & 0x7F) * mult
        mult *= 128
        i += 1
        if not byte & 0x80:
            break
    if size < i + length:
        return None
    return buf[pos], i, i + length


def speed_up(client: EdgeHarClient) -> BufferedClient:
    """``client`` as a :class:`BufferedClient` (same object, same settings); call before it connects."""
    client.__class__ = BufferedClient
    assert isinstance(client, BufferedClient)
    client._reset_buffer()
    return client


def ack_many(client: Any, mids: list[int]) -> None:
    """PUBACK each QoS 1 message id in ``mids``, in order, as one write (safe from any thread, as ``ack`` is)."""
    if not mids:
        return
    if not isinstance(client, BufferedClient):
        for mid in mids:
            client.ack(mid, 1)
        return
    packet = b"".join([_PUBACK_PACKET.pack(_PUBACK, 2, mid) for mid in mids])
    client._packet_queue(_PUBACK, packet, 0, 1)
