use std::fmt;

/// Largest WAMP ID: 2^53, so that IDs survive a round trip through IEEE-754 doubles (JavaScript).
pub const ID_MAX: u64 = 1 << 53;

/// A WAMP ID: an integer in `1..=2^53`. The constructor checks the range, so every `Id` is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(u64);

impl Id {
    /// The ID `value`, if it lies in `1..=2^53`.
    pub const fn new(value: u64) -> Option<Id> {
        if value >= 1 && value <= ID_MAX {
            Some(Id(value))
        } else {
            None
        }
    }

    /// The integer value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The ID after this one in a session-scope sequence, wrapping from 2^53 back to 1.
    pub const fn next(self) -> Id {
        if self.0 == ID_MAX {
            Id(1)
        } else {
            Id(self.0 + 1)
        }
    }

    /// The first ID of a session-scope sequence.
    pub const FIRST: Id = Id(1);
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_is_checked() {
        assert_eq!(Id::new(0), None);
        assert_eq!(Id::new(1).map(Id::get), Some(1));
        assert_eq!(Id::new(ID_MAX).map(Id::get), Some(ID_MAX));
        assert_eq!(Id::new(ID_MAX + 1), None);
        assert_eq!(Id::new(ID_MAX).map(Id::next), Some(Id::FIRST));
    }
}
