use std::borrow::Cow;

use crate::raw::Writer;
use crate::{cbor, json, msgpack, DecodeError, Dict, Field, Id, Payload, RawValue, Serializer};

/// Most elements any WAMP message has (ERROR with args and kwargs).
pub(crate) const ELEMENTS_MAX: usize = 7;

/// The message type codes of the spec, in code order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    Hello = 1,
    Welcome = 2,
    Abort = 3,
    Challenge = 4,
    Authenticate = 5,
    Goodbye = 6,
    Error = 8,
    Publish = 16,
    Published = 17,
    Subscribe = 32,
    Subscribed = 33,
    Unsubscribe = 34,
    Unsubscribed = 35,
    Event = 36,
    Call = 48,
    Cancel = 49,
    Result = 50,
    Register = 64,
    Registered = 65,
    Unregister = 66,
    Unregistered = 67,
    Invocation = 68,
    Interrupt = 69,
    Yield = 70,
}

impl MessageType {
    pub fn from_code(code: u64) -> Option<MessageType> {
        use MessageType::*;
        Some(match code {
            1 => Hello,
            2 => Welcome,
            3 => Abort,
            4 => Challenge,
            5 => Authenticate,
            6 => Goodbye,
            8 => Error,
            16 => Publish,
            17 => Published,
            32 => Subscribe,
            33 => Subscribed,
            34 => Unsubscribe,
            35 => Unsubscribed,
            36 => Event,
            48 => Call,
            49 => Cancel,
            50 => Result,
            64 => Register,
            65 => Registered,
            66 => Unregister,
            67 => Unregistered,
            68 => Invocation,
            69 => Interrupt,
            70 => Yield,
            _ => return None,
        })
    }

    pub fn code(self) -> u64 {
        self as u64
    }

    /// Upper-case name as the spec writes it (`PUBLISH`), for logs and error messages.
    pub fn name(self) -> &'static str {
        use MessageType::*;
        match self {
            Hello => "HELLO",
            Welcome => "WELCOME",
            Abort => "ABORT",
            Challenge => "CHALLENGE",
            Authenticate => "AUTHENTICATE",
            Goodbye => "GOODBYE",
            Error => "ERROR",
            Publish => "PUBLISH",
            Published => "PUBLISHED",
            Subscribe => "SUBSCRIBE",
            Subscribed => "SUBSCRIBED",
            Unsubscribe => "UNSUBSCRIBE",
            Unsubscribed => "UNSUBSCRIBED",
            Event => "EVENT",
            Call => "CALL",
            Cancel => "CANCEL",
            Result => "RESULT",
            Register => "REGISTER",
            Registered => "REGISTERED",
            Unregister => "UNREGISTER",
            Unregistered => "UNREGISTERED",
            Invocation => "INVOCATION",
            Interrupt => "INTERRUPT",
            Yield => "YIELD",
        }
    }
}

/// One WAMP message. Decoded messages borrow their frame; messages the router builds borrow its state.
/// Field names follow the spec's message layouts.
#[derive(Clone, Debug, PartialEq)]
pub enum Message<'a> {
    Hello {
        realm: Cow<'a, str>,
        details: Dict<'a>,
    },
    Welcome {
        session: Id,
        details: Dict<'a>,
    },
    Abort {
        details: Dict<'a>,
        reason: Cow<'a, str>,
    },
    Challenge {
        auth_method: Cow<'a, str>,
        extra: Dict<'a>,
    },
    Authenticate {
        signature: Cow<'a, str>,
        extra: Dict<'a>,
    },
    Goodbye {
        details: Dict<'a>,
        reason: Cow<'a, str>,
    },
    /// `request_type` is the code of the message the error answers (kept as sent; the router checks it).
    Error {
        request_type: u64,
        request: Id,
        details: Dict<'a>,
        error: Cow<'a, str>,
        payload: Payload<'a>,
    },
    Publish {
        request: Id,
        options: Dict<'a>,
        topic: Cow<'a, str>,
        payload: Payload<'a>,
    },
    Published {
        request: Id,
        publication: Id,
    },
    Subscribe {
        request: Id,
        options: Dict<'a>,
        topic: Cow<'a, str>,
    },
    Subscribed {
        request: Id,
        subscription: Id,
    },
    Unsubscribe {
        request: Id,
        subscription: Id,
    },
    /// `details` is only present on router-initiated UNSUBSCRIBED (advanced profile).
    Unsubscribed {
        request: Id,
        details: Option<Dict<'a>>,
    },
    Event {
        subscription: Id,
        publication: Id,
        details: Dict<'a>,
        payload: Payload<'a>,
    },
    Call {
        request: Id,
        options: Dict<'a>,
        procedure: Cow<'a, str>,
        payload: Payload<'a>,
    },
    Cancel {
        request: Id,
        options: Dict<'a>,
    },
    Result {
        request: Id,
        details: Dict<'a>,
        payload: Payload<'a>,
    },
    Register {
        request: Id,
        options: Dict<'a>,
        procedure: Cow<'a, str>,
    },
    Registered {
        request: Id,
        registration: Id,
    },
    Unregister {
        request: Id,
        registration: Id,
    },
    Unregistered {
        request: Id,
        details: Option<Dict<'a>>,
    },
    Invocation {
        request: Id,
        registration: Id,
        details: Dict<'a>,
        payload: Payload<'a>,
    },
    Interrupt {
        request: Id,
        options: Dict<'a>,
    },
    Yield {
        request: Id,
        options: Dict<'a>,
        payload: Payload<'a>,
    },
}

