//! Who may use an HTTP service: bearer tickets, crossbar's signed requests with a replay memory, and GitHub's
//! webhook signatures.
//!
//! A signed request carries the query parameters `key`, `timestamp` (UTC, ISO 8601 with fractional seconds, e.g.
//! `2011-10-14T16:59:51.123Z`), `seq` and `nonce` (integers) and `signature`: the URL-safe base64 of
//! HMAC-SHA256 under the principal's secret of `key | timestamp | seq | nonce | body` (the parameters as sent,
//! concatenated, then the body's bytes), as crossbar defines it. kreisel accepts a request only while its
//! timestamp is within the service's `replay_window_s` of the router's clock, and only once: every accepted
//! (key, nonce, seq) is remembered until its timestamp leaves the window, router-wide (the memory is shared by
//! all shards). The memory holds at most [`REPLAY_MAX`] requests per service; when it is full of requests still
//! inside their window, further signed requests are refused with 503 until some expire, never accepted unchecked.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use base64::Engine as _;
use ring::hmac;

use super::config::HttpPrincipal;

/// Signed requests remembered per service at most (about 64 bytes each).
pub const REPLAY_MAX: usize = 65_536;

/// A principal, compiled: its ticket as an HMAC tag (compared in constant time whatever its length) and its
/// signing key.
#[derive(Debug)]
pub struct Principal {
    pub key: String,
    ticket: Option<hmac::Tag>,
    secret: Option<hmac::Key>,
}

/// Why a request is refused: the HTTP status and the text of the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

fn refuse<T>(status: u16, reason: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        status,
        reason: reason.into(),
    })
}

/// The accepted signed requests still inside their window.
#[derive(Debug, Default)]
struct Replay {
    seen: HashSet<(usize, i64, i64)>,
    /// (expiry in Unix milliseconds, entry), in the order accepted.
    order: VecDeque<(u64, (usize, i64, i64))>,
}

/// A service's principals and its replay memory.
#[derive(Debug)]
pub struct Guard {
    principals: Vec<Principal>,
    /// Key of the ticket tags (random per start).
    ticket_key: hmac::Key,
    window_ms: u64,
    replay: Mutex<Replay>,
    capacity: usize,
}

/// How a request proved who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The service has no principals: anyone may use it.
    Open,
    /// `Authorization: Bearer` with principal `index`'s ticket.
    Ticket(usize),
    /// A signed request of principal `index`.
    Signed(usize),
}

/// The query parameters of a signed request.
#[derive(Clone, Copy, Debug)]
pub struct Signed<'q> {
    pub key: &'q str,
    pub timestamp: &'q str,
    pub seq: &'q str,
    pub nonce: &'q str,
    pub signature: &'q str,
}

