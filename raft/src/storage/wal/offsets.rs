//! Where every live entry sits on disk, and its term, in about four bytes
//! per entry: offsets are kept per segment as `u32`s and terms as runs
//! (terms change rarely). This is what lets the log grow far beyond memory
//! while any entry stays one read away.

use std::collections::VecDeque;

use crate::types::{LogIndex, Term};

/// The live entries of one segment: consecutive indexes from `base`.
#[derive(Debug)]
struct Span {
    segment: u64,
    base: LogIndex,
    offsets: Vec<u32>,
}

impl Span {
    fn end(&self) -> LogIndex {
        LogIndex(self.base.0 + self.offsets.len() as u64)
    }
}

/// A run of consecutive entries to read from one segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Run<'a> {
    pub segment: u64,
    pub first_index: LogIndex,
    pub offsets: &'a [u32],
}

/// The locations and terms of the live entries, and the purge point.
#[derive(Debug, Default)]
pub(crate) struct OffsetIndex {
    /// Spans in log order; never empty ones.
    spans: VecDeque<Span>,
    /// `(first index, term)` of each run of equal terms among live entries.
    terms: VecDeque<(LogIndex, Term)>,
    /// Entries up to this index are in a snapshot, whose last term is kept.
    purged: (LogIndex, Term),
    /// The last index of the log (the purge index when no entry is live).
    last: LogIndex,
}

impl OffsetIndex {
    pub fn purged(&self) -> (LogIndex, Term) {
        self.purged
    }

    /// The first live index. Equal to `purged + 1` except during recovery,
    /// which may meet a gap that a later purge record covers.
    pub fn first_live(&self) -> LogIndex {
        self.spans
            .front()
            .map_or(self.last.next(), |span| span.base)
    }

    pub fn last(&self) -> LogIndex {
        self.last
    }

