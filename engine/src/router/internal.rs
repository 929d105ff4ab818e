//! Sessions the router's own code drives (the HTTP bridge of `io`): opened with [`Router::handle_open`] like any
//! transport's, then joined with [`Router::join_trusted`] instead of HELLO. From then on they send requests through
//! [`Router::handle_message`] and receive answers through the [`Sink`] like every network session, so
//! authorization, limits, shards and every feature apply to them alike.

use super::*;
use crate::auth::Method;
use crate::features::ClientFeatures;

impl Router {
    /// Joins the session on `handle` (opened, not joined yet) to `realm` as `authid` with role `authrole`, without
    /// authentication (authmethod `trusted`, authprovider `static`). WELCOME goes to the sink as for any session;
    /// returns the session ID. Refused, with the reason, when the realm does not exist, the session has already
    /// sent HELLO or joined, the realm is full, or the realm has roles and none is called `authrole`.
    pub fn join_trusted(
        &mut self,
        handle: SessionHandle,
        (realm, authid, authrole): (&str, &str, &str),
        now_ms: u64,
        sink: &mut impl Sink,
    ) -> Result<Id, String> {
        self.now_ms = now_ms;
        let Some(&realm_index) = self.realm_index.get(realm) else {
            return Err(format!("no realm '{realm}' on this router"));
        };
        if !self
            .session(handle)
            .is_some_and(|s| matches!(s.phase, Phase::Handshake))
        {
            return Err("the session is not waiting to join".into());
        }
        if self.realms[realm_index].authz.role(authrole).is_none() {
            return Err(format!(
                "role '{authrole}' has no permissions in realm '{realm}'"
            ));
        }
        if let Some(text) = self.realm_full(realm_index) {
            return Err(text);
        }
        let id = self.new_session_id();
        self.join(
            handle,
            realm_index,
            id,
            (authid, authrole, Method::Trusted),
            ClientFeatures::default(),
            sink,
        );
        self.check_invariants();
        match self.joined(handle) {
            Some(joined) => Ok(joined.id),
            None => Err("the session could not join".into()),
        }
    }
}