impl Guard {
    pub fn new(principals: &[HttpPrincipal], window_s: u64) -> Guard {
        let mut seed = [0u8; 32];
        // Without randomness the tags are still correct, only predictable: the comparison stays constant-time.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        let ticket_key = hmac::Key::new(hmac::HMAC_SHA256, &seed);
        Guard {
            principals: principals
                .iter()
                .map(|p| Principal {
                    key: p.key.clone(),
                    ticket: p
                        .ticket
                        .as_ref()
                        .map(|t| hmac::sign(&ticket_key, t.as_bytes())),
                    secret: p
                        .secret
                        .as_ref()
                        .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_bytes())),
                })
                .collect(),
            ticket_key,
            window_ms: window_s.saturating_mul(1000),
            replay: Mutex::new(Replay::default()),
            capacity: REPLAY_MAX,
        }
    }

    /// The name of principal `index`.
    pub fn name(&self, proof: Proof) -> &str {
        match proof {
            Proof::Open => "-",
            Proof::Ticket(i) | Proof::Signed(i) => &self.principals[i].key,
        }
    }

    pub fn is_open(&self) -> bool {
        self.principals.is_empty()
    }

    /// Decides who sent a request: `authorization` is its `Authorization` header (if one), `signed` its signing
    /// parameters (if it has a `signature`), `body` its body, `now_ms` the router's clock (Unix milliseconds).
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        signed: Option<Result<Signed<'_>, &'static str>>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Proof, Refusal> {
        if self.principals.is_empty() {
            return Ok(Proof::Open);
        }
        if let Some(value) = authorization {
            let ticket = value
                .strip_prefix(b"Bearer ")
                .or_else(|| value.strip_prefix(b"bearer "))
                .map(<[u8]>::trim_ascii)
                .filter(|t| !t.is_empty());
            let Some(ticket) = ticket else {
                return refuse(401, "the Authorization header must be: Bearer <ticket>");
            };
            // Every principal is checked, so the time taken does not tell which one matched.
            let mut found = None;
            for (index, principal) in self.principals.iter().enumerate() {
                let matches = principal.ticket.as_ref().is_some_and(|tag| {
                    hmac::verify(&self.ticket_key, ticket, tag.as_ref()).is_ok()
                });
                if matches && found.is_none() {
                    found = Some(index);
                }
            }
            return match found {
                Some(index) => Ok(Proof::Ticket(index)),
                None => refuse(401, "invalid ticket"),
            };
        }
        match signed {
            Some(Ok(signed)) => self.check_signed(&signed, body, now_ms),
            Some(Err(missing)) => refuse(
                400,
                format!("signed request without its mandatory '{missing}' field"),
            ),
            None => refuse(
                401,
                "authentication required: Authorization: Bearer <ticket>, or a signed request",
            ),
        }
    }

    fn check_signed(
        &self,
        signed: &Signed<'_>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Proof, Refusal> {
        let Some((index, secret)) = (self.principals.iter().enumerate())
            .find(|(_, p)| p.key == signed.key)
            .and_then(|(index, p)| p.secret.as_ref().map(|s| (index, s)))
        else {
            return refuse(401, "unknown key in signed request");
        };
        let Some(timestamp_ms) = parse_timestamp(signed.timestamp) else {
            return refuse(
                400,
                "invalid timestamp (must be UTC/ISO-8601, e.g. '2011-10-14T16:59:51.123Z')",
            );
        };
        let Ok(seq) = signed.seq.trim().parse::<i64>() else {
            return refuse(400, "invalid sequence number (must be an integer)");
        };
        let Ok(nonce) = signed.nonce.trim().parse::<i64>() else {
            return refuse(400, "invalid nonce (must be an integer)");
        };
        if timestamp_ms.abs_diff(now_ms) > self.window_ms {
            return refuse(
                400,
                "request expired: its timestamp is too far from the router's clock",
            );
        }
        let signature = signed.signature.trim_end_matches('=');
        let Ok(mac) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature) else {
            return refuse(401, "invalid signature");
        };
        let mut message = Vec::with_capacity(
            signed.key.len()
                + signed.timestamp.len()
                + signed.seq.len()
                + signed.nonce.len()
                + body.len(),
        );
        for part in [signed.key, signed.timestamp, signed.seq, signed.nonce] {
            message.extend_from_slice(part.as_bytes());
        }
        message.extend_from_slice(body);
        if hmac::verify(secret, &message, &mac).is_err() {
            return refuse(401, "invalid signature");
        }
        self.remember((index, nonce, seq), timestamp_ms + self.window_ms, now_ms)?;
        Ok(Proof::Signed(index))
    }

    /// Accepts a signed request once: refused when it was seen inside its window, or when the memory is full.
    fn remember(
        &self,
        entry: (usize, i64, i64),
        expiry_ms: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(&(expiry, old)) = replay.order.front() {
            if expiry >= now_ms {
                break;
            }
            replay.order.pop_front();
            replay.seen.remove(&old);
        }
        if replay.seen.contains(&entry) {
            return refuse(401, "replayed request: this key, nonce and seq were used");
        }
        if replay.seen.len() >= self.capacity {
            return refuse(
                503,
                "too many signed requests inside the replay window; try again later",
            );
        }
        replay.seen.insert(entry);
        replay.order.push_back((expiry_ms, entry));
        Ok(())
    }

    #[cfg(test)]
    fn with_capacity(mut self, capacity: usize) -> Guard {
        self.capacity = capacity;
        self
    }
}

