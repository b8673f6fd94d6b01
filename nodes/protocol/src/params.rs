//! A model node's params, defined once: a struct the worker deserialises its job into, and
//! the field list from which the engine derives the node's `ParamSpec`s (names, types,
//! defaults, docs, ranges). Declared with [`crate::params!`], so a default or an allowed
//! value cannot be restated (and drift) on the other side of the process boundary, and a
//! misspelt or unknown param in a job is an error, never a silent default
//! ([`crate::Job::params`]). Groups of params that several nodes share (LoRA, the
//! optimizer) are structs of their own, combined as a tuple: `(FinetuneParams, Adapter)`.

use serde_json::{Map, Value};

/// The type of a param as a graph writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Str,
    /// An integer.
    Int,
    /// A number.
    Float,
    /// A boolean.
    Bool,
    /// A path: enters the cache key by content.
    Path,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// A list of values of one kind.
    List(&'static Kind),
    /// The name of an environment variable holding a secret (an API key): the name enters
    /// keys and records, the value is read by the node when it runs.
    SecretEnv,
}

/// What a param is when the graph leaves it out.
#[derive(Debug, Clone, PartialEq)]
pub enum Default {
    /// The graph must give it.
    Required,
    /// It may be absent (the struct field is an `Option`).
    Optional,
    /// This value (coerced to the param's kind by the engine).
    Value(serde_json::Value),
}

/// Write `REQUIRED` as a field's default for a param the graph must give.
pub const REQUIRED: Default = Default::Required;
/// Write `OPTIONAL` as a field's default for a param that may be absent.
pub const OPTIONAL: Default = Default::Optional;

/// Turns what a [`crate::params!`] field writes as its default into a [`Default`].
pub trait IntoDefault {
    /// The default.
    fn into_default(self) -> Default;
}

impl IntoDefault for Default {
    fn into_default(self) -> Default {
        self
    }
}

impl IntoDefault for serde_json::Value {
    fn into_default(self) -> Default {
        Default::Value(self)
    }
}

macro_rules! into_default_via_json {
    ($($t:ty),*) => {$(
        impl IntoDefault for $t {
            fn into_default(self) -> Default {
                Default::Value(serde_json::Value::from(self))
            }
        }
    )*};
}
into_default_via_json!(i64, f64, bool, &'static str);

/// Bounds on a numeric param: each bound and whether it is excluded.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bounds {
    /// Lower bound, excluded?
    pub min: Option<(f64, bool)>,
    /// Upper bound, excluded?
    pub max: Option<(f64, bool)>,
    /// A setting of how the node runs (concurrency, retries, timeouts, a budget), which
    /// cannot change what it computes: it stays out of the cache key, so raising it reruns
    /// nothing.
    pub run_setting: bool,
}

impl Bounds {
    /// Unbounded.
    pub const NONE: Bounds = Bounds {
        min: None,
        max: None,
        run_setting: false,
    };
    /// Marks a run setting (see [`Bounds::run_setting`]).
    pub const fn run_setting(mut self, yes: bool) -> Self {
        self.run_setting = yes;
        self
    }
    /// At least `x`.
    pub const fn min(mut self, x: f64) -> Self {
        self.min = Some((x, false));
        self
    }
    /// Greater than `x`.
    pub const fn above(mut self, x: f64) -> Self {
        self.min = Some((x, true));
        self
    }
    /// At most `x`.
    pub const fn max(mut self, x: f64) -> Self {
        self.max = Some((x, false));
        self
    }
    /// Less than `x`.
    pub const fn below(mut self, x: f64) -> Self {
        self.max = Some((x, true));
        self
    }
}

/// One param of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Name as written in the graph.
    pub name: &'static str,
    /// Type.
    pub kind: Kind,
    /// When left out.
    pub default: Default,
    /// One line for help and errors.
    pub doc: &'static str,
    /// Allowed numbers.
    pub bounds: Bounds,
}

/// `given` with every field's default added where it is absent: what the engine sends a
/// worker for params a graph leaves out. For tests and tools that build jobs by hand.
pub fn with_defaults(fields: &[Field], mut given: Map<String, Value>) -> Map<String, Value> {
    for f in fields {
        if let Default::Value(v) = &f.default
            && !given.contains_key(f.name)
        {
            given.insert(f.name.to_string(), v.clone());
        }
    }
    given
}

/// A node's params struct (see [`crate::params!`]), or a tuple of such groups.
pub trait Params: Sized {
    /// Its fields, in declaration order: the node's param list.
    fn fields() -> Vec<Field>;
    /// Reads the fields from a job's params. Keys of other groups are left to them; which
    /// keys no group declares is checked by [`crate::Job::params`].
    fn from_map(map: &Map<String, Value>) -> Result<Self, serde_json::Error>;
}

macro_rules! params_tuple {
    ($($t:ident),+) => {
        impl<$($t: Params),+> Params for ($($t,)+) {
            fn fields() -> Vec<Field> {
                let mut fields = vec![];
                $( fields.extend($t::fields()); )+
                fields
            }
            fn from_map(map: &Map<String, Value>) -> Result<Self, serde_json::Error> {
                Ok(($($t::from_map(map)?,)+))
            }
        }
    };
}
params_tuple!(A, B);
params_tuple!(A, B, C);
params_tuple!(A, B, C, D);
params_tuple!(A, B, C, D, E);

/// An enum param's values: its variants as graphs write them.
pub trait ParamEnum {
    /// Every value, in declaration order.
    const NAMES: &'static [&'static str];
}

/// Declares a node's params struct and its field list (see the module docs). Each field:
/// `name: RustType = Kind, default, "doc"` with optional `, min = x` / `above` / `max` /
/// `below`, ending in `;`. The default is `REQUIRED`, `OPTIONAL` (an `Option` field), or a
/// value (`256`, `0.0`, `true`, `"warn"`, `serde_json::json!([])`).
#[macro_export]
macro_rules! params {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident {
            $(
                $field:ident : $ty:ty = $kind:expr, $default:expr, $doc:literal
                    $(, $bound:ident = $bval:expr)* ;
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
        // Params are named as graphs write them (`C`, `Cs`).
        #[allow(non_snake_case)]
        pub struct $name {
            $( #[doc = $doc] pub $field: $ty, )*
        }

        impl $crate::params::Params for $name {
            fn fields() -> Vec<$crate::params::Field> {
                #[allow(unused_imports)]
                use $crate::params::{Kind::*, OPTIONAL, REQUIRED};
                vec![$(
                    $crate::params::Field {
                        name: stringify!($field),
                        kind: $kind,
                        default: $crate::params::IntoDefault::into_default($default),
                        doc: $doc,
                        bounds: $crate::params::Bounds::NONE $( .$bound($bval) )*,
                    },
                )*]
            }

            fn from_map(
                map: &serde_json::Map<String, serde_json::Value>,
            ) -> Result<Self, serde_json::Error> {
                serde_json::from_value(serde_json::Value::Object(map.clone()))
            }
        }
    };
}

/// Declares an enum param: `pub enum Name { Variant = "as written", ... }`.
#[macro_export]
macro_rules! param_enum {
    (
        $(#[doc = $sdoc:literal])*
        pub enum $name:ident { $( $(#[doc = $vdoc:literal])* $variant:ident = $text:literal ),* $(,)? }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
        pub enum $name {
            $( $(#[doc = $vdoc])* #[serde(rename = $text)] $variant, )*
        }

        impl $crate::params::ParamEnum for $name {
            const NAMES: &'static [&'static str] = &[$($text),*];
        }

        impl $name {
            /// As graphs write it.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )* }
            }
        }
    };
}
