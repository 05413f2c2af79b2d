//! Every structural error of a file in one run. Deserializing stops at the first
//! unknown key or wrong type, so after each such error the node it points at is
//! blanked out (its characters turned to spaces, line breaks kept, so every other
//! location stays the same) and the text is deserialized again, until it passes.
//! This needs no list of keys: a new config section is covered as soon as its
//! serde mirror in `raw` exists.

use serde::de::DeserializeOwned;
use serde_saphyr::granit_parser::{Event, Parser, StructureStyle};

use super::Diagnostic;

/// More would mean a file that is not a config at all; the first ones are enough.
const MAX_ERRORS: usize = 100;

/// Deserializes `text`, collecting one diagnostic per structural error. The value
/// is what remains once every bad node is blanked out (`None` when that fails:
/// a YAML syntax error, or an error no node can be found for).
pub(super) fn deserialize<T: DeserializeOwned>(
    text: &str,
    diagnostic: impl Fn(&serde_saphyr::Error) -> Diagnostic,
) -> (Option<T>, Vec<Diagnostic>) {
    let mut chars: Vec<char> = text.chars().collect();
    let mut diagnostics = Vec::new();
    let mut blanked: Vec<Blanked> = Vec::new();
    loop {
        let current: String = chars.iter().collect();
        let error = match serde_saphyr::from_str::<T>(&current) {
            Ok(value) => return (Some(value), diagnostics),
            Err(e) => e,
        };
        let mut d = diagnostic(&error);
        let Some(nodes) = nodes(&current) else {
            diagnostics.push(d);
            return (None, diagnostics);
        };
        let message = d.message.clone();
        let missing = missing_field(&message);
        let unknown = d.message.starts_with("unknown field");
        let at: Vec<usize> = (0..nodes.len())
            .filter(|&i| (nodes[i].line, nodes[i].column) == (d.line, d.column))
            .collect();
        // "missing field" is about the mapping (which may be reported at its first
        // key); anything else about the smallest node there.
        let found = if missing.is_some() {
            at.first().map(|&i| {
                if nodes[i].map {
                    i
                } else {
                    nodes[i].parent.unwrap_or(i)
                }
            })
        } else {
            at.last().copied()
        };
        let Some(node) = found.map(|i| &nodes[i]) else {
            diagnostics.push(d);
            return (None, diagnostics);
        };
        // Where the error is, as a key path: the mapping an unknown or missing key
        // belongs to, else the value's own place.
        let path = if unknown {
            node.parent.map_or("", |p| nodes[p].path.as_str())
        } else {
            node.path.as_str()
        };
        if !path.is_empty() {
            d.message = format!("{path}: {}", d.message);
        }
        // Errors that only follow from an earlier blanking are not reported again:
        // a list emptied of its bad item, a mapping left without a required key.
        let follows = match missing {
            Some(key) => blanked
                .iter()
                .any(|b| b.key.as_deref() == Some(key) && node.contains(b.start)),
            None => blanked
                .iter()
                .any(|b| node.contains(b.start) && b.start != node.slot.0),
        };
        let (start, end) = node.slot;
        let stuck = chars[start..end].iter().all(|c| c.is_whitespace());
        if !follows || stuck {
            diagnostics.push(d);
        }
        if stuck || diagnostics.len() >= MAX_ERRORS {
            return (None, diagnostics);
        }
        blank(&mut chars, node);
        blanked.push(Blanked {
            start,
            key: node.key.clone(),
        });
    }
}

/// A region already blanked out, and the key of its entry (if it was one).
struct Blanked {
    start: usize,
    key: Option<String>,
}

/// One YAML node: where it starts (1-based, as diagnostics count), its extent and
/// the region that removing it blanks (in character indices).
#[derive(Debug, Clone)]
struct Node {
    line: u64,
    column: u64,
    start: usize,
    end: usize,
    /// The key and value of a mapping entry; an item of a sequence; or everything.
    slot: (usize, usize),
    /// The entry's key, for a key or a value.
    key: Option<String>,
    /// In a flow collection, where a comma beside the slot goes too.
    flow: bool,
    /// A mapping.
    map: bool,
    parent: Option<usize>,
    /// Its place as a key path (`routes[0].verify.scheme`); empty for the document.
    path: String,
}

impl Node {
    fn contains(&self, index: usize) -> bool {
        self.start <= index && index < self.end.max(self.start + 1)
    }
}

/// What a collection being read expects next.
struct Open {
    /// Index in the node list; `None` for the document.
    node: Option<usize>,
    map: bool,
    flow: bool,
    /// For a mapping: the node index of the key read, while its value is awaited.
    key: Option<usize>,
    /// For a sequence: items so far.
    items: usize,
}

