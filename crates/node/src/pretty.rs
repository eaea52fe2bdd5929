//! rabbitmq-queues' `pretty_table` formatter, byte for byte as RabbitMQ 3.10's CLI prints
//! it (recorded in `docs/rabbitmq-behaviour.md`): borders in the DEC line-drawing set (`ESC
//! ( 0` in, `ESC ( B` out), headers in bold, every cell padded to its column's width, a rule
//! between rows.

const IN: &str = "\x1b(0";
const OUT: &str = "\x1b(B";

/// One border line: `left`, runs of `q` as wide as each column and its padding, `mid`
/// between them, `right`.
fn rule(widths: &[usize], (left, mid, right): (char, char, char)) -> String {
    let runs: Vec<String> = widths.iter().map(|w| "q".repeat(w + 2)).collect();
    format!("{IN}{left}{}{right}{OUT}\n", runs.join(&mid.to_string()))
}

/// One line of cells, each written by `cell` (given the text and its padding).
fn line(cells: &[String], widths: &[usize], cell: impl Fn(&str, usize) -> String) -> String {
    let mut out = format!("{IN}x{OUT}");
    for (c, w) in cells.iter().zip(widths) {
        out.push(' ');
        out.push_str(&cell(c, w.saturating_sub(c.chars().count())));
        out.push_str(&format!(" {IN}x{OUT}"));
    }
    out.push('\n');
    out
}

/// `headers` over `rows`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let headers: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .chain([&headers[i]])
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = rule(&widths, ('l', 'w', 'k'));
    out.push_str(&line(&headers, &widths, |h, pad| {
        format!("\x1b[1m{h}\x1b[0m{}", " ".repeat(pad))
    }));
    for row in rows {
        out.push_str(&rule(&widths, ('t', 'n', 'u')));
        out.push_str(&line(row, &widths, |c, pad| {
            format!("{c}{}", " ".repeat(pad))
        }));
    }
    out.push_str(&rule(&widths, ('m', 'v', 'j')));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_answer_is_rabbitmq_s_output_table() {
        assert_eq!(
            table(&["Output"], &[vec!["[]".to_owned()]]),
            "\x1b(0lqqqqqqqqk\x1b(B\n\x1b(0x\x1b(B \x1b[1mOutput\x1b[0m \x1b(0x\x1b(B\n\x1b(0tqqqqqqqqu\x1b(B\n\x1b(0x\x1b(B []     \x1b(0x\x1b(B\n\x1b(0mqqqqqqqqj\x1b(B\n"
        );
    }

    #[test]
    fn rows_are_padded_and_ruled_as_rabbitmq_prints_them() {
        let rows: Vec<Vec<String>> = ["r3@localhost", "r2@localhost"]
            .iter()
            .map(|n| vec![(*n).to_owned(), "3".to_owned(), "0".to_owned()])
            .collect();
        let headers = [
            "Node name",
            "Number of quorum queues",
            "Number of replicated classic queues",
        ];
        let want = "\x1b(0lqqqqqqqqqqqqqqwqqqqqqqqqqqqqqqqqqqqqqqqqwqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqk\x1b(B\n\x1b(0x\x1b(B \x1b[1mNode name\x1b[0m    \x1b(0x\x1b(B \x1b[1mNumber of quorum queues\x1b[0m \x1b(0x\x1b(B \x1b[1mNumber of replicated classic queues\x1b[0m \x1b(0x\x1b(B\n\x1b(0tqqqqqqqqqqqqqqnqqqqqqqqqqqqqqqqqqqqqqqqqnqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqu\x1b(B\n\x1b(0x\x1b(B r3@localhost \x1b(0x\x1b(B 3                       \x1b(0x\x1b(B 0                                   \x1b(0x\x1b(B\n\x1b(0tqqqqqqqqqqqqqqnqqqqqqqqqqqqqqqqqqqqqqqqqnqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqu\x1b(B\n\x1b(0x\x1b(B r2@localhost \x1b(0x\x1b(B 3                       \x1b(0x\x1b(B 0                                   \x1b(0x\x1b(B\n\x1b(0mqqqqqqqqqqqqqqvqqqqqqqqqqqqqqqqqqqqqqqqqvqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqj\x1b(B\n";
        assert_eq!(table(&headers, &rows), want);
    }
}
