//! Settings chosen by name — the method, the AR variant, the patch-score norm, the colormap. One
//! macro gives each its variants' names and labels, `ALL`, `Display` and `FromStr` (through
//! [`choose`]); the serde names are the same names, so the CLI, the JS API, the page's menus and
//! the bundle all spell a choice one way.

use crate::spec::SpecError;

/// `pub enum Name ("what it is") { Variant = "name", "label for people"; … }`, with any doc
/// comments and attributes on the enum and its variants.
macro_rules! named_choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, $label:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $value)] $variant, )+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $value),+ }
            }

            /// What a person choosing it should read.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }

            /// Every name, in order.
            pub fn names() -> Vec<&'static str> {
                $name::ALL.iter().map(|c| c.name()).collect()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::spec::SpecError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::named::choose($what, $name::ALL, $name::name, s)
            }
        }
    };
}

/// The one of `all` called `s`, or an error that lists the names (`what` says which setting).
pub fn choose<T: Copy>(
    what: &'static str,
    all: &[T],
    name: fn(T) -> &'static str,
    s: &str,
) -> Result<T, SpecError> {
    all.iter()
        .copied()
        .find(|&c| name(c) == s)
        .ok_or_else(|| SpecError::UnknownChoice {
            what,
            got: s.to_string(),
            choices: all
                .iter()
                .map(|&c| format!("`{}`", name(c)))
                .collect::<Vec<_>>()
                .join(", "),
        })
}
