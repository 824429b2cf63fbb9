//! Writing the catalogue: validated inputs, the database write, then the
//! invalidation of every cached entry the write can have changed, on every
//! instance, before the write returns.
//!
//! The tags each write bumps come from the invalidation policy
//! ([`super::tags`]), which compares the anime before and after the write:
//! an edit of a field no list orders or filters by drops the anime's own
//! entry alone; a field lists depend on drops only the lists of the
//! anime's partitions that order or filter by it.

use std::ops::RangeInclusive;

use chrono::Utc;
use sea_orm::ActiveValue::{NotSet, Set};

use super::AnimeService;
use super::tags::AnimeChange;
use crate::db::AnimeFacts;
use crate::db::relations::{EpisodeDraft, PlayerDraft, RelationWrites};
use crate::entities::anime::{self, AgeRating, Format, Season, Status};
use crate::error::{AppError, Result};

/// A new anime, as the client sent it (validated by [`AnimeService::create`]),
/// or as the seed generator made it.
#[derive(Clone, Debug, PartialEq)]
pub struct AnimeDraft {
    /// Title, 1-255 characters.
    pub title: String,
    /// English title, up to 255 characters.
    pub title_english: Option<String>,
    /// Original-language title, up to 255 characters.
    pub title_original: Option<String>,
    /// Age rating.
    pub age_rating: Option<AgeRating>,
    /// Release format.
    pub format: Format,
    /// Episode count, 0-10,000.
    pub episodes: Option<i32>,
    /// Airing status.
    pub status: Status,
    /// Season.
    pub season: Option<Season>,
    /// Year, 1900-2100.
    pub year: Option<i32>,
    /// Score, 0-10.
    pub score: Option<f64>,
    /// Members count, ≥ 0.
    pub popularity: i32,
    /// Up to 10 distinct genres of 1-40 characters.
    pub genres: Vec<String>,
    /// Up to 10 distinct themes of 1-64 characters.
    pub themes: Vec<String>,
    /// Up to 10 distinct studios of 1-64 characters.
    pub studios: Vec<String>,
    /// Up to 20 video players.
    pub players: Vec<PlayerDraft>,
    /// Up to 2,000 episodes, numbers distinct and at least 1.
    pub episode_list: Vec<EpisodeDraft>,
    /// http(s) URL, up to 512 characters.
    pub picture_url: String,
    /// Up to 10,000 characters.
    pub synopsis: String,
}

/// Changes to an anime: `None` leaves a field as it is; for nullable fields
/// `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct AnimeChanges {
    /// New title.
    pub title: Option<String>,
    /// New English title, or clear it.
    pub title_english: Option<Option<String>>,
    /// New original-language title, or clear it.
    pub title_original: Option<Option<String>>,
    /// New age rating, or clear it.
    pub age_rating: Option<Option<AgeRating>>,
    /// New format.
    pub format: Option<Format>,
    /// New episode count, or clear it.
    pub episodes: Option<Option<i32>>,
    /// New status.
    pub status: Option<Status>,
    /// New season, or clear it.
    pub season: Option<Option<Season>>,
    /// New year, or clear it.
    pub year: Option<Option<i32>>,
    /// New score, or clear it.
    pub score: Option<Option<f64>>,
    /// New members count.
    pub popularity: Option<i32>,
    /// New genres.
    pub genres: Option<Vec<String>>,
    /// New themes.
    pub themes: Option<Vec<String>>,
    /// New studios.
    pub studios: Option<Vec<String>>,
    /// New video players.
    pub players: Option<Vec<PlayerDraft>>,
    /// New episodes.
    pub episode_list: Option<Vec<EpisodeDraft>>,
    /// New picture URL.
    pub picture_url: Option<String>,
    /// New synopsis.
    pub synopsis: Option<String>,
}

impl AnimeDraft {
    /// The row to insert, created and updated `at` (id left to the
    /// database), and its relations, which are rows of their own.
    pub fn into_parts(self, at: chrono::DateTime<Utc>) -> (anime::ActiveModel, RelationWrites) {
        let row = anime::ActiveModel {
            id: NotSet,
            title: Set(self.title),
            title_english: Set(self.title_english),
            title_original: Set(self.title_original),
            age_rating: Set(self.age_rating),
            format: Set(self.format),
            episodes: Set(self.episodes),
            status: Set(self.status),
            season: Set(self.season),
            year: Set(self.year),
            score: Set(self.score),
            popularity: Set(self.popularity),
            picture_url: Set(self.picture_url),
            synopsis: Set(self.synopsis),
            created_at: Set(at),
            updated_at: Set(at),
        };
        let relations = RelationWrites {
            genres: Some(self.genres),
            themes: Some(self.themes),
            studios: Some(self.studios),
            players: Some(self.players),
            episodes: Some(self.episode_list),
        };
        (row, relations)
    }
}

