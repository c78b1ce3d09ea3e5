//! What the relay does with a detector class found in a server's answer: `record`
//! (audit only), `redact` (the matched text replaced in place), `block` (the client
//! gets -32001 instead). Written `secret=redact,pii=record,phi=block,injection=record`.
//!
//! Why its own module: the same text is read from a flag, a variable and the managed
//! settings file, and the managed file's word wins per class.

use super::Class;

/// One class's action, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Record,
    Redact,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Record => "record",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

/// The action per class (`None`: the class is not inspected).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultActions {
    by_class: [Option<Action>; 4],
}

fn slot(class: Class) -> usize {
    match class {
        Class::Secret => 0,
        Class::Pii => 1,
        Class::Phi => 2,
        Class::Injection => 3,
    }
}

impl ResultActions {
    /// Reads `secret=redact,pii=record`; the error says what is wrong and what is
    /// allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut actions = Self::default();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (class, action) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not CLASS=ACTION (e.g. secret=redact)"))?;
            let class = Class::ALL
                .into_iter()
                .find(|c| c.as_str() == class.trim())
                .ok_or_else(|| {
                    format!(
                        "{:?} is not a detector class (secret, pii, phi, injection)",
                        class.trim()
                    )
                })?;
            let action = [Action::Record, Action::Redact, Action::Block]
                .into_iter()
                .find(|a| a.as_str() == action.trim())
                .ok_or_else(|| {
                    format!(
                        "{:?} is not an action (record, redact, block)",
                        action.trim()
                    )
                })?;
            actions.by_class[slot(class)] = Some(action);
        }
        Ok(actions)
    }

    /// The action for `class`, if it is inspected.
    pub fn get(&self, class: Class) -> Option<Action> {
        self.by_class[slot(class)]
    }

    /// Whether any class is inspected.
    pub fn any(&self) -> bool {
        self.by_class.iter().any(Option::is_some)
    }

    /// Whether an answer may have to be changed or withheld (not only recorded): then
    /// a line too long to inspect whole is not relayed.
    pub fn acts(&self) -> bool {
        self.by_class
            .iter()
            .any(|a| matches!(a, Some(Action::Redact | Action::Block)))
    }

    /// `self`, with every class `over` names set as `over` says (managed settings win).
    pub fn overridden_by(mut self, over: &ResultActions) -> Self {
        for (mine, theirs) in self.by_class.iter_mut().zip(over.by_class) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
        self
    }

    /// As written (`secret=redact,pii=record`), for `status` and records.
    pub fn describe(&self) -> String {
        Class::ALL
            .into_iter()
            .filter_map(|c| Some(format!("{}={}", c.as_str(), self.get(c)?.as_str())))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_read_and_managed_wins() {
        let asked = ResultActions::parse("secret=redact, pii=record").unwrap();
        assert_eq!(asked.get(Class::Secret), Some(Action::Redact));
        assert_eq!(asked.get(Class::Phi), None);
        assert!(asked.any() && asked.acts());
        let managed = ResultActions::parse("secret=block,phi=record").unwrap();
        let both = asked.overridden_by(&managed);
        assert_eq!(both.describe(), "secret=block,pii=record,phi=record");
        assert!(!ResultActions::parse("pii=record").unwrap().acts());
        for bad in ["secret", "token=redact", "secret=drop"] {
            assert!(ResultActions::parse(bad).is_err(), "{bad}");
        }
        assert!(!ResultActions::parse("").unwrap().any());
    }
}
