//! Writing an anime's own relations (video players, episodes) and the set
//! of its relations a write replaces. Genres, themes and studios are
//! written through [`super::taxonomy::replace_links`].

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr};

use super::taxonomy::{self, Taxonomy};

/// A video player of an anime, as a write sets it (its position is its
/// place in the list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlayerDraft {
    /// Embed URL (http or https).
    pub embed_url: String,
    /// Who translated or dubbed it, when known.
    pub translator: Option<String>,
    /// Quality label such as `1080p`, when known.
    pub quality: Option<String>,
}

/// An episode of an anime, as a write sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpisodeDraft {
    /// Its number, from 1, unique within the anime.
    pub number: i32,
    /// Its title, when it has one.
    pub title: Option<String>,
    /// When it first aired, when known.
    pub aired_on: Option<chrono::NaiveDate>,
}

/// What a write replaces of an anime's relations; `None` leaves one as it
/// is, `Some(vec![])` clears it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RelationWrites {
    /// Genre names, in order (missing names are created).
    pub genres: Option<Vec<String>>,
    /// Theme names, in order.
    pub themes: Option<Vec<String>>,
    /// Studio names, in order.
    pub studios: Option<Vec<String>>,
    /// Video players, in order.
    pub players: Option<Vec<PlayerDraft>>,
    /// Episodes.
    pub episodes: Option<Vec<EpisodeDraft>>,
}

impl RelationWrites {
    /// Whether the genres, themes or studios change (and with them the
    /// taxonomy's anime counts and the filtered lists).
    pub fn changes_taxonomy(&self) -> bool {
        self.genres.is_some() || self.themes.is_some() || self.studios.is_some()
    }

    /// Applies the writes to anime `anime_id`. Meant to run inside the
    /// transaction that writes the anime row.
    pub async fn apply(&self, conn: &impl ConnectionTrait, anime_id: i32) -> Result<(), DbErr> {
        for (kind, names) in [
            (Taxonomy::Genre, &self.genres),
            (Taxonomy::Theme, &self.themes),
            (Taxonomy::Studio, &self.studios),
        ] {
            if let Some(names) = names {
                taxonomy::replace_links(conn, kind, anime_id, names).await?;
            }
        }
        if let Some(players) = &self.players {
            replace_players(conn, anime_id, players).await?;
        }
        if let Some(episodes) = &self.episodes {
            replace_episodes(conn, anime_id, episodes).await?;
        }
        Ok(())
    }
}

fn col(name: &'static str) -> Alias {
    Alias::new(name)
}

/// Deletes the rows of `table` that belong to anime `anime_id`.
async fn delete_rows_of(
    conn: &impl ConnectionTrait,
    table: &'static str,
    anime_id: i32,
) -> Result<(), DbErr> {
    conn.execute(
        &Query::delete()
            .from_table(col(table))
            .and_where(Expr::col(col("anime_id")).eq(anime_id))
            .to_owned(),
    )
    .await?;
    Ok(())
}

/// Replaces the players of anime `anime_id` with `players`, in order.
async fn replace_players(
    conn: &impl ConnectionTrait,
    anime_id: i32,
    players: &[PlayerDraft],
) -> Result<(), DbErr> {
    delete_rows_of(conn, "player", anime_id).await?;
    if players.is_empty() {
        return Ok(());
    }
    let mut insert = Query::insert()
        .into_table(col("player"))
        .columns([
            col("anime_id"),
            col("embed_url"),
            col("translator"),
            col("quality"),
            col("position"),
        ])
        .to_owned();
    for (position, player) in players.iter().enumerate() {
        let position = i16::try_from(position)
            .map_err(|_| DbErr::Custom(format!("more than {} players", i16::MAX)))?;
        insert
            .values([
                anime_id.into(),
                player.embed_url.clone().into(),
                player.translator.clone().into(),
                player.quality.clone().into(),
                position.into(),
            ])
            .map_err(|err| DbErr::Custom(format!("building an INSERT: {err}")))?;
    }
    conn.execute(&insert).await?;
    Ok(())
}

/// Replaces the episodes of anime `anime_id` with `episodes`.
async fn replace_episodes(
    conn: &impl ConnectionTrait,
    anime_id: i32,
    episodes: &[EpisodeDraft],
) -> Result<(), DbErr> {
    delete_rows_of(conn, "episode", anime_id).await?;
    // Within the bind-parameter limits of both backends: 4 columns.
    for chunk in episodes.chunks(2_000) {
        let mut insert = Query::insert()
            .into_table(col("episode"))
            .columns([
                col("anime_id"),
                col("number"),
                col("title"),
                col("aired_on"),
            ])
            .to_owned();
        for episode in chunk {
            insert
                .values([
                    anime_id.into(),
                    episode.number.into(),
                    episode.title.clone().into(),
                    episode.aired_on.into(),
                ])
                .map_err(|err| DbErr::Custom(format!("building an INSERT: {err}")))?;
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}
