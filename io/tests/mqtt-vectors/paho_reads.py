"""Plays the router packets kreisel's encoder wrote (router-v311.bin, router-v5.bin) to paho-mqtt and checks that
paho reads each of them as the router meant it.

A small TCP server on 127.0.0.1 splits the file into packets by their fixed headers and sends them when the
client's packets call for them: CONNACK after CONNECT; SUBACK and the three PUBLISHes after SUBSCRIBE; PUBREL
after the client's PUBREC; UNSUBACK after UNSUBSCRIBE; PINGRESP and (MQTT 5) DISCONNECT after PINGREQ. The client records
what its callbacks receive; the script compares that with what io/tests/mqtt_vectors.rs encoded and exits
non-zero on any difference. Run with a Python that has paho-mqtt 2.x:

    target/mqtt-venv/bin/python io/tests/mqtt-vectors/paho_reads.py io/tests/mqtt-vectors
"""

import socket
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def split_packets(data):
    packets, i = [], 0
    while i < len(data):
        length, mult, j = 0, 1, i + 1
        while True:
            length += (data[j] & 0x7F) * mult
            mult *= 128
            j += 1
            if data[j - 1] & 0x80 == 0:
                break
        packets.append(data[i:j + length])
        i = j + length
    return packets


def read_packet(conn, buf):
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


def serve(listener, router, seen):
    conn, _ = listener.accept()
    buf = b""
    # CONNACK; SUBACK + 3 PUBLISH; PUBREL; UNSUBACK; PINGRESP (+ DISCONNECT).
    plan = {1: router[0:1], 8: router[1:5], 5: router[5:6], 10: router[6:7], 12: router[7:]}
    while True:
        got = read_packet(conn, buf)
        if got is None:
            break
        packet, buf = got
        kind = packet[0] >> 4
        seen.append(kind)
        for reply in plan.get(kind, []):
            conn.sendall(reply)
        if kind == 12 and len(router) == 9:
            time.sleep(0.3)
            break
        if kind == 14:
            break
    conn.close()


def run(path, v5):
    router = split_packets(open(path, "rb").read())
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen = []
    server = threading.Thread(target=serve, args=(listener, router, seen))
    server.start()

    got = {"messages": []}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="",
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)

    def on_connect(c, userdata, flags, reason, properties):
        got["connack"] = (flags.session_present, reason.value, props(properties))
        c.subscribe([("sensors/+/temp", 1), ("alerts/#", 2)])

    def on_subscribe(c, userdata, mid, reasons, properties):
        got["suback"] = (mid, [r.value for r in reasons], props(properties))

    def on_message(c, userdata, msg):
        got["messages"].append((msg.topic, msg.payload, msg.qos, msg.retain,
                                props(getattr(msg, "properties", None))))
        if len(got["messages"]) == 3:
            threading.Timer(0.2, lambda: c.unsubscribe(["sensors/+/temp", "alerts/#"])).start()

    def on_unsubscribe(c, userdata, mid, reasons, properties):
        got["unsuback"] = (mid, [r.value for r in reasons])
        c._send_pingreq()
        if not v5:
            threading.Timer(0.2, c.disconnect).start()

    def on_disconnect(c, userdata, flags, reason, properties):
        got["disconnect"] = (reason.value, props(properties))
        done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_unsubscribe = on_unsubscribe
    client.on_disconnect = on_disconnect
    client.connect("127.0.0.1", listener.getsockname()[1], keepalive=60)
    client.loop_start()
    done.wait(10)
    client.loop_stop()
    server.join(5)
    listener.close()
    return got, seen


def props(properties):
    if properties is None:
        return {}
    out = {}
    for name in ["ReceiveMaximum", "TopicAliasMaximum", "AssignedClientIdentifier", "MaximumPacketSize",
                 "ServerKeepAlive", "RetainAvailable", "UserProperty", "ReasonString", "SubscriptionIdentifier",
                 "ContentType", "PayloadFormatIndicator", "MessageExpiryInterval", "ResponseTopic",
                 "CorrelationData", "TopicAlias"]:
        if hasattr(properties, name):
            out[name] = getattr(properties, name)
    return out


def expect(label, got, want, failures):
    status = "ok" if got == want else "DIFFERS"
    print(f"  {label}: {status}: {got!r}")
    if got != want:
        print(f"    expected {want!r}")
        failures.append(label)


def main(directory):
    failures = []
    for name, v5 in [("router-v311.bin", False), ("router-v5.bin", True)]:
        print(name)
        got, seen = run(f"{directory}/{name}", v5)
        expect("client packets (types)", seen,
               [1, 8, 4, 5, 7, 10, 12] + ([] if v5 else [14]), failures)
        connack_props = {"ReceiveMaximum": 10, "TopicAliasMaximum": 4, "AssignedClientIdentifier": "auto-7f3a",
                         "MaximumPacketSize": 1 << 20, "ServerKeepAlive": 20, "RetainAvailable": 1,
                         "UserProperty": [("server", "kreisel")]} if v5 else {}
        expect("CONNACK", got.get("connack"), (False, 0, connack_props), failures)
        expect("SUBACK", got.get("suback"), (1, [1, 2], {"ReasonString": "granted"} if v5 else {}), failures)
        first = {"SubscriptionIdentifier": [7], "UserProperty": [("unit", "C")], "ContentType": "application/json",
                 "PayloadFormatIndicator": 1, "MessageExpiryInterval": 30, "ResponseTopic": "replies/x",
                 "CorrelationData": b"\x01\x02"} if v5 else {}
        expect("PUBLISH QoS 0", got["messages"][0:1],
               [("sensors/d1/temp", b'{"t":1}', 0, False, first)], failures)
        expect("PUBLISH QoS 1 retained", got["messages"][1:2],
               [("sensors/d2/temp", b'{"t":2}', 1, True, {"SubscriptionIdentifier": [7]} if v5 else {})], failures)
        expect("PUBLISH QoS 2 (PUBREL completes it)", got["messages"][2:3],
               [("alerts/fire", b"!", 2, False,
                 {"SubscriptionIdentifier": [8], "TopicAlias": 1} if v5 else {})], failures)
        expect("UNSUBACK", got.get("unsuback"), (2, [0, 17] if v5 else []), failures)
        if v5:
            expect("DISCONNECT", got.get("disconnect"), (0x8B, {"ReasonString": "maintenance"}), failures)
    if failures:
        print("FAILED:", ", ".join(failures))
        sys.exit(1)
    print("paho-mqtt read every router packet as encoded")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
