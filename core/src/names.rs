//! [`named_enum!`]: an enum whose variants have one lower-case name each, written
//! once, from which everything else follows: `name()`, `Display`, `FromStr`,
//! serde (the name as a string), clap's `ValueEnum` (possible values with their
//! doc comments as help) and `ALL`. The command line, the site file, scenarios,
//! records and JSON output therefore parse and print the same words, and a bad
//! word is refused with the accepted ones listed.

use std::fmt;

/// A word that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}: use {accepted}")]
pub struct UnknownName {
    /// What the enum names ("mode", "runtime", ...).
    pub what: &'static str,
    pub given: String,
    /// The accepted names, as "a, b or c".
    pub accepted: String,
}

/// "a, b or c".
#[doc(hidden)]
pub fn or_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// serde's visitor for a named enum (keeps the generated code small).
#[doc(hidden)]
pub struct NameVisitor<T> {
    pub what: &'static str,
    pub parse: fn(&str) -> Result<T, UnknownName>,
}

impl<'de, T> serde::de::Visitor<'de> for NameVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} name", self.what)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        (self.parse)(text).map_err(E::custom)
    }
}

/// Declares an enum with one name per variant (and optional aliases that parse
/// to it). Variants' doc comments become the help of clap's possible values.
///
/// ```
/// hybrun_core::named_enum! {
///     /// What the example names.
///     pub enum Colour ("colour") {
///         /// The sky.
///         Blue = "blue",
///         Red = "red" | "crimson",
///     }
/// }
/// assert_eq!(Colour::Red.name(), "red");
/// assert_eq!("crimson".parse::<Colour>(), Ok(Colour::Red));
/// assert!("green".parse::<Colour>().unwrap_err().to_string().contains("use blue or red"));
/// ```
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $(
                $(#[doc = $doc:literal])*
                $variant:ident = $text:literal $(| $alias:literal)*
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The names, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The one name of this value.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The accepted names, as "a, b or c".
            pub fn accepted() -> String {
                $crate::__or_list(Self::NAMES)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::UnknownName;
            fn from_str(text: &str) -> Result<$name, $crate::UnknownName> {
                match text {
                    $( $text $(| $alias)* => Ok($name::$variant), )+
                    _ => Err($crate::UnknownName {
                        what: $what,
                        given: text.to_owned(),
                        accepted: Self::accepted(),
                    }),
                }
            }
        }

        impl $crate::__serde::Serialize for $name {
            fn serialize<S: $crate::__serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                d.deserialize_str($crate::__NameVisitor {
                    what: $what,
                    parse: <$name as ::std::str::FromStr>::from_str,
                })
            }
        }

        impl $crate::__clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                Self::ALL
            }
            fn to_possible_value(&self) -> Option<$crate::__clap::builder::PossibleValue> {
                let help: &[&str] = match self {
                    $( $name::$variant => &[$($doc),*], )+
                };
                let aliases: &[&'static str] = match self {
                    $( $name::$variant => &[$($alias),*], )+
                };
                let mut value = $crate::__clap::builder::PossibleValue::new(self.name())
                    .aliases(aliases.iter().copied());
                if !help.is_empty() {
                    let text: Vec<&str> = help.iter().map(|l| l.trim()).collect();
                    value = value.help(text.join(" "));
                }
                Some(value)
            }
        }
    };
}

#[doc(hidden)]
pub use NameVisitor as __NameVisitor;
#[doc(hidden)]
pub use clap as __clap;
#[doc(hidden)]
pub use or_list as __or_list;
#[doc(hidden)]
pub use serde as __serde;

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    crate::named_enum! {
        /// A test enum.
        pub enum Fruit ("fruit") {
            /// Yellow.
            Banana = "banana",
            Sour = "sour-cherry" | "morello",
        }
    }

    #[test]
    fn one_name_everywhere() {
        assert_eq!(Fruit::Sour.name(), "sour-cherry");
        assert_eq!(Fruit::Sour.to_string(), "sour-cherry");
        assert_eq!("morello".parse::<Fruit>(), Ok(Fruit::Sour));
        assert_eq!(
            serde_json::to_string(&Fruit::Banana).expect("json"),
            "\"banana\""
        );
        assert_eq!(
            serde_json::from_str::<Fruit>("\"morello\"").expect("json"),
            Fruit::Sour
        );
        let e = serde_json::from_str::<Fruit>("\"apple\"").expect_err("unknown");
        assert!(
            e.to_string()
                .contains("unknown fruit \"apple\": use banana or sour-cherry"),
            "{e}"
        );
        assert_eq!(Fruit::from_str("morello", false), Ok(Fruit::Sour));
        let value = Fruit::Banana.to_possible_value().expect("value");
        assert_eq!(
            value.get_help().map(ToString::to_string),
            Some("Yellow.".into())
        );
    }

    #[test]
    fn or_lists() {
        assert_eq!(super::or_list(&["a"]), "a");
        assert_eq!(super::or_list(&["a", "b", "c"]), "a, b or c");
    }
}
