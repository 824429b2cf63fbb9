//! The document limits async-graphql 7 lacks, counted once per parsed
//! document (see `document::DocumentCache`) before async-graphql sees it:
//!
//! - aliased fields (too many would let one request ask for the same
//!   expensive field hundreds of times);
//! - fields once fragments are expanded. async-graphql's depth and
//!   complexity visitors and its recursion-depth check walk every fragment
//!   spread again, without memory, before they compare anything with a
//!   limit: a 300-byte document whose fragments each spread the next one
//!   twice costs 2^n visits (24 levels took 5.6 s of CPU in a debug build).
//!   Counting the expansion here takes one pass, because each fragment's
//!   size is computed once; a document that expands to more fields than
//!   the token limit allows written out is refused, so fragments never
//!   make validation cost more than the largest document a client may send.
//!
//! The token limit itself is counted on the text, before parsing
//! (`document::count_tokens`). Depth, complexity and introspection are set
//! on the schema in `build_schema`.

use std::collections::{HashMap, HashSet};

use async_graphql::ServerError;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

use super::errors::coded_error;
use crate::error::code;

/// Aliased fields in `document`, over every operation and fragment.
pub fn alias_count(document: &ExecutableDocument) -> usize {
    document
        .operations
        .iter()
        .map(|(_, operation)| count_aliases(&operation.node.selection_set.node))
        .chain(
            document
                .fragments
                .values()
                .map(|fragment| count_aliases(&fragment.node.selection_set.node)),
        )
        .sum()
}

/// The `QUERY_TOO_COMPLEX` error for a document with `aliases` aliased
/// fields, when that is more than `max`.
pub fn check_aliases(aliases: usize, max: usize) -> Result<(), ServerError> {
    if aliases > max {
        return Err(coded_error(
            format!("the document uses {aliases} aliases; at most {max} are allowed"),
            code::QUERY_TOO_COMPLEX,
        ));
    }
    Ok(())
}

fn count_aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some())
                    + count_aliases(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => count_aliases(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

/// Fields of every operation of `document` once each fragment spread is
/// replaced by its fragment's fields (saturating: a count that does not
/// fit is `usize::MAX`). Linear in the document: each fragment's size is
/// computed once. A spread that closes a fragment cycle counts 0 (the cycle
/// itself is async-graphql's to refuse, and its recursion-depth check does
/// so on the first path it follows down), and so does a spread of an
/// unknown fragment.
pub fn expanded_field_count(document: &ExecutableDocument) -> usize {
    let shapes: HashMap<&str, Shape<'_>> = document
        .fragments
        .iter()
        .map(|(name, fragment)| (name.as_str(), Shape::of(&fragment.node.selection_set.node)))
        .collect();
    let sizes = fragment_sizes(&shapes);
    document
        .operations
        .iter()
        .map(|(_, operation)| Shape::of(&operation.node.selection_set.node).size(&sizes))
        .fold(0, usize::saturating_add)
}

/// The `QUERY_TOO_LARGE` error for a document of `fields` fields once its
/// fragments are expanded, when that is more than `max`.
pub fn check_expanded_fields(fields: usize, max: usize) -> Result<(), ServerError> {
    if fields > max {
        return Err(coded_error(
            format!(
                "the document holds more than {max} fields once its fragments are expanded \
                 (each spread counts its fragment's fields again); send a smaller one"
            ),
            code::QUERY_TOO_LARGE,
        ));
    }
    Ok(())
}

/// One selection set without its fragments: its own fields (nested fields
/// included) and the fragments it spreads, once per spread.
struct Shape<'d> {
    fields: usize,
    spreads: Vec<&'d str>,
}

impl<'d> Shape<'d> {
    fn of(set: &'d SelectionSet) -> Self {
        let mut shape = Self {
            fields: 0,
            spreads: Vec::new(),
        };
        shape.add(set);
        shape
    }

    /// Recursion follows field nesting only, which the parser bounds (64
    /// levels); fragments are followed iteratively in [`fragment_sizes`].
    fn add(&mut self, set: &'d SelectionSet) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    self.fields += 1;
                    self.add(&field.node.selection_set.node);
                }
                Selection::InlineFragment(fragment) => self.add(&fragment.node.selection_set.node),
                Selection::FragmentSpread(spread) => {
                    self.spreads.push(spread.node.fragment_name.node.as_str());
                }
            }
        }
    }

    fn size(&self, sizes: &HashMap<&str, usize>) -> usize {
        self.spreads
            .iter()
            .map(|name| sizes.get(name).copied().unwrap_or(0))
            .fold(self.fields, usize::saturating_add)
    }
}