impl AnimeChanges {
    /// The relation writes these changes make, taken out of them.
    fn take_relations(&mut self) -> RelationWrites {
        RelationWrites {
            genres: self.genres.take(),
            themes: self.themes.take(),
            studios: self.studios.take(),
            players: self.players.take(),
            episodes: self.episode_list.take(),
        }
    }
}

impl AnimeService {
    /// Inserts an anime with its relations (one transaction; a genre, theme
    /// or studio name without a row gets one), then invalidates what it
    /// changes. Returns the anime as the transaction wrote it.
    pub async fn create(&self, draft: AnimeDraft) -> Result<AnimeFacts> {
        let (row, relations) = validate_draft(draft)?.into_parts(Utc::now());
        let created = self.repo.create(row, &relations).await?;
        self.invalidate_change(&AnimeChange {
            id: created.row.id,
            before: None,
            after: Some(&created),
            has_new_players: true,
            has_new_episodes: true,
        })
        .await?;
        Ok(created)
    }

    /// Applies `changes` to anime `id` (its row and, when given, its
    /// relations, in one transaction), then invalidates what they changed:
    /// the policy compares the anime before and after (`service::tags`).
    /// Returns the anime as the transaction left it.
    pub async fn update(&self, id: i32, mut changes: AnimeChanges) -> Result<AnimeFacts> {
        changes = validate_changes(changes)?;
        let relations = changes.take_relations();
        let (before, after) = self
            .repo
            .update(id, |row| apply(row, changes), &relations)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("anime {id}")))?;
        self.invalidate_change(&AnimeChange {
            id,
            before: Some(&before),
            after: Some(&after),
            has_new_players: relations.players.is_some(),
            has_new_episodes: relations.episodes.is_some(),
        })
        .await?;
        Ok(after)
    }

    /// Deletes anime `id`, then invalidates what that changes.
    pub async fn delete(&self, id: i32) -> Result<()> {
        let deleted = self
            .repo
            .delete(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("anime {id}")))?;
        self.invalidate_change(&AnimeChange {
            id,
            before: Some(&deleted),
            after: None,
            has_new_players: true,
            has_new_episodes: true,
        })
        .await
    }

    /// Invalidates everything about `ids`, and every list, as if each had
    /// been rewritten behind the service's back (changes made to the
    /// database directly). Returns the tags invalidated.
    pub async fn invalidate(&self, ids: &[i32]) -> Result<u64> {
        self.cache
            .invalidate(self.policy.for_outside_change(ids))
            .await
    }

    async fn invalidate_change(&self, change: &AnimeChange<'_>) -> Result<()> {
        let invalidation = self.policy.for_anime_change(change);
        self.cache
            .invalidate_with_changes(invalidation.tags, invalidation.changes)
            .await
            .map(drop)
    }
}

fn apply(row: &mut anime::ActiveModel, changes: AnimeChanges) {
    if let Some(v) = changes.title {
        row.title = Set(v);
    }
    if let Some(v) = changes.title_english {
        row.title_english = Set(v);
    }
    if let Some(v) = changes.title_original {
        row.title_original = Set(v);
    }
    if let Some(v) = changes.age_rating {
        row.age_rating = Set(v);
    }
    if let Some(v) = changes.format {
        row.format = Set(v);
    }
    if let Some(v) = changes.episodes {
        row.episodes = Set(v);
    }
    if let Some(v) = changes.status {
        row.status = Set(v);
    }
    if let Some(v) = changes.season {
        row.season = Set(v);
    }
    if let Some(v) = changes.year {
        row.year = Set(v);
    }
    if let Some(v) = changes.score {
        row.score = Set(v);
    }
    if let Some(v) = changes.popularity {
        row.popularity = Set(v);
    }
    if let Some(v) = changes.picture_url {
        row.picture_url = Set(v);
    }
    if let Some(v) = changes.synopsis {
        row.synopsis = Set(v);
    }
    row.updated_at = Set(Utc::now());
}

/// Every problem of one input, so that the client hears about all of them
/// at once (see `AppError::BadUserInputs`).
#[derive(Default)]
struct Problems(Vec<AppError>);

