//! Ranged tags: invalidation by the values a write moved, not by the tag
//! alone.
//!
//! A tag whose name starts with `~` ([`is_ranged`]) is ranged. Its
//! generation key holds the token and then a log of the value changes
//! writers recorded against it: `"{token};{old},{new};{old},{new};…"`
//! (values in decimal, `n` for none). A writer appends one change
//! (`APPEND`, atomic) instead of replacing the token; when the log outgrows
//! [`MAX_LOG_BYTES`] it is reset to a new token, which invalidates every
//! entry that depends on it, as a plain bump does.
//!
//! An entry that depends on a ranged tag records, besides the token, how
//! long the log was when its fill started, and the [`Span`]s of values it
//! covers (a page of a ranking by score covers the scores from its last
//! item's to its first's). It stays valid while the token is the same and
//! no change logged since overlaps one of its spans: a score moving from
//! 6.8 to 7.0 leaves a page of scores 8.5 to 9.5 alone, while one moving
//! from 9.7 to 6.0 crosses it and drops it. An entry with no span recorded
//! is dropped by any change.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A log longer than this is reset (a new token): readers parse it on every
/// lookup, and entries older than the oldest change in it would be dropped
/// anyway by then. About 200 changes.
pub const MAX_LOG_BYTES: usize = 4_096;

/// Whether `tag` is ranged.
pub fn is_ranged(tag: &str) -> bool {
    tag.starts_with('~')
}

/// A range of values an entry covers, for one ranged tag. Values absent in
/// a change (a score not set) count as `none_at`: where the entry's order
/// puts them (after every value: −∞ for a descending order, +∞ for an
/// ascending one).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Lowest value covered (inclusive).
    pub lo: f64,
    /// Highest value covered (inclusive).
    pub hi: f64,
    /// Where an absent value sits for this entry.
    pub none_at: f64,
}

impl Span {
    /// The span from `a` to `b` (in either order), absent values at
    /// `none_at`.
    pub fn between(a: f64, b: f64, none_at: f64) -> Self {
        Self {
            lo: a.min(b),
            hi: a.max(b),
            none_at,
        }
    }

    /// Whether a change of a value from `old` to `new` can move anything
    /// into, out of or within this span: the values between the two
    /// overlap it.
    pub fn is_touched_by(&self, old: Option<f64>, new: Option<f64>) -> bool {
        let old = old.unwrap_or(self.none_at);
        let new = new.unwrap_or(self.none_at);
        old.max(new) >= self.lo && old.min(new) <= self.hi
    }
}

/// One change recorded against a ranged tag.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The value before (`None`: absent).
    pub old: Option<f64>,
    /// The value after.
    pub new: Option<f64>,
}

impl Change {
    /// The change as its log writes it: `"{old},{new};"`.
    pub fn log_entry(&self) -> String {
        let mut out = String::with_capacity(24);
        for (value, separator) in [(self.old, ','), (self.new, ';')] {
            match value {
                // Rust writes the shortest text that reads back as the
                // same number.
                Some(value) => {
                    let _ = write!(out, "{value}");
                }
                None => out.push('n'),
            }
            out.push(separator);
        }
        out
    }
}

/// The state of a ranged tag's key as read: its token and the log bytes
/// after the token's `;`.
#[derive(Clone, Debug, PartialEq)]
pub struct Log<'a> {
    /// The token.
    pub token: u64,
    /// The changes so far, as the key holds them.
    pub entries: &'a [u8],
}

impl<'a> Log<'a> {
    /// Parses a ranged key's value; `None` when it is not one (absent from
    /// our format: treated as an unknown state, so dependent entries miss).
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let split = value.iter().position(|&b| b == b';')?;
        let (token, rest) = value.split_at(split);
        let token = super::envelope::parse_generation(token)?;
        Some(Self {
            token,
            entries: &rest[1..],
        })
    }

    /// The changes logged after the first `offset` bytes of the log, or
    /// `None` when the log is shorter than that (it was reset: the token
    /// would differ too) or malformed.
    pub fn changes_since(&self, offset: u32) -> Option<Vec<Change>> {
        let offset = usize::try_from(offset).ok()?;
        let tail = self.entries.get(offset..)?;
        let text = std::str::from_utf8(tail).ok()?;
        text.split_terminator(';')
            .map(|entry| {
                let (old, new) = entry.split_once(',')?;
                Some(Change {
                    old: parse_value(old)?,
                    new: parse_value(new)?,
                })
            })
            .collect()
    }

    /// Its length, recorded by a fill as the point its changes start from.
    pub fn offset(&self) -> u32 {
        u32::try_from(self.entries.len()).unwrap_or(u32::MAX)
    }
}

