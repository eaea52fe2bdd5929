//! keepalived.conf's syntax: words and quoted strings, `#`/`!` comments, `{ }` blocks and
//! `include` (with globs), read into a tree of [`Node`]s that remember their file and line, so
//! every later check can name where it failed.

use super::ConfigError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One statement: a keyword, its words, and the block that follows it if any.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) key: String,
    pub(super) args: Vec<String>,
    pub(super) block: Option<Vec<Node>>,
    pub(super) file: String,
    pub(super) line: usize,
}

impl Node {
    pub(super) fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    pub(super) fn one(&self) -> Result<&str, ConfigError> {
        match self.args.as_slice() {
            [v] => Ok(v),
            [] => Err(self.err(format!("'{}' expects a value", self.key))),
            [_, extra, ..] => Err(self.err(format!("unexpected '{extra}' after '{}'", self.key))),
        }
    }

    pub(super) fn number<T>(&self, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display,
    {
        let v = self.one()?;
        match v.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(self.err(format!(
                "'{}' expects a number from {} to {}, not '{v}'",
                self.key,
                range.start(),
                range.end()
            ))),
        }
    }

    pub(super) fn seconds(&self) -> Result<Duration, ConfigError> {
        let v = self.one()?;
        match v.parse::<f64>() {
            Ok(s) if s > 0.0 && s < 86_400.0 => Ok(Duration::from_secs_f64(s)),
            _ => Err(self.err(format!(
                "'{}' expects seconds (e.g. 1 or 0.1), not '{v}'",
                self.key
            ))),
        }
    }

    pub(super) fn block(&self) -> Result<&[Node], ConfigError> {
        self.block
            .as_deref()
            .ok_or_else(|| self.err(format!("'{}' expects a {{ block }}", self.key)))
    }

    pub(super) fn flag(&self) -> Result<(), ConfigError> {
        if self.args.is_empty() && self.block.is_none() {
            Ok(())
        } else {
            Err(self.err(format!("'{}' takes no value", self.key)))
        }
    }
}

pub(super) fn read_nodes(path: &Path, depth: usize) -> Result<Vec<Node>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    tree(&path.display().to_string(), &text, dir, depth)
}

/// Words with their line numbers; `#` and `!` start comments, double quotes group words, and
/// braces are words of their own.
pub(super) fn tokens(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut word = String::new();
        let mut quoted = false;
        let mut in_word = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    in_word = true;
                }
                '#' | '!' if !quoted => break,
                '{' | '}' if !quoted => {
                    if in_word {
                        out.push((i + 1, std::mem::take(&mut word)));
                        in_word = false;
                    }
                    out.push((i + 1, c.to_string()));
                }
                c if c.is_whitespace() && !quoted => {
                    if in_word {
                        out.push((i + 1, std::mem::take(&mut word)));
                        in_word = false;
                    }
                }
                c => {
                    word.push(c);
                    in_word = true;
                }
            }
        }
        if in_word {
            out.push((i + 1, word));
        }
    }
    out
}

pub(super) fn tree(
    file: &str,
    text: &str,
    dir: &Path,
    depth: usize,
) -> Result<Vec<Node>, ConfigError> {
    let toks = tokens(text);
    let mut pos = 0;
    let nodes = block(file, &toks, &mut pos, dir, depth, false)?;
    Ok(nodes)
}

/// `include` takes a path, relative to the including file, with `*` matching in its last part.
pub(super) fn include_paths(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        dir.join(pattern)
    };
    let name = full.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains('*') {
        return vec![full];
    }
    let (prefix, suffix) = name.split_once('*').unwrap_or((name, ""));
    let parent = full.parent().unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

pub(super) fn block(
    file: &str,
    toks: &[(usize, String)],
    pos: &mut usize,
    dir: &Path,
    depth: usize,
    nested: bool,
) -> Result<Vec<Node>, ConfigError> {
    let mut nodes = Vec::new();
    let err = |line: usize, m: String| ConfigError {
        file: file.to_string(),
        line,
        message: m,
    };
    while *pos < toks.len() {
        let (line, word) = &toks[*pos];
        *pos += 1;
        match word.as_str() {
            "}" if nested => return Ok(nodes),
            "}" => return Err(err(*line, "unmatched '}'".into())),
            "{" => return Err(err(*line, "'{' without a keyword before it".into())),
            _ => {}
        }
        let mut args = Vec::new();
        let mut child = None;
        // A statement's words are those on its own line (a block opens on the same line).
        while *pos < toks.len() && toks[*pos].0 == *line {
            let w = &toks[*pos].1;
            *pos += 1;
            if w == "{" {
                child = Some(block(file, toks, pos, dir, depth, true)?);
                break;
            }
            if w == "}" {
                *pos -= 1;
                break;
            }
            args.push(w.clone());
        }
        if child.is_none() && *pos < toks.len() && toks[*pos].1 == "{" {
            *pos += 1;
            child = Some(block(file, toks, pos, dir, depth, true)?);
        }
        if word == "include" {
            if depth > 8 {
                return Err(err(*line, "includes nested too deeply".into()));
            }
            for path in include_paths(dir, args.first().map(String::as_str).unwrap_or("")) {
                nodes.extend(read_nodes(&path, depth + 1)?);
            }
            continue;
        }
        nodes.push(Node {
            key: word.clone(),
            args,
            block: child,
            file: file.to_string(),
            line: *line,
        });
    }
    if nested {
        let line = toks.last().map_or(0, |t| t.0);
        return Err(err(line, "missing '}' at the end of the file".into()));
    }
    Ok(nodes)
}