impl Problems {
    /// The value of a check that passed; a failed one is recorded.
    fn check<T>(&mut self, checked: Result<T>) -> Option<T> {
        checked.map_err(|problem| self.0.push(problem)).ok()
    }

    fn finish(self) -> Result<()> {
        AppError::all(self.0)
    }
}

fn validate_draft(mut draft: AnimeDraft) -> Result<AnimeDraft> {
    let mut problems = Problems::default();
    if let Some(title) = problems.check(text("input.title", &draft.title, 1, 255)) {
        draft.title = title;
    }
    if let Some(title) = problems.check(
        draft
            .title_english
            .as_deref()
            .map(|t| text("input.titleEnglish", t, 1, 255))
            .transpose(),
    ) {
        draft.title_english = title;
    }
    if let Some(title) = problems.check(
        draft
            .title_original
            .as_deref()
            .map(|t| text("input.titleOriginal", t, 1, 255))
            .transpose(),
    ) {
        draft.title_original = title;
    }
    problems.check(check_range(&EPISODES, draft.episodes));
    problems.check(check_range(&YEAR, draft.year));
    problems.check(check_range(&SCORE, draft.score));
    problems.check(check_range(&POPULARITY, Some(draft.popularity)));
    if let Some(genres) = problems.check(genres(std::mem::take(&mut draft.genres))) {
        draft.genres = genres;
    }
    if let Some(themes) = problems.check(names("input.themes", std::mem::take(&mut draft.themes))) {
        draft.themes = themes;
    }
    if let Some(studios) =
        problems.check(names("input.studios", std::mem::take(&mut draft.studios)))
    {
        draft.studios = studios;
    }
    if let Some(players) = problems.check(players(std::mem::take(&mut draft.players))) {
        draft.players = players;
    }
    if let Some(episodes) = problems.check(episode_list(std::mem::take(&mut draft.episode_list))) {
        draft.episode_list = episodes;
    }
    if let Some(url) = problems.check(picture_url(&draft.picture_url)) {
        draft.picture_url = url;
    }
    if let Some(synopsis) = problems.check(text("input.synopsis", &draft.synopsis, 1, 10_000)) {
        draft.synopsis = synopsis;
    }
    problems.finish()?;
    Ok(draft)
}

fn validate_changes(mut changes: AnimeChanges) -> Result<AnimeChanges> {
    let mut problems = Problems::default();
    if let Some(title) = problems.check(
        changes
            .title
            .as_deref()
            .map(|t| text("input.title", t, 1, 255))
            .transpose(),
    ) {
        changes.title = title;
    }
    if let Some(title) = problems.check(
        changes
            .title_english
            .as_ref()
            .map(|t| {
                t.as_deref()
                    .map(|t| text("input.titleEnglish", t, 1, 255))
                    .transpose()
            })
            .transpose(),
    ) {
        changes.title_english = title;
    }
    if let Some(title) = problems.check(
        changes
            .title_original
            .as_ref()
            .map(|t| {
                t.as_deref()
                    .map(|t| text("input.titleOriginal", t, 1, 255))
                    .transpose()
            })
            .transpose(),
    ) {
        changes.title_original = title;
    }
    problems.check(check_range(&EPISODES, changes.episodes.flatten()));
    problems.check(check_range(&YEAR, changes.year.flatten()));
    problems.check(check_range(&SCORE, changes.score.flatten()));
    problems.check(check_range(&POPULARITY, changes.popularity));
    if let Some(genres) = problems.check(changes.genres.take().map(genres).transpose()) {
        changes.genres = genres;
    }
    if let Some(themes) = problems.check(
        changes
            .themes
            .take()
            .map(|list| names("input.themes", list))
            .transpose(),
    ) {
        changes.themes = themes;
    }
    if let Some(studios) = problems.check(
        changes
            .studios
            .take()
            .map(|list| names("input.studios", list))
            .transpose(),
    ) {
        changes.studios = studios;
    }
    if let Some(players) = problems.check(changes.players.take().map(players).transpose()) {
        changes.players = players;
    }
    if let Some(episodes) =
        problems.check(changes.episode_list.take().map(episode_list).transpose())
    {
        changes.episode_list = episodes;
    }
    if let Some(url) = problems.check(changes.picture_url.as_deref().map(picture_url).transpose()) {
        changes.picture_url = url;
    }
    if let Some(synopsis) = problems.check(
        changes
            .synopsis
            .as_deref()
            .map(|s| text("input.synopsis", s, 1, 10_000))
            .transpose(),
    ) {
        changes.synopsis = synopsis;
    }
    problems.finish()?;
    Ok(changes)
}