/// A logged value: `n` for none, else a number (`Some(None)` for none).
fn parse_value(text: &str) -> Option<Option<f64>> {
    if text == "n" {
        return Some(None);
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite()).map(Some)
}

/// Whether an entry covering `spans` (every value when empty) stays valid
/// after `changes`.
pub fn survives(spans: &[Span], changes: &[Change]) -> bool {
    if changes.is_empty() {
        return true;
    }
    !spans.is_empty()
        && changes.iter().all(|change| {
            !spans
                .iter()
                .any(|span| span.is_touched_by(change.old, change.new))
        })
}

/// The value a fresh ranged key starts with: its token and an empty log.
pub fn fresh_value(token: u64) -> String {
    format!("{token};")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESC: f64 = f64::NEG_INFINITY;

    #[test]
    fn a_change_far_below_or_above_a_page_leaves_it_alone() {
        let page = Span::between(8.5, 9.5, DESC);
        assert!(!page.is_touched_by(Some(6.8), Some(7.0)));
        assert!(!page.is_touched_by(Some(9.6), Some(9.9)));
        assert!(page.is_touched_by(Some(9.7), Some(6.0)), "crosses it");
        assert!(
            page.is_touched_by(Some(7.0), Some(8.5)),
            "lands on its edge"
        );
        assert!(page.is_touched_by(Some(9.0), Some(9.1)), "moves within it");
        assert!(
            page.is_touched_by(None, Some(9.0)),
            "a first score lands in it"
        );
        assert!(
            !page.is_touched_by(None, Some(7.0)),
            "below, from the unscored end"
        );
    }

    #[test]
    fn absent_values_sit_where_the_order_puts_them() {
        // An ascending order puts unscored anime last, after the highest.
        let ascending = Span::between(1.0, 2.0, f64::INFINITY);
        assert!(ascending.is_touched_by(None, Some(1.5)));
        assert!(
            ascending.is_touched_by(Some(0.5), None),
            "crosses to the end"
        );
        assert!(!ascending.is_touched_by(Some(3.0), None));
    }

    #[test]
    fn logs_read_back_and_report_only_changes_after_an_offset() {
        let mut value = fresh_value(42);
        let offset = Log::parse(value.as_bytes()).expect("fresh").offset();
        for change in [
            Change {
                old: Some(7.5),
                new: Some(8.25),
            },
            Change {
                old: None,
                new: Some(2003.0),
            },
        ] {
            value.push_str(&change.log_entry());
        }
        let log = Log::parse(value.as_bytes()).expect("parses");
        assert_eq!(log.token, 42);
        let changes = log.changes_since(offset).expect("changes");
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].new, Some(8.25));
        assert_eq!(changes[1].old, None);
        assert_eq!(log.changes_since(log.offset()), Some(Vec::new()));
        assert_eq!(log.changes_since(log.offset() + 1), None, "past the end");
        assert!(Log::parse(b"12345").is_none(), "a plain token");
        assert!(Log::parse(b"x;1,2;").is_none());
        let garbage = Log::parse(b"7;1,zz;").expect("token");
        assert_eq!(garbage.changes_since(0), None);
    }

    #[test]
    fn an_entry_survives_only_changes_outside_its_spans() {
        let spans = [Span::between(8.0, 9.0, DESC)];
        let far = Change {
            old: Some(5.0),
            new: Some(6.0),
        };
        let near = Change {
            old: Some(8.5),
            new: Some(7.0),
        };
        assert!(survives(&spans, &[far]));
        assert!(!survives(&spans, &[far, near]));
        assert!(survives(&[], &[]), "no change");
        assert!(!survives(&[], &[far]), "no span recorded: any change");
    }
}
