//! Settings chosen by name — the method, the AR variant, the patch-score norm, the colormap. One
//! macro gives each its variants' names and labels, `ALL`, `Display` and `FromStr` (through
//! [`choose`]); the serde names are the same names, so the CLI, the JS API, the page's menus and
//! the bundle all spell a choice one way.

/// A setting that cannot be read: an unknown name, or a value out of its range. It sits here, below
/// every module that defines a setting (volume windows, devices, AR variants), so none of them
/// needs the fit specification; [`crate::spec::SpecError`] wraps it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    #[error("fit setting `{name}` must be {rule}, got {got}")]
    OutOfRange {
        name: &'static str,
        rule: &'static str,
        got: String,
    },
    #[error("unknown {what} `{got}`: use {choices}")]
    UnknownChoice {
        what: &'static str,
        got: String,
        choices: String,
    },
}

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

        impl $crate::infra::named::NamedChoice for $name {
            fn names() -> Vec<&'static str> {
                $name::names()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::infra::named::SettingError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::infra::named::choose($what, $name::ALL, $name::name, s)
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
) -> Result<T, SettingError> {
    all.iter()
        .copied()
        .find(|&c| name(c) == s)
        .ok_or_else(|| SettingError::UnknownChoice {
            what,
            got: s.to_string(),
            choices: all
                .iter()
                .map(|&c| format!("`{}`", name(c)))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A clap parser for a named choice: its names listed in `--help`, parsed by [`choose`].
#[cfg(feature = "cli")]
pub fn clap_choice<T>() -> impl clap::builder::TypedValueParser<Value = T>
where
    T: NamedChoice + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(T::names()).try_map(|s| s.parse::<T>())
}

/// What every [`named_choice!`] enum is, for code generic over them.
pub trait NamedChoice: std::str::FromStr<Err = SettingError> + Copy + 'static {
    fn names() -> Vec<&'static str>;
}
