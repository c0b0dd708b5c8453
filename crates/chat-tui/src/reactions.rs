//! The reactions to one message, kept exact when history pages and live
//! `reaction` frames overlap.
//!
//! A history page gives counts (and whether this user is among them) as
//! they stood when the page was read; frames give each change, per user,
//! with its seq. A page stands for every change up to its horizon (the
//! newest seq of the room it reflects), so only frames past that horizon
//! are added to its counts. The server never records a reaction twice nor
//! takes back one that is not there, so a user's changes to one kind
//! alternate: their first change past the horizon says whether the page
//! counted them, their last says whether they count now. A frame seen
//! twice (a replay after a reconnect) is one change, kept by its seq.

use std::collections::BTreeMap;

use chat_protocol::rest::ReactionCount;

/// One kind of reaction to a message, as the screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) emoji: String,
    pub(crate) count: i64,
    /// Whether this user is among those who reacted so.
    pub(crate) mine: bool,
}

/// Per kind, per user (by name in lower case: names are unique whatever
/// their case), every change seen past the horizon: seq to added.
type Changes = BTreeMap<String, BTreeMap<String, BTreeMap<i64, bool>>>;

/// The reactions to one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reactions {
    /// The counts of the newest history page that held the message.
    counted: Vec<ReactionCount>,
    /// The seq up to which `counted` reflects every change.
    horizon: i64,
    changes: Changes,
    /// The kinds in the order they were first seen, for a stable display.
    order: Vec<String>,
}

impl Reactions {
    /// Takes the counts of a history page that reflects every change up to
    /// `horizon`; an older page than the one already held changes nothing.
    pub(crate) fn set_counted(&mut self, counted: Vec<ReactionCount>, horizon: i64) {
        if horizon < self.horizon {
            return;
        }
        for count in &counted {
            self.remember_kind(&count.emoji);
        }
        self.counted = counted;
        self.horizon = horizon;
        for users in self.changes.values_mut() {
            for seqs in users.values_mut() {
                seqs.retain(|seq, _| *seq > horizon);
            }
            users.retain(|_, seqs| !seqs.is_empty());
        }
        self.changes.retain(|_, users| !users.is_empty());
    }

    /// Applies one `reaction` frame: `username` added (or took back)
    /// `emoji` at `seq`.
    pub(crate) fn apply(&mut self, seq: i64, emoji: &str, username: &str, added: bool) {
        if seq <= self.horizon {
            return;
        }
        self.remember_kind(emoji);
        self.changes
            .entry(emoji.to_owned())
            .or_default()
            .entry(username.to_ascii_lowercase())
            .or_default()
            .insert(seq, added);
    }

    /// Forgets every reaction: a message deleted at `seq` loses them, and
    /// a replay of a change from before then does not bring one back.
    pub(crate) fn clear(&mut self, seq: i64) {
        *self = Reactions {
            horizon: self.horizon.max(seq),
            ..Reactions::default()
        };
    }

    /// The kinds with at least one reaction, in the order first seen.
    pub(crate) fn tallies(&self, me: &str) -> Vec<Tally> {
        self.order
            .iter()
            .map(|emoji| self.tally(emoji, me))
            .filter(|tally| tally.count > 0)
            .collect()
    }

    /// Whether `me` has reacted with `emoji`.
    pub(crate) fn is_mine(&self, emoji: &str, me: &str) -> bool {
        self.tally(emoji, me).mine
    }

    fn tally(&self, emoji: &str, me: &str) -> Tally {
        let counted = self.counted.iter().find(|count| count.emoji == emoji);
        let mut count = counted.map_or(0, |counted| counted.count);
        let mut mine = counted.is_some_and(|counted| counted.me);
        for (username, seqs) in self.changes.get(emoji).into_iter().flatten() {
            let (Some((_, first)), Some((_, last))) =
                (seqs.first_key_value(), seqs.last_key_value())
            else {
                continue;
            };
            let counted_then = !*first;
            count += i64::from(*last) - i64::from(counted_then);
            if username.eq_ignore_ascii_case(me) {
                mine = *last;
            }
        }
        Tally {
            emoji: emoji.to_owned(),
            count: count.max(0),
            mine,
        }
    }

