//! Advanced-profile dealer features, deterministically: call canceling and timeouts racing with answers, callers
//! and callees leaving mid-call, shared registrations losing callees.

mod common;

use common::*;
use serde_json::json;

const CANCELING_CALLEE: &str =
    r#"{"caller": {}, "callee": {"features": {"call_canceling": true}}}"#;
const TIMEOUT_CALLEE: &str =
    r#"{"caller": {}, "callee": {"features": {"call_canceling": true, "call_timeout": true}}}"#;

/// Registers `procedure` for `callee` (options as JSON).
fn register(h: &mut Harness, callee: usize, options: &str, procedure: &str) {
    h.send(callee, &format!(r#"[64, 1, {options}, "{procedure}"]"#));
    assert_eq!(h.take_one(callee)[0], 65);
}

/// Sends CALL `request` to `procedure` and returns the INVOCATION request ID the callee got.
fn invoke(h: &mut Harness, caller: usize, request: u64, procedure: &str, callee: usize) -> u64 {
    h.send(
        caller,
        &format!(r#"[48, {request}, {{}}, "{procedure}", []]"#),
    );
    let invocation = h.take_one(callee);
    assert_eq!(invocation[0], 68, "{invocation}");
    invocation[1].as_u64().unwrap()
}

#[test]
fn a_leaving_caller_interrupts_callees_that_support_canceling() {
    let mut h = Harness::new();
    let (canceling, _) = h.join_with("realm1", CANCELING_CALLEE);
    let (plain, _) = h.join();
    let (caller, _) = h.join();
    register(&mut h, canceling, "{}", "com.a");
    register(&mut h, plain, "{}", "com.b");
    let a = invoke(&mut h, caller, 1, "com.a", canceling);
    let b = invoke(&mut h, caller, 2, "com.b", plain);
    h.close(caller);
    assert_eq!(
        h.take_one(canceling),
        json!([69, a, {"mode": "killnowait", "reason": "wamp.error.canceled"}])
    );
    assert!(
        h.take(plain).is_empty(),
        "no INTERRUPT to a callee without call_canceling"
    );
    // Their late answers go nowhere.
    h.send(
        canceling,
        &format!(r#"[8, 68, {a}, {{}}, "wamp.error.canceled"]"#),
    );
    h.send(plain, &format!("[70, {b}, {{}}, [1]]"));
    h.assert_quiet();
}

#[test]
fn cancel_races_with_the_answer() {
    let mut h = Harness::new();
    let (callee, _) = h.join_with("realm1", CANCELING_CALLEE);
    let (caller, _) = h.join();
    register(&mut h, callee, "{}", "com.slow");

    // The YIELD wins: the CANCEL that crosses it finds nothing to do.
    let inv = invoke(&mut h, caller, 1, "com.slow", callee);
    h.send(callee, &format!("[70, {inv}, {{}}, [1]]"));
    h.send(caller, r#"[49, 1, {}]"#);
    assert_eq!(h.take(caller), vec![json!([50, 1, {}, [1]])]);
    h.assert_quiet();

    // kill, then the callee finishes anyway: the caller gets the RESULT (the spec: RESULT or ERROR, whichever the
    // callee sends first); a second CANCEL sends no second INTERRUPT.
    let inv = invoke(&mut h, caller, 2, "com.slow", callee);
    h.send(caller, r#"[49, 2, {"mode": "kill"}]"#);
    h.send(caller, r#"[49, 2, {"mode": "kill"}]"#);
    assert_eq!(h.take(callee).len(), 1, "one INTERRUPT");
    h.send(callee, &format!("[70, {inv}, {{}}, [2]]"));
    assert_eq!(h.take(caller), vec![json!([50, 2, {}, [2]])]);

    // killnowait, then the YIELD arrives: discarded (the caller had its ERROR).
    let inv = invoke(&mut h, caller, 3, "com.slow", callee);
    h.send(caller, r#"[49, 3, {"mode": "killnowait"}]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.canceled");
    assert_eq!(h.take_one(callee)[0], 69);
    h.send(callee, &format!("[70, {inv}, {{}}, [3]]"));
    h.assert_quiet();

    // skip, then the callee's ERROR: discarded; no INTERRUPT was sent.
    let inv = invoke(&mut h, caller, 4, "com.slow", callee);
    h.send(caller, r#"[49, 4, {"mode": "skip"}]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.canceled");
    h.send(callee, &format!(r#"[8, 68, {inv}, {{}}, "com.failed"]"#));
    h.assert_quiet();

    // The request ID of a canceled call can be used again.
    let inv = invoke(&mut h, caller, 4, "com.slow", callee);
    h.send(callee, &format!("[70, {inv}, {{}}]"));
    assert_eq!(h.take_one(caller), json!([50, 4, {}]));
}

#[test]
fn timeouts_race_with_the_answer() {
    let mut h = Harness::new();
    let (callee, _) = h.join_with("realm1", TIMEOUT_CALLEE);
    let (plain, _) = h.join();
    let (caller, _) = h.join();
    register(&mut h, callee, "{}", "com.slow");
    register(&mut h, plain, "{}", "com.plain");

    // A callee announcing call_timeout is told the timeout; the router enforces it all the same.
    h.now_ms = 100;
    h.send(caller, r#"[48, 1, {"timeout": 50}, "com.slow", []]"#);
    let invocation = h.take_one(callee);
    assert_eq!(invocation[3], json!({"timeout": 50}));
    let inv = invocation[1].as_u64().unwrap();
    assert_eq!(h.router.poll_timeout(), Some(150));
    // Answered one millisecond early: RESULT, and the deadline passes without effect.
    h.tick(149);
    h.send(callee, &format!("[70, {inv}, {{}}, [1]]"));
    assert_eq!(h.take_one(caller), json!([50, 1, {}, [1]]));
    h.tick(150);
    h.assert_quiet();
    assert_eq!(h.router.poll_timeout(), None);

    // Answered at the deadline but after the timeout fired: discarded.
    h.send(caller, r#"[48, 2, {"timeout": 10}, "com.slow", []]"#);
    let inv = h.take_one(callee)[1].as_u64().unwrap();
    h.tick(160);
    assert_eq!(
        h.take_one(caller),
        json!([
            8,
            48,
            2,
            {},
            "wamp.error.timeout",
            ["the call timed out (CALL.Options.timeout)"]
        ])
    );
    assert_eq!(
        h.take_one(callee),
        json!([69, inv, {"mode": "killnowait", "reason": "wamp.error.timeout"}])
    );
    h.send(callee, &format!("[70, {inv}, {{}}]"));
    h.assert_quiet();

    // A call canceled in kill mode that then times out: ERROR timeout, no second INTERRUPT.
    h.send(caller, r#"[48, 3, {"timeout": 10}, "com.slow", []]"#);
    h.take_one(callee);
    h.send(caller, r#"[49, 3, {"mode": "kill"}]"#);
    assert_eq!(h.take_one(callee)[0], 69);
    h.tick(170);
    assert_eq!(h.take_one(caller)[4], "wamp.error.timeout");
    h.assert_quiet();

    // A callee without call_canceling: ERROR timeout to the caller, nothing to the callee.
    h.send(caller, r#"[48, 4, {"timeout": 5}, "com.plain", []]"#);
    assert_eq!(h.take_one(plain)[3], json!({}));
    h.tick(175);
    assert_eq!(h.take_one(caller)[4], "wamp.error.timeout");
    h.assert_quiet();

    // The caller leaves before the deadline: nothing fires later.
    h.send(caller, r#"[48, 5, {"timeout": 5}, "com.plain", []]"#);
    h.take_one(plain);
    h.close(caller);
    h.tick(1000);
    h.assert_quiet();

    // A timeout that is not a non-negative integer is refused.
    let (caller, _) = h.join();
    h.send(caller, r#"[48, 6, {"timeout": "soon"}, "com.plain", []]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.option_not_allowed");
}

#[test]
fn a_shared_registration_loses_a_callee_mid_call() {
    let mut h = Harness::new();
    let (c1, _) = h.join();
    let (c2, _) = h.join();
    let (caller, _) = h.join();
    register(&mut h, c1, r#"{"invoke": "roundrobin"}"#, "com.rr");
    register(&mut h, c2, r#"{"invoke": "roundrobin"}"#, "com.rr");
    invoke(&mut h, caller, 1, "com.rr", c1);
    let inv2 = invoke(&mut h, caller, 2, "com.rr", c2);
    h.close(c1);
    assert_eq!(
        h.take_one(caller),
        json!([
            8,
            48,
            1,
            {},
            "wamp.error.canceled",
            ["the callee left before answering"]
        ])
    );
    // The remaining callee serves every further call; its pending call is unaffected.
    for request in 3..6 {
        let inv = invoke(&mut h, caller, request, "com.rr", c2);
        h.send(c2, &format!("[70, {inv}, {{}}]"));
        assert_eq!(h.take_one(caller)[0], 50);
    }
    h.send(c2, &format!("[70, {inv2}, {{}}]"));
    assert_eq!(h.take_one(caller), json!([50, 2, {}]));
}

const STREAMING_CALLER: &str = r#"{"caller": {"features": {"progressive_call_invocations": true, "progressive_call_results": true}}}"#;
const STREAMING_CALLEE: &str =
    r#"{"callee": {"features": {"progressive_call_invocations": true, "call_canceling": true}}}"#;

#[test]
fn progressive_call_invocations_stream_into_one_invocation() {
    let mut h = Harness::new();
    let (callee, _) = h.join_with("realm1", STREAMING_CALLEE);
    let (caller, _) = h.join_with("realm1", STREAMING_CALLER);
    register(&mut h, callee, r#"{"match": "prefix"}"#, "com.upload");
    h.send(
        caller,
        r#"[48, 7, {"progress": true, "receive_progress": true, "timeout": 1000}, "com.upload.file", ["a"]]"#,
    );
    let first = h.take_one(callee);
    let (inv, reg) = (first[1].clone(), first[2].clone());
    assert_eq!(
        first[3],
        json!({"procedure": "com.upload.file", "receive_progress": true, "progress": true})
    );
    assert_eq!(first[4], json!(["a"]));
    // Further chunks: options other than progress are ignored; the first CALL's details are repeated.
    h.send(
        caller,
        r#"[48, 7, {"progress": true, "receive_progress": false}, "com.other", ["b"]]"#,
    );
    assert_eq!(
        h.take_one(callee),
        json!([68, inv, reg, {"procedure": "com.upload.file", "receive_progress": true, "progress": true}, ["b"]])
    );
    // Progressive results flow back meanwhile.
    h.send(
        callee,
        &format!(r#"[70, {inv}, {{"progress": true}}, ["got a, b"]]"#),
    );
    assert_eq!(
        h.take_one(caller),
        json!([50, 7, {"progress": true}, ["got a, b"]])
    );
    h.send(caller, r#"[48, 7, {}, "com.upload.file", ["c"]]"#);
    assert_eq!(
        h.take_one(callee),
        json!([68, inv, reg, {"procedure": "com.upload.file", "receive_progress": true}, ["c"]])
    );
    h.send(callee, &format!(r#"[70, {inv}, {{}}, ["done"]]"#));
    assert_eq!(h.take_one(caller), json!([50, 7, {}, ["done"]]));
    // The request ID is free again, for an ordinary call.
    h.send(caller, r#"[48, 7, {}, "com.upload.x", []]"#);
    assert_eq!(h.take_one(callee)[3], json!({"procedure": "com.upload.x"}));
}

#[test]
fn progressive_calls_need_the_feature_on_both_ends() {
    let mut h = Harness::new();
    let (plain_callee, _) = h.join();
    let (streaming_callee, _) = h.join_with(
        "realm1",
        r#"{"callee": {"features": {"progressive_call_invocations": true}}}"#,
    );
    let (caller, _) = h.join_with("realm1", STREAMING_CALLER);
    register(&mut h, plain_callee, "{}", "com.plain");
    register(&mut h, streaming_callee, "{}", "com.nocancel");
    // A callee without the feature, or without call canceling: ERROR; the further chunks are dropped, the final
    // one too, and then the request ID is free again.
    for procedure in ["com.plain", "com.nocancel"] {
        h.send(
            caller,
            &format!(r#"[48, 1, {{"progress": true}}, "{procedure}", []]"#),
        );
        assert_eq!(h.take_one(caller)[4], "wamp.error.feature_not_supported");
        h.send(
            caller,
            &format!(r#"[48, 1, {{"progress": true}}, "{procedure}", []]"#),
        );
        h.send(caller, &format!(r#"[48, 1, {{}}, "{procedure}", []]"#));
        h.assert_quiet();
    }
    h.send(caller, r#"[48, 1, {}, "com.plain", []]"#);
    assert_eq!(h.take_one(plain_callee)[0], 68);
    // A progressive CALL to a missing procedure: the same.
    h.send(caller, r#"[48, 2, {"progress": true}, "com.missing", []]"#);
    assert_eq!(h.take_one(caller)[4], "wamp.error.no_such_procedure");
    h.send(caller, r#"[48, 2, {}, "com.missing", []]"#);
    h.assert_quiet();
    // A caller that did not announce the feature violates the protocol.
    let (rude, _) = h.join();
    h.send(rude, r#"[48, 1, {"progress": true}, "com.plain", []]"#);
    let abort = h.take_one(rude);
    assert_eq!(
        (abort[0].clone(), abort[2].clone()),
        (json!(3), json!("wamp.error.protocol_violation"))
    );
}

#[test]
fn a_callee_leaving_mid_stream_ends_the_progressive_call() {
    let mut h = Harness::new();
    let (callee, _) = h.join_with("realm1", STREAMING_CALLEE);
    let (caller, _) = h.join_with("realm1", STREAMING_CALLER);
    register(&mut h, callee, "{}", "com.stream");
    h.send(caller, r#"[48, 3, {"progress": true}, "com.stream", [1]]"#);
    h.take_one(callee);
    h.close(callee);
    assert_eq!(h.take_one(caller)[4], "wamp.error.canceled");
    // A new callee registers; the rest of the old stream must not reach it as a new call.
    let (fresh, _) = h.join_with("realm1", STREAMING_CALLEE);
    register(&mut h, fresh, "{}", "com.stream");
    h.send(caller, r#"[48, 3, {"progress": true}, "com.stream", [2]]"#);
    h.send(caller, r#"[48, 3, {}, "com.stream", [3]]"#);
    h.assert_quiet();
    h.send(caller, r#"[48, 3, {}, "com.stream", [4]]"#);
    assert_eq!(
        h.take_one(fresh)[4],
        json!([4]),
        "after the final chunk the ID is free"
    );
}

#[test]
fn progressive_calls_end_early_by_answer_cancel_timeout_or_caller_leaving() {
    let mut h = Harness::new();
    let (c1, _) = h.join_with("realm1", STREAMING_CALLEE);
    let (c2, _) = h.join_with("realm1", STREAMING_CALLEE);
    let (caller, _) = h.join_with("realm1", STREAMING_CALLER);
    register(&mut h, c1, r#"{"invoke": "roundrobin"}"#, "com.rr");
    register(&mut h, c2, r#"{"invoke": "roundrobin"}"#, "com.rr");
    // Shared registration: every chunk goes to the callee the first one went to.
    h.send(caller, r#"[48, 1, {"progress": true}, "com.rr", []]"#);
    let inv = h.take_one(c1)[1].clone();
    h.send(caller, r#"[48, 1, {"progress": true}, "com.rr", []]"#);
    assert_eq!(h.take_one(c1)[1], inv);
    assert!(h.take(c2).is_empty());
    // The callee answers before the stream ends: RESULT; the remaining chunks are dropped.
    h.send(c1, &format!("[70, {inv}, {{}}, [\"early\"]]"));
    assert_eq!(h.take_one(caller), json!([50, 1, {}, ["early"]]));
    h.send(caller, r#"[48, 1, {"progress": true}, "com.rr", []]"#);
    h.send(caller, r#"[48, 1, {}, "com.rr", []]"#);
    h.assert_quiet();

    // Canceled mid-stream (kill): INTERRUPT once; further chunks are not forwarded.
    h.send(caller, r#"[48, 2, {"progress": true}, "com.rr", []]"#);
    let inv = h.take_one(c2)[1].clone();
    h.send(caller, r#"[49, 2, {"mode": "kill"}]"#);
    assert_eq!(h.take_one(c2)[0], 69);
    h.send(caller, r#"[48, 2, {"progress": true}, "com.rr", []]"#);
    h.assert_quiet();
    h.send(
        c2,
        &format!(r#"[8, 68, {inv}, {{}}, "wamp.error.canceled"]"#),
    );
    assert_eq!(h.take_one(caller)[4], "wamp.error.canceled");
    h.send(caller, r#"[48, 2, {}, "com.rr", []]"#);
    h.assert_quiet();

    // Timed out mid-stream: ERROR timeout, INTERRUPT; the rest is dropped.
    h.send(
        caller,
        r#"[48, 3, {"progress": true, "timeout": 10}, "com.rr", []]"#,
    );
    h.take_one(c1);
    h.tick(10);
    assert_eq!(h.take_one(caller)[4], "wamp.error.timeout");
    assert_eq!(h.take_one(c1)[0], 69);
    h.send(caller, r#"[48, 3, {}, "com.rr", []]"#);
    h.assert_quiet();

    // The caller leaves mid-stream: INTERRUPT killnowait (the spec's progressive call cancellation).
    h.send(caller, r#"[48, 4, {"progress": true}, "com.rr", []]"#);
    let inv = h.take_one(c2)[1].clone();
    h.close(caller);
    assert_eq!(
        h.take_one(c2),
        json!([69, inv, {"mode": "killnowait", "reason": "wamp.error.canceled"}])
    );
}

/// A router whose realm `open` discloses every caller and publisher.
fn disclosing_router() -> Harness {
    let mut config = kreisel_engine::RouterConfig::default();
    config.realms.push(kreisel_engine::RealmConfig {
        disclose_caller: true,
        disclose_publisher: true,
        ..kreisel_engine::RealmConfig::new("open")
    });
    Harness::with_config(config)
}

#[test]
fn caller_identification_by_request_registration_or_realm() {
    let mut h = disclosing_router();
    let (callee, _) = h.join();
    let (caller, caller_id) = h.join();
    register(&mut h, callee, "{}", "com.who");
    register(&mut h, callee, r#"{"disclose_caller": true}"#, "com.always");
    let identity = json!({
        "caller": caller_id,
        "caller_authid": format!("anonymous-{caller_id}"),
        "caller_authrole": "anonymous"
    });
    h.send(caller, r#"[48, 1, {}, "com.who", []]"#);
    assert_eq!(
        h.take_one(callee)[3],
        json!({}),
        "not disclosed unless asked"
    );
    h.send(caller, r#"[48, 2, {"disclose_me": true}, "com.who", []]"#);
    assert_eq!(h.take_one(callee)[3], identity);
    h.send(
        caller,
        r#"[48, 3, {"disclose_me": false}, "com.always", []]"#,
    );
    assert_eq!(
        h.take_one(callee)[3],
        identity,
        "the callee asked at REGISTER"
    );

    // A realm configured to disclose callers does so for every call.
    let (callee, _) = h.join_with("open", PLAIN_ROLES);
    let (caller, caller_id) = h.join_with("open", PLAIN_ROLES);
    register(&mut h, callee, "{}", "com.open");
    h.send(caller, r#"[48, 1, {}, "com.open", []]"#);
    assert_eq!(h.take_one(callee)[3]["caller"], caller_id);

    // Progressive calls: the identity is frozen with the first CALL's details.
    let (callee, _) = h.join_with("realm1", STREAMING_CALLEE);
    let (caller, caller_id) = h.join_with("realm1", STREAMING_CALLER);
    register(&mut h, callee, "{}", "com.stream");
    h.send(
        caller,
        r#"[48, 1, {"progress": true, "disclose_me": true}, "com.stream", []]"#,
    );
    assert_eq!(h.take_one(callee)[3]["caller"], caller_id);
    h.send(caller, r#"[48, 1, {}, "com.stream", []]"#);
    let last = h.take_one(callee);
    assert_eq!(last[3]["caller"], caller_id);
    assert_eq!(last[3].get("progress"), None);
}

const PASSTHRU: &str = r#"{"caller": {"features": {"payload_passthru_mode": true}},
                           "callee": {"features": {"payload_passthru_mode": true}}}"#;
/// Crossbar/autobahn's name for the feature.
const TRANSPARENT: &str = r#"{"caller": {"features": {"payload_transparency": true}},
                              "callee": {"features": {"payload_transparency": true}}}"#;

#[test]
fn payload_passthru_calls_forward_attributes_and_payload_untouched() {
    let mut h = Harness::new();
    let (callee, _) = h.join_with("realm1", PASSTHRU);
    let (caller, _) = h.join_with("realm1", TRANSPARENT);
    register(&mut h, callee, "{}", "com.secret");
    // The spec's form: one binary item in the arguments list.
    let ppt = r#"{"ppt_scheme": "wamp", "ppt_serializer": "cbor", "ppt_cipher": "xsalsa20poly1305", "ppt_keyid": "0x1f"}"#;
    h.send(
        caller,
        &format!(r#"[48, 1, {ppt}, "com.secret", ["\u0000AQID"]]"#),
    );
    let invocation = h.take_one(callee);
    let ppt_json: serde_json::Value = serde_json::from_str(ppt).unwrap();
    assert_eq!(invocation[3], ppt_json);
    assert_eq!(invocation[4], json!(["\u{0}AQID"]));
    let inv = invocation[1].as_u64().unwrap();
    h.send(
        callee,
        &format!(r#"[70, {inv}, {{"ppt_scheme": "x_mine", "ppt_keyid": "k2", "progress": false}}, ["\u0000BAU="]]"#),
    );
    assert_eq!(
        h.take_one(caller),
        json!([50, 1, {"ppt_scheme": "x_mine", "ppt_keyid": "k2"}, ["\u{0}BAU="]])
    );
    // A passthru attribute is a short name: one over 256 bytes is refused (it would be kept with a progressive
    // call while it is pending and copied into each of its INVOCATIONs).
    let long = "k".repeat(257);
    h.send(
        caller,
        &format!(r#"[48, 9, {{"ppt_scheme": "x_mine", "ppt_keyid": "{long}"}}, "com.secret", ["\u0000AQID"]]"#),
    );
    assert_eq!(h.take_one(caller)[4], "wamp.error.option_not_allowed");
    // autobahn's form (payload transparency): the binary in place of the arguments list.
    let enc = r#"{"enc_algo": "x_test", "enc_serializer": "json"}"#;
    h.send(
        caller,
        &format!(r#"[48, 2, {enc}, "com.secret", "\u0000eyJhIjoxfQ=="]"#),
    );
    let invocation = h.take_one(callee);
    assert_eq!(
        invocation[3],
        json!({"enc_algo": "x_test", "enc_serializer": "json"})
    );
    assert_eq!(invocation[4], json!("\u{0}eyJhIjoxfQ=="));
    assert!(invocation.get(5).is_none());
    let inv = invocation[1].as_u64().unwrap();
    // An application error keeps its passthru attributes.
    h.send(
        callee,
        &format!(r#"[8, 68, {inv}, {{"enc_algo": "x_test", "other": 1}}, "com.app.failed", "\u0000AA=="]"#),
    );
    assert_eq!(
        h.take_one(caller),
        json!([8, 48, 2, {"enc_algo": "x_test"}, "com.app.failed", "\u{0}AA=="])
    );
}

#[test]
fn payload_passthru_needs_the_feature_and_a_valid_scheme() {
    let mut h = Harness::new();
    let (plain_callee, _) = h.join();
    let (callee, _) = h.join_with("realm1", PASSTHRU);
    let (caller, _) = h.join_with("realm1", PASSTHRU);
    register(&mut h, plain_callee, "{}", "com.plain");
    register(&mut h, callee, "{}", "com.secret");
    let call = |h: &mut Harness, options: &str, procedure: &str| {
        h.send(
            caller,
            &format!(r#"[48, 1, {options}, "{procedure}", ["\u0000AQID"]]"#),
        );
        h.take_one(caller)
    };
    // A callee without the feature: feature_not_supported (an application error).
    let answer = call(&mut h, r#"{"ppt_scheme": "mqtt"}"#, "com.plain");
    assert_eq!(answer[4], "wamp.error.feature_not_supported");
    // Invalid schemes and attributes: option_not_allowed.
    for bad in [
        r#"{"ppt_scheme": "mine"}"#,
        r#"{"ppt_scheme": "wamp", "ppt_serializer": "json"}"#,
        r#"{"ppt_scheme": "mqtt", "ppt_keyid": 7}"#,
        r#"{"ppt_serializer": "cbor"}"#,
        r#"{"enc_algo": "rot13"}"#,
    ] {
        assert_eq!(
            call(&mut h, bad, "com.secret")[4],
            "wamp.error.option_not_allowed",
            "{bad}"
        );
    }
    // The router's own procedures cannot read a passthru payload.
    let answer = call(&mut h, r#"{"ppt_scheme": "mqtt"}"#, "wamp.session.count");
    assert_eq!(answer[4], "wamp.error.feature_not_supported");
    h.assert_quiet();
    // A YIELD in passthru mode for a caller without the feature: ERROR to the callee and to the caller.
    let (plain_caller, _) = h.join();
    let inv = invoke(&mut h, plain_caller, 5, "com.secret", callee);
    h.send(
        callee,
        &format!(r#"[70, {inv}, {{"ppt_scheme": "mqtt"}}, ["\u0000AQID"]]"#),
    );
    let refused = h.take_one(callee);
    assert_eq!(
        refused.as_array().unwrap()[..5],
        json!([8, 70, inv, {}, "wamp.error.feature_not_supported"])
            .as_array()
            .unwrap()[..]
    );
    assert_eq!(
        h.take_one(plain_caller)[4],
        "wamp.error.feature_not_supported"
    );
    // An invalid scheme on YIELD, likewise with option_not_allowed.
    let inv = invoke(&mut h, caller, 6, "com.secret", callee);
    h.send(
        callee,
        &format!(r#"[70, {inv}, {{"ppt_scheme": "nope"}}, ["\u0000AQID"]]"#),
    );
    assert_eq!(h.take_one(callee)[4], "wamp.error.option_not_allowed");
    assert_eq!(h.take_one(caller)[4], "wamp.error.option_not_allowed");
    // Passthru from a peer that did not announce it is a protocol violation: CALL ...
    let (rogue, _) = h.join();
    h.send(
        rogue,
        r#"[48, 1, {"ppt_scheme": "mqtt"}, "com.secret", ["\u0000AQID"]]"#,
    );
    assert_eq!(h.take_one(rogue)[2], "wamp.error.protocol_violation");
    // ... and YIELD.
    let inv = invoke(&mut h, caller, 7, "com.plain", plain_callee);
    h.send(
        plain_callee,
        &format!(r#"[70, {inv}, {{"ppt_scheme": "mqtt"}}, ["\u0000AQID"]]"#),
    );
    assert_eq!(h.take_one(plain_callee)[2], "wamp.error.protocol_violation");
    assert_eq!(h.take_one(caller)[4], "wamp.error.canceled");
}
