//! The registry of diagnostic codes: one variant per rule, each with its code
//! and a one-line title. A code is never reused for another meaning, and a
//! retired number is never given out again (retired: W0404).
//!
//! Every diagnostic is made from a [`Code`], so a call site cannot invent a code
//! or quietly give one a second meaning; each rule has a fixture
//! `tests/ui/CODE.ivr` and a rendered snapshot.

use crate::Severity;

macro_rules! codes {
    ($($(#[doc = $doc:literal])* $rule:ident = $code:literal, $title:literal;)*) => {
        /// A rule a flow can break, with its stable code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($(#[doc = $doc])* $rule,)*
            /// E9999: the checker itself went wrong (a bug to report, not a
            /// mistake in the flow). It has no fixture.
            InternalError,
        }

        impl Code {
            /// Every rule a flow can break, in registry order (without
            /// [`Code::InternalError`]).
            pub const RULES: &'static [Code] = &[$(Code::$rule),*];

            /// The stable code, e.g. `E0101`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$rule => $code,)*
                    Code::InternalError => "E9999",
                }
            }

            /// The one-line title of the rule.
            pub const fn title(self) -> &'static str {
                match self {
                    $(Code::$rule => $title,)*
                    Code::InternalError => "internal error in the checker",
                }
            }
        }

        /// Every rule's code and title (the same list as [`Code::RULES`]).
        pub const CODES: &[(&str, &str)] = &[$(($code, $title)),*];
    };
}

codes! {
    SyntaxError = "E0001", "syntax error";
    UnreadableFile = "E0002", "an imported or referenced file cannot be read";
    MalformedData = "E0003", "the prompt catalogue or a calendar file is malformed";
    UndefinedName = "E0101", "undefined name";
    DuplicateDefinition = "E0102", "duplicate definition";
    UnknownPrompt = "E0103", "unknown prompt";
    MissingPromptText = "E0104", "prompt has no text for a language the flow speaks";
    UnknownService = "E0105", "unknown service";
    UnknownHours = "E0106", "unknown opening hours";
    DuplicateKey = "E0107", "key bound twice in one menu";
    DuplicateEntry = "E0108", "number bound to two entries";
    DuplicateOption = "E0109", "option given twice";
    OptionNotAllowed = "E0110", "option not allowed here";
    UnknownLanguage = "E0111", "a language the flow does not speak";
    InvalidInputRules = "E0112", "invalid input rules";
    NoEntry = "E0113", "no entry: the project answers no number";
    UnknownCalendar = "E0114", "holiday calendar cannot be found or read";
    MissingTimeZone = "E0115", "opening hours without a time zone";
    UnknownTimeZone = "E0116", "unknown time zone";
    InvalidTimeRange = "E0117", "opening time range that is not a time of day or ends before it starts";
    SecondCalendar = "E0118", "a second holiday calendar in one opening hours";
    HolidayAndMakeupDay = "E0119", "a day both a holiday and a make-up working day";
    OverlappingHours = "E0120", "opening hours given twice for the same time of a day";
    ZeroTimeout = "E0121", "a timeout or time limit of zero";
    InvalidKeyRange = "E0122", "a key range that does not run from a lower key to a higher one of its kind";
    TypeMismatch = "E0201", "type mismatch";
    WrongArgumentCount = "E0202", "wrong number of arguments";
    UnknownOutcome = "E0203", "unknown outcome";
    UnhandledServiceOutcome = "E0204", "service outcome not handled";
    SecretExposed = "E0205", "secret value would be spoken or copied";
    MisplacedStatement = "E0206", "statement used outside the place it belongs";
    NotDialable = "E0207", "transfer target is not a dialable number";
    NumberTooLarge = "E0208", "number or duration too large";
    ResultAsValue = "E0209", "a service result used as one value";
    SubResultMismatch = "E0210", "sub-flow result does not match its declaration";
    UnknownField = "E0211", "unknown field of a service result";
    ReadOnlyVariable = "E0212", "read-only variable changed";
    UnspeakableLiteral = "E0213", "a literal `say` cannot read that way";
    DeadEnd = "E0301", "dead end: the call can reach a point with nothing left to do";
    LoopWithoutInput = "E0302", "loop that waits for no input";
    RecursiveSub = "E0303", "sub-flow calls itself";
    BackWithoutMenu = "E0304", "`back` where the caller has been in no earlier menu";
    MenuWithoutKeys = "E0305", "menu with no keys";
    Unreachable = "W0401", "unreachable step, menu or sub-flow";
    NoWayOut = "W0402", "menu or collection with no way out when retries run out";
    UnhandledOutcome = "W0403", "operation outcome not handled";
    UnspokenLanguage = "W0405", "a language `say` has no readings for";
    MoneyRounded = "W0406", "`say money` of a computed value that may have more than two decimals";
    CalendarRunsOut = "W0407", "a holiday calendar that has expired or runs out within 60 days";
    FieldMaybeUnset = "W0408", "a service result's field read where the last answer may not have set it";
    UnknownQueue = "E0501", "queue not configured in this deployment";
    UnknownTier = "E0502", "priority is not a configured caller tier";
    UncheckedPriority = "W0501", "priority cannot be checked against the caller tiers";
}

impl Code {
    /// Warnings (`W…`) do not stop a flow from compiling; errors (`E…`) do.
    pub const fn severity(self) -> Severity {
        match self.as_str().as_bytes()[0] {
            b'W' => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// The rule with this code (`E0101`), if there is one.
    pub fn from_code(code: &str) -> Option<Code> {
        Code::RULES.iter().chain([&Code::InternalError]).copied().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_well_formed_and_in_order() {
        let mut seen = std::collections::BTreeSet::new();
        for c in Code::RULES {
            let s = c.as_str();
            assert!(seen.insert(s), "{s} is used by two rules");
            assert!(s.len() == 5 && (s.starts_with('E') || s.starts_with('W')) && s[1..].bytes().all(|b| b.is_ascii_digit()), "{s}");
            assert_ne!(s, "W0404", "W0404 is retired");
            assert_eq!(Code::from_code(s), Some(*c));
        }
        assert_eq!(CODES.len(), Code::RULES.len());
        assert_eq!(Code::from_code("E9999"), Some(Code::InternalError));
    }
}
