//! Reading `src/`: each file's module, and every path it names through `crate::`,
//! `super::` or `self::`, mapped to the unit it belongs to.

use std::path::Path;

/// One import: who imports what, where.
#[derive(Debug, Clone)]
pub(crate) struct Import {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) path: String,
}

/// Every `.rs` file under `dir`, as (path from the crate root, text).
pub(crate) fn read_sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src/") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(dir.parent().expect("the crate root"))
                    .expect("under the crate root");
                let rel = rel.to_string_lossy().replace('\\', "/");
                out.push((
                    rel,
                    std::fs::read_to_string(&path).expect("read a source file"),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file: `src/hub/mod.rs` is `hub`, `src/sse/encode.rs` is
/// `sse::encode`. `None` for the crate roots (`lib.rs`, and `main.rs`, a crate of its own).
fn module_of_file(file: &str) -> Option<Vec<String>> {
    let rel = file.strip_prefix("src/")?.strip_suffix(".rs")?;
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.is_empty() || (parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main")) {
        return None;
    }
    Some(parts)
}

pub(crate) fn unit_of_file(file: &str, own_units: &[&str]) -> Option<String> {
    module_of_file(file).and_then(|m| unit_of(&m, own_units))
}

/// The unit a crate-absolute module path belongs to.
fn unit_of(path: &[String], own_units: &[&str]) -> Option<String> {
    let first = path.first()?;
    if let Some(second) = path.get(1) {
        let two = format!("{first}::{second}");
        if own_units.contains(&two.as_str()) {
            return Some(two);
        }
    }
    Some(first.clone())
}

/// Every import of another unit in `sources`; `own_units` are the submodules
/// that are units of their own.
pub(crate) fn imports(sources: &[(String, String)], own_units: &[&str]) -> Vec<Import> {
    let mut out = Vec::new();
    for (file, text) in sources {
        let Some(module) = module_of_file(file) else {
            continue;
        };
        let Some(from) = unit_of(&module, own_units) else {
            continue;
        };
        let code = strip(text);
        for (path, offset) in paths(&code, &module) {
            let Some(to) = unit_of(&path, own_units) else {
                continue;
            };
            if to != from {
                out.push(Import {
                    from: from.clone(),
                    to,
                    file: file.clone(),
                    line: code[..offset].matches('\n').count() + 1,
                    path: path.join("::"),
                });
            }
        }
    }
    out
}

/// `text` with comments, string and char literals blanked out (line breaks kept,
/// so offsets keep their line).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if (c == b'r' || (c == b'b' && next == Some(b'r')))
            && !prev_is_ident(b, i)
            && raw_string_start(b, i + usize::from(c == b'b')).is_some()
        {
            let start = i + usize::from(c == b'b');
            let hashes = raw_string_start(b, start).expect("checked");
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = start + 2 + hashes;
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| body + p + close.len());
            while i < end {
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == b'"' {
            blank(&mut out, c);
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let step = if b[i] == b'\\' { 2 } else { 1 };
                for _ in 0..step {
                    if i < b.len() {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                }
            }
            if i < b.len() {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a), kept.
            let len = if next == Some(b'\\') {
                b[i + 3..].iter().position(|&x| x == b'\'').map(|p| p + 4)
            } else {
                let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch_len) == Some(&b'\'')).then_some(ch_len + 2)
            };
            match len {
                Some(n) => {
                    for _ in 0..n {
                        blank(&mut out, b[i]);
                        i += 1;
                    }
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII was blanked")
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// At `r"` or `r#…"`: how many `#`.
fn raw_string_start(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'r') {
        return None;
    }
    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
    (b.get(i + 1 + hashes) == Some(&b'"')).then_some(hashes)
}

/// Every crate-absolute path that `code` names through `crate::`, `super::` or
/// `self::`, with its offset. `module` is the file's module path; inline `mod x {`
/// blocks are followed so that `super::` inside them resolves right.
fn paths(code: &str, module: &[String]) -> Vec<(Vec<String>, usize)> {
    let toks = tokens(code);
    let mut out = Vec::new();
    // Inline modules open at a brace depth: (name, depth inside).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut k = 0;
    while k < toks.len() {
        let t = &toks[k].0;
        match t.as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            "mod" if toks.get(k + 2).is_some_and(|t| t.0 == "{") => {
                inline.push((toks[k + 1].0.clone(), depth + 1));
            }
            "crate" | "super" | "self"
                if toks.get(k + 1).is_some_and(|t| t.0 == "::")
                    && (k == 0 || toks[k - 1].0 != "::") =>
            {
                let mut here: Vec<String> = module.to_vec();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                let mut base = match t.as_str() {
                    "crate" => Vec::new(),
                    "self" => here,
                    _ => {
                        here.pop();
                        here
                    }
                };
                let mut j = k + 2;
                // `super::super::x`
                while toks.get(j).is_some_and(|t| t.0 == "super")
                    && toks.get(j + 1).is_some_and(|t| t.0 == "::")
                {
                    base.pop();
                    j += 2;
                }
                let end = tree(&toks, j, &base, &mut out);
                k = end;
                continue;
            }
            _ => {}
        }
        k += 1;
    }
    out
}

/// Reads a use tree (or an inline path) at `toks[k]` under `prefix`: segments,
/// then optionally `{ tree, … }` or `*`. Pushes each full path; returns the index after it.
fn tree(
    toks: &[(String, usize)],
    mut k: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let mut path = prefix.to_vec();
    // Where this branch begins: the line an import is reported at.
    let at = toks.get(k).map_or(0, |t| t.1);
    loop {
        match toks.get(k).map(|t| t.0.as_str()) {
            Some("{") => {
                k += 1;
                loop {
                    match toks.get(k).map(|t| t.0.as_str()) {
                        None => return k,
                        Some("}") => return k + 1,
                        Some(",") => k += 1,
                        Some("self") => {
                            out.push((path.clone(), toks[k].1));
                            k += 1;
                        }
                        Some(_) => k = tree(toks, k, &path, out),
                    }
                }
            }
            Some("*") => {
                out.push((path, at));
                return k + 1;
            }
            Some(t) if is_ident(t) => {
                path.push(t.to_owned());
                if toks.get(k + 1).is_some_and(|n| n.0 == "::")
                    && toks.get(k + 2).is_some_and(|n| n.0 != "<")
                {
                    k += 2;
                } else {
                    out.push((path, at));
                    // `as alias`
                    if toks.get(k + 1).is_some_and(|n| n.0 == "as") {
                        return k + 3;
                    }
                    return k + 1;
                }
            }
            _ => {
                out.push((path, at));
                return k;
            }
        }
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, and single punctuation characters, with their offsets.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push((code[i..end].to_owned(), i));
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            out.push(("::".to_owned(), i));
        } else {
            out.push((c.to_string(), i));
        }
    }
    out
}