    fn remember_kind(&mut self, emoji: &str) {
        if !self.order.iter().any(|known| known == emoji) {
            self.order.push(emoji.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(emoji: &str, count: i64, me: bool) -> ReactionCount {
        ReactionCount {
            emoji: emoji.to_owned(),
            count,
            me,
        }
    }

    fn shown(reactions: &Reactions, me: &str) -> Vec<(String, i64, bool)> {
        reactions
            .tallies(me)
            .into_iter()
            .map(|tally| (tally.emoji, tally.count, tally.mine))
            .collect()
    }

    #[test]
    fn frames_alone_count_each_user_once_per_kind() {
        let mut reactions = Reactions::default();
        reactions.apply(5, "👍", "bob", true);
        reactions.apply(6, "👍", "carol", true);
        reactions.apply(7, "🎉", "alice", true);
        // A replay of the same frame is the same change.
        reactions.apply(6, "👍", "carol", true);
        assert_eq!(
            shown(&reactions, "alice"),
            [("👍".to_owned(), 2, false), ("🎉".to_owned(), 1, true)]
        );
    }

    #[test]
    fn a_reaction_taken_back_no_longer_counts_and_an_empty_kind_is_hidden() {
        let mut reactions = Reactions::default();
        reactions.apply(5, "👍", "bob", true);
        reactions.apply(6, "🎉", "bob", true);
        reactions.apply(7, "👍", "bob", false);
        assert_eq!(shown(&reactions, "alice"), [("🎉".to_owned(), 1, false)]);
    }

    #[test]
    fn frames_a_history_page_already_counted_are_not_counted_again() {
        let mut reactions = Reactions::default();
        reactions.apply(5, "👍", "bob", true);
        // The page was read after seq 6: bob's 5 and carol's 6 are in it.
        reactions.set_counted(vec![count("👍", 2, false)], 6);
        reactions.apply(6, "👍", "carol", true);
        reactions.apply(5, "👍", "bob", true);
        assert_eq!(shown(&reactions, "alice"), [("👍".to_owned(), 2, false)]);
        // A change after the page counts.
        reactions.apply(9, "👍", "dave", true);
        reactions.apply(10, "👍", "bob", false);
        assert_eq!(shown(&reactions, "alice"), [("👍".to_owned(), 2, false)]);
    }

    #[test]
    fn a_user_counted_by_the_page_who_takes_back_and_adds_again_counts_once() {
        let mut reactions = Reactions::default();
        reactions.set_counted(vec![count("👍", 1, true)], 4);
        reactions.apply(5, "👍", "alice", false);
        assert_eq!(shown(&reactions, "alice"), []);
        assert!(!reactions.is_mine("👍", "alice"));
        reactions.apply(6, "👍", "Alice", true);
        assert_eq!(shown(&reactions, "alice"), [("👍".to_owned(), 1, true)]);
    }

    #[test]
    fn an_older_page_does_not_replace_a_newer_one() {
        let mut reactions = Reactions::default();
        reactions.set_counted(vec![count("👍", 3, false)], 20);
        reactions.set_counted(vec![count("👍", 1, false)], 10);
        assert_eq!(shown(&reactions, "alice"), [("👍".to_owned(), 3, false)]);
    }

    #[test]
    fn clearing_forgets_every_reaction_and_late_replays_before_it() {
        let mut reactions = Reactions::default();
        reactions.set_counted(vec![count("👍", 3, true)], 20);
        reactions.apply(21, "🎉", "bob", true);
        reactions.clear(22);
        assert_eq!(shown(&reactions, "alice"), []);
        reactions.apply(21, "🎉", "bob", true);
        assert_eq!(shown(&reactions, "alice"), []);
    }
}