impl Message<'_> {
    pub fn message_type(&self) -> MessageType {
        use MessageType as T;
        match self {
            Message::Hello { .. } => T::Hello,
            Message::Welcome { .. } => T::Welcome,
            Message::Abort { .. } => T::Abort,
            Message::Challenge { .. } => T::Challenge,
            Message::Authenticate { .. } => T::Authenticate,
            Message::Goodbye { .. } => T::Goodbye,
            Message::Error { .. } => T::Error,
            Message::Publish { .. } => T::Publish,
            Message::Published { .. } => T::Published,
            Message::Subscribe { .. } => T::Subscribe,
            Message::Subscribed { .. } => T::Subscribed,
            Message::Unsubscribe { .. } => T::Unsubscribe,
            Message::Unsubscribed { .. } => T::Unsubscribed,
            Message::Event { .. } => T::Event,
            Message::Call { .. } => T::Call,
            Message::Cancel { .. } => T::Cancel,
            Message::Result { .. } => T::Result,
            Message::Register { .. } => T::Register,
            Message::Registered { .. } => T::Registered,
            Message::Unregister { .. } => T::Unregister,
            Message::Unregistered { .. } => T::Unregistered,
            Message::Invocation { .. } => T::Invocation,
            Message::Interrupt { .. } => T::Interrupt,
            Message::Yield { .. } => T::Yield,
        }
    }
}

/// Typed access to the elements of a split message, producing [`DecodeError::Element`] on a mismatch.
struct Elements<'a> {
    ser: Serializer,
    code: u64,
    items: [&'a [u8]; ELEMENTS_MAX],
    len: usize,
}

impl<'a> Elements<'a> {
    fn raw(&self, index: usize) -> RawValue<'a> {
        RawValue::new(self.ser, self.items[index])
    }

    fn error(&self, index: usize, expected: &'static str) -> DecodeError {
        DecodeError::Element {
            code: self.code,
            index,
            expected,
        }
    }

    fn id(&self, index: usize) -> Result<Id, DecodeError> {
        self.raw(index)
            .as_u64()
            .and_then(Id::new)
            .ok_or_else(|| self.error(index, "an ID in 1..=2^53"))
    }

    fn uint(&self, index: usize) -> Result<u64, DecodeError> {
        self.raw(index)
            .as_u64()
            .ok_or_else(|| self.error(index, "a non-negative integer"))
    }

    fn string(&self, index: usize) -> Result<Cow<'a, str>, DecodeError> {
        self.raw(index)
            .as_str()
            .ok_or_else(|| self.error(index, "a string"))
    }

    fn dict(&self, index: usize) -> Result<Dict<'a>, DecodeError> {
        let raw = self.raw(index);
        match raw.dict() {
            Some(_) => Ok(Dict::Raw(raw)),
            None => Err(self.error(index, "a dictionary")),
        }
    }

    /// The optional trailing `Arguments|list, ArgumentsKw|dict` starting at `index`. Payload transparency
    /// (crossbar, autobahn: `enc_algo` in the options) puts one binary value in place of `Arguments|list`, as the
    /// last element: accepted as the `args` and forwarded as it is (a JSON `"\u0000"` + base64 string, a
    /// MessagePack `bin`, a CBOR byte string).
    fn payload(&self, index: usize) -> Result<Payload<'a>, DecodeError> {
        let mut payload = Payload::EMPTY;
        if self.len > index {
            let args = self.raw(index);
            let binary = || self.len == index + 1 && args.as_bytes().is_some();
            if args.list().is_none() && !binary() {
                return Err(self.error(index, "a list (Arguments)"));
            }
            payload.args = Some(Field::Raw(args));
        }
        if self.len > index + 1 {
            let kwargs = self.raw(index + 1);
            if kwargs.dict().is_none() {
                return Err(self.error(index + 1, "a dictionary (ArgumentsKw)"));
            }
            payload.kwargs = Some(Field::Raw(kwargs));
        }
        Ok(payload)
    }

    fn arity(&self, min: usize, max: usize) -> Result<(), DecodeError> {
        if (min..=max).contains(&self.len) {
            Ok(())
        } else {
            Err(DecodeError::Arity { code: self.code })
        }
    }
}

