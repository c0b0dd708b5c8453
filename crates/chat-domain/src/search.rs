//! Words for search: how a text is cut into words and normalised, which
//! terms of a message the search index holds, and how a query is read and
//! matched against a message's text.
//!
//! A word is a Unicode word (UAX #29: letters, digits and the marks inside
//! them, so `don't` is one word and `e-mail` two), normalised by
//! [`normalise_word`]: compatibility forms folded (NFKC, so `ﬁ` is `fi`),
//! lower case, accents removed (`Café` is `cafe`). A query finds a message
//! when every one of its terms matches a word of the message: a whole word,
//! or, for a term written with a trailing `*`, any word it begins
//! (at least [`MIN_PREFIX_CHARS`] characters).
//!
//! The index holds, per message, each distinct prefix of [`PREFIX_CHARS`]
//! characters of its words, and each distinct word but those as long as
//! an indexed prefix ([`index_terms`]): a word of three characters is
//! found by its prefix, which is the word. Every term is an element of
//! the message's entry in the index, and elements are most of what writing
//! the index costs, so it holds as few as whole words allow. A query looks
//! up one [`Term`] per query term ([`QueryTerm::index_term`]): the word
//! itself, or the longest indexed prefix of what was typed. What the index
//! finds is a candidate; [`SearchQuery::find`] on the message's text
//! decides, so a three-character word (which the index does not tell from
//! the longer words it begins) and a prefix longer than the index holds
//! are still exact.

use std::collections::BTreeSet;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use unicode_segmentation::UnicodeSegmentation;

use crate::DomainError;

/// The version of the normalisation and term rules. A change to either
/// changes what the index holds, so it is part of the index's generation:
/// an index built under another version is rebuilt by `reindex`.
///
/// A change that only leaves terms out, none of which a query still looks
/// up, keeps the version: an index built before holds every term a query
/// now looks up, and answers as an index built now does. Five-character
/// prefixes, and words of three characters held whole, were left out that
/// way.
pub const NORMALISER_VERSION: u32 = 1;

/// The prefix lengths, in characters, the index holds for every word at
/// least that long. A prefix query uses the longest of these that is no
/// longer than what was typed. One length: a longer one would add an
/// element per longer word to every message written, and a long prefix
/// finds its messages among those of its first three characters.
pub const PREFIX_CHARS: [usize; 1] = [3];

/// The fewest characters before a trailing `*`.
pub const MIN_PREFIX_CHARS: usize = PREFIX_CHARS[0];

/// Words longer than this are indexed and matched by their first this many
/// characters (long tokens are links and hashes more often than words).
pub const MAX_WORD_CHARS: usize = 48;

/// The most terms a query may have.
pub const MAX_QUERY_TERMS: usize = 8;

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 256;

/// One thing the index holds for a message: a whole word, or a prefix of
/// one. The two never collide: the index keys them apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Term {
    /// A whole normalised word.
    Word(String),
    /// The first characters of a normalised word, as many as one of
    /// [`PREFIX_CHARS`].
    Prefix(String),
}

impl Term {
    /// The term as [`TermRef`], which hashing takes.
    pub fn as_ref(&self) -> TermRef<'_> {
        match self {
            Term::Word(text) => TermRef::Word(text),
            Term::Prefix(text) => TermRef::Prefix(text),
        }
    }
}

/// A [`Term`] borrowed from a word: what [`for_each_index_term`] visits,
/// so that indexing a message allocates nothing per term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermRef<'a> {
    /// A whole normalised word.
    Word(&'a str),
    /// The first characters of a normalised word.
    Prefix(&'a str),
}

impl<'a> TermRef<'a> {
    /// The index key's material in two pieces: the tag that keeps words
    /// and prefixes apart (with its separator), then the text.
    pub fn key_material(self) -> (&'static [u8], &'a str) {
        match self {
            TermRef::Word(text) => (b"w\0", text),
            TermRef::Prefix(text) => (b"p\0", text),
        }
    }

    /// The owned term.
    pub fn to_term(self) -> Term {
        match self {
            TermRef::Word(text) => Term::Word(text.to_owned()),
            TermRef::Prefix(text) => Term::Prefix(text.to_owned()),
        }
    }
}

/// A word as search compares it: NFKC, lower case, without accents (any
/// combining mark is dropped), cut to [`MAX_WORD_CHARS`] characters.
pub fn normalise_word(word: &str) -> String {
    // Most words are ASCII, which all three steps leave as it is but for
    // the case: the same result without the Unicode tables.
    if word.is_ascii() {
        let mut normal = word[..word.len().min(MAX_WORD_CHARS)].to_owned();
        normal.make_ascii_lowercase();
        return normal;
    }
    normalise_unicode_word(word)
}

/// [`normalise_word`] for any text.
fn normalise_unicode_word(word: &str) -> String {
    word.nfkd()
        .flat_map(char::to_lowercase)
        .filter(|c| !is_combining_mark(*c))
        .nfc()
        .take(MAX_WORD_CHARS)
        .collect()
}

/// The normalised words of `text` with their places: the byte range of the
/// word in `text`.
fn words(text: &str) -> impl Iterator<Item = (usize, &str, String)> + '_ {
    text.unicode_word_indices()
        .map(|(at, word)| (at, word, normalise_word(word)))
        .filter(|(_, _, normal)| !normal.is_empty())
}

