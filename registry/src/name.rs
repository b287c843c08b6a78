//! [`Name`]: the names a resource table holds (group, version, kind,
//! resource, printer column headers). The built-in kinds' names are string
//! literals; a custom resource's arrive at run time with its definition and
//! are shared by every table that serves it, and freed with the last one.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// An immutable, cheaply cloned string: a literal, or shared text.
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    /// A literal name (no allocation; usable in constants).
    pub const fn from_static(s: &'static str) -> Self {
        Name(Repr::Static(s))
    }

    /// A name read at run time.
    pub fn owned(s: &str) -> Self {
        Name(Repr::Shared(Arc::from(s)))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl Default for Name {
    fn default() -> Self {
        Name::from_static("")
    }
}

impl From<&'static str> for Name {
    fn from(s: &'static str) -> Self {
        Name::from_static(s)
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Name(Repr::Shared(Arc::from(s)))
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl From<Name> for String {
    fn from(n: Name) -> Self {
        n.as_str().to_string()
    }
}

impl From<&Name> for String {
    fn from(n: &Name) -> Self {
        n.as_str().to_string()
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_shared_names_compare_and_hash_by_text() {
        use std::collections::HashSet;
        let literal = Name::from_static("widgets");
        let shared = Name::owned("widgets");
        assert_eq!(literal, shared);
        assert_eq!(literal, "widgets");
        assert_eq!("widgets", shared);
        let set: HashSet<Name> = [literal].into_iter().collect();
        assert!(set.contains(&shared));
        assert!(set.contains("widgets"));
        assert_eq!(serde_json::to_string(&shared).unwrap(), "\"widgets\"");
        assert_eq!(format!("{shared}/{shared:?}"), "widgets/\"widgets\"");
    }
}
