//! permessage-deflate (RFC 7692): the negotiation in the WebSocket handshake, and compressing and inflating
//! messages.
//!
//! Compression state is what costs: a deflate stream that keeps its context between messages ("context takeover")
//! holds about 270 KiB per connection and direction (zlib's window and hash tables), and a message compressed
//! with it can only go to that one connection. kreisel therefore answers by default with
//! `server_no_context_takeover` and `client_no_context_takeover`: every message is compressed on its own, so an
//! EVENT is compressed once per serializer and window size and the compressed frame is shared by every subscriber
//! (as the uncompressed one is), the shard keeps one compressor and one inflater for all its connections, and a
//! connection holds no compression state at all. `[listeners.deflate] server_context_takeover = true` (and
//! `client_context_takeover`) allow context takeover when the client does not decline it, for a better ratio at
//! that cost (measured in docs/PERFORMANCE.md).
//!
//! The inflated size of a message is bounded by `limits.message_max`: inflating stops as soon as the output would
//! pass it, and the connection is closed with 1009 (a deflate bomb costs at most `message_max` of output).
//!
//! The compressor is zlib-rs (a pure-Rust port of zlib, through flate2): RFC 7692's `server_max_window_bits`
//! needs a compressor whose window can be made smaller than 32 KiB, which miniz_oxide's cannot.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use serde::{Deserialize, Serialize};

/// `[listeners.deflate]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DeflateConfig {
    /// Keep the compressor's context between the messages sent to a client that does not ask for
    /// `server_no_context_takeover` (default false: every message is compressed on its own, once for all its
    /// recipients).
    pub server_context_takeover: bool,
    /// Let clients keep their compressor's context between the messages they send (default false: kreisel asks
    /// for `client_no_context_takeover`, so it keeps no inflate state per connection).
    pub client_context_takeover: bool,
    /// zlib compression level, 1 (fastest) ..= 9 (smallest) (default 1).
    pub level: u32,
    /// Messages shorter than this many bytes are sent uncompressed (default 512: without context takeover, deflate
    /// saves little on shorter ones for its cost; see docs/PERFORMANCE.md).
    pub min_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> DeflateConfig {
        DeflateConfig {
            server_context_takeover: false,
            client_context_takeover: false,
            level: 1,
            min_size: 512,
        }
    }
}

impl DeflateConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=9).contains(&self.level) {
            return Err(format!("level = {} is outside 1 ..= 9", self.level));
        }
        Ok(())
    }
}

/// What was agreed with one client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// kreisel compresses every message on its own.
    pub server_no_context_takeover: bool,
    /// The client compresses every message on its own.
    pub client_no_context_takeover: bool,
    /// The window kreisel compresses with (9 ..= 15).
    pub server_window_bits: u8,
    pub level: u32,
    pub min_size: usize,
}

/// One offer's parameters as the client sent them.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
}

/// Picks the first permessage-deflate offer of a request's `Sec-WebSocket-Extensions` values that kreisel can
/// accept: the agreed parameters and the extension's response header value. `None`: no acceptable offer (the
/// connection runs uncompressed).
pub fn negotiate<'v>(
    offers: impl Iterator<Item = &'v [u8]>,
    config: &DeflateConfig,
) -> Option<(Params, String)> {
    for value in offers {
        for offer in value.split(|&b| b == b',') {
            let Ok(offer) = std::str::from_utf8(offer) else {
                continue;
            };
            let mut parts = offer.split(';').map(str::trim);
            if parts.next() != Some("permessage-deflate") {
                continue;
            }
            let Some(offer) = parse_offer(parts) else {
                continue;
            };
            // zlib cannot compress with a 256-byte window (it would use 512): decline such an offer.
            if offer.server_max_window_bits == Some(8) {
                continue;
            }
            let params = Params {
                server_no_context_takeover: offer.server_no_context_takeover
                    || !config.server_context_takeover,
                // An offer's client_no_context_takeover is only the client's hint: kreisel decides.
                client_no_context_takeover: !config.client_context_takeover,
                server_window_bits: offer.server_max_window_bits.unwrap_or(15),
                level: config.level,
                min_size: config.min_size,
            };
            let mut response = String::from("permessage-deflate");
            if params.server_no_context_takeover {
                response.push_str("; server_no_context_takeover");
            }
            if params.client_no_context_takeover {
                response.push_str("; client_no_context_takeover");
            }
            if let Some(bits) = offer.server_max_window_bits {
                response.push_str(&format!("; server_max_window_bits={bits}"));
            }
            return Some((params, response));
        }
    }
    None
}