/// GitHub's webhook signature: `X-Hub-Signature-256: sha256=<hex>` (or the older `X-Hub-Signature: sha1=<hex>`),
/// HMAC of the body under the webhook's secret.
pub fn github_signature_valid(
    secret: &str,
    sha256: Option<&[u8]>,
    sha1: Option<&[u8]>,
    body: &[u8],
) -> bool {
    let (algorithm, hex) = match (sha256, sha1) {
        (Some(value), _) => (
            hmac::HMAC_SHA256,
            value.strip_prefix(b"sha256=").unwrap_or_default(),
        ),
        (None, Some(value)) => (
            hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            value.strip_prefix(b"sha1=").unwrap_or_default(),
        ),
        (None, None) => return false,
    };
    let Some(mac) = std::str::from_utf8(hex)
        .ok()
        .and_then(kreisel_engine::auth::unhex)
    else {
        return false;
    };
    let key = hmac::Key::new(algorithm, secret.as_bytes());
    hmac::verify(&key, body, &mac).is_ok()
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (UTC) in Unix milliseconds.
pub fn parse_timestamp(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.split('-');
    let (year, month, day) = (
        number(date_parts.next()?, 4)?,
        number(date_parts.next()?, 2)?,
        number(date_parts.next()?, 2)?,
    );
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock_parts = clock.split(':');
    let (hour, minute, second) = (
        number(clock_parts.next()?, 2)?,
        number(clock_parts.next()?, 2)?,
        number(clock_parts.next()?, 2)?,
    );
    if date_parts.next().is_some() || clock_parts.next().is_some() {
        return None;
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    if fraction.len() > 9
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (time.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let millis = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    let days = days_from_civil(year as i64, month, day);
    let seconds = days.checked_mul(86_400)? + i64::from(hour * 3600 + minute * 60 + second);
    u64::try_from(seconds)
        .ok()?
        .checked_mul(1000)?
        .checked_add(millis)
}

fn number(text: &str, digits: usize) -> Option<u32> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(key: &str, ticket: Option<&str>, secret: Option<&str>) -> HttpPrincipal {
        HttpPrincipal {
            key: key.into(),
            ticket: ticket.map(Into::into),
            secret: secret.map(Into::into),
        }
    }

    fn sign(
        secret: &str,
        key: &str,
        timestamp: &str,
        seq: &str,
        nonce: &str,
        body: &[u8],
    ) -> String {
        let key_ = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let mut message = format!("{key}{timestamp}{seq}{nonce}").into_bytes();
        message.extend_from_slice(body);
        base64::engine::general_purpose::URL_SAFE.encode(hmac::sign(&key_, &message))
    }

    const NOW: u64 = 1_318_611_591_123; // 2011-10-14T16:59:51.123Z

    #[test]
    fn timestamps_parse_as_crossbar_writes_them() {
        assert_eq!(parse_timestamp("2011-10-14T16:59:51.123Z"), Some(NOW));
        assert_eq!(parse_timestamp("2011-10-14T16:59:51.123456Z"), Some(NOW));
        assert_eq!(parse_timestamp("2011-10-14T16:59:51.1Z"), Some(NOW - 23));
        assert_eq!(parse_timestamp("2011-10-14T16:59:51Z"), Some(NOW - 123));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_timestamp("2000-02-29T12:00:00.000Z"),
            Some(951_825_600_000)
        );
        for bad in [
            "2011-10-14T16:59:51.123",
            "2011-10-14 16:59:51.123Z",
            "2011-13-14T16:59:51.123Z",
            "2011-10-14T16:59:51.Z",
            "11-10-14T16:59:51.123Z",
            "2011-10-14T16:59:51.12a3Z",
            "1969-12-31T23:59:59.000Z",
            "",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn bearer_tickets() {
        let guard = Guard::new(
            &[
                principal("a", Some("ticket-a"), None),
                principal("b", Some("ticket-b"), Some("s")),
            ],
            300,
        );
        assert_eq!(
            guard.check(Some(b"Bearer ticket-b"), None, b"", NOW),
            Ok(Proof::Ticket(1))
        );
        assert_eq!(
            guard.check(Some(b"bearer  ticket-a "), None, b"", NOW),
            Ok(Proof::Ticket(0))
        );
        assert_eq!(
            guard
                .check(Some(b"Bearer ticket-c"), None, b"", NOW)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            guard
                .check(Some(b"Basic dXNlcjpwdw=="), None, b"", NOW)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(guard.check(None, None, b"", NOW).unwrap_err().status, 401);
        let open = Guard::new(&[], 300);
        assert_eq!(open.check(None, None, b"", NOW), Ok(Proof::Open));
    }

    #[test]
    fn signed_requests_once_within_the_window() {
        let guard = Guard::new(&[principal("app", None, Some("secret"))], 10);
        let timestamp = "2011-10-14T16:59:51.123Z";
        let body = br#"{"topic": "com.example"}"#;
        let signature = sign("secret", "app", timestamp, "1", "42", body);
        let request = |seq: &'static str, nonce: &'static str, signature: &str, now| {
            let signed = Signed {
                key: "app",
                timestamp,
                seq,
                nonce,
                signature,
            };
            // The signature borrows a local: check here.
            guard.check(None, Some(Ok(signed)), body, now)
        };
        assert_eq!(
            request("1", "42", &signature, NOW + 5_000),
            Ok(Proof::Signed(0))
        );
        let replay = request("1", "42", &signature, NOW + 6_000).unwrap_err();
        assert_eq!(
            (replay.status, replay.reason.contains("replayed")),
            (401, true)
        );
        // Another body, key, seq or nonce: a signature that does not match.
        assert_eq!(request("2", "42", &signature, NOW).unwrap_err().status, 401);
        assert_eq!(
            guard
                .check(
                    None,
                    Some(Ok(Signed {
                        key: "app",
                        timestamp,
                        seq: "1",
                        nonce: "42",
                        signature: &signature
                    })),
                    b"{}",
                    NOW
                )
                .unwrap_err()
                .status,
            401
        );
        // Outside the window: refused before the signature counts.
        let late = sign("secret", "app", timestamp, "3", "7", body);
        assert_eq!(
            request("3", "7", &late, NOW + 10_001).unwrap_err().status,
            400
        );
        assert_eq!(
            request("3", "7", &late, NOW - 10_001).unwrap_err().status,
            400
        );
        // Unpadded base64 is accepted too.
        assert_eq!(
            request("3", "7", late.trim_end_matches('='), NOW),
            Ok(Proof::Signed(0))
        );
        // Malformed fields.
        let unknown = Signed {
            key: "who",
            timestamp,
            seq: "1",
            nonce: "1",
            signature: "x",
        };
        assert_eq!(
            guard
                .check(None, Some(Ok(unknown)), body, NOW)
                .unwrap_err()
                .status,
            401
        );
        let bad_seq = sign("secret", "app", timestamp, "x", "1", body);
        assert_eq!(request("x", "1", &bad_seq, NOW).unwrap_err().status, 400);
        assert_eq!(
            guard
                .check(None, Some(Err("nonce")), body, NOW)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn the_replay_memory_is_bounded_and_forgets_expired_requests() {
        let guard = Guard::new(&[principal("app", None, Some("k"))], 1).with_capacity(2);
        let timestamp = "2011-10-14T16:59:51.123Z";
        let check = |nonce: &'static str, now| {
            let signature = sign("k", "app", timestamp, "0", nonce, b"");
            let signed = Signed {
                key: "app",
                timestamp,
                seq: "0",
                nonce,
                signature: &signature,
            };
            guard
                .check(None, Some(Ok(signed)), b"", now)
                .map_err(|r| r.status)
        };
        assert_eq!(check("1", NOW), Ok(Proof::Signed(0)));
        assert_eq!(check("2", NOW), Ok(Proof::Signed(0)));
        assert_eq!(
            check("3", NOW),
            Err(503),
            "full: refused, not accepted unchecked"
        );
        assert_eq!(check("1", NOW + 1000), Err(401), "still inside its window");
        // Past the window the requests are too old, and the next accepted one makes the memory forget them.
        assert_eq!(check("3", NOW + 1001), Err(400));
        let later = "2011-10-14T16:59:53.123Z";
        let signature = sign("k", "app", later, "0", "4", b"");
        let signed = Signed {
            key: "app",
            timestamp: later,
            seq: "0",
            nonce: "4",
            signature: &signature,
        };
        assert_eq!(
            guard.check(None, Some(Ok(signed)), b"", NOW + 2000),
            Ok(Proof::Signed(0))
        );
        assert_eq!(guard.replay.lock().unwrap().seen.len(), 1);
    }

    #[test]
    fn github_signatures() {
        let body = b"{\"zen\": \"Keep it logically awesome.\"}";
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"hush");
        let sha256 = format!(
            "sha256={}",
            kreisel_engine::auth::hex(hmac::sign(&key, body).as_ref())
        );
        assert!(github_signature_valid(
            "hush",
            Some(sha256.as_bytes()),
            None,
            body
        ));
        assert!(!github_signature_valid(
            "hush",
            Some(sha256.as_bytes()),
            None,
            b"other"
        ));
        assert!(!github_signature_valid(
            "other",
            Some(sha256.as_bytes()),
            None,
            body
        ));
        let key1 = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"hush");
        let sha1 = format!(
            "sha1={}",
            kreisel_engine::auth::hex(hmac::sign(&key1, body).as_ref())
        );
        assert!(github_signature_valid(
            "hush",
            None,
            Some(sha1.as_bytes()),
            body
        ));
        assert!(!github_signature_valid("hush", None, None, body));
        assert!(!github_signature_valid(
            "hush",
            Some(b"sha256=zz"),
            None,
            body
        ));
    }
}
