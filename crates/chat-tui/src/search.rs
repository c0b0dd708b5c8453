//! Searching messages: the search under way with the results loaded so far
//! (numbered across pages, so `/goto <n>` names any of them), the cursor
//! for the next page, and each result as a line of text with the words
//! found in brackets.
//!
//! Plain data, no terminal and no network: the UI asks it what to request
//! and hands it what the server answered.

use chat_protocol::rest::{HighlightBody, SearchBody, SearchParams, SearchResult};
use thiserror::Error;

/// Results per page.
pub(crate) const SEARCH_PAGE_SIZE: i64 = 20;

/// The most characters of a message a result line shows; a longer message
/// is cut around its first word found.
pub(crate) const RESULT_CHARS: usize = 160;

/// Why a search command cannot go ahead. The text is shown to the user as
/// is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum SearchError {
    #[error("no search yet: /search <words> looks for messages")]
    NoSearch,
    #[error("no more results for \"{0}\"")]
    NoMore(String),
    #[error("still searching for \"{0}\"…")]
    Loading(String),
    #[error("{}", no_such_result(*number, *count))]
    NoSuchResult { number: usize, count: usize },
}

fn no_such_result(number: usize, count: usize) -> String {
    match count {
        0 => format!("no search result {number}: the last search found nothing"),
        1 => format!("no search result {number}: there is only 1"),
        _ => format!("no search result {number}: the results go from 1 to {count}"),
    }
}

/// A search and the results loaded so far, oldest page first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Search {
    /// Tells this search's pages from those of an earlier one still on
    /// their way.
    id: u64,
    /// The words as typed.
    words: String,
    /// The room searched; every room of the user's when `None`.
    room: Option<String>,
    results: Vec<SearchResult>,
    /// The server's cursor for the next (older) page; `None` once there is
    /// nothing older, or before the first page arrived.
    next: Option<i64>,
    /// A page was asked for and has not arrived yet.
    loading: bool,
}

