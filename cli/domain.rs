//! The words thoth's settings and decisions are made of: enforcement mode, environment,
//! failure decision, deny style and a tool's pin state.
//!
//! A leaf: it imports nothing from the crate, so flags, settings, engines and the proxy
//! can all use it without depending on each other. Each enum has exactly one string
//! table, which every reader (flags, `THOTH_*` variables, the managed file, the
//! enforcer's wire protocol) and every message uses; a name is never spelled twice.

use std::fmt;

/// Declares an enum, ordered as declared (weakest first where the order matters), with
/// its one table of names; `listed` gives the order messages list them in when it is
/// not the declared one.
macro_rules! named {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        named!($(#[$meta])* $name { $($(#[$vmeta])* $variant = $text,)+ } listed $($variant),+);
    };
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }
     listed $($listed:ident),+) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value with its name, in the order messages list them.
            pub const TABLE: &[(&'static str, Self)] = &[$((Self::$listed.as_str(), Self::$listed),)+];

            /// The name used in flags, variables, files and on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The value with this exact name.
            pub fn parse(text: &str) -> Option<Self> {
                Self::TABLE.iter().find(|(t, _)| *t == text).map(|(_, v)| *v)
            }

            /// Every name, comma-separated, for "use one of …" messages.
            pub fn names() -> String {
                Self::TABLE.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named! {
    /// What a tool's definition is against its pin (`crate::pins`), as a policy reads
    /// it in `resource.pin`.
    PinState {
        /// The definition is the one pinned.
        Pinned = "pinned",
        /// No definition of this name was pinned (or the tool was never listed).
        New = "new",
        /// The definition differs from the one pinned.
        Changed = "changed",
    }
}

named! {
    /// `THOTH_ENV`, ordered from weakest to strongest.
    Environment {
        Dev = "dev",
        Staging = "staging",
        Prod = "prod",
    }
}

named! {
    /// Enforcement mode, ordered from weakest to strongest.
    Mode {
        Observe = "observe",
        StepUp = "step_up",
        Progressive = "progressive",
        Block = "block",
    }
    listed Observe, StepUp, Block, Progressive
}

named! {
    /// `THOTH_ENFORCER_FAILURE_DECISION`, ordered from weakest to strongest.
    FailureDecision {
        Allow = "allow",
        StepUp = "step_up",
        Block = "block",
    }
    listed Block, StepUp, Allow
}

named! {
    /// How a denied call is answered.
    #[derive(Default)]
    DenyStyle {
        /// A JSON-RPC error (-32001 / -32002).
        #[default]
        Error = "error",
        /// A normal result with `isError: true`, so the model reads the reason.
        ToolResult = "tool_result",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_reads_back_as_its_value() {
        for (text, mode) in Mode::TABLE {
            assert_eq!(Mode::parse(text), Some(*mode));
            assert_eq!(mode.as_str(), *text);
        }
        for (text, d) in FailureDecision::TABLE {
            assert_eq!(FailureDecision::parse(text), Some(*d));
            assert_eq!(d.to_string(), *text);
        }
        for (text, e) in Environment::TABLE {
            assert_eq!(Environment::parse(text), Some(*e));
        }
        for (text, s) in DenyStyle::TABLE {
            assert_eq!(DenyStyle::parse(text), Some(*s));
        }
        assert_eq!(FailureDecision::StepUp.as_str(), "step_up");
        assert_eq!(Mode::parse("stepup"), None);
        assert_eq!(Mode::names(), "observe, step_up, block, progressive");
        assert_eq!(FailureDecision::names(), "block, step_up, allow");
    }

    #[test]
    fn order_runs_from_weakest_to_strongest() {
        assert!(Mode::Observe < Mode::StepUp && Mode::Progressive < Mode::Block);
        assert!(FailureDecision::Allow < FailureDecision::StepUp);
        assert!(FailureDecision::StepUp < FailureDecision::Block);
        assert!(
            Environment::Dev < Environment::Staging && Environment::Staging < Environment::Prod
        );
    }
}
