//! Splits a haproxy.cfg line into words the way HAProxy does: blanks separate words, `#`
//! starts a comment, a backslash escapes the next character, and single or double quotes
//! group a word that contains blanks.

/// The words of one line; an error names what is malformed.
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => match chars.next() {
                Some(n) => {
                    word.push(n);
                    in_word = true;
                }
                None => return Err("line ends with a lone backslash".into()),
            },
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '#') => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unmatched quote ({q})"));
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn blanks_separate_and_comments_end_the_line() {
        assert_eq!(
            words("    server node1 127.0.0.1:5673 check  # first").unwrap(),
            ["server", "node1", "127.0.0.1:5673", "check"]
        );
        assert!(words("   # only a comment").unwrap().is_empty());
        assert!(words("").unwrap().is_empty());
    }

    #[test]
    fn quotes_and_escapes_group_words() {
        assert_eq!(
            words(r#"stats realm "warren stats" x\ y 'a#b' """#).unwrap(),
            ["stats", "realm", "warren stats", "x y", "a#b", ""]
        );
        assert_eq!(words(r"a\#b").unwrap(), ["a#b"]);
    }

    #[test]
    fn malformed_quoting_is_an_error() {
        assert!(words(r#"stats realm "open"#).unwrap_err().contains("quote"));
        assert!(words(r"abc\").unwrap_err().contains("backslash"));
    }
}