/// The expanded size of every fragment, by an iterative depth-first walk
/// of the spread graph (a chain of 2,000 fragments fits in a document, and
/// must not need 2,000 stack frames).
fn fragment_sizes<'d>(shapes: &HashMap<&'d str, Shape<'d>>) -> HashMap<&'d str, usize> {
    let mut sizes: HashMap<&'d str, usize> = HashMap::with_capacity(shapes.len());
    // Fragments on the current path: a spread of one of them closes a cycle.
    let mut on_path: HashSet<&'d str> = HashSet::new();
    for &root in shapes.keys() {
        if sizes.contains_key(root) {
            continue;
        }
        // (fragment, index of its next spread to visit)
        let mut stack: Vec<(&'d str, usize)> = vec![(root, 0)];
        on_path.insert(root);
        while let Some(top) = stack.last_mut() {
            let (name, next) = *top;
            let shape = &shapes[name];
            if let Some(&child) = shape.spreads.get(next) {
                top.1 += 1;
                if shapes.contains_key(child) && !sizes.contains_key(child) && on_path.insert(child)
                {
                    stack.push((child, 0));
                }
                continue;
            }
            // Every child is done (or closes a cycle, and counts 0).
            sizes.insert(name, shape.size(&sizes));
            on_path.remove(name);
            stack.pop();
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(query: &str) -> usize {
        expanded_field_count(&async_graphql::parser::parse_query(query).expect("parses"))
    }

    #[test]
    fn fragments_count_once_per_spread() {
        assert_eq!(expanded("{ animeCount popularAnime { id title } }"), 4);
        assert_eq!(
            expanded("{ ...F ...F a: animeCount } fragment F on Query { animeCount __typename }"),
            5
        );
        assert_eq!(
            expanded(
                "{ ... on Query { ...F } } fragment F on Query { anime(id: 1) { ...G } } fragment G on Anime { id }"
            ),
            2
        );
    }

    #[test]
    fn doubling_fragments_are_counted_without_expanding_them() {
        // F0 spreads F1 twice, F1 spreads F2 twice, …: 2^60 fields.
        let mut query = String::from("query Main { ...F0 }");
        for level in 0..60 {
            let next = level + 1;
            query.push_str(&format!(
                " fragment F{level} on Query {{ ...F{next} ...F{next} }}"
            ));
        }
        query.push_str(" fragment F60 on Query { animeCount }");
        assert_eq!(expanded(&query), 1 << 60);
        query.push_str(&format!(" query Other {{ {} }}", "...F0 ".repeat(16)));
        let document = async_graphql::parser::parse_query(&query).expect("parses");
        assert_eq!(expanded_field_count(&document), usize::MAX, "saturates");
    }

    #[test]
    fn cycles_and_unknown_fragments_end_the_count() {
        // Where the cycle is cut depends on which fragment is met first.
        let cyclic = expanded(
            "{ ...A } fragment A on Query { animeCount ...B } fragment B on Query { __typename ...A ...Missing }",
        );
        assert!((1..=2).contains(&cyclic), "{cyclic}");
        let chain: String = (0..3_000)
            .map(|i| format!(" fragment F{i} on Query {{ animeCount ...F{} }}", i + 1))
            .collect();
        assert_eq!(
            expanded(&format!("{{ ...F0 }}{chain}")),
            3_000,
            "no deep recursion"
        );
    }
}