/// The parameters of one offer; `None` when it is malformed (unknown or repeated parameter, bad value), which
/// declines it.
fn parse_offer<'p>(parts: impl Iterator<Item = &'p str>) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen = Vec::new();
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (part, None),
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        let bits = |value: Option<&str>| -> Option<u8> {
            let value = value?;
            if value.is_empty() || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            value.parse().ok().filter(|b| (8..=15).contains(b))
        };
        match (name, value) {
            ("server_no_context_takeover", None) => offer.server_no_context_takeover = true,
            // The client's hint that it will not keep context: kreisel's configuration decides instead.
            ("client_no_context_takeover", None) => {}
            ("server_max_window_bits", value) => offer.server_max_window_bits = Some(bits(value)?),
            ("client_max_window_bits", None) => offer.client_max_window_bits = Some(None),
            ("client_max_window_bits", value) => {
                offer.client_max_window_bits = Some(Some(bits(value)?))
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// A connection's compression state: the agreed parameters, and the streams kept between messages where context
/// takeover was agreed.
pub struct ConnDeflate {
    pub params: Params,
    compress: Option<Compress>,
    decompress: Option<Decompress>,
}

impl std::fmt::Debug for ConnDeflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnDeflate")
            .field("params", &self.params)
            .field("compress", &self.compress.is_some())
            .field("decompress", &self.decompress.is_some())
            .finish()
    }
}

impl ConnDeflate {
    pub fn new(params: Params) -> ConnDeflate {
        ConnDeflate {
            params,
            compress: (!params.server_no_context_takeover)
                .then(|| compressor(params.level, params.server_window_bits)),
            decompress: (!params.client_no_context_takeover).then(|| Decompress::new(false)),
        }
    }

    /// Whether this connection's messages are compressed with its own context (so not shared).
    pub fn takes_over(&self) -> bool {
        self.compress.is_some()
    }
}

fn compressor(level: u32, window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(level), false, window_bits)
}

/// A shard's compressors and inflater for connections without context takeover, and its inflate buffer.
#[derive(Default)]
pub struct ShardDeflate {
    /// (level, window bits) → a compressor reset before each message.
    compressors: Vec<((u32, u8), Compress)>,
    decompress: Option<Decompress>,
}

impl std::fmt::Debug for ShardDeflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardDeflate")
            .field("compressors", &self.compressors.len())
            .finish_non_exhaustive()
    }
}

/// A compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit.
    TooBig,
    /// It is not a valid deflate stream.
    Invalid,
}

/// What the inflate buffer keeps between messages; more is released after a large message.
const INFLATED_KEEP: usize = 64 * 1024;
/// The tail every message lost to its sender's SYNC flush (RFC 7692 §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

impl ShardDeflate {
    /// Compresses `message` (one WAMP message, or a batch) for a connection with `params` into `out`, with the
    /// connection's own stream when it keeps context (`conn`), else with the shard's. Returns false, leaving `out`
    /// empty, when the message is better sent uncompressed (shorter than `min_size`).
    pub fn compress(
        &mut self,
        conn: Option<&mut ConnDeflate>,
        params: &Params,
        message: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        if message.len() < params.min_size {
            return false;
        }
        let compress = match conn.and_then(|c| c.compress.as_mut()) {
            Some(own) => own,
            None => {
                let key = (params.level, params.server_window_bits);
                let index = match self.compressors.iter().position(|(k, _)| *k == key) {
                    Some(index) => index,
                    None => {
                        self.compressors
                            .push((key, compressor(params.level, params.server_window_bits)));
                        self.compressors.len() - 1
                    }
                };
                let compress = &mut self.compressors[index].1;
                compress.reset();
                compress
            }
        };
        deflate_sync(compress, message, out);
        !out.is_empty()
    }

    /// Inflates one compressed message of a connection into `out` (emptied first), refusing one that would
    /// inflate to more than `limit` bytes. A large `out` is shrunk back before use.
    pub fn inflate(
        &mut self,
        conn: Option<&mut ConnDeflate>,
        compressed: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        if out.capacity() > INFLATED_KEEP {
            *out = Vec::new();
        }
        out.clear();
        let decompress = match conn.and_then(|c| c.decompress.as_mut()) {
            Some(own) => own,
            None => {
                let shared = self
                    .decompress
                    .get_or_insert_with(|| Decompress::new(false));
                shared.reset(false);
                shared
            }
        };
        for input in [compressed, &TAIL[..]] {
            inflate_into(decompress, input, out, limit)?;
        }
        Ok(())
    }
}

/// Deflates `input` with a SYNC flush into `out`, without the flush's trailing `00 00 ff ff`.
fn deflate_sync(compress: &mut Compress, input: &[u8], out: &mut Vec<u8>) {
    let start = compress.total_in();
    loop {
        let consumed = (compress.total_in() - start) as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve((input.len() - consumed) / 2 + 1024);
        }
        // Only a stream error can fail, which a valid stream never produces.
        if compress
            .compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .is_err()
        {
            out.clear();
            return;
        }
        // Done when all input is in and the flush fit (zlib left room in the output).
        let consumed = (compress.total_in() - start) as usize;
        if consumed == input.len() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
}

