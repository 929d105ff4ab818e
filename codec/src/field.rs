use std::borrow::Cow;

use crate::raw::Writer;
use crate::{RawValue, Value};

/// One value of an outgoing dictionary or payload, in whichever form is cheapest for its producer: a scalar, a
/// borrowed string, an owned [`Value`], a nested list of fields, or a [`RawValue`] forwarded from a decoded message
/// (copied or transcoded on encode).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Field<'a> {
    Bool(bool),
    UInt(u64),
    Int(i64),
    Str(&'a str),
    Raw(RawValue<'a>),
    Value(&'a Value),
    List(&'a [Field<'a>]),
    Dict(Dict<'a>),
}

impl<'a> Field<'a> {
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Field::Bool(v) => Some(*v),
            Field::Raw(raw) => raw.as_bool(),
            Field::Value(value) => value.as_bool(),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Field::UInt(v) => Some(*v),
            Field::Int(v) => u64::try_from(*v).ok(),
            Field::Raw(raw) => raw.as_u64(),
            Field::Value(value) => value.as_u64(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        match self {
            Field::Str(v) => Some(Cow::Borrowed(v)),
            Field::Raw(raw) => raw.as_str(),
            Field::Value(Value::Str(v)) => Some(Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }

    /// The raw value, when this field was decoded from a frame.
    pub fn as_raw(&self) -> Option<RawValue<'a>> {
        match self {
            Field::Raw(raw) => Some(*raw),
            _ => None,
        }
    }

    pub(crate) fn write<W: Writer>(&self, w: &mut W) {
        match self {
            Field::Bool(v) => w.bool(*v),
            Field::UInt(v) => w.u64(*v),
            Field::Int(v) => w.i64(*v),
            Field::Str(v) => w.str(v),
            Field::Raw(raw) => w.raw(*raw),
            Field::Value(value) => value.write(w),
            Field::List(items) => {
                w.array(items.len());
                items.iter().for_each(|item| item.write(w));
            }
            Field::Dict(dict) => dict.write(w),
        }
    }
}

/// A WAMP `Options`/`Details` dictionary: decoded ([`Dict::Raw`], a validated map span) or built by the router
/// ([`Dict::Fields`], a borrowed slice of entries; [`Dict::Value`], an owned dictionary).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dict<'a> {
    Raw(RawValue<'a>),
    Fields(&'a [(&'a str, Field<'a>)]),
    Value(&'a Value),
}

impl<'a> Dict<'a> {
    /// `{}`.
    pub const EMPTY: Dict<'static> = Dict::Fields(&[]);

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<Field<'a>> {
        match self {
            Dict::Raw(raw) => raw.get(key).map(Field::Raw),
            Dict::Fields(fields) => fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v),
            Dict::Value(value) => value.get(key).map(Field::Value),
        }
    }

    /// Whether the dictionary has no entries.
    pub fn is_empty(&self) -> bool {
        match self {
            Dict::Raw(raw) => raw
                .dict()
                .is_none_or(|mut entries| entries.next().is_none()),
            Dict::Fields(fields) => fields.is_empty(),
            Dict::Value(Value::Dict(entries)) => entries.is_empty(),
            Dict::Value(_) => true,
        }
    }

    /// Calls `f` for every entry (in encoded order).
    pub fn for_each(&self, mut f: impl FnMut(&str, Field<'a>)) {
        match self {
            Dict::Raw(raw) => {
                if let Some(entries) = raw.dict() {
                    entries.for_each(|(k, v)| f(&k, Field::Raw(v)));
                }
            }
            Dict::Fields(fields) => fields.iter().for_each(|(k, v)| f(k, *v)),
            Dict::Value(Value::Dict(entries)) => {
                entries.iter().for_each(|(k, v)| f(k, Field::Value(v)))
            }
            Dict::Value(_) => {}
        }
    }

    /// An owned copy.
    pub fn to_value(&self) -> Value {
        match self {
            Dict::Raw(raw) => raw.to_value(),
            Dict::Value(value) => (*value).clone(),
            Dict::Fields(_) => {
                let mut entries = Vec::new();
                self.for_each(|k, v| entries.push((k.to_owned(), field_to_value(v))));
                Value::Dict(entries)
            }
        }
    }

    pub(crate) fn write<W: Writer>(&self, w: &mut W) {
        match self {
            Dict::Raw(raw) => w.raw(*raw),
            Dict::Value(value) => value.write(w),
            Dict::Fields(fields) => {
                w.map(fields.len());
                for (key, value) in fields.iter() {
                    w.key(key);
                    value.write(w);
                }
            }
        }
    }
}

fn field_to_value(field: Field<'_>) -> Value {
    match field {
        Field::Bool(v) => Value::Bool(v),
        Field::UInt(v) => Value::UInt(v),
        Field::Int(v) => Value::from(v),
        Field::Str(v) => Value::from(v),
        Field::Raw(raw) => raw.to_value(),
        Field::Value(value) => value.clone(),
        Field::List(items) => Value::List(items.iter().map(|item| field_to_value(*item)).collect()),
        Field::Dict(dict) => dict.to_value(),
    }
}

/// The application payload of PUBLISH, EVENT, CALL, INVOCATION, YIELD, RESULT and ERROR: positional `args` (a
/// list) and keyword `kwargs` (a dictionary). The router never looks inside; decoded payloads are raw spans.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Payload<'a> {
    pub args: Option<Field<'a>>,
    pub kwargs: Option<Field<'a>>,
}

impl<'a> Payload<'a> {
    /// No payload.
    pub const EMPTY: Payload<'static> = Payload {
        args: None,
        kwargs: None,
    };

    /// Number of trailing message elements this payload takes: kwargs present implies args present (an empty list
    /// is written when only kwargs exist).
    pub(crate) fn element_count(&self) -> usize {
        match (self.args, self.kwargs) {
            (_, Some(_)) => 2,
            (Some(_), None) => 1,
            (None, None) => 0,
        }
    }

    pub(crate) fn write<W: Writer>(&self, w: &mut W) {
        match (self.args, self.kwargs) {
            (None, None) => {}
            (Some(args), None) => args.write(w),
            (args, Some(kwargs)) => {
                match args {
                    Some(args) => args.write(w),
                    None => w.array(0),
                }
                kwargs.write(w);
            }
        }
    }
}