/// Every node of the document, parents before children; `None` on a syntax error.
fn nodes(text: &str) -> Option<Vec<Node>> {
    let mut out: Vec<Node> = Vec::new();
    let mut stack: Vec<Open> = vec![Open {
        node: None,
        map: false,
        flow: false,
        key: None,
        items: 0,
    }];
    for event in Parser::new_from_str(text) {
        let (event, span) = event.ok()?;
        let (start, end) = (span.start.index(), span.end.index());
        let (style, scalar) = match &event {
            Event::Scalar(value, ..) => (None, Some(value.to_string())),
            Event::Alias(_) => (None, None),
            Event::SequenceStart(style, ..) => (Some((false, *style)), None),
            Event::MappingStart(style, ..) => (Some((true, *style)), None),
            Event::SequenceEnd | Event::MappingEnd => {
                let open = stack.pop()?;
                let i = open.node?;
                // A collection's extent is known at its end; so is its slot, unless
                // it is a mapping value (the entry's slot is set by `finished`).
                if out[i].slot == (out[i].start, out[i].end) {
                    out[i].slot.1 = end;
                }
                out[i].end = end;
                finished(&mut out, &mut stack, i);
                continue;
            }
            _ => continue,
        };
        let parent = stack.last_mut()?;
        let parent_path = parent.node.map_or("", |p| out[p].path.as_str());
        let mut node = Node {
            line: span.start.line() as u64,
            column: span.start.col() as u64 + 1,
            start,
            end,
            slot: (start, end),
            key: None,
            flow: parent.flow,
            map: matches!(style, Some((true, _))),
            parent: parent.node,
            path: String::new(),
        };
        let dotted = |key: &str| {
            if parent_path.is_empty() {
                key.to_owned()
            } else {
                format!("{parent_path}.{key}")
            }
        };
        if parent.map && parent.key.is_none() {
            node.path = dotted(scalar.as_deref().unwrap_or("?"));
            node.key = scalar;
        } else if parent.map {
            let key = &out[parent.key?];
            node.key.clone_from(&key.key);
            node.path.clone_from(&key.path);
            node.slot.0 = key.start;
        } else if parent.node.is_some() {
            node.path = format!("{parent_path}[{}]", parent.items);
            parent.items += 1;
        } else {
            node.slot = (0, text.chars().count());
        }
        out.push(node);
        let i = out.len() - 1;
        if let Some((map, style)) = style {
            stack.push(Open {
                node: Some(i),
                map,
                flow: style == StructureStyle::Flow,
                key: None,
                items: 0,
            });
        } else {
            finished(&mut out, &mut stack, i);
        }
    }
    Some(out)
}

/// Node `i` is complete: as a key it awaits its value; as a value it completes
/// its entry, whose slot both key and value share.
fn finished(out: &mut [Node], stack: &mut [Open], i: usize) {
    let Some(parent) = stack.last_mut() else {
        return;
    };
    if !parent.map {
        return;
    }
    match parent.key.take() {
        None => parent.key = Some(i),
        Some(k) => {
            let slot = (out[k].start, out[i].end);
            out[k].slot = slot;
            out[i].slot = slot;
        }
    }
}

/// Turns the node's slot into spaces, with the dash of a block sequence item, or
/// one comma beside it in a flow collection.
fn blank(chars: &mut [char], node: &Node) {
    let (mut start, mut end) = node.slot;
    let before = |chars: &[char], from: usize| {
        (0..from)
            .rev()
            .find(|&i| !matches!(chars[i], ' ' | '\t' | '\r' | '\n'))
    };
    let after = |chars: &[char], from: usize| {
        (from..chars.len()).find(|&i| !matches!(chars[i], ' ' | '\t' | '\r' | '\n'))
    };
    if node.flow {
        if let Some(i) = before(chars, start).filter(|&i| chars[i] == ',') {
            start = i;
        } else if let Some(i) = after(chars, end).filter(|&i| chars[i] == ',') {
            end = i + 1;
        }
    } else if let Some(i) = before(chars, start).filter(|&i| chars[i] == '-') {
        start = i;
    }
    for c in &mut chars[start..end] {
        if *c != '\n' && *c != '\r' {
            *c = ' ';
        }
    }
}

/// The key of a "missing field `KEY`" message.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blanked(text: &str, line: u64, column: u64, outer: bool) -> String {
        let nodes = nodes(text).unwrap();
        let at: Vec<&Node> = nodes
            .iter()
            .filter(|n| (n.line, n.column) == (line, column))
            .collect();
        let node = if outer { at[0] } else { at[at.len() - 1] };
        let mut chars: Vec<char> = text.chars().collect();
        blank(&mut chars, node);
        chars.into_iter().collect()
    }

    #[test]
    fn a_block_entry_goes_with_its_nested_value_and_lines_stay() {
        let text = "a: 1\nb:\n  c: 2\n  d: [3]\ne: 4\n";
        assert_eq!(
            blanked(text, 3, 3, false),
            "a: 1\nb:\n      \n  d: [3]\ne: 4\n"
        );
        assert_eq!(
            blanked(text, 2, 1, false),
            "a: 1\n  \n      \n        \ne: 4\n"
        );
    }

    #[test]
    fn a_flow_entry_goes_with_one_comma() {
        assert_eq!(blanked("{a: 1, b: 2}\n", 1, 8, false), "{a: 1      }\n");
        assert_eq!(blanked("{a: 1, b: 2}\n", 1, 2, false), "{      b: 2}\n");
        assert_eq!(blanked("k: [A, {x: 1}]\n", 1, 8, false), "k: [A        ]\n");
    }

    #[test]
    fn a_block_item_goes_with_its_dash() {
        let text = "k:\n  - a\n  - b: 1\n    c: 2\n";
        assert_eq!(blanked(text, 3, 5, true), "k:\n  - a\n        \n        \n");
    }
}