fn inflate_into(
    decompress: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), InflateError> {
    let start = decompress.total_in();
    loop {
        let consumed = (decompress.total_in() - start) as usize;
        if consumed == input.len() && out.len() < out.capacity() {
            return Ok(());
        }
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        // Grow geometrically, but never past one byte over the limit (which proves the message too big).
        let room = (out.len().max(4096)).min(limit + 1 - out.len());
        out.reserve_exact(room);
        let before = (out.len(), decompress.total_in());
        match decompress.decompress_vec(&input[consumed..], out, FlushDecompress::Sync) {
            Ok(Status::StreamEnd) => {
                // BFINAL: the rest of the input (the tail) carries nothing more.
                return if out.len() > limit {
                    Err(InflateError::TooBig)
                } else {
                    Ok(())
                };
            }
            Ok(_) => {}
            Err(_) => return Err(InflateError::Invalid),
        }
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        if (out.len(), decompress.total_in()) == before {
            // No progress: the input is used up and the output not full.
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DeflateConfig {
        DeflateConfig::default()
    }

    fn negotiated(header: &str, config: &DeflateConfig) -> Option<(Params, String)> {
        negotiate([header.as_bytes()].into_iter(), config)
    }

    #[test]
    fn negotiation_follows_rfc_7692() {
        // Chrome and Firefox.
        let (params, response) =
            negotiated("permessage-deflate; client_max_window_bits", &config()).unwrap();
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(params.server_window_bits, 15);
        // With context takeover allowed, only what the client asks for.
        let takeover = DeflateConfig {
            server_context_takeover: true,
            client_context_takeover: true,
            ..config()
        };
        let (params, response) = negotiated("permessage-deflate", &takeover).unwrap();
        assert_eq!(response, "permessage-deflate");
        assert!(!params.server_no_context_takeover && !params.client_no_context_takeover);
        let (params, response) = negotiated(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            &takeover,
        )
        .unwrap();
        assert_eq!(response, "permessage-deflate; server_no_context_takeover");
        assert!(params.server_no_context_takeover && !params.client_no_context_takeover);
        // server_max_window_bits is honoured and confirmed; 8 is declined for the next offer.
        let (params, response) = negotiated(
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=\"10\"",
            &config(),
        )
        .unwrap();
        assert_eq!(params.server_window_bits, 10);
        assert!(
            response.ends_with("; server_max_window_bits=10"),
            "{response}"
        );
        // Malformed offers are declined; other extensions ignored.
        for declined in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; x_unknown",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(negotiated(declined, &config()), None, "{declined}");
        }
        assert!(negotiated("foo, permessage-deflate", &config()).is_some());
    }

    #[test]
    fn messages_round_trip_shared_and_with_context() {
        let event =
            br#"[36,5512315355,4429313566,{},["sensor-17",{"t":21.5,"h":0.43,"p":1013.2}]]"#
                .repeat(3);
        for takeover in [false, true] {
            let cfg = DeflateConfig {
                server_context_takeover: takeover,
                client_context_takeover: takeover,
                min_size: 16,
                ..config()
            };
            let (params, _) = negotiated("permessage-deflate", &cfg).unwrap();
            let mut ours = ConnDeflate::new(params);
            // The client's side of the same parameters (our compressor is its inflater's input).
            let mut theirs = ConnDeflate::new(params);
            let mut shard = ShardDeflate::default();
            let mut receiver = ShardDeflate::default();
            let mut sizes = Vec::new();
            for _ in 0..3 {
                let mut out = Vec::new();
                assert!(shard.compress(Some(&mut ours), &params, &event, &mut out));
                assert!(!out.ends_with(&TAIL));
                sizes.push(out.len());
                let mut back = Vec::new();
                receiver
                    .inflate(Some(&mut theirs), &out, 1 << 20, &mut back)
                    .unwrap();
                assert_eq!(back, event);
            }
            assert!(sizes[0] < event.len() / 2, "{sizes:?}");
            if takeover {
                assert!(
                    sizes[1] < sizes[0],
                    "the context makes repeats cheaper: {sizes:?}"
                );
            } else {
                assert_eq!(sizes[0], sizes[1], "every message on its own");
            }
        }
        // Short messages stay uncompressed.
        let (params, _) = negotiated("permessage-deflate", &config()).unwrap();
        let mut out = Vec::new();
        assert!(!ShardDeflate::default().compress(None, &params, &event, &mut out));
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let best = DeflateConfig {
            level: 9,
            ..config()
        };
        let (params, _) = negotiated("permessage-deflate", &best).unwrap();
        let mut shard = ShardDeflate::default();
        let mut bomb = Vec::new();
        assert!(shard.compress(None, &params, &zeros, &mut bomb));
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let mut out = Vec::new();
        assert_eq!(
            shard.inflate(None, &bomb, 1 << 20, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= (1 << 20) + 4096, "{}", out.capacity());
        assert_eq!(shard.inflate(None, &bomb, 10 << 20, &mut out), Ok(()));
        assert_eq!(out.len(), 10 << 20);
        assert_eq!(
            shard.inflate(None, b"\xff\xff\xff garbage", 1 << 20, &mut out),
            Err(InflateError::Invalid)
        );
        // The buffer is released after a large message.
        assert_eq!(shard.inflate(None, &[], 1 << 20, &mut out), Ok(()));
        assert!(out.is_empty() && out.capacity() <= INFLATED_KEEP);
    }
}
