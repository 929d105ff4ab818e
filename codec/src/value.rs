use crate::raw::Writer;

/// An owned dynamic value, for the places off the hot path: HELLO details, WELCOME roles, meta API results.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// A negative integer (non-negative integers are always [`Value::UInt`]).
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    /// Binary: MessagePack `bin`, JSON `"\u0000" + base64`.
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// A dictionary in insertion order (WAMP dictionaries are small; lookups are linear).
    Dict(Vec<(String, Value)>),
}

impl Value {
    /// An empty dictionary.
    pub fn dict() -> Value {
        Value::Dict(Vec::new())
    }

    /// Builder: `self` with `key` set to `value` (appended; `self` must be a dictionary).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Value {
        if let Value::Dict(entries) = &mut self {
            entries.push((key.to_owned(), value.into()));
        } else {
            debug_assert!(false, "Value::with on a non-dictionary");
        }
        self
    }

    /// The entry `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::UInt(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(v) => Some(*v),
            _ => None,
        }
    }

    pub(crate) fn write<W: Writer>(&self, w: &mut W) {
        match self {
            Value::Null => w.null(),
            Value::Bool(v) => w.bool(*v),
            Value::Int(v) => w.i64(*v),
            Value::UInt(v) => w.u64(*v),
            Value::Float(v) => w.f64(*v),
            Value::Str(v) => w.str(v),
            Value::Bytes(v) => w.bin(v),
            Value::List(items) => {
                w.array(items.len());
                items.iter().for_each(|item| item.write(w));
            }
            Value::Dict(entries) => {
                w.map(entries.len());
                for (key, value) in entries {
                    w.key(key);
                    value.write(w);
                }
            }
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::UInt(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        if v >= 0 {
            Value::UInt(v as u64)
        } else {
            Value::Int(v)
        }
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}
impl From<crate::Id> for Value {
    fn from(v: crate::Id) -> Value {
        Value::UInt(v.get())
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::List(v)
    }
}