impl Search {
    /// A new search, its first page about to be asked for.
    pub(crate) fn new(id: u64, words: &str, room: Option<String>) -> Search {
        Search {
            id,
            words: words.to_owned(),
            room,
            results: Vec::new(),
            next: None,
            loading: true,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn words(&self) -> &str {
        &self.words
    }

    pub(crate) fn room(&self) -> Option<&str> {
        self.room.as_deref()
    }

    pub(crate) fn results(&self) -> &[SearchResult] {
        &self.results
    }

    /// The query of the first page.
    pub(crate) fn first_page(&self) -> SearchParams {
        self.page(None)
    }

    /// The query of the next page, which is now loading; why there is none
    /// to ask for otherwise.
    pub(crate) fn next_page(&mut self) -> Result<SearchParams, SearchError> {
        if self.loading {
            return Err(SearchError::Loading(self.words.clone()));
        }
        let Some(before) = self.next else {
            return Err(SearchError::NoMore(self.words.clone()));
        };
        self.loading = true;
        Ok(self.page(Some(before)))
    }

    fn page(&self, before: Option<i64>) -> SearchParams {
        SearchParams {
            q: self.words.clone(),
            room: self.room.clone(),
            before,
            limit: Some(SEARCH_PAGE_SIZE),
        }
    }

    /// Adds a page of results; returns the number the first of them gets
    /// (results are numbered from 1 across pages).
    pub(crate) fn add_page(&mut self, page: SearchBody) -> usize {
        let first = self.results.len() + 1;
        self.results.extend(page.results);
        self.next = page.next;
        self.loading = false;
        first
    }

    /// A page could not be loaded: the next `/search more` asks again.
    pub(crate) fn page_failed(&mut self) {
        self.loading = false;
    }

    /// Whether there are older results to load.
    pub(crate) fn has_more(&self) -> bool {
        self.next.is_some()
    }

    /// Result `number`, counted from 1.
    pub(crate) fn result(&self, number: usize) -> Result<&SearchResult, SearchError> {
        number
            .checked_sub(1)
            .and_then(|index| self.results.get(index))
            .ok_or(SearchError::NoSuchResult {
                number,
                count: self.results.len(),
            })
    }
}

/// A result as one line: its number, room (as the screen names it), local
/// time, seq, author and text with the words found in brackets:
/// `3. general 12:30 #42 bob: a [café] au lait`.
pub(crate) fn result_line(number: usize, room: &str, time: &str, result: &SearchResult) -> String {
    format!(
        "{number}. {room} {time} #{} {}: {}",
        result.seq,
        result.username,
        marked(&result.content, &result.highlights, RESULT_CHARS)
    )
}

/// `content` on one line with every highlighted range in brackets, at most
/// `max` of its characters (a longer text is cut around its first
/// highlight, with `…` where it was cut).
///
/// The highlights come from the server and count characters (Unicode
/// scalar values), `end` excluded. Ranges that are empty, reach past the
/// text or overlap one already marked are dropped or cut short rather
/// than trusted.
pub(crate) fn marked(content: &str, highlights: &[HighlightBody], max: usize) -> String {
    // Line breaks and other control characters become spaces, one for one,
    // so the offsets still hold.
    let chars: Vec<char> = content
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut ranges: Vec<(usize, usize)> = highlights
        .iter()
        .map(|h| (h.start, h.end.min(chars.len())))
        .filter(|(start, end)| start < end)
        .collect();
    ranges.sort_unstable();
    let mut kept: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        let start = kept
            .last()
            .map_or(start, |(_, last_end)| start.max(*last_end));
        if start < end {
            kept.push((start, end));
        }
    }

    // The window shown: the whole text, or `max` characters starting a
    // little before the first word found.
    let (from, to) = if chars.len() <= max {
        (0, chars.len())
    } else {
        let lead = max / 4;
        let first = kept.first().map_or(0, |(start, _)| *start);
        let from = first.saturating_sub(lead).min(chars.len() - max);
        (from, from + max)
    };

    let mut line = String::with_capacity(content.len() + 2 * kept.len() + 6);
    if from > 0 {
        line.push('…');
    }
    let mut ranges = kept
        .into_iter()
        .map(|(start, end)| (start.max(from), end.min(to)))
        .filter(|(start, end)| start < end)
        .peekable();
    let mut open = None;
    for (index, c) in chars.iter().enumerate().take(to).skip(from) {
        if open.is_none()
            && let Some((_, end)) = ranges.next_if(|(start, _)| *start == index)
        {
            line.push('[');
            open = Some(end);
        }
        line.push(*c);
        if open == Some(index + 1) {
            line.push(']');
            open = None;
        }
    }
    if to < chars.len() {
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn highlight(start: usize, end: usize) -> HighlightBody {
        HighlightBody { start, end }
    }

    fn result(room: &str, seq: i64, content: &str, highlights: &[(usize, usize)]) -> SearchResult {
        SearchResult {
            room: room.to_owned(),
            seq,
            username: "bob".to_owned(),
            created_at: Utc
                .with_ymd_and_hms(2026, 3, 1, 12, 30, 0)
                .single()
                .unwrap_or_default(),
            content: content.to_owned(),
            highlights: highlights
                .iter()
                .map(|(start, end)| highlight(*start, *end))
                .collect(),
        }
    }

    fn page(results: Vec<SearchResult>, next: Option<i64>) -> SearchBody {
        SearchBody { results, next }
    }

    #[test]
    fn highlights_count_characters_not_bytes() {
        assert_eq!(
            marked("Café au lait", &[highlight(0, 4)], 100),
            "[Café] au lait"
        );
        assert_eq!(
            marked(
                "Ça coûte 5 €, le café",
                &[highlight(3, 8), highlight(17, 21)],
                100
            ),
            "Ça [coûte] 5 €, le [café]"
        );
        assert_eq!(
            marked("日本語 テキスト", &[highlight(4, 8)], 100),
            "日本語 [テキスト]"
        );
    }

    #[test]
    fn every_occurrence_is_marked_and_the_rest_is_left_as_written() {
        assert_eq!(
            marked(
                "tea, TEA and more tea",
                &[highlight(0, 3), highlight(5, 8), highlight(18, 21)],
                100
            ),
            "[tea], [TEA] and more [tea]"
        );
        assert_eq!(marked("nothing marked", &[], 100), "nothing marked");
    }

    #[test]
    fn highlights_the_server_got_wrong_are_cut_short_or_dropped() {
        let text = "abc def";
        // Past the end, empty, backwards, overlapping, out of order.
        let highlights = [
            highlight(4, 99),
            highlight(2, 2),
            highlight(3, 1),
            highlight(0, 3),
            highlight(1, 2),
            highlight(50, 60),
        ];
        assert_eq!(marked(text, &highlights, 100), "[abc] [def]");
    }

    #[test]
    fn a_message_on_several_lines_is_shown_on_one() {
        assert_eq!(
            marked("first line\nsecond café", &[highlight(18, 22)], 100),
            "first line second [café]"
        );
    }

    #[test]
    fn a_long_message_is_cut_around_its_first_word_found() {
        let text = format!("{}needle{}", "x".repeat(100), "y".repeat(100));
        let line = marked(&text, &[highlight(100, 106)], 40);
        assert!(line.starts_with('…') && line.ends_with('…'), "{line}");
        assert!(line.contains("[needle]"), "{line}");
        // 40 characters of the message, two brackets and two ellipses.
        assert_eq!(line.chars().count(), 44, "{line}");

        // Near the end, the window ends with the text.
        let text = format!("{}needle", "x".repeat(100));
        let line = marked(&text, &[highlight(100, 106)], 40);
        assert!(
            line.starts_with('…') && line.ends_with("[needle]"),
            "{line}"
        );

        // A word found across the cut is marked up to the cut.
        let text = format!("needle{}", "x".repeat(100));
        assert_eq!(marked(&text, &[highlight(0, 6)], 4), "[need]…");
    }

    #[test]
    fn a_result_line_names_its_number_room_time_seq_and_author() {
        let found = result("general", 42, "Café au lait", &[(0, 4)]);
        assert_eq!(
            result_line(3, "general", "12:30", &found),
            "3. general 12:30 #42 bob: [Café] au lait"
        );
    }

    #[test]
    fn pages_follow_the_servers_cursor_and_are_numbered_on_from_the_last() {
        let mut search = Search::new(1, "tea", Some("den".to_owned()));
        assert_eq!(
            search.first_page(),
            SearchParams {
                q: "tea".to_owned(),
                room: Some("den".to_owned()),
                before: None,
                limit: Some(SEARCH_PAGE_SIZE),
            }
        );
        // Nothing more to ask for while the first page is on its way.
        assert_eq!(
            search.next_page(),
            Err(SearchError::Loading("tea".to_owned()))
        );

        let first = search.add_page(page(
            vec![
                result("den", 9, "tea", &[(0, 3)]),
                result("den", 7, "tea", &[(0, 3)]),
            ],
            Some(7),
        ));
        assert_eq!(first, 1);
        assert!(search.has_more());
        let next = search.next_page().expect("a next page");
        assert_eq!(next.before, Some(7));
        assert_eq!(next.room.as_deref(), Some("den"));
        // Asked once: a second `/search more` waits for it.
        assert!(matches!(search.next_page(), Err(SearchError::Loading(_))));

        let first = search.add_page(page(vec![result("den", 2, "tea", &[(0, 3)])], None));
        assert_eq!(first, 3);
        assert_eq!(search.result(3).map(|found| found.seq), Ok(2));
        assert!(!search.has_more());
        assert_eq!(
            search.next_page(),
            Err(SearchError::NoMore("tea".to_owned()))
        );
    }

    #[test]
    fn a_page_that_failed_can_be_asked_for_again() {
        let mut search = Search::new(1, "tea", None);
        search.add_page(page(vec![result("general", 9, "tea", &[(0, 3)])], Some(9)));
        assert!(search.next_page().is_ok());
        search.page_failed();
        assert_eq!(search.next_page().map(|params| params.before), Ok(Some(9)));
    }

    #[test]
    fn a_result_number_out_of_range_says_which_numbers_there_are() {
        let mut search = Search::new(1, "tea", None);
        search.add_page(page(vec![result("general", 9, "tea", &[(0, 3)])], None));
        assert_eq!(search.result(1).map(|found| found.seq), Ok(9));
        for number in [0, 2] {
            assert_eq!(
                search.result(number),
                Err(SearchError::NoSuchResult { number, count: 1 })
            );
        }
    }
}
