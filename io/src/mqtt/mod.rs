//! MQTT 3.1.1 and MQTT 5, sans socket: the packet layer of the coming MQTT listener.
//!
//! Everything here is a pure function over bytes the caller has read, in the style of [`crate::rawsocket`] and
//! [`crate::websocket`]: nothing does I/O, nothing panics on peer input, and decoding allocates nothing.
//!
//! * [`Decoder::decode`] reads one complete control packet from the front of a buffer of unread input:
//!   `Ok(None)` while it is incomplete (nothing consumed), `Ok(Some((consumed, packet)))` with a [`Packet`] that
//!   borrows the buffer (topics, client ids, user names, payloads, property values are slices of it), or a
//!   [`DecodeError`] whose [`DecodeError::action`] is what the spec prescribes (MQTT 5: DISCONNECT, or CONNACK
//!   before the connection is accepted, with the reason code; 3.1.1: close, or CONNACK 0x01 for an unacceptable
//!   protocol level). The packet size is checked against the caller's maximum from the fixed header alone, so
//!   an oversize packet is refused before its body is buffered. Every field is checked before the packet is
//!   returned: fixed-header flags, remaining length (at most 4 octets, minimal in MQTT 5), UTF-8 (well-formed,
//!   no U+0000), property identifiers allowed per packet and not repeated, property values, packet ids,
//!   QoS, reason codes, topic names and filters.
//! * MQTT 5 properties ([`Properties`]) stay a validated slice of the packet and are read lazily: a packet
//!   holds no vector, whatever number of user properties it carries (their number and size are bounded by the
//!   packet size the caller allows). The same goes for a SUBSCRIBE's filters ([`Subscriptions`]) and an
//!   UNSUBSCRIBE's ([`Filters`]). Packets the router builds use the same types over slices of its own.
//! * [`encode`] writes any packet in either version into a caller's `Vec<u8>` and allocates nothing else;
//!   [`encode_publish_header`] writes a PUBLISH without its payload so that one payload can be shared by many
//!   subscribers (see there); [`encoded_len`] measures a packet before sending it to a peer with a Maximum Packet
//!   Size. The encoder checks a packet by the decoder's rules first: what it writes decodes.
//! * [`topic`]: topic name and filter validation, MQTT matching, and the mapping to WAMP URIs and back.
//!
//! # What the session layer needs from this module (and what it must do itself)
//!
//! The MQTT session layer (one per connection, between the socket and the engine) will:
//! * Keep the unread input in the connection's buffer and call [`Decoder::decode`] until `Ok(None)`,
//!   consuming `consumed` octets each time. Before the CONNECT it decodes with [`Side::Client`] and a guessed
//!   version (a CONNECT is read by its own protocol level); the first packet must be a CONNECT and a second
//!   one is a protocol error (0x82), which is state this module does not keep. After the CONNECT it uses
//!   `connect.version`. `max_packet_size` is the router's limit, which an MQTT 5 CONNACK announces as Maximum
//!   Packet Size.
//! * On a [`DecodeError`], follow [`DecodeError::action`]: send the CONNACK or DISCONNECT it names (built with
//!   [`encode`]) and close. Before a CONNECT was decoded, `error.version` is the caller's guess unless the error
//!   came from the CONNECT's body (then it is the CONNECT's level): an error in the first packet's fixed header
//!   (wrong type, flags, size) is best answered by closing without a reply, which MQTT 5 allows. MQTT 5 lets the receiver answer some errors with a negative acknowledgement instead
//!   (e.g. PUBACK 0x90 for a topic name it refuses); those are policy, decided after a successful decode.
//! * Handle what depends on state or policy: client identifier rules (3.1.1: an empty id with clean session 0
//!   is refused with CONNACK 0x02), authentication (CONNECT username/password, MQTT 5 AUTH exchanges with
//!   the authentication method and data), keep-alive timeouts (1.5 x keep alive), the in-flight windows
//!   (Receive Maximum both ways, packet id reuse, the QoS 2 PUBREC/PUBREL/PUBCOMP state per packet id), topic
//!   aliases (a table per direction, bounded by Topic Alias Maximum; an alias above the maximum is 0x94), will
//!   messages (published on an unclean close, after the will delay), session expiry, retained messages
//!   (Retain Handling, Retain As Published), No Local, the payload format indicator (0x99 if the server
//!   chooses to check UTF-8 payloads), and the peer's Maximum Packet Size for what it sends ([`encoded_len`];
//!   MQTT 5 says to drop a PUBLISH that does not fit, after leaving out reason strings and user properties).
//! * Map topics with [`topic::name_to_uri`], [`topic::filter_to_wamp`] (one MQTT subscription can be two WAMP
//!   subscriptions) and [`topic::uri_to_name`], and refuse what does not map (SUBACK 0x8F or 0x90 in MQTT 5,
//!   0x80 in 3.1.1). Overlapping MQTT subscriptions of one client may reach it once per WAMP subscription; MQTT
//!   5 allows that (with each subscription identifier) or one copy at the highest QoS.
//! * Deliver events: build a [`Publish`] whose topic is the mapped URI and whose payload is the event's bytes
//!   (the WAMP payload as the session layer chooses to represent it in MQTT), write its header per subscriber
//!   with [`encode_publish_header`] and queue the shared payload after it, as the outboxes do with WebSocket
//!   and RawSocket headers. Subscribers that get the same header (QoS 0, same version, no subscription
//!   identifier or topic alias of their own) can share one header too. A PUBLISH from an MQTT publisher must not be forwarded with its properties as they
//!   are: its topic alias is the publisher's (and a subscriber gets its own subscription identifiers), so the
//!   session layer builds a new property list ([`Properties::new`]) from the ones it keeps
//!   ([`Properties::iter`]). [`Properties::raw`] is there for blocks that may be forwarded verbatim.

mod decode;
mod encode;
mod packet;
pub mod session;
pub mod topic;

pub use decode::{Decoder, FixedHeader};
pub use encode::{encode, encode_publish_header, encoded_len};
pub use packet::{
    property_id, reason, Ack, Auth, ConnAck, Connect, DecodeError, Disconnect, EncodeError,
    ErrorAction, ErrorKind, Filters, Malformed, Packet, PacketType, Properties, Property,
    PropertyContext, PropertyIter, ProtocolError, Publish, QoS, RetainHandling, Side, SubAck,
    Subscribe, SubscriptionOptions, Subscriptions, UnsubAck, Unsubscribe, Version, Will,
    PACKET_SIZE_MAX, REMAINING_LENGTH_MAX, SUBSCRIPTION_IDENTIFIER_MAX,
};

/// The first octet of a CONNECT: how a listener that speaks MQTT besides RawSocket (0x7F) and HTTP recognizes
/// an MQTT client.
pub const CONNECT_OCTET: u8 = 0x10;

#[cfg(test)]
mod tests;