/// Everything the index holds for a message with this text: each distinct
/// prefix of [`PREFIX_CHARS`] characters of a word at least that long, and
/// each distinct word that is not found by its prefix (see
/// [`QueryTerm::index_term`]).
pub fn index_terms(text: &str) -> BTreeSet<Term> {
    let mut terms = BTreeSet::new();
    for_each_index_term(text, |term| {
        terms.insert(term.to_term());
    });
    terms
}

/// Calls `visit` with every term of [`index_terms`], without collecting
/// them: a term met more than once (a repeated word, a prefix two words
/// share) is visited each time.
pub fn for_each_index_term(text: &str, mut visit: impl FnMut(TermRef<'_>)) {
    for (_, _, word) in words(text) {
        for length in PREFIX_CHARS {
            let Some(end) = prefix_end(&word, length) else {
                break;
            };
            visit(TermRef::Prefix(&word[..end]));
        }
        if held_whole(&word) {
            visit(TermRef::Word(&word));
        }
    }
}

/// Whether the index holds this normalised word itself: a word as long as
/// one of [`PREFIX_CHARS`] is that prefix of itself, and found by it.
fn held_whole(word: &str) -> bool {
    let chars = if word.is_ascii() {
        word.len()
    } else {
        word.chars().count()
    };
    !PREFIX_CHARS.contains(&chars)
}

/// Where the first `chars` characters of `word` end, in bytes; `None`
/// when it is shorter.
fn prefix_end(word: &str, chars: usize) -> Option<usize> {
    if word.is_ascii() {
        return (word.len() >= chars).then_some(chars);
    }
    match word.char_indices().nth(chars) {
        Some((at, _)) => Some(at),
        None => (word.chars().count() == chars).then_some(word.len()),
    }
}

/// One term of a query: a normalised word, whole or (with a trailing `*`)
/// a prefix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryTerm {
    text: String,
    prefix: bool,
}

impl QueryTerm {
    /// The normalised text of the term, without the `*`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the term matches any word it begins.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// The index term that finds every message this term matches (and
    /// possibly more): the word when the index holds it whole, else the
    /// longest indexed prefix of it.
    pub fn index_term(&self) -> Term {
        if !self.prefix && held_whole(&self.text) {
            return Term::Word(self.text.clone());
        }
        let chars = self.text.chars().count();
        let length = PREFIX_CHARS
            .into_iter()
            .filter(|length| *length <= chars)
            .max()
            .unwrap_or(MIN_PREFIX_CHARS);
        Term::Prefix(self.text.chars().take(length).collect())
    }

    /// Whether the messages [`QueryTerm::index_term`] finds are exactly
    /// those this term matches: a word held whole, or a prefix as long as
    /// one the index holds. When not, the text decides among more
    /// candidates.
    pub fn is_exact(&self) -> bool {
        if self.prefix {
            PREFIX_CHARS.contains(&self.text.chars().count())
        } else {
            held_whole(&self.text)
        }
    }

    /// Whether a normalised word matches.
    pub fn matches(&self, word: &str) -> bool {
        if self.prefix {
            word.starts_with(&self.text)
        } else {
            word == self.text
        }
    }
}

/// Where a matching word is in a message's text: `start..end`, counted in
/// Unicode scalar values (characters), `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Highlight {
    pub start: usize,
    pub end: usize,
}

/// A parsed search: the terms every found message contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    terms: Vec<QueryTerm>,
}

