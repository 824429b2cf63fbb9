//! Genre, theme and studio writes (admin only): `createGenre`,
//! `renameGenre`, `deleteGenre` and the same for themes and studios. Each
//! returns after every cached entry it changed has been invalidated on
//! every instance: the taxonomy lists, and for genres (whose names every
//! cached anime embeds) the anime that have it and the lists holding them.

use std::sync::Arc;

use async_graphql::{Context, Object, Result};

use super::admin::AdminGuard;
use super::query::state;
use super::taxonomy::{Genre, Studio, TaxonSource, Theme};
use crate::db::{TaxonCount, Taxonomy};

/// Genre, theme and studio writes.
#[derive(Default)]
pub struct TaxonomyMutation;

async fn create(ctx: &Context<'_>, kind: Taxonomy, name: &str) -> Result<TaxonSource> {
    let created = state(ctx)?
        .anime
        .create_taxon(kind, name)
        .await
        .map_err(|err| err.into_field_error(ctx))?;
    tracing::info!(kind = kind.table(), slug = %created.taxon.slug, "Taxon created");
    Ok(single(created))
}

async fn rename(
    ctx: &Context<'_>,
    kind: Taxonomy,
    slug: &str,
    name: &str,
    new_slug: Option<&str>,
) -> Result<TaxonSource> {
    let renamed = state(ctx)?
        .anime
        .rename_taxon(kind, slug, name, new_slug)
        .await
        .map_err(|err| err.into_field_error(ctx))?;
    tracing::info!(kind = kind.table(), slug, new_slug = %renamed.taxon.slug, "Taxon renamed");
    Ok(single(renamed))
}

async fn delete(ctx: &Context<'_>, kind: Taxonomy, slug: &str) -> Result<TaxonSource> {
    let deleted = state(ctx)?
        .anime
        .delete_taxon(kind, slug)
        .await
        .map_err(|err| err.into_field_error(ctx))?;
    tracing::info!(
        kind = kind.table(),
        slug,
        members = deleted.anime_count,
        "Taxon deleted"
    );
    Ok(single(deleted))
}

fn single(entry: TaxonCount) -> TaxonSource {
    TaxonSource::Single(Arc::new(entry))
}

#[Object]
impl TaxonomyMutation {
    /// Adds a genre named `name` (1-40 characters); its slug is derived
    /// from the name (`Slice of Life` → `slice-of-life`, `-2` on a
    /// collision). A name that exists is BAD_USER_INPUT. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn create_genre(&self, ctx: &Context<'_>, name: String) -> Result<Genre> {
        Ok(Genre(create(ctx, Taxonomy::Genre, &name).await?))
    }

    /// Renames the genre `slug`. Its slug stays, so links keep working,
    /// unless `newSlug` moves it. Every anime with it shows the new name at
    /// once. Unknown `slug` is NOT_FOUND. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn rename_genre(
        &self,
        ctx: &Context<'_>,
        slug: String,
        name: String,
        new_slug: Option<String>,
    ) -> Result<Genre> {
        let renamed = rename(ctx, Taxonomy::Genre, &slug, &name, new_slug.as_deref()).await?;
        Ok(Genre(renamed))
    }

    /// Deletes the genre `slug`; its anime stay, without it. Returns the
    /// genre as it was. Unknown `slug` is NOT_FOUND. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn delete_genre(&self, ctx: &Context<'_>, slug: String) -> Result<Genre> {
        Ok(Genre(delete(ctx, Taxonomy::Genre, &slug).await?))
    }

    /// Adds a theme named `name` (1-64 characters), as `createGenre`.
    /// Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn create_theme(&self, ctx: &Context<'_>, name: String) -> Result<Theme> {
        Ok(Theme(create(ctx, Taxonomy::Theme, &name).await?))
    }

    /// Renames the theme `slug`, as `renameGenre`. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn rename_theme(
        &self,
        ctx: &Context<'_>,
        slug: String,
        name: String,
        new_slug: Option<String>,
    ) -> Result<Theme> {
        let renamed = rename(ctx, Taxonomy::Theme, &slug, &name, new_slug.as_deref()).await?;
        Ok(Theme(renamed))
    }

    /// Deletes the theme `slug`, as `deleteGenre`. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn delete_theme(&self, ctx: &Context<'_>, slug: String) -> Result<Theme> {
        Ok(Theme(delete(ctx, Taxonomy::Theme, &slug).await?))
    }

    /// Adds a studio named `name` (1-64 characters), as `createGenre`.
    /// Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn create_studio(&self, ctx: &Context<'_>, name: String) -> Result<Studio> {
        Ok(Studio(create(ctx, Taxonomy::Studio, &name).await?))
    }

    /// Renames the studio `slug`, as `renameGenre`. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn rename_studio(
        &self,
        ctx: &Context<'_>,
        slug: String,
        name: String,
        new_slug: Option<String>,
    ) -> Result<Studio> {
        let renamed = rename(ctx, Taxonomy::Studio, &slug, &name, new_slug.as_deref()).await?;
        Ok(Studio(renamed))
    }

    /// Deletes the studio `slug`, as `deleteGenre`. Admin only.
    #[graphql(guard = "AdminGuard")]
    async fn delete_studio(&self, ctx: &Context<'_>, slug: String) -> Result<Studio> {
        Ok(Studio(delete(ctx, Taxonomy::Studio, &slug).await?))
    }
}
