//! The tables of the audit commands (`links list`, `rejections list`, `revocations
//! list`), fitted to the width they are shown in.
//!
//! The width is `COLUMNS` when that is set to a number (as `ls` and `ps` read it),
//! else the terminal's when stdout is one, else none: piped into a file, `grep` or a
//! pager, a table keeps every value whole. Within a width, the columns that may
//! shrink (addresses, keys, reasons) give way down to a minimum, a value longer than
//! its column is cut with `…`, and a line that still does not fit (a very narrow
//! terminal) is cut at the width with `…`. JSON and CSV always hold full values.
//!
//! A value's control characters (a line break in a reason) are shown as spaces, or
//! as `�`, so that one row is one line and no value can send the terminal escape
//! sequences. Width is counted in terminal cells: East Asian wide characters take two,
//! combining marks none.

/// One column: its heading, the width it gets when there is room, and the width it
/// may shrink to (equal for a column whose values must stay whole, such as a link id).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub heading: &'static str,
    pub width: usize,
    pub min: usize,
    pub right: bool,
}

impl Column {
    /// A column that keeps its width.
    pub const fn fixed(heading: &'static str, width: usize) -> Self {
        Self {
            heading,
            width,
            min: width,
            right: false,
        }
    }

    /// A column that may shrink to `min` when the width is short.
    pub const fn shrinks(heading: &'static str, width: usize, min: usize) -> Self {
        Self {
            heading,
            width,
            min,
            right: false,
        }
    }

    /// Right-aligned (numbers).
    pub const fn right(mut self) -> Self {
        self.right = true;
        self
    }
}

/// Columns laid out for a width. The last column takes what is left and is never
/// padded.
pub struct Table {
    columns: Vec<Column>,
    widths: Vec<usize>,
    limit: Option<usize>,
}

const GAP: usize = 2;

/// The width tables are fitted to (see the module's comment).
pub fn output_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(columns);
    }
    terminal_width()
}

/// The width of the terminal stdout is, if it is one.
fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    width_of_terminal(libc::STDOUT_FILENO)
}

/// The width of the terminal stderr is, if it is one (for the live status line).
pub fn stderr_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    width_of_terminal(libc::STDERR_FILENO)
}

fn width_of_terminal(fd: libc::c_int) -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which is valid.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(size.ws_col as usize)
}

impl Table {
    /// Lays `columns` out for `limit` cells (none: every value whole).
    pub fn new(columns: &[Column], limit: Option<usize>) -> Self {
        let mut widths: Vec<usize> = columns.iter().map(|c| c.width).collect();
        if let Some(limit) = limit {
            let used = |widths: &[usize]| widths.iter().sum::<usize>() + GAP * (widths.len() - 1);
            // Shrink the widest column that may still shrink, one cell at a time,
            // until the line fits or nothing more can give.
            while used(&widths) > limit {
                let Some(at) = (0..columns.len())
                    .filter(|&i| widths[i] > columns[i].min)
                    .max_by_key(|&i| widths[i] - columns[i].min)
                else {
                    break;
                };
                widths[at] -= 1;
            }
            // The last column takes whatever room is left over.
            let last = widths.len() - 1;
            let before = used(&widths[..last]) + GAP;
            if limit > before + widths[last] {
                widths[last] = limit - before;
            }
        }
        Self {
            columns: columns.to_vec(),
            widths,
            limit,
        }
    }

    /// The heading line.
    pub fn heading(&self) -> String {
        let headings: Vec<&str> = self.columns.iter().map(|c| c.heading).collect();
        self.row(&headings)
    }

    /// One row. Without a width, values are whole and padded to their column;
    /// with one, each is cut to its column and the line to the width.
    pub fn row(&self, cells: &[&str]) -> String {
        let mut line = String::new();
        let last = self.columns.len() - 1;
        for (i, (cell, column)) in cells.iter().zip(&self.columns).enumerate() {
            let text = clean(cell);
            let text = match self.limit {
                Some(_) => cut(&text, self.widths[i]),
                None => text,
            };
            let pad = self.widths[i].saturating_sub(width_of(&text));
            if i > 0 {
                line.push_str("  ");
            }
            if i == last {
                line.push_str(&text);
            } else if column.right {
                line.push_str(&" ".repeat(pad));
                line.push_str(&text);
            } else {
                line.push_str(&text);
                line.push_str(&" ".repeat(pad));
            }
        }
        let line = line.trim_end().to_string();
        match self.limit {
            Some(limit) => cut(&line, limit),
            None => line,
        }
    }
}

/// A value fit for one line of a table: line breaks and tabs become spaces, other
/// control characters `�`.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// `text` in at most `width` cells: whole, or cut with `…` in the last cell.
pub fn cut(text: &str, width: usize) -> String {
    if width_of(text) <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_width(c);
        if used + w > width - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// The cells `text` takes in a terminal.
pub fn width_of(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

/// Two cells for East Asian wide and fullwidth characters (and emoji), none for
/// combining marks, one otherwise: an approximation of wcwidth good enough to line
/// columns up.
fn char_width(c: char) -> usize {
    match c as u32 {
        0x0300..=0x036F | 0x200B..=0x200F | 0x20D0..=0x20FF | 0xFE00..=0xFE0F => 0,
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 3] = [
        Column::fixed("ID", 4),
        Column::shrinks("NAME", 10, 4),
        Column::shrinks("REST", 8, 4),
    ];

    #[test]
    fn without_a_width_values_stay_whole() {
        let table = Table::new(&COLUMNS, None);
        assert_eq!(table.heading(), "ID    NAME        REST");
        assert_eq!(
            table.row(&["1", "a name longer than ten", "the rest, whole"]),
            "1     a name longer than ten  the rest, whole"
        );
    }

    #[test]
    fn within_a_width_columns_shrink_and_values_are_cut() {
        let table = Table::new(&COLUMNS, Some(20));
        let row = table.row(&["1", "a name longer than ten", "the rest, whole"]);
        assert_eq!(row, "1     a nam…  the r…");
        assert!(width_of(&row) <= 20);
        // Room to spare goes to the last column.
        let table = Table::new(&COLUMNS, Some(40));
        assert_eq!(
            table.row(&["1", "a name longer than ten", "the rest, whole"]),
            "1     a name lo…  the rest, whole"
        );
        // Too narrow for the minimums: the line itself is cut.
        let table = Table::new(&COLUMNS, Some(12));
        assert_eq!(table.row(&["1234", "abcdefgh", "x"]), "1234  abc… …");
    }

    #[test]
    fn control_characters_do_not_break_the_line_and_wide_ones_count_twice() {
        let table = Table::new(&COLUMNS, None);
        assert_eq!(
            table.row(&["1", "a\nb", "\u{1b}[31m"]),
            "1     a b         �[31m"
        );
        assert_eq!(width_of("日本"), 4);
        assert_eq!(cut("日本語の文書", 5), "日本…");
    }
}
