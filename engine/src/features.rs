//! Advanced-profile features: the ones a client announces in HELLO (`Details.roles.<role>.features`) that change
//! what the router may send it or accept from it, and the router's own announcement for WELCOME.

use kreisel_codec::{RawValue, Value};

/// The client features the router acts on, read once at HELLO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientFeatures {
    /// callee `call_canceling`: receives INTERRUPT.
    pub callee_call_canceling: bool,
    /// callee `call_timeout`: receives `timeout` in INVOCATION details.
    pub callee_call_timeout: bool,
    /// callee `progressive_call_invocations` (usable only together with `call_canceling`, the spec says).
    pub callee_progressive_call_invocations: bool,
    /// caller `progressive_call_invocations`: may send CALL with `progress: true`.
    pub caller_progressive_call_invocations: bool,
    /// `payload_passthru_mode` (or crossbar's `payload_transparency`) per role.
    pub caller_passthru: bool,
    pub callee_passthru: bool,
    pub publisher_passthru: bool,
}

impl ClientFeatures {
    /// Reads HELLO `Details.roles`. Unknown roles and features are ignored; a feature counts when it is `true`.
    pub fn from_roles(roles: Option<RawValue<'_>>) -> ClientFeatures {
        let mut features = ClientFeatures::default();
        let Some(roles) = roles.and_then(|roles| roles.dict()) else {
            return features;
        };
        for (role, value) in roles {
            let Some(announced) = value.get("features").and_then(|f| f.dict()) else {
                continue;
            };
            for (name, flag) in announced {
                if flag.as_bool() == Some(true) {
                    features.set(&role, &name);
                }
            }
        }
        features
    }

    fn set(&mut self, role: &str, feature: &str) {
        let passthru = matches!(feature, "payload_passthru_mode" | "payload_transparency");
        match (role, feature) {
            // The progressive call invocations section spells it with two l's.
            ("callee", "call_canceling" | "call_cancelling") => self.callee_call_canceling = true,
            ("callee", "call_timeout") => self.callee_call_timeout = true,
            ("callee", "progressive_call_invocations") => {
                self.callee_progressive_call_invocations = true
            }
            ("caller", "progressive_call_invocations") => {
                self.caller_progressive_call_invocations = true
            }
            ("caller", _) if passthru => self.caller_passthru = true,
            ("callee", _) if passthru => self.callee_passthru = true,
            ("publisher", _) if passthru => self.publisher_passthru = true,
            _ => {}
        }
    }

    /// The flags as bits, for another shard ([`ClientFeatures::from_bits`]).
    pub fn to_bits(self) -> u16 {
        [
            self.callee_call_canceling,
            self.callee_call_timeout,
            self.callee_progressive_call_invocations,
            self.caller_progressive_call_invocations,
            self.caller_passthru,
            self.callee_passthru,
            self.publisher_passthru,
        ]
        .iter()
        .enumerate()
        .fold(0, |bits, (i, &on)| bits | u16::from(on) << i)
    }

    pub fn from_bits(bits: u16) -> ClientFeatures {
        let on = |i: u32| bits & (1 << i) != 0;
        ClientFeatures {
            callee_call_canceling: on(0),
            callee_call_timeout: on(1),
            callee_progressive_call_invocations: on(2),
            caller_progressive_call_invocations: on(3),
            caller_passthru: on(4),
            callee_passthru: on(5),
            publisher_passthru: on(6),
        }
    }

    /// Whether a callee can take progressive call invocations: the feature plus call canceling (a callee without
    /// canceling "shall be considered as not supporting progressive call invocations").
    pub fn callee_takes_progressive_calls(&self) -> bool {
        self.callee_progressive_call_invocations && self.callee_call_canceling
    }
}

/// WELCOME `details.roles`: exactly the features implemented.
pub(crate) fn router_roles() -> Value {
    // `payload_transparency` is crossbar's name for payload passthru mode (autobahn announces it).
    let broker = [
        "pattern_based_subscription",
        "publisher_exclusion",
        "publisher_identification",
        "subscriber_blackwhite_listing",
        "event_retention",
        "session_meta_api",
        "subscription_meta_api",
        "payload_passthru_mode",
        "payload_transparency",
    ];
    let dealer = [
        "pattern_based_registration",
        "progressive_call_results",
        "progressive_call_invocations",
        "shared_registration",
        "call_canceling",
        "call_timeout",
        "caller_identification",
        "session_meta_api",
        "registration_meta_api",
        "testament_meta_api",
        "payload_passthru_mode",
        "payload_transparency",
    ];
    let features = |names: &[&str]| {
        names
            .iter()
            .fold(Value::dict(), |dict, name| dict.with(name, true))
    };
    Value::dict()
        .with("broker", Value::dict().with("features", features(&broker)))
        .with("dealer", Value::dict().with("features", features(&dealer)))
}

#[cfg(test)]
mod tests {
    use kreisel_codec::Serializer;

    use super::*;

    #[test]
    fn announced_features_are_read_per_role() {
        let roles = r#"{"caller": {"features": {"progressive_call_invocations": true, "payload_transparency": true}},
                        "callee": {"features": {"call_cancelling": true, "call_timeout": false,
                                                "progressive_call_invocations": true}},
                        "publisher": {}, "subscriber": {"features": {"payload_passthru_mode": true}}}"#;
        let raw = RawValue::parse(Serializer::Json, roles.as_bytes()).unwrap();
        let features = ClientFeatures::from_roles(Some(raw));
        assert_eq!(
            features,
            ClientFeatures {
                callee_call_canceling: true,
                callee_call_timeout: false,
                callee_progressive_call_invocations: true,
                caller_progressive_call_invocations: true,
                caller_passthru: true,
                callee_passthru: false,
                publisher_passthru: false,
            }
        );
        assert!(features.callee_takes_progressive_calls());
        assert_eq!(ClientFeatures::from_roles(None), ClientFeatures::default());
    }
}
