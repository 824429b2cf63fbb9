//! The one request limit async-graphql 7 lacks: the number of aliased
//! fields in a document (too many would let one request ask for the same
//! expensive field hundreds of times). Counted once per parsed document
//! (see `document::DocumentCache`) and checked by the HTTP layer before
//! execution. Depth, complexity and introspection are set on the schema in
//! `build_schema`.

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
