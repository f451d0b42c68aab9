//! Character-level corpora: the vocabulary, encoding, the train/validation split, and a corpus the
//! project generates itself so training runs offline.

use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A character vocabulary: token `i` is `chars[i]` (sorted, unique).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    /// The characters, in token order.
    pub chars: Vec<char>,
}

impl Vocab {
    /// The sorted set of characters of `text`.
    pub fn from_text(text: &str) -> Vocab {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocab { chars }
    }

    /// Tokens in the vocabulary.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Encodes `text`; a character outside the vocabulary is an error naming it.
    pub fn encode(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        text.chars()
            .map(|c| {
                let i = self.chars.binary_search(&c).ok();
                i.map(|i| i as u32)
                    .with_context(|| format!("character {c:?} is not in the model's vocabulary"))
            })
            .collect()
    }

    /// Decodes tokens (unknown ids become `?`).
    pub fn decode(&self, tokens: &[u32]) -> String {
        tokens
            .iter()
            .map(|&t| self.chars.get(t as usize).copied().unwrap_or('?'))
            .collect()
    }

    /// The vocabulary as one string (for checkpoints).
    pub fn to_string_lossless(&self) -> String {
        self.chars.iter().collect()
    }
}

/// An encoded corpus split 90/10 into training and validation tokens.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The vocabulary.
    pub vocab: Vocab,
    /// Training tokens (the first 90%).
    pub train: Vec<u32>,
    /// Validation tokens (the last 10%).
    pub val: Vec<u32>,
}

impl Corpus {
    /// Builds a corpus from text; at least 100 characters.
    pub fn from_text(text: &str) -> anyhow::Result<Corpus> {
        let vocab = Vocab::from_text(text);
        let tokens = vocab.encode(text)?;
        anyhow::ensure!(
            tokens.len() >= 100,
            "the corpus has {} characters; at least 100 are needed",
            tokens.len()
        );
        let split = tokens.len() * 9 / 10;
        Ok(Corpus {
            vocab,
            train: tokens[..split].to_vec(),
            val: tokens[split..].to_vec(),
        })
    }

    /// Reads a UTF-8 text file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Corpus> {
        let text = crate::fsutil::read_text(path)
            .with_context(|| format!("cannot read corpus {}", path.display()))?;
        Corpus::from_text(&text).with_context(|| path.display().to_string())
    }
}

const WORDS: [&str; 24] = [
    "the", "king", "queen", "said", "to", "his", "her", "lord", "and", "my", "good", "sir",
    "shall", "we", "go", "now", "with", "you", "what", "is", "this", "night", "day", "love",
];

/// A deterministic synthetic corpus of about `chars` characters mixing easy and hard tokens:
/// sentences of common words (easy: after a word's first letters the rest is determined, so a
/// shallow exit predicts it) interleaved with numbers of random digits and random capitalised
/// names (hard: nothing predicts them).
pub fn synthetic_corpus(chars: usize, seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = String::with_capacity(chars + 64);
    while out.len() < chars {
        let words = rng.random_range(3..9);
        for w in 0..words {
            if w > 0 {
                out.push(' ');
            }
            match rng.random_range(0..10) {
                0 => {
                    for _ in 0..rng.random_range(2..5) {
                        out.push(char::from(b'0' + rng.random_range(0..10u8)));
                    }
                }
                1 => {
                    out.push(char::from(b'A' + rng.random_range(0..26u8)));
                    for _ in 0..rng.random_range(2..5) {
                        out.push(char::from(b'a' + rng.random_range(0..26u8)));
                    }
                }
                _ => out.push_str(WORDS[rng.random_range(0..WORDS.len())]),
            }
        }
        out.push_str(if rng.random_bool(0.3) { ".\n" } else { ", " });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_round_trips_and_rejects_unknown_characters() {
        let v = Vocab::from_text("hello world");
        let t = v.encode("low").unwrap();
        assert_eq!(v.decode(&t), "low");
        assert!(v.encode("z").unwrap_err().to_string().contains("'z'"));
    }

    #[test]
    fn synthetic_corpus_is_deterministic() {
        assert_eq!(synthetic_corpus(500, 3), synthetic_corpus(500, 3));
        assert_ne!(synthetic_corpus(500, 3), synthetic_corpus(500, 4));
    }
}
