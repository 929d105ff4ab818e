"""Records the bytes paho-mqtt (Python) sends for a scripted MQTT session, once per protocol version.

A tiny TCP server on 127.0.0.1 accepts one client at a time, splits what it reads into control packets (fixed
header and remaining length only), answers just enough for the client to go on (CONNACK, SUBACK, PUBACK, PUBREC,
PUBCOMP, UNSUBACK, PINGRESP, written by hand below) and appends every octet the client sent to
`<name>.bin`. Run with a Python that has paho-mqtt 2.x:

    python3 -m venv target/mqtt-venv && target/mqtt-venv/bin/pip install paho-mqtt
    target/mqtt-venv/bin/python io/tests/mqtt-vectors/capture.py io/tests/mqtt-vectors

The values the script gives the client (client ids, will, credentials, properties, topics, payloads) are the
ones io/tests/mqtt_vectors.rs expects to decode.
"""

import socket
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions


def read_packet(conn, buf):
    """Returns (packet bytes, rest) once buf holds a whole packet, reading more as needed; None at EOF."""
    while True:
        if len(buf) >= 2:
            length, mult, i = 0, 1, 1
            while i < len(buf) and i <= 4:
                length += (buf[i] & 0x7F) * mult
                mult *= 128
                if buf[i] & 0x80 == 0:
                    end = i + 1 + length
                    if len(buf) >= end:
                        return buf[:end], buf[end:]
                    break
                i += 1
        data = conn.recv(4096)
        if not data:
            return None
        buf += data


def serve(listener, path, v5):
    conn, _ = listener.accept()
    captured = b""
    buf = b""
    while True:
        got = read_packet(conn, buf)
        if got is None:
            break
        packet, buf = got
        captured += packet
        kind = packet[0] >> 4
        if kind == 1:  # CONNECT
            conn.sendall(b"\x20\x03\x00\x00\x00" if v5 else b"\x20\x02\x00\x00")
        elif kind == 3:  # PUBLISH
            qos = (packet[0] >> 1) & 3
            i = 1
            while packet[i] & 0x80:
                i += 1
            i += 1
            topic_len = int.from_bytes(packet[i:i + 2], "big")
            pid = packet[i + 2 + topic_len:i + 4 + topic_len]
            if qos == 1:
                conn.sendall(b"\x40\x02" + pid)
            elif qos == 2:
                conn.sendall(b"\x50\x02" + pid)
        elif kind == 6:  # PUBREL
            conn.sendall(b"\x70\x02" + packet[2:4])
        elif kind == 8:  # SUBSCRIBE: one granted QoS per filter (count them roughly: answer QoS 0 for each)
            pid = packet[2:4] if packet[1] < 0x80 else packet[3:5]
            count = sub_count(packet, v5)
            body = pid + (b"\x00" if v5 else b"") + bytes([0] * count)
            conn.sendall(bytes([0x90, len(body)]) + body)
        elif kind == 10:  # UNSUBSCRIBE
            pid = packet[2:4]
            body = pid + (b"\x00\x00" if v5 else b"")
            conn.sendall(bytes([0xB0, len(body)]) + body)
        elif kind == 12:  # PINGREQ
            conn.sendall(b"\xd0\x00")
        elif kind == 14:  # DISCONNECT
            break
    conn.close()
    with open(path, "wb") as f:
        f.write(captured)


def sub_count(packet, v5):
    """Number of topic filters in a SUBSCRIBE (short packets only)."""
    i = 1
    while packet[i] & 0x80:
        i += 1
    i += 1 + 2
    if v5:
        props = packet[i]
        i += 1 + props
    n = 0
    while i < len(packet):
        length = int.from_bytes(packet[i:i + 2], "big")
        i += 2 + length + 1
        n += 1
    return n


def session(out_dir, v5):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    name = "paho-v5.bin" if v5 else "paho-v311.bin"
    server = threading.Thread(target=serve, args=(listener, f"{out_dir}/{name}", v5))
    server.start()

    protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kreisel-capture",
                         protocol=protocol, clean_session=None if v5 else False)
    client.username_pw_set("alice", "s3cr\u00e9t")
    if v5:
        will_props = Properties(PacketTypes.WILLMESSAGE)
        will_props.WillDelayInterval = 30
        will_props.ContentType = "text/plain"
        will_props.UserProperty = [("why", "gone")]
        client.will_set("devices/d1/status", b"offline", qos=1, retain=True, properties=will_props)
        connect_props = Properties(PacketTypes.CONNECT)
        connect_props.SessionExpiryInterval = 3600
        connect_props.ReceiveMaximum = 20
        connect_props.MaximumPacketSize = 65536
        connect_props.TopicAliasMaximum = 8
        connect_props.UserProperty = [("site", "lab"), ("site", "lab2")]
        client.connect("127.0.0.1", port, keepalive=30, clean_start=True, properties=connect_props)
    else:
        client.will_set("devices/d1/status", b"offline", qos=1, retain=True)
        client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    time.sleep(0.3)

    if v5:
        sub_props = Properties(PacketTypes.SUBSCRIBE)
        sub_props.SubscriptionIdentifier = 7
        client.subscribe([
            ("sensors/+/temp", SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True,
                                                retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)),
            ("alerts/#", SubscribeOptions(qos=2)),
        ], properties=sub_props)
    else:
        client.subscribe([("sensors/+/temp", 1), ("alerts/#", 2)])
    time.sleep(0.2)

    pub_props = None
    if v5:
        pub_props = Properties(PacketTypes.PUBLISH)
        pub_props.PayloadFormatIndicator = 1
        pub_props.MessageExpiryInterval = 60
        pub_props.ResponseTopic = "replies/d1"
        pub_props.CorrelationData = b"\x01\x02\x03"
        pub_props.ContentType = "application/json"
        pub_props.UserProperty = [("unit", "C")]
    client.publish("sensors/d1/temp", b'{"t":21.5}', qos=0, retain=False, properties=pub_props)
    time.sleep(0.1)
    client.publish("sensors/d1/temp", b'{"t":21.6}', qos=1, retain=True)
    time.sleep(0.2)
    client.publish("sensors/d1/temp", b'{"t":21.7}', qos=2)
    time.sleep(0.3)
    client.unsubscribe(["sensors/+/temp", "alerts/#"])
    time.sleep(0.2)
    client._ping_t = 0
    client._send_pingreq()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()
    server.join(timeout=5)
    listener.close()


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    session(out, v5=False)
    session(out, v5=True)
    print("captured into", out)