pub(super) fn text(argument: &'static str, value: &str, min: usize, max: usize) -> Result<String> {
    let trimmed = value.trim();
    let length = trimmed.chars().count();
    if length < min || length > max || trimmed.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            argument,
            format!(
                "{argument} must be {min} to {max} characters without control characters (got {length})"
            ),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Allowed numeric fields, as (argument, range).
const EPISODES: (&str, RangeInclusive<i32>) = ("input.episodes", 0..=10_000);
const YEAR: (&str, RangeInclusive<i32>) = ("input.year", 1900..=2100);
const SCORE: (&str, RangeInclusive<f64>) = ("input.score", 0.0..=10.0);
const POPULARITY: (&str, RangeInclusive<i32>) = ("input.popularity", 0..=i32::MAX);

/// Checks an optional number against its field's range (NaN is outside
/// every range).
fn check_range<T: PartialOrd + std::fmt::Display>(
    (argument, allowed): &(&'static str, RangeInclusive<T>),
    value: Option<T>,
) -> Result<()> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(AppError::bad_input(
            argument,
            format!(
                "{argument} must be between {} and {} (got {v})",
                allowed.start(),
                allowed.end()
            ),
        )),
        _ => Ok(()),
    }
}

fn genres(genres: Vec<String>) -> Result<Vec<String>> {
    if genres.len() > 10 {
        return Err(AppError::bad_input(
            "input.genres",
            format!(
                "input.genres may hold at most 10 genres (got {})",
                genres.len()
            ),
        ));
    }
    let mut out: Vec<String> = genres
        .iter()
        .map(|g| text("input.genres", g, 1, MAX_GENRE_NAME))
        .collect::<Result<_>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// At most this many themes or studios per anime, as for genres.
pub const MAX_NAMES: usize = 10;

/// Longest genre name, in characters.
pub const MAX_GENRE_NAME: usize = 40;

/// Longest theme or studio name, in characters.
pub const MAX_TAXON_NAME: usize = 64;

/// At most this many video players per anime.
pub const MAX_PLAYERS: usize = 20;

/// At most this many episode rows per anime (the longest-running series
/// have about 1,200 episodes).
pub const MAX_EPISODES: usize = 2_000;

/// Theme or studio names: up to [`MAX_NAMES`] of 1-64 characters,
/// trimmed, duplicates dropped, in the order given.
fn names(argument: &'static str, names: Vec<String>) -> Result<Vec<String>> {
    if names.len() > MAX_NAMES {
        return Err(AppError::bad_input(
            argument,
            format!(
                "{argument} may hold at most {MAX_NAMES} names (got {})",
                names.len()
            ),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in &names {
        let name = text(argument, name, 1, MAX_TAXON_NAME)?;
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Video players: up to [`MAX_PLAYERS`], each an http(s) embed URL of at
/// most 512 characters, a translator of at most 128 and a quality label of
/// at most 16.
fn players(players: Vec<PlayerDraft>) -> Result<Vec<PlayerDraft>> {
    const ARGUMENT: &str = "input.players";
    if players.len() > MAX_PLAYERS {
        return Err(AppError::bad_input(
            ARGUMENT,
            format!(
                "{ARGUMENT} may hold at most {MAX_PLAYERS} players (got {})",
                players.len()
            ),
        ));
    }
    players
        .into_iter()
        .map(|player| {
            let embed_url = player.embed_url.trim();
            let is_url = embed_url.len() <= 512
                && url::Url::parse(embed_url)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !is_url {
                return Err(AppError::bad_input(
                    ARGUMENT,
                    "input.players: embedUrl must be an http(s) URL of at most 512 characters",
                ));
            }
            Ok(PlayerDraft {
                embed_url: embed_url.to_owned(),
                translator: player
                    .translator
                    .map(|t| text(ARGUMENT, &t, 1, 128))
                    .transpose()?,
                quality: player
                    .quality
                    .map(|q| text(ARGUMENT, &q, 1, 16))
                    .transpose()?,
            })
        })
        .collect()
}

/// Episodes: up to [`MAX_EPISODES`], numbers at least 1 and distinct,
/// titles of at most 255 characters; sorted by number.
fn episode_list(mut episodes: Vec<EpisodeDraft>) -> Result<Vec<EpisodeDraft>> {
    const ARGUMENT: &str = "input.episodeList";
    if episodes.len() > MAX_EPISODES {
        return Err(AppError::bad_input(
            ARGUMENT,
            format!(
                "{ARGUMENT} may hold at most {MAX_EPISODES} episodes (got {})",
                episodes.len()
            ),
        ));
    }
    episodes.sort_by_key(|episode| episode.number);
    if let Some(first) = episodes.first()
        && first.number < 1
    {
        return Err(AppError::bad_input(
            ARGUMENT,
            format!(
                "{ARGUMENT}: episode numbers start at 1 (got {})",
                first.number
            ),
        ));
    }
    if let Some(pair) = episodes
        .windows(2)
        .find(|pair| pair[0].number == pair[1].number)
    {
        return Err(AppError::bad_input(
            ARGUMENT,
            format!("{ARGUMENT}: episode {} is listed twice", pair[0].number),
        ));
    }
    episodes
        .into_iter()
        .map(|episode| {
            Ok(EpisodeDraft {
                title: episode
                    .title
                    .map(|t| text(ARGUMENT, &t, 1, 255))
                    .transpose()?,
                ..episode
            })
        })
        .collect()
}

fn picture_url(value: &str) -> Result<String> {
    let trimmed = value.trim();
    let is_valid = trimmed.len() <= 512
        && url::Url::parse(trimmed)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !is_valid {
        return Err(AppError::bad_input(
            "input.pictureUrl",
            "input.pictureUrl must be an http(s) URL of at most 512 characters",
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> AnimeDraft {
        AnimeDraft {
            title: " Title ".into(),
            title_english: None,
            title_original: None,
            age_rating: None,
            format: Format::Tv,
            episodes: Some(12),
            status: Status::Finished,
            season: None,
            year: Some(2001),
            score: Some(8.0),
            popularity: 10,
            genres: vec!["Drama".into()],
            themes: Vec::new(),
            studios: Vec::new(),
            players: Vec::new(),
            episode_list: Vec::new(),
            picture_url: "https://img.example/x.webp".into(),
            synopsis: "A story.".into(),
        }
    }

    fn arguments(result: Result<impl std::fmt::Debug>) -> Vec<&'static str> {
        match result {
            Err(AppError::BadUserInputs(problems)) => problems
                .iter()
                .map(|problem| match problem {
                    AppError::BadUserInput { argument, .. } => *argument,
                    _ => "?",
                })
                .collect(),
            Err(AppError::BadUserInput { argument, .. }) => vec![argument],
            other => panic!("expected bad input, got {other:?}"),
        }
    }

    #[test]
    fn every_invalid_field_of_a_draft_is_reported() {
        let valid = validate_draft(draft()).expect("valid");
        assert_eq!(valid.title, "Title", "normalised");
        let bad = AnimeDraft {
            title: String::new(),
            year: Some(1800),
            score: Some(11.0),
            picture_url: "ftp://x".into(),
            ..draft()
        };
        assert_eq!(
            arguments(validate_draft(bad)),
            [
                "input.title",
                "input.year",
                "input.score",
                "input.pictureUrl"
            ]
        );
    }

    #[test]
    fn every_invalid_change_is_reported() {
        let changes = AnimeChanges {
            title_english: Some(Some(" ".into())),
            episodes: Some(Some(-1)),
            genres: Some(vec![String::new(); 11]),
            synopsis: Some("ok".into()),
            ..AnimeChanges::default()
        };
        assert_eq!(
            arguments(validate_changes(changes)),
            ["input.titleEnglish", "input.episodes", "input.genres"]
        );
        let one = AnimeChanges {
            popularity: Some(-5),
            ..AnimeChanges::default()
        };
        assert_eq!(arguments(validate_changes(one)), ["input.popularity"]);
    }

    #[test]
    fn inputs_are_checked_and_normalised() {
        assert!(text("input.title", "  Hi  ", 1, 255).is_ok_and(|t| t == "Hi"));
        assert!(text("input.title", "   ", 1, 255).is_err());
        assert!(text("input.title", "a\u{0}b", 1, 255).is_err());
        assert!(check_range(&SCORE, Some(10.5)).is_err());
        assert!(check_range(&SCORE, Some(f64::NAN)).is_err());
        assert!(check_range(&SCORE, Some(10.0)).is_ok());
        assert!(check_range(&YEAR, Some(1800)).is_err());
        assert!(check_range(&POPULARITY, Some(-1)).is_err());
        assert!(picture_url("javascript:alert(1)").is_err());
        assert!(picture_url("https://img.example/x.webp").is_ok());
        assert_eq!(
            genres(vec!["B".into(), "A".into(), "A".into()]).ok(),
            Some(vec!["A".into(), "B".into()])
        );
    }
}