    /// The term at `index`: of a live entry, or of the purge point.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.purged.0 {
            return Some(self.purged.1);
        }
        if index < self.first_live() || index > self.last {
            return None;
        }
        let run = self.terms.partition_point(|&(start, _)| start <= index);
        run.checked_sub(1).map(|run| self.terms[run].1)
    }

    pub fn last_term(&self) -> Term {
        self.term(self.last).unwrap_or(self.purged.1)
    }

    /// Adds the entry after the last one.
    pub fn push(&mut self, index: LogIndex, term: Term, segment: u64, offset: u32) {
        debug_assert_eq!(index, self.last.next());
        match self.spans.back_mut() {
            Some(span) if span.segment == segment => span.offsets.push(offset),
            _ => self.spans.push_back(Span {
                segment,
                base: index,
                offsets: vec![offset],
            }),
        }
        if self
            .terms
            .back()
            .is_none_or(|&(_, last_term)| last_term != term)
        {
            self.terms.push_back((index, term));
        }
        self.last = index;
    }

    /// Removes every entry at or after `index`.
    pub fn truncate_from(&mut self, index: LogIndex) {
        while let Some(span) = self.spans.back_mut() {
            if span.base >= index {
                self.spans.pop_back();
            } else {
                span.offsets.truncate((index.0 - span.base.0) as usize);
                break;
            }
        }
        while self.terms.back().is_some_and(|&(start, _)| start >= index) {
            self.terms.pop_back();
        }
        self.last = LogIndex(self.last.0.min(index.0.saturating_sub(1)));
    }

    /// Drops every live entry; the next one pushed will be `next`.
    pub fn restart_at(&mut self, next: LogIndex) {
        self.spans.clear();
        self.terms.clear();
        self.last = next.previous();
    }

    /// Whether a purge up to `index` of `term` keeps the entries after it:
    /// only if the log holds that entry with that term (Raft §7).
    pub fn purge_keeps_suffix(&self, index: LogIndex, term: Term) -> bool {
        index <= self.last && self.term(index) == Some(term)
    }

    /// Records that entries up to `index` (of `term`) are in a snapshot:
    /// with `keep_suffix`, the entries after `index` stay; otherwise the
    /// snapshot replaces the whole log. A purge at or below the current
    /// purge point changes nothing.
    pub fn purge(&mut self, index: LogIndex, term: Term, keep_suffix: bool) {
        if index <= self.purged.0 {
            return;
        }
        if keep_suffix && index <= self.last {
            while let Some(span) = self.spans.front_mut() {
                if span.end() <= index.next() {
                    self.spans.pop_front();
                } else {
                    if span.base <= index {
                        span.offsets.drain(..(index.0 + 1 - span.base.0) as usize);
                        span.base = index.next();
                    }
                    break;
                }
            }
            while self.terms.len() > 1 && self.terms[1].0 <= index.next() {
                self.terms.pop_front();
            }
            if let Some(first) = self.terms.front_mut() {
                first.0 = first.0.max(index.next());
            }
        } else {
            self.restart_at(index.next());
        }
        self.purged = (index, term);
    }

    /// The segment and offset of a live entry.
    #[cfg(test)]
    pub fn location(&self, index: LogIndex) -> Option<(u64, u32)> {
        let span = self.span_of(index)?;
        Some((span.segment, span.offsets[(index.0 - span.base.0) as usize]))
    }

    fn span_position(&self, index: LogIndex) -> Option<usize> {
        let position = self.spans.partition_point(|span| span.base <= index);
        let position = position.checked_sub(1)?;
        (index < self.spans[position].end()).then_some(position)
    }

    #[cfg(test)]
    fn span_of(&self, index: LogIndex) -> Option<&Span> {
        self.span_position(index)
            .map(|position| &self.spans[position])
    }

    /// The runs to read for live entries `[low, high)`, one per segment.
    pub fn runs(&self, low: LogIndex, high: LogIndex) -> Vec<Run<'_>> {
        let mut runs = Vec::new();
        if low >= high {
            return runs;
        }
        let Some(start) = self.span_position(low) else {
            return runs;
        };
        for span in self.spans.range(start..) {
            if span.base >= high {
                break;
            }
            let from = low.0.max(span.base.0);
            let to = high.0.min(span.end().0);
            runs.push(Run {
                segment: span.segment,
                first_index: LogIndex(from),
                offsets: &span.offsets[(from - span.base.0) as usize..(to - span.base.0) as usize],
            });
        }
        runs
    }

    /// Whether any live entry is in `segment`.
    pub fn uses_segment(&self, segment: u64) -> bool {
        self.spans.iter().any(|span| span.segment == segment)
    }

    /// Whether the live entries start right after the purge point.
    pub fn is_contiguous(&self) -> bool {
        self.first_live() == self.purged.0.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(entries: &[(u64, u64)]) -> OffsetIndex {
        let mut index = OffsetIndex::default();
        for (position, &(term, segment)) in entries.iter().enumerate() {
            let log_index = LogIndex(position as u64 + 1);
            index.push(log_index, Term(term), segment, log_index.0 as u32 * 10);
        }
        index
    }

    #[test]
    fn terms_and_locations_follow_pushes_and_truncations() {
        // Entries 1..=6: terms 1 1 2 2 2 3, segments 1 1 1 2 2 2.
        let mut index = index_of(&[(1, 1), (1, 1), (2, 1), (2, 2), (2, 2), (3, 2)]);
        assert_eq!(index.term(LogIndex(0)), Some(Term(0)));
        assert_eq!(index.term(LogIndex(2)), Some(Term(1)));
        assert_eq!(index.term(LogIndex(5)), Some(Term(2)));
        assert_eq!(index.term(LogIndex(7)), None);
        assert_eq!(index.location(LogIndex(4)), Some((2, 40)));
        index.truncate_from(LogIndex(4));
        assert_eq!(index.last(), LogIndex(3));
        assert!(!index.uses_segment(2));
        index.push(LogIndex(4), Term(4), 3, 7);
        assert_eq!(index.term(LogIndex(4)), Some(Term(4)));
        assert_eq!(index.location(LogIndex(4)), Some((3, 7)));
        let runs = index.runs(LogIndex(2), LogIndex(5));
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].offsets, &[20, 30]);
        assert_eq!(runs[1].first_index, LogIndex(4));
    }

    #[test]
    fn purge_keeps_the_suffix_only_when_terms_match() {
        let mut index = index_of(&[(1, 1), (1, 1), (2, 2), (2, 2)]);
        assert!(index.purge_keeps_suffix(LogIndex(3), Term(2)));
        index.purge(LogIndex(3), Term(2), true);
        assert_eq!(index.first_live(), LogIndex(4));
        assert_eq!(index.term(LogIndex(3)), Some(Term(2)));
        assert_eq!(index.term(LogIndex(2)), None);
        assert_eq!(index.term(LogIndex(4)), Some(Term(2)));
        assert!(!index.uses_segment(1));
        assert!(index.is_contiguous());

        let mut mismatched = index_of(&[(1, 1), (1, 1), (2, 2)]);
        assert!(!mismatched.purge_keeps_suffix(LogIndex(2), Term(5)));
        mismatched.purge(LogIndex(2), Term(5), false);
        assert_eq!(mismatched.last(), LogIndex(2));
        assert_eq!(mismatched.last_term(), Term(5));

        let mut beyond = index_of(&[(1, 1)]);
        assert!(!beyond.purge_keeps_suffix(LogIndex(10), Term(3)));
        beyond.purge(LogIndex(10), Term(3), false);
        assert_eq!(beyond.first_live(), LogIndex(11));
        assert!(beyond.is_contiguous());
    }
}
