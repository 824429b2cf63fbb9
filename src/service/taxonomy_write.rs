//! Writing genres, themes and studios: create, rename (the slug stays
//! unless a new one is asked for), delete. Each runs in one transaction,
//! then invalidates what it changed (`InvalidationPolicy::for_taxon_write`) on every
//! instance before it returns.

use migration::slug;

use super::AnimeService;
use super::anime_write::{MAX_GENRE_NAME, MAX_TAXON_NAME, text};
use super::tags::TaxonWrite;
use crate::db::{TaxonCount, TaxonWriteError, Taxonomy};
use crate::error::{AppError, Result};

/// Longest name of each taxonomy, as in anime inputs.
fn max_name_len(kind: Taxonomy) -> usize {
    match kind {
        Taxonomy::Genre => MAX_GENRE_NAME,
        Taxonomy::Theme | Taxonomy::Studio => MAX_TAXON_NAME,
    }
}

impl AnimeService {
    /// Creates a genre (theme, studio) named `name` (trimmed); its slug is
    /// derived from the name. A name that exists is BAD_USER_INPUT.
    pub async fn create_taxon(&self, kind: Taxonomy, name: &str) -> Result<TaxonCount> {
        let name = text("name", name, 1, max_name_len(kind))?;
        let created = self
            .repo
            .create_taxon(kind, &name)
            .await
            .map_err(|err| refused(kind, err, &name, None))?;
        self.cache
            .invalidate(self.policy.for_taxon_write(kind, TaxonWrite::Created, &[]))
            .await?;
        Ok(created)
    }

    /// Renames the genre (theme, studio) `slug` to `name` and, with
    /// `new_slug`, moves it there (a canonical slug: lowercase letters,
    /// digits and single dashes). Unknown `slug` is NOT_FOUND; a name or
    /// slug another one has is BAD_USER_INPUT.
    pub async fn rename_taxon(
        &self,
        kind: Taxonomy,
        slug: &str,
        name: &str,
        new_slug: Option<&str>,
    ) -> Result<TaxonCount> {
        // Both checked, so that a client hears of both problems at once.
        let mut problems = Vec::new();
        let name = text("name", name, 1, max_name_len(kind))
            .map_err(|problem| problems.push(problem))
            .ok();
        let new_slug = new_slug
            .map(canonical_slug)
            .transpose()
            .map_err(|problem| problems.push(problem))
            .ok();
        AppError::all(problems)?;
        let (Some(name), Some(new_slug)) = (name, new_slug) else {
            return Err(AppError::Internal(anyhow::anyhow!(
                "a rename's inputs passed their checks without values"
            )));
        };
        let (renamed, members) = self
            .repo
            .rename_taxon(kind, slug, &name, new_slug.as_deref())
            .await
            .map_err(|err| refused(kind, err, &name, new_slug.as_deref()))?
            .ok_or_else(|| not_found(kind, slug))?;
        let kind_of_write = TaxonWrite::Renamed {
            slug_changed: renamed.taxon.slug != slug,
        };
        self.cache
            .invalidate(self.policy.for_taxon_write(kind, kind_of_write, &members))
            .await?;
        Ok(renamed)
    }

    /// Deletes the genre (theme, studio) `slug` and its links; the anime
    /// keep everything else. Returns it as it was. Unknown `slug` is
    /// NOT_FOUND.
    pub async fn delete_taxon(&self, kind: Taxonomy, slug: &str) -> Result<TaxonCount> {
        let (deleted, members) = self
            .repo
            .delete_taxon(kind, slug)
            .await?
            .ok_or_else(|| not_found(kind, slug))?;
        self.cache
            .invalidate(
                self.policy
                    .for_taxon_write(kind, TaxonWrite::Deleted, &members),
            )
            .await?;
        Ok(deleted)
    }
}

/// `new_slug` when it is a slug as [`slug::slugify`] writes them.
fn canonical_slug(new_slug: &str) -> Result<String> {
    if !new_slug.is_empty() && slug::slugify(new_slug) == new_slug {
        return Ok(new_slug.to_owned());
    }
    Err(AppError::bad_input(
        "newSlug",
        format!(
            "newSlug must be 1 to {} lowercase letters, digits and single dashes between them",
            slug::MAX_SLUG_LEN
        ),
    ))
}

fn not_found(kind: Taxonomy, slug: &str) -> AppError {
    AppError::NotFound(format!("{} {slug:?}", kind.table()))
}

fn refused(kind: Taxonomy, err: TaxonWriteError, name: &str, new_slug: Option<&str>) -> AppError {
    match err {
        TaxonWriteError::NameTaken => AppError::bad_input(
            "name",
            format!("another {} is named {name:?} already", kind.table()),
        ),
        TaxonWriteError::SlugTaken => AppError::bad_input(
            "newSlug",
            format!(
                "another {} has the slug {:?} already",
                kind.table(),
                new_slug.unwrap_or_default()
            ),
        ),
        TaxonWriteError::Db(err) => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_slugs_must_be_canonical() {
        assert_eq!(
            canonical_slug("slice-of-life").ok().as_deref(),
            Some("slice-of-life")
        );
        for bad in ["", "Slice", "a--b", "-a", "a-", "a b", "a:b", "ü"] {
            assert!(canonical_slug(bad).is_err(), "{bad}");
        }
    }
}