pub(crate) fn decode(ser: Serializer, bytes: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut items: [&[u8]; ELEMENTS_MAX] = [&[]; ELEMENTS_MAX];
    let len = match ser {
        Serializer::Json => json::split_array(bytes, &mut items)?,
        Serializer::MsgPack => msgpack::split_array(bytes, &mut items)?,
        Serializer::Cbor => cbor::split_array(bytes, &mut items)?,
    };
    if len == 0 {
        return Err(DecodeError::NotAMessage);
    }
    let code = RawValue::new(ser, items[0])
        .as_u64()
        .ok_or(DecodeError::NotAMessage)?;
    let kind = MessageType::from_code(code).ok_or(DecodeError::UnknownType(code))?;
    let e = Elements {
        ser,
        code,
        items,
        len,
    };
    use MessageType as T;
    let message = match kind {
        T::Hello => {
            e.arity(3, 3)?;
            Message::Hello {
                realm: e.string(1)?,
                details: e.dict(2)?,
            }
        }
        T::Welcome => {
            e.arity(3, 3)?;
            Message::Welcome {
                session: e.id(1)?,
                details: e.dict(2)?,
            }
        }
        T::Abort => {
            e.arity(3, 3)?;
            Message::Abort {
                details: e.dict(1)?,
                reason: e.string(2)?,
            }
        }
        T::Challenge => {
            e.arity(3, 3)?;
            Message::Challenge {
                auth_method: e.string(1)?,
                extra: e.dict(2)?,
            }
        }
        T::Authenticate => {
            e.arity(3, 3)?;
            Message::Authenticate {
                signature: e.string(1)?,
                extra: e.dict(2)?,
            }
        }
        T::Goodbye => {
            e.arity(3, 3)?;
            Message::Goodbye {
                details: e.dict(1)?,
                reason: e.string(2)?,
            }
        }
        T::Error => {
            e.arity(5, 7)?;
            Message::Error {
                request_type: e.uint(1)?,
                request: e.id(2)?,
                details: e.dict(3)?,
                error: e.string(4)?,
                payload: e.payload(5)?,
            }
        }
        T::Publish => {
            e.arity(4, 6)?;
            Message::Publish {
                request: e.id(1)?,
                options: e.dict(2)?,
                topic: e.string(3)?,
                payload: e.payload(4)?,
            }
        }
        T::Published => {
            e.arity(3, 3)?;
            Message::Published {
                request: e.id(1)?,
                publication: e.id(2)?,
            }
        }
        T::Subscribe => {
            e.arity(4, 4)?;
            Message::Subscribe {
                request: e.id(1)?,
                options: e.dict(2)?,
                topic: e.string(3)?,
            }
        }
        T::Subscribed => {
            e.arity(3, 3)?;
            Message::Subscribed {
                request: e.id(1)?,
                subscription: e.id(2)?,
            }
        }
        T::Unsubscribe => {
            e.arity(3, 3)?;
            Message::Unsubscribe {
                request: e.id(1)?,
                subscription: e.id(2)?,
            }
        }
        T::Unsubscribed => {
            e.arity(2, 3)?;
            let details = if e.len == 3 { Some(e.dict(2)?) } else { None };
            Message::Unsubscribed {
                request: e.id(1)?,
                details,
            }
        }
        T::Event => {
            e.arity(4, 6)?;
            Message::Event {
                subscription: e.id(1)?,
                publication: e.id(2)?,
                details: e.dict(3)?,
                payload: e.payload(4)?,
            }
        }
        T::Call => {
            e.arity(4, 6)?;
            Message::Call {
                request: e.id(1)?,
                options: e.dict(2)?,
                procedure: e.string(3)?,
                payload: e.payload(4)?,
            }
        }
        T::Cancel => {
            e.arity(3, 3)?;
            Message::Cancel {
                request: e.id(1)?,
                options: e.dict(2)?,
            }
        }
        T::Result => {
            e.arity(3, 5)?;
            Message::Result {
                request: e.id(1)?,
                details: e.dict(2)?,
                payload: e.payload(3)?,
            }
        }
        T::Register => {
            e.arity(4, 4)?;
            Message::Register {
                request: e.id(1)?,
                options: e.dict(2)?,
                procedure: e.string(3)?,
            }
        }
        T::Registered => {
            e.arity(3, 3)?;
            Message::Registered {
                request: e.id(1)?,
                registration: e.id(2)?,
            }
        }
        T::Unregister => {
            e.arity(3, 3)?;
            Message::Unregister {
                request: e.id(1)?,
                registration: e.id(2)?,
            }
        }
        T::Unregistered => {
            e.arity(2, 3)?;
            let details = if e.len == 3 { Some(e.dict(2)?) } else { None };
            Message::Unregistered {
                request: e.id(1)?,
                details,
            }
        }
        T::Invocation => {
            e.arity(4, 6)?;
            Message::Invocation {
                request: e.id(1)?,
                registration: e.id(2)?,
                details: e.dict(3)?,
                payload: e.payload(4)?,
            }
        }
        T::Interrupt => {
            e.arity(3, 3)?;
            Message::Interrupt {
                request: e.id(1)?,
                options: e.dict(2)?,
            }
        }
        T::Yield => {
            e.arity(3, 5)?;
            Message::Yield {
                request: e.id(1)?,
                options: e.dict(2)?,
                payload: e.payload(3)?,
            }
        }
    };
    Ok(message)
}

