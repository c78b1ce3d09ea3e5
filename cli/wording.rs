//! Small helpers for the sentences thoth prints: counts read as English does.

/// `1 file`, `2 files`, `0 files` (nouns whose plural takes an `s`).
pub fn count(n: impl Into<Count>, noun: &str) -> String {
    count_with(n, noun, &format!("{noun}s"))
}

/// `1 entry`, `2 entries`: a count with both forms of its noun.
pub fn count_with(n: impl Into<Count>, one: &str, many: &str) -> String {
    let Count(n) = n.into();
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A count of things, from any unsigned integer thoth counts with.
pub struct Count(u64);

impl From<usize> for Count {
    fn from(n: usize) -> Self {
        Self(u64::try_from(n).unwrap_or(u64::MAX))
    }
}

impl From<u64> for Count {
    fn from(n: u64) -> Self {
        Self(n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts() {
        assert_eq!(super::count(0usize, "file"), "0 files");
        assert_eq!(super::count(1usize, "file"), "1 file");
        assert_eq!(super::count(2u64, "record"), "2 records");
        assert_eq!(super::count_with(3usize, "entry", "entries"), "3 entries");
    }
}
