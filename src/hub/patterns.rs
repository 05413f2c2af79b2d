//! Pattern subscriptions indexed by segment, as subject tries do: a publish walks
//! the topic's segments (and the `*` / `>` branches beside them), so its cost
//! depends on the topic's depth and on the patterns that match, not on how many
//! distinct patterns are subscribed.

use std::collections::HashMap;
use std::sync::Arc;

use crate::topic::Pattern;

use super::inbox::Inbox;

/// The subscribers of one pattern.
#[derive(Debug)]
pub(crate) struct Subscribers {
    pub(crate) pattern: Pattern,
    pub(crate) inboxes: HashMap<u64, Arc<Inbox>>,
}

#[derive(Debug, Default)]
pub(crate) struct Patterns {
    root: Node,
    len: usize,
}

#[derive(Debug, Default)]
struct Node {
    literal: HashMap<Box<str>, Node>,
    /// The `*` branch.
    one: Option<Box<Node>>,
    /// A pattern that ends at this node.
    end: Option<Subscribers>,
    /// A pattern that ends with `>` after this node's segments.
    rest: Option<Subscribers>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.one.is_none() && self.end.is_none() && self.rest.is_none()
    }

    /// The slot of the pattern whose remaining segments are `segs`, created on the way.
    fn slot(&mut self, segs: &[&str]) -> &mut Option<Subscribers> {
        match segs {
            [] => &mut self.end,
            [">"] => &mut self.rest,
            ["*", tail @ ..] => self.one.get_or_insert_with(Default::default).slot(tail),
            [lit, tail @ ..] => self.literal.entry(Box::from(*lit)).or_default().slot(tail),
        }
    }

    /// Removes `id` from the pattern at `segs`, pruning emptied nodes. Returns
    /// whether the pattern lost its last subscriber.
    fn remove(&mut self, segs: &[&str], id: u64) -> bool {
        let (child, tail): (Option<&mut Node>, &[&str]) = match segs {
            [] | [">"] => {
                let slot = if segs.is_empty() {
                    &mut self.end
                } else {
                    &mut self.rest
                };
                let Some(subs) = slot else { return false };
                subs.inboxes.remove(&id);
                if !subs.inboxes.is_empty() {
                    return false;
                }
                *slot = None;
                return true;
            }
            ["*", tail @ ..] => (self.one.as_deref_mut(), tail),
            [lit, tail @ ..] => (self.literal.get_mut(*lit), tail),
        };
        let Some(child) = child else { return false };
        let gone = child.remove(tail, id);
        if child.is_empty() {
            match segs[0] {
                "*" => self.one = None,
                lit => {
                    self.literal.remove(lit);
                }
            }
        }
        gone
    }

    fn matching<'a>(&'a self, segs: &[&str], f: &mut impl FnMut(&'a Subscribers)) {
        let Some((first, tail)) = segs.split_first() else {
            if let Some(subs) = &self.end {
                f(subs);
            }
            return;
        };
        if let Some(subs) = &self.rest {
            f(subs);
        }
        if let Some(child) = self.literal.get(*first) {
            child.matching(tail, f);
        }
        if let Some(child) = &self.one {
            child.matching(tail, f);
        }
    }

    fn all<'a>(&'a self, f: &mut impl FnMut(&'a Subscribers)) {
        self.end.iter().chain(&self.rest).for_each(&mut *f);
        self.literal.values().for_each(|n| n.all(f));
        if let Some(n) = &self.one {
            n.all(f);
        }
    }
}

impl Patterns {
    pub(crate) fn insert(&mut self, pattern: &Pattern, id: u64, inbox: Arc<Inbox>) {
        let segs = segments(pattern.as_str());
        let slot = self.root.slot(&segs);
        let subs = slot.get_or_insert_with(|| {
            self.len += 1;
            Subscribers {
                pattern: pattern.clone(),
                inboxes: HashMap::new(),
            }
        });
        subs.inboxes.insert(id, inbox);
    }

    pub(crate) fn remove(&mut self, pattern: &Pattern, id: u64) {
        if self.root.remove(&segments(pattern.as_str()), id) {
            self.len -= 1;
        }
    }

    /// Calls `f` once for each subscribed pattern that matches `topic`.
    pub(crate) fn matching<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a Subscribers)) {
        if self.len > 0 {
            self.root.matching(&segments(topic), &mut f);
        }
    }

    /// Every subscribed pattern.
    pub(crate) fn all<'a>(&'a self, mut f: impl FnMut(&'a Subscribers)) {
        self.root.all(&mut f);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether no node is left: removals prune what they empty.
    #[cfg(test)]
    pub(crate) fn is_pruned(&self) -> bool {
        self.root.is_empty()
    }

    /// How many distinct patterns have subscribers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Topics are at most 256 bytes and most have a handful of segments, which stay
/// on the stack so that walking the index allocates nothing.
const INLINE: usize = 16;

struct Segs<'a> {
    inline: [&'a str; INLINE],
    len: usize,
    /// Used, instead of `inline`, by a topic with more segments.
    heap: Vec<&'a str>,
}

fn segments(s: &str) -> Segs<'_> {
    let mut segs = Segs {
        inline: [""; INLINE],
        len: 0,
        heap: Vec::new(),
    };
    for seg in s.split('.') {
        if segs.len == INLINE {
            segs.heap = s.split('.').collect();
            break;
        }
        segs.inline[segs.len] = seg;
        segs.len += 1;
    }
    segs
}

impl<'a> std::ops::Deref for Segs<'a> {
    type Target = [&'a str];
    fn deref(&self) -> &[&'a str] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}