pub(crate) fn encode(ser: Serializer, msg: &Message<'_>, out: &mut Vec<u8>) {
    match ser {
        Serializer::Json => write_message(msg, &mut json::Writer::new(out)),
        Serializer::MsgPack => write_message(msg, &mut msgpack::Writer::new(out)),
        Serializer::Cbor => write_message(msg, &mut cbor::Writer::new(out)),
    }
}

fn write_message<W: Writer>(msg: &Message<'_>, w: &mut W) {
    let code = msg.message_type().code();
    match msg {
        Message::Hello { realm, details } => {
            w.array(3);
            w.u64(code);
            w.str(realm);
            details.write(w);
        }
        Message::Welcome { session, details } => {
            w.array(3);
            w.u64(code);
            w.u64(session.get());
            details.write(w);
        }
        Message::Abort { details, reason } | Message::Goodbye { details, reason } => {
            w.array(3);
            w.u64(code);
            details.write(w);
            w.str(reason);
        }
        Message::Challenge {
            auth_method: text,
            extra,
        }
        | Message::Authenticate {
            signature: text,
            extra,
        } => {
            w.array(3);
            w.u64(code);
            w.str(text);
            extra.write(w);
        }
        Message::Error {
            request_type,
            request,
            details,
            error,
            payload,
        } => {
            w.array(5 + payload.element_count());
            w.u64(code);
            w.u64(*request_type);
            w.u64(request.get());
            details.write(w);
            w.str(error);
            payload.write(w);
        }
        Message::Publish {
            request,
            options: dict,
            topic: uri,
            payload,
        }
        | Message::Call {
            request,
            options: dict,
            procedure: uri,
            payload,
        } => {
            w.array(4 + payload.element_count());
            w.u64(code);
            w.u64(request.get());
            dict.write(w);
            w.str(uri);
            payload.write(w);
        }
        Message::Subscribe {
            request,
            options,
            topic: uri,
        }
        | Message::Register {
            request,
            options,
            procedure: uri,
        } => {
            w.array(4);
            w.u64(code);
            w.u64(request.get());
            options.write(w);
            w.str(uri);
        }
        Message::Published {
            request,
            publication: id,
        }
        | Message::Subscribed {
            request,
            subscription: id,
        }
        | Message::Unsubscribe {
            request,
            subscription: id,
        }
        | Message::Registered {
            request,
            registration: id,
        }
        | Message::Unregister {
            request,
            registration: id,
        } => {
            w.array(3);
            w.u64(code);
            w.u64(request.get());
            w.u64(id.get());
        }
        Message::Unsubscribed { request, details } | Message::Unregistered { request, details } => {
            w.array(if details.is_some() { 3 } else { 2 });
            w.u64(code);
            w.u64(request.get());
            if let Some(details) = details {
                details.write(w);
            }
        }
        Message::Event {
            subscription: first,
            publication: second,
            details,
            payload,
        }
        | Message::Invocation {
            request: first,
            registration: second,
            details,
            payload,
        } => {
            w.array(4 + payload.element_count());
            w.u64(code);
            w.u64(first.get());
            w.u64(second.get());
            details.write(w);
            payload.write(w);
        }
        Message::Cancel { request, options } | Message::Interrupt { request, options } => {
            w.array(3);
            w.u64(code);
            w.u64(request.get());
            options.write(w);
        }
        Message::Result {
            request,
            details: dict,
            payload,
        }
        | Message::Yield {
            request,
            options: dict,
            payload,
        } => {
            w.array(3 + payload.element_count());
            w.u64(code);
            w.u64(request.get());
            dict.write(w);
            payload.write(w);
        }
    }
}
