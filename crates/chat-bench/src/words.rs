//! Message text that reads like chat for the search index: words drawn
//! from a vocabulary with a Zipf-like frequency, as natural language has
//! (the most common word about twice as frequent as the second, and so on).
//!
//! The vocabulary is the 100 most common English words followed by
//! pronounceable made-up words built from syllables, so it is the same on
//! every machine without a dictionary file. What a message says is a pure
//! function of its sender and counter, so runs are repeatable.

use std::sync::Arc;

/// The most common English words, most common first.
const COMMON: &str = "the be to of and a in that have i it for not on with he as you do at \
    this but his by from they we say her she or an will my one all would there their what so \
    up out if about who get which go me when make can like time no just him know take people \
    into year your good some could them see other than then now look only come its over think \
    also back after use two how our work first well way even new want because any these give \
    day most us";

const ONSETS: [&str; 16] = [
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st",
];
const VOWELS: [&str; 6] = ["a", "e", "i", "o", "u", "ai"];

/// Words and the cumulative probability of each, most common first.
#[derive(Debug)]
pub(crate) struct Vocabulary {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    /// `size` words whose frequencies follow Zipf's law with exponent
    /// `exponent` (1.0 for natural language).
    pub(crate) fn zipf(size: usize, exponent: f64) -> Vocabulary {
        let mut words: Vec<String> = COMMON.split_whitespace().map(str::to_owned).collect();
        let mut taken: std::collections::HashSet<String> = words.iter().cloned().collect();
        let mut n: usize = 0;
        while words.len() < size {
            // A made-up word may spell a common one ("take"): kept once.
            let word = made_up(n);
            if taken.insert(word.clone()) {
                words.push(word);
            }
            n += 1;
        }
        words.truncate(size.max(1));
        let weights: Vec<f64> = (1..=words.len())
            .map(|rank| 1.0 / (rank as f64).powf(exponent))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut running = 0.0;
        let cumulative = weights
            .iter()
            .map(|weight| {
                running += weight / total;
                running
            })
            .collect();
        Vocabulary { words, cumulative }
    }

    /// The word at cumulative probability `u` (0 <= u < 1).
    pub(crate) fn word_at(&self, u: f64) -> &str {
        let index = self
            .cumulative
            .partition_point(|&p| p < u)
            .min(self.words.len() - 1);
        &self.words[index]
    }

    /// The word of `rank` (0 is the most common).
    #[cfg(test)]
    fn word(&self, rank: usize) -> &str {
        &self.words[rank.min(self.words.len() - 1)]
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.words.len()
    }
}

/// The `n`-th made-up word: `n` written in base 96, at least two digits,
/// each digit a syllable (an onset and a vowel). Every onset is a
/// consonant and every vowel starts with one, so a word splits into its
/// syllables one way only and distinct `n` give distinct words.
fn made_up(n: usize) -> String {
    let base = ONSETS.len() * VOWELS.len();
    let mut digits = Vec::new();
    let mut rest = n;
    while rest > 0 || digits.len() < 2 {
        digits.push(rest % base);
        rest /= base;
    }
    digits
        .iter()
        .rev()
        .map(|digit| {
            format!(
                "{}{}",
                ONSETS[digit / VOWELS.len()],
                VOWELS[digit % VOWELS.len()]
            )
        })
        .collect()
}

/// One step of SplitMix64: a fast, well-mixed 64-bit sequence.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from the sequence.
pub(crate) fn unit(state: &mut u64) -> f64 {
    (splitmix64(state) >> 11) as f64 / (1u64 << 53) as f64
}

/// What is appended to a bench message's content.
#[derive(Debug, Clone, Default)]
pub(crate) enum Pad {
    /// Nothing.
    #[default]
    None,
    /// The same text on every message.
    Fixed(String),
    /// Words from the vocabulary: between half and one and a half times
    /// `mean` of them, chosen by the sender and counter.
    Words {
        vocabulary: Arc<Vocabulary>,
        mean: usize,
    },
}

impl Pad {
    /// The text appended to message `counter` of `sender` (with a leading
    /// space when not empty).
    pub(crate) fn text(&self, sender: usize, counter: u64) -> String {
        match self {
            Pad::None => String::new(),
            Pad::Fixed(text) => text.clone(),
            Pad::Words { vocabulary, mean } => {
                let mut state = (sender as u64) << 40 ^ counter;
                let low = (mean / 2).max(1);
                let span = (*mean).max(1) as u64 + 1;
                let count = low + (splitmix64(&mut state) % span) as usize;
                let mut text = String::with_capacity(count * 7);
                for _ in 0..count {
                    text.push(' ');
                    text.push_str(vocabulary.word_at(unit(&mut state)));
                }
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_words_come_first_and_made_up_ones_are_distinct() {
        let vocabulary = Vocabulary::zipf(20_000, 1.0);
        assert_eq!(vocabulary.len(), 20_000);
        assert_eq!(vocabulary.word(0), "the");
        let distinct: std::collections::HashSet<&str> = (0..vocabulary.len())
            .map(|rank| vocabulary.word(rank))
            .collect();
        assert_eq!(distinct.len(), 20_000);
    }

    #[test]
    fn frequencies_fall_with_rank() {
        let vocabulary = Vocabulary::zipf(5_000, 1.0);
        let mut state = 7;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..100_000 {
            *counts
                .entry(vocabulary.word_at(unit(&mut state)).to_owned())
                .or_insert(0u32) += 1;
        }
        let the = counts["the"];
        let be = counts["be"];
        // Zipf: the first about twice the second, about 11% of all words
        // with 5,000 of them.
        assert!(
            (1.6..2.4).contains(&(f64::from(the) / f64::from(be))),
            "{the} {be}"
        );
        assert!((9_000..13_000).contains(&the), "{the}");
    }

    #[test]
    fn a_message_text_depends_on_its_sender_and_counter_only() {
        let pad = Pad::Words {
            vocabulary: Arc::new(Vocabulary::zipf(1_000, 1.0)),
            mean: 10,
        };
        assert_eq!(pad.text(3, 9), pad.text(3, 9));
        assert_ne!(pad.text(3, 9), pad.text(3, 10));
        let words = pad.text(1, 1).split_whitespace().count();
        assert!((5..=15).contains(&words), "{words}");
        assert!(pad.text(1, 1).starts_with(' '));
    }
}
