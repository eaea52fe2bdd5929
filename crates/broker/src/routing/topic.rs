//! Topic matching exactly as RabbitMQ does it: keys split on '.', empty words count (so
//! "a..b" has three words and "" has none), `*` is exactly one word and `#` is zero or more.

use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Star,
    Hash,
    Literal(Bytes),
}

/// A compiled binding key of a topic exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    words: Vec<Word>,
    has_hash: bool,
}

/// Splits a key into words the way RabbitMQ's `split_topic_key` does: the empty key has no
/// words, and every '.' ends a word (so a trailing '.' leaves an empty last word).
pub fn split_words(key: &[u8]) -> Vec<&[u8]> {
    if key.is_empty() {
        return Vec::new();
    }
    key.split(|b| *b == b'.').collect()
}

impl TopicPattern {
    pub fn parse(key: &Bytes) -> TopicPattern {
        let words: Vec<Word> = split_words(key)
            .into_iter()
            .map(|w| match w {
                b"*" => Word::Star,
                b"#" => Word::Hash,
                other => Word::Literal(key.slice_ref(other)),
            })
            .collect();
        let has_hash = words.contains(&Word::Hash);
        TopicPattern { words, has_hash }
    }

    pub fn matches(&self, key: &[&[u8]]) -> bool {
        if !self.has_hash {
            return self.words.len() == key.len()
                && self.words.iter().zip(key).all(|(w, k)| match w {
                    Word::Star => true,
                    Word::Literal(l) => l.as_ref() == *k,
                    Word::Hash => false,
                });
        }
        // reach[j]: the pattern words seen so far match the first j key words.
        let mut reach = vec![false; key.len() + 1];
        reach[0] = true;
        for w in &self.words {
            match w {
                Word::Hash => {
                    let mut any = false;
                    for r in reach.iter_mut() {
                        any |= *r;
                        *r = any;
                    }
                }
                Word::Star | Word::Literal(_) => {
                    for j in (1..=key.len()).rev() {
                        let word_ok = match w {
                            Word::Literal(l) => l.as_ref() == key[j - 1],
                            _ => true,
                        };
                        reach[j] = reach[j - 1] && word_ok;
                    }
                    reach[0] = false;
                }
            }
        }
        reach[key.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, key: &str) -> bool {
        TopicPattern::parse(&Bytes::copy_from_slice(pattern.as_bytes()))
            .matches(&split_words(key.as_bytes()))
    }

    #[test]
    fn rabbitmq_topic_semantics() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.b.b.c", true),
            ("#", "", true),
            ("#", "a.b", true),
            ("*", "", false),
            ("*", "a", true),
            ("*", "a.b", false),
            ("", "", true),
            ("", "a", false),
            ("a.*", "a.", true),
            ("a.*", "a", false),
            ("*.*", ".", true),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
            ("#.#", "a", true),
            ("#.#", "", true),
            ("#.b", "b", true),
            ("#.b", "a.b.c", false),
            ("a.#", "a", true),
            ("a.#.#.b", "a.b", true),
            ("*.#", "", false),
            ("*.#", "a.b.c", true),
            ("#.*", "a", true),
            ("a.b", "a.b.", false),
        ];
        for (p, k, want) in cases {
            assert_eq!(m(p, k), want, "pattern {p:?} key {k:?}");
        }
    }

    #[test]
    fn many_hashes_stay_fast() {
        let p = "#.".repeat(200) + "x";
        let k = "a.".repeat(200) + "y";
        assert!(!m(&p, &k));
    }
}