impl SearchQuery {
    /// Reads what a user typed: words separated by white space, each
    /// normalised as messages are; a word ending in `*` is a prefix and
    /// needs [`MIN_PREFIX_CHARS`] characters. Punctuation is ignored, as it
    /// is in messages (`e-mail` is the two words `e` and `mail`, both
    /// needed). Repeated terms count once.
    pub fn parse(text: &str) -> Result<SearchQuery, DomainError> {
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(DomainError::SearchTooLong {
                max: MAX_QUERY_CHARS,
            });
        }
        let mut terms: Vec<QueryTerm> = Vec::new();
        for piece in text.split_whitespace() {
            let prefix = piece.ends_with('*');
            let piece = piece.trim_end_matches('*');
            let normal: Vec<String> = words(piece).map(|(_, _, word)| word).collect();
            let last = normal.len().saturating_sub(1);
            for (index, word) in normal.into_iter().enumerate() {
                let prefix = prefix && index == last;
                if prefix && word.chars().count() < MIN_PREFIX_CHARS {
                    return Err(DomainError::SearchPrefixTooShort {
                        min: MIN_PREFIX_CHARS,
                    });
                }
                let term = QueryTerm { text: word, prefix };
                if !terms.contains(&term) {
                    terms.push(term);
                }
            }
        }
        if terms.is_empty() {
            return Err(DomainError::SearchEmpty);
        }
        if terms.len() > MAX_QUERY_TERMS {
            return Err(DomainError::SearchTooManyWords {
                max: MAX_QUERY_TERMS,
            });
        }
        Ok(SearchQuery { terms })
    }

    /// The terms, in the order typed.
    pub fn terms(&self) -> &[QueryTerm] {
        &self.terms
    }

    /// Whether `text` contains every term, and if so where each matching
    /// word is (every occurrence of every term, in text order).
    pub fn find(&self, text: &str) -> Option<Vec<Highlight>> {
        let mut found = vec![false; self.terms.len()];
        let mut highlights = Vec::new();
        // Byte offsets become character offsets in one walk over the text.
        let mut chars_before = 0;
        let mut bytes_counted = 0;
        for (at, original, word) in words(text) {
            let mut hit = false;
            for (index, term) in self.terms.iter().enumerate() {
                if term.matches(&word) {
                    found[index] = true;
                    hit = true;
                }
            }
            if hit {
                chars_before += text[bytes_counted..at].chars().count();
                bytes_counted = at;
                let length = original.chars().count();
                highlights.push(Highlight {
                    start: chars_before,
                    end: chars_before + length,
                });
            }
        }
        found.iter().all(|hit| *hit).then_some(highlights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> SearchQuery {
        SearchQuery::parse(text).unwrap_or_else(|error| panic!("{text:?}: {error}"))
    }

    #[test]
    fn words_lose_case_accents_and_compatibility_forms() {
        assert_eq!(normalise_word("Café"), "cafe");
        assert_eq!(normalise_word("CAFE\u{301}"), "cafe");
        assert_eq!(normalise_word("ﬁne"), "fine");
        assert_eq!(normalise_word("Ångström"), "angstrom");
        assert_eq!(normalise_word("İstanbul"), "istanbul");
        assert_eq!(normalise_word("ＡＢＣ"), "abc");
        assert_eq!(normalise_word("Straße"), "straße");
        assert_eq!(normalise_word("Ελληνικά"), "ελληνικα");
    }

    #[test]
    fn long_words_are_cut() {
        let long = "a".repeat(100);
        assert_eq!(normalise_word(&long).chars().count(), MAX_WORD_CHARS);
        assert!(query(&long).find(&format!("see {long}")).is_some());
    }

    #[test]
    fn a_message_is_indexed_by_its_words_and_their_prefixes() {
        let terms = index_terms("The meeting, the MEETING; at 10:30!");
        let expected: BTreeSet<Term> = [
            // A word of three characters is held as its prefix.
            Term::Prefix("the".into()),
            Term::Word("meeting".into()),
            Term::Prefix("mee".into()),
            Term::Word("at".into()),
            // A colon between digits ends a word (UAX #29).
            Term::Word("10".into()),
            Term::Word("30".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(terms, expected);
    }

    #[test]
    fn prefixes_of_words_beyond_ascii_are_cut_at_characters() {
        let terms = index_terms("Ωμέγα ÉTÉ été");
        let expected: BTreeSet<Term> = [
            Term::Word("ωμεγα".into()),
            Term::Prefix("ωμε".into()),
            Term::Prefix("ete".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(terms, expected);
        // Three characters in more bytes: held as its prefix only.
        assert!(!index_terms("été").contains(&Term::Word("ete".into())));
        // The visit sees every term, a repeated one each time.
        let mut visited = Vec::new();
        for_each_index_term("été été Ωμέγα", |term| {
            visited.push(term.to_term())
        });
        assert_eq!(visited.len(), 4);
    }

    #[test]
    fn a_word_of_three_characters_is_found_by_its_prefix() {
        let held = index_terms("go team, ship the build tonight");
        for (typed, term, exact) in [
            ("go", Term::Word("go".into()), true),
            ("the", Term::Prefix("the".into()), false),
            ("team", Term::Word("team".into()), true),
            ("tonight", Term::Word("tonight".into()), true),
            ("shi*", Term::Prefix("shi".into()), true),
            ("ship*", Term::Prefix("shi".into()), false),
            ("tonig*", Term::Prefix("ton".into()), false),
        ] {
            let q = query(typed);
            assert_eq!(q.terms()[0].index_term(), term, "{typed}");
            assert_eq!(q.terms()[0].is_exact(), exact, "{typed}");
            assert!(held.contains(&term), "{typed}");
        }
        // The index finds more than the word; the text decides.
        assert!(query("the").find("there they go").is_none());
        assert!(query("the").find("THE end").is_some());
        assert!(query("tonig*").find("tons of tonic").is_none());
        assert!(query("tonig*").find("Tonight!").is_some());
    }

    #[test]
    fn words_and_prefixes_are_keyed_apart() {
        assert_ne!(
            Term::Word("cat".into()).as_ref().key_material(),
            Term::Prefix("cat".into()).as_ref().key_material()
        );
    }

    #[test]
    fn every_word_of_a_query_must_be_in_the_message() {
        let q = query("lunch Friday");
        assert!(q.find("Lunch on friday?").is_some());
        assert!(q.find("lunch on monday").is_none());
        assert!(q.find("lunchtime friday").is_none());
    }

    #[test]
    fn a_trailing_star_matches_the_start_of_a_word() {
        let q = query("meet*");
        assert!(q.find("see you at the meeting").is_some());
        assert!(q.find("meet me").is_some());
        assert!(q.find("a mee").is_none());
        // Longer than any indexed prefix: the index finds candidates by
        // the first three characters, the text decides.
        let long = query("internat*");
        assert_eq!(long.terms()[0].index_term(), Term::Prefix("int".into()));
        assert!(long.find("international call").is_some());
        assert!(long.find("internet call").is_none());
    }

    #[test]
    fn a_prefix_needs_three_characters() {
        assert_eq!(
            SearchQuery::parse("me*"),
            Err(DomainError::SearchPrefixTooShort { min: 3 })
        );
        assert!(SearchQuery::parse("mé*").is_err());
        assert_eq!(
            query("Méé*").terms()[0].index_term(),
            Term::Prefix("mee".into())
        );
    }

    #[test]
    fn empty_long_and_crowded_queries_are_refused() {
        for text in ["", "   ", "!!! ?", "*"] {
            assert_eq!(
                SearchQuery::parse(text),
                Err(DomainError::SearchEmpty),
                "{text:?}"
            );
        }
        assert!(matches!(
            SearchQuery::parse(&"a ".repeat(200)),
            Err(DomainError::SearchTooLong { .. })
        ));
        assert!(matches!(
            SearchQuery::parse("a b c d e f g h i"),
            Err(DomainError::SearchTooManyWords { max: 8 })
        ));
        // Repeats count once.
        assert_eq!(query("a a a a a a a a a a").terms().len(), 1);
    }

    #[test]
    fn punctuation_in_a_query_splits_it_like_a_message() {
        let q = query("e-mail");
        assert_eq!(q.terms().len(), 2);
        assert!(q.find("send an E-Mail").is_some());
        assert!(q.find("send an email").is_none());
    }

    #[test]
    fn highlights_are_character_ranges_of_every_matching_word() {
        let text = "Café au lait, CAFÉ noir";
        let found = query("cafe").find(text).expect("found");
        assert_eq!(
            found,
            vec![
                Highlight { start: 0, end: 4 },
                Highlight { start: 14, end: 18 }
            ]
        );
        let chars: Vec<char> = text.chars().collect();
        let words: Vec<String> = found
            .iter()
            .map(|h| chars[h.start..h.end].iter().collect())
            .collect();
        assert_eq!(words, ["Café", "CAFÉ"]);
    }

    #[test]
    fn every_query_term_finds_what_the_index_holds_for_it() {
        let text = "Quarterly planning: Zürich offsite, internationalisation";
        let held = index_terms(text);
        for typed in [
            "zurich",
            "plan*",
            "internationalis*",
            "offsite",
            "qua*",
            "planning",
            "zürich",
            "quarterly",
        ] {
            let q = query(typed);
            assert!(q.find(text).is_some(), "{typed}");
            for term in q.terms() {
                assert!(held.contains(&term.index_term()), "{typed}");
            }
        }
    }

    #[test]
    fn ascii_words_normalise_as_any_other_text_does() {
        let long = "x".repeat(MAX_WORD_CHARS + 5);
        for word in [
            "Hello",
            "WORLD",
            "don't",
            "abc123",
            "MiXeD_case",
            "",
            long.as_str(),
        ] {
            assert_eq!(normalise_word(word), normalise_unicode_word(word), "{word}");
        }
    }
}
