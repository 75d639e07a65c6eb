//! Byte spans → `file:line:col`, and key paths → the span where they are written.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A place in a file, 1-based, as editors and compilers print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

impl Location {
    /// Where byte `offset` of `text` (the contents of `file`) is.
    pub fn of(file: &Path, text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = text[line_start..offset].chars().count() + 1;
        Self {
            file: file.to_path_buf(),
            line,
            col,
        }
    }
}

/// The source text of a pipeline file, able to locate keys in it.
pub struct Source<'a> {
    pub file: &'a Path,
    pub text: &'a str,
    doc: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Source<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Self {
            file,
            text,
            doc: DeTable::parse(text).ok(),
        }
    }

    /// The location of a byte offset.
    pub fn at(&self, offset: usize) -> Location {
        Location::of(self.file, self.text, offset)
    }

    /// Where the key path is written: the key itself when it exists, otherwise the deepest
    /// table along the path that exists (so "missing key" errors point at its table).
    pub fn locate(&self, path: &[&str]) -> Location {
        self.at(self.span_of(path).start)
    }

    /// Where item `index` of the array at `path` is written; where `path` is, when it is not
    /// an array with that item.
    pub fn locate_item(&self, path: &[&str], index: usize) -> Location {
        let item = self.value_of(path).and_then(|v| match v.get_ref() {
            DeValue::Array(items) => items.get(index).map(|i| i.span()),
            _ => None,
        });
        self.at(item.unwrap_or_else(|| self.span_of(path)).start)
    }

    /// The value written at `path`, if every part of it exists.
    fn value_of(&self, path: &[&str]) -> Option<&Spanned<DeValue<'a>>> {
        let (last, parents) = path.split_last()?;
        let mut table = self.doc.as_ref()?.get_ref();
        fn find<'t, 'i>(table: &'t DeTable<'i>, name: &str) -> Option<&'t Spanned<DeValue<'i>>> {
            table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == name)
                .map(|(_, v)| v)
        }
        for name in parents {
            match find(table, name)?.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return None,
            }
        }
        find(table, last)
    }

    fn span_of(&self, path: &[&str]) -> Range<usize> {
        let Some(doc) = &self.doc else { return 0..0 };
        let mut span = doc.span();
        let mut table = doc.get_ref();
        for (i, name) in path.iter().enumerate() {
            let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *name)
            else {
                return span;
            };
            span = key.span();
            match value.get_ref() {
                DeValue::Table(t) if i + 1 < path.len() => table = t,
                _ => return span,
            }
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys() {
        let text = "[pipeline]\nname = \"x\"\n\n[stages.train]\nkind = \"command\"\nlr = 1\n";
        let src = Source::new(Path::new("p.toml"), text);
        let loc = src.locate(&["stages", "train", "lr"]);
        assert_eq!((loc.line, loc.col), (6, 1));
        let loc = src.locate(&["stages", "train"]);
        assert_eq!((loc.line, loc.col), (4, 9));
        // A missing key points at its table.
        let loc = src.locate(&["stages", "train", "nope"]);
        assert_eq!((loc.line, loc.col), (4, 9));
    }

    #[test]
    fn locates_array_items() {
        let text = "[sweeps.s]\n\"train.lr\" = [1, 2,\n  3]\n";
        let src = Source::new(Path::new("p.toml"), text);
        let loc = src.locate_item(&["sweeps", "s", "train.lr"], 2);
        assert_eq!((loc.line, loc.col), (3, 3));
        let loc = src.locate_item(&["sweeps", "s", "train.lr"], 1);
        assert_eq!((loc.line, loc.col), (2, 18));
        // No such item: the key.
        let loc = src.locate_item(&["sweeps", "s", "train.lr"], 9);
        assert_eq!((loc.line, loc.col), (2, 1));
    }
}
