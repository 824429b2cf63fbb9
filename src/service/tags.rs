//! The catalogue's invalidation policy, in one place: which tags each
//! cached read depends on, and which tags a write bumps. A read is served
//! from the cache only while none of its tags was bumped since it was
//! stored (`cache::envelope`), so the rule every line here keeps is: **a
//! write that can change a read's result bumps at least one of the read's
//! tags**. Everything else is precision: bumping as little as that allows.
//!
//! # Entities
//!
//! | tag | entry | bumped by |
//! |---|---|---|
//! | `anime:{id}` | the anime: its row and its genre, theme and studio ids (`anime(id)`, and every list's items) | any write to the anime (its `updatedAt` changes); deleting a genre, theme or studio it has |
//! | `anime:{id}:players` (`episodes`) | its players (episodes) | a write that replaces them |
//!
//! # Lists and counts
//!
//! A list (a page of `animeList`, `popularAnime`, `animePage`, a genre's
//! page…) or count is read in a **partition**: the anime of one genre
//! (`genre:action`), else of one theme, else of one studio (the first of
//! the filter's slugs in that order), else `all`. It depends on
//!
//! | tag | meaning | bumped when, for a partition the anime is (or was) in |
//! |---|---|---|
//! | `list:{partition}` | who is in the partition | the anime joins or leaves it (create, delete, a genre, theme or studio change) |
//! | `list:{partition}:by:{field}` | a filter on `field` (year, season, format, status, score, and theme or studio below a genre, studio below a theme) | the anime's `field` changes |
//! | `~list:{partition}:order:{field}` | the order by `field` (popularity, score, year): a ranged tag (`cache::ranged`) | the anime's `field` changes: the change (old and new value) is logged, and only the pages whose values it crosses or lands among are dropped |
//! | `list:{partition}:order:title` | the order by title | the anime's title changes |
//! | `catalogue` | everything list-shaped | rare global events: a taxon's slug moves or a taxon is deleted, `invalidateAnime` |
//!
//! So a synopsis, picture or player edit drops the anime's own entry and
//! no list at all; a score change drops the lists ordered or filtered by
//! score in the anime's partitions and nothing else (id-ordered pages,
//! popularity rankings, the unfiltered count all stay); moving an anime
//! from one genre to another touches those two genres' lists and no other
//! genre's; a create or delete drops the lists and counts of the anime's
//! partitions only. Searches depend on `search` (titles, creates and
//! deletes); the genre, theme and studio lists (with their counts) on
//! `taxonomy:{genre|theme|studio}`.
//!
//! # Bounded staleness
//!
//! Some fields change all the time and re-ranking on each change is
//! pointless: a members count that grows with every visit. A field
//! declared **relaxed** (`CACHE_RELAXED_FIELDS`, default `popularity`)
//! updates the anime's own entry at once, but bumps no list: rankings and
//! filters by it catch up when their entries expire, at most the list's
//! TTL (plus `CACHE_STALE_WHILE_REVALIDATE`) later. Any of `popularity`,
//! `score`, `year` and `title` may be relaxed; none is with
//! `CACHE_RELAXED_FIELDS=none`.
//!
//! # Coarse mode
//!
//! `CACHE_INVALIDATION=coarse` restores the first design, for comparison
//! (`scripts/bench --writes`): every anime write bumps `catalogue`, so
//! every list, count and search, plus every entity tag of the anime.

use std::collections::BTreeSet;

use crate::cache::ranged::{Change, Span};
use crate::db::{AnimeFacts, AnimeFilter, AnimeOrder, AnimeSort, SortDirection, Taxon, Taxonomy};

/// Tag of everything list-shaped (module doc).
pub const CATALOGUE: &str = "catalogue";

/// Tag of every search result.
pub const SEARCH: &str = "search";

/// How precisely writes invalidate (`CACHE_INVALIDATION`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Only what a write changed (module doc).
    #[default]
    Precise,
    /// Every list on every write (the first design, kept for comparison).
    Coarse,
}

/// A field lists order or filter by, that may be relaxed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListField {
    /// Members count.
    Popularity,
    /// Score.
    Score,
    /// Year of first airing.
    Year,
    /// Title.
    Title,
}

impl ListField {
    /// Every relaxable field.
    pub const ALL: [Self; 4] = [Self::Popularity, Self::Score, Self::Year, Self::Title];

    /// The name in tags and in `CACHE_RELAXED_FIELDS`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Popularity => "popularity",
            Self::Score => "score",
            Self::Year => "year",
            Self::Title => "title",
        }
    }

    /// The field named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|field| field.name() == name)
    }
}

/// A relation of an anime cached as an entry of its own (genre, theme
/// and studio ids are part of the anime's own entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// Its video players.
    Players,
    /// Its episodes.
    Episodes,
}

impl Relation {
    /// Every relation.
    pub const ALL: [Self; 2] = [Self::Players, Self::Episodes];

    fn name(self) -> &'static str {
        match self {
            Self::Players => "players",
            Self::Episodes => "episodes",
        }
    }
}

/// The invalidation policy: the mode and the relaxed fields. Cheap to
/// copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidationPolicy {
    mode: Mode,
    /// Relaxed fields, as bits of [`ListField::ALL`] positions.
    relaxed: u8,
}

impl Default for InvalidationPolicy {
    fn default() -> Self {
        Self::new(Mode::Precise, &[ListField::Popularity])
    }
}

/// What a write to one anime did: the anime before and after (`None`:
/// created or deleted), and which of its player and episode lists it
/// replaced (genres, themes and studios are compared).
#[derive(Clone, Debug)]
pub struct AnimeChange<'a> {
    /// The anime's id.
    pub id: i32,
    /// Before the write; `None` for a create.
    pub before: Option<&'a AnimeFacts>,
    /// After the write; `None` for a delete.
    pub after: Option<&'a AnimeFacts>,
    /// Whether its players were replaced.
    pub has_new_players: bool,
    /// Whether its episodes were replaced.
    pub has_new_episodes: bool,
}

/// What a write to a genre, theme or studio did, for its tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaxonWrite {
    /// Created: no anime has it yet, only the taxonomy list changes.
    Created,
    /// Renamed, and moved to another slug or not.
    Renamed {
        /// Whether its slug changed (lists filtered by the old or new
        /// slug change).
        slug_changed: bool,
    },
    /// Deleted, with its links.
    Deleted,
}

/// What a write invalidates: tags to bump, and value changes to log
/// against ranged tags.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Invalidation {
    /// Tags whose every entry the write may have changed.
    pub tags: Vec<String>,
    /// For ranged tags: the value each moved from and to.
    pub changes: Vec<(String, Change)>,
}

/// The values of a page's order field at its first and last anime, when
/// the order is by a number: what a cached page covers of its ranking.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Covered {
    /// The first anime's value (`None`: absent).
    pub first: Option<f64>,
    /// The last anime's value.
    pub last: Option<f64>,
}

impl Covered {
    /// What the page of `ranked` (ids with their values, in order) covers;
    /// `None` for an empty page.
    pub fn of(ranked: &[(i32, Option<f64>)]) -> Option<Self> {
        Some(Self {
            first: ranked.first()?.1,
            last: ranked.last()?.1,
        })
    }
}

/// A set of tags being built (sorted, distinct).
#[derive(Default)]
struct Tags(BTreeSet<String>);

impl Tags {
    fn add(&mut self, tag: impl Into<String>) {
        self.0.insert(tag.into());
    }

    fn into_vec(self) -> Vec<String> {
        self.0.into_iter().collect()
    }

    fn into_invalidation(self, changes: Vec<(String, Change)>) -> Invalidation {
        Invalidation {
            tags: self.into_vec(),
            changes,
        }
    }
}

/// Tag of the row of anime `id`.
pub fn anime(id: i32) -> String {
    format!("anime:{id}")
}

/// Tag of one relation of anime `id`.
pub fn relation(id: i32, relation: Relation) -> String {
    format!("anime:{id}:{}", relation.name())
}

/// Tag of the genre (theme, studio) list of `kind`, with its counts.
pub fn taxonomy(kind: Taxonomy) -> String {
    format!("taxonomy:{}", kind.table())
}

/// A filter dimension besides the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dim {
    Theme,
    Studio,
    Year,
    Season,
    Format,
    Status,
    Score,
}

impl Dim {
    fn name(self) -> &'static str {
        match self {
            Self::Theme => "theme",
            Self::Studio => "studio",
            Self::Year => "year",
            Self::Season => "season",
            Self::Format => "format",
            Self::Status => "status",
            Self::Score => "score",
        }
    }
}

/// The partition a filter reads in: its genre, else theme, else studio,
/// else the whole catalogue.
fn partition_of(filter: &AnimeFilter) -> String {
    match (&filter.genre, &filter.theme, &filter.studio) {
        (Some(slug), ..) => format!("genre:{slug}"),
        (None, Some(slug), _) => format!("theme:{slug}"),
        (None, None, Some(slug)) => format!("studio:{slug}"),
        (None, None, None) => "all".to_owned(),
    }
}

/// The filter dimensions of `filter` other than its partition.
fn dims_of(filter: &AnimeFilter) -> Vec<Dim> {
    let mut dims = Vec::new();
    if filter.genre.is_some() && filter.theme.is_some() {
        dims.push(Dim::Theme);
    }
    if (filter.genre.is_some() || filter.theme.is_some()) && filter.studio.is_some() {
        dims.push(Dim::Studio);
    }
    for (is_set, dim) in [
        (filter.years.is_some(), Dim::Year),
        (filter.season.is_some(), Dim::Season),
        (filter.format.is_some(), Dim::Format),
        (filter.status.is_some(), Dim::Status),
        (filter.min_score.is_some(), Dim::Score),
    ] {
        if is_set {
            dims.push(dim);
        }
    }
    dims
}

/// The field an order sorts by, when it is one a write can change.
fn order_field(sort: AnimeSort) -> Option<ListField> {
    match sort {
        AnimeSort::Popularity => Some(ListField::Popularity),
        AnimeSort::Score => Some(ListField::Score),
        AnimeSort::Year => Some(ListField::Year),
        AnimeSort::Title => Some(ListField::Title),
        AnimeSort::Id => None,
    }
}

/// The tag of the order by `field` in `partition`: ranged for numbers.
fn order_tag(partition: &str, field: ListField) -> String {
    match field {
        ListField::Title => format!("list:{partition}:order:title"),
        numeric => format!("~list:{partition}:order:{}", numeric.name()),
    }
}

/// The value of `field` in `row`, for a ranged tag's log.
fn value_of(row: &crate::entities::anime::Model, field: ListField) -> Option<f64> {
    match field {
        ListField::Popularity => Some(f64::from(row.popularity)),
        ListField::Score => row.score,
        ListField::Year => row.year.map(f64::from),
        ListField::Title => None,
    }
}

/// The partitions `facts` is in: all, and one per genre, theme and studio.
fn partitions(facts: &AnimeFacts) -> BTreeSet<String> {
    let mut out = BTreeSet::from(["all".to_owned()]);
    for (kind, taxa) in [
        ("genre", &facts.genres),
        ("theme", &facts.themes),
        ("studio", &facts.studios),
    ] {
        out.extend(taxa.iter().map(|taxon| format!("{kind}:{}", taxon.slug)));
    }
    out
}

/// Slugs of `taxa`, as a set (membership, not order).
fn slugs(taxa: &[Taxon]) -> BTreeSet<&str> {
    taxa.iter().map(|taxon| taxon.slug.as_str()).collect()
}

impl InvalidationPolicy {
    /// A policy in `mode` relaxing `relaxed` (module doc).
    pub fn new(mode: Mode, relaxed: &[ListField]) -> Self {
        let relaxed = relaxed.iter().fold(0u8, |bits, field| {
            let index = ListField::ALL.iter().position(|f| f == field).unwrap_or(0);
            bits | (1 << index)
        });
        Self { mode, relaxed }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether `field` is relaxed.
    pub fn is_relaxed(&self, field: ListField) -> bool {
        let index = ListField::ALL.iter().position(|f| *f == field).unwrap_or(0);
        self.relaxed & (1 << index) != 0
    }

    /// The relaxed fields.
    pub fn relaxed(&self) -> Vec<ListField> {
        ListField::ALL
            .into_iter()
            .filter(|field| self.is_relaxed(*field))
            .collect()
    }

    /// Tags of a page of the anime `filter` keeps in `order` (also
    /// `popularAnime`: no filter, by popularity; `animePage`: by id).
    pub fn list(&self, filter: &AnimeFilter, order: AnimeOrder) -> Vec<String> {
        let mut tags = self.count(filter);
        if let Some(tag) = self.ranked_tag(filter, order) {
            tags.push(tag);
        }
        tags
    }

    /// The tag of the order of a page of `filter` in `order`, when a write
    /// can change that order and it is not relaxed.
    fn ranked_tag(&self, filter: &AnimeFilter, order: AnimeOrder) -> Option<String> {
        let field = order_field(order.sort)?;
        (self.mode == Mode::Precise && !self.is_relaxed(field))
            .then(|| order_tag(&partition_of(filter), field))
    }

    /// What a page of `filter` in `order` whose first and last anime have
    /// `covered` values covers of its ranged order tag: the values between
    /// them (absent values sit last in either direction); an empty page
    /// covers nothing.
    pub fn spans(
        &self,
        filter: &AnimeFilter,
        order: AnimeOrder,
        covered: Option<Covered>,
    ) -> Vec<(String, Vec<Span>)> {
        let Some(tag) = self
            .ranked_tag(filter, order)
            .filter(|tag| tag.starts_with('~'))
        else {
            return Vec::new();
        };
        let none_at = match order.direction {
            SortDirection::Desc => f64::NEG_INFINITY,
            SortDirection::Asc => f64::INFINITY,
        };
        let span = match covered {
            Some(covered) => Span::between(
                covered.first.unwrap_or(none_at),
                covered.last.unwrap_or(none_at),
                none_at,
            ),
            // Nothing can move into a page past the end without a
            // membership change, which bumps the partition's tag.
            None => Span {
                lo: f64::INFINITY,
                hi: f64::NEG_INFINITY,
                none_at: 0.0,
            },
        };
        vec![(tag, vec![span])]
    }

    /// Tags of the number of anime `filter` keeps.
    pub fn count(&self, filter: &AnimeFilter) -> Vec<String> {
        let mut tags = vec![CATALOGUE.to_owned()];
        if self.mode == Mode::Coarse {
            return tags;
        }
        let partition = partition_of(filter);
        for dim in dims_of(filter) {
            if self.is_dim_relaxed(dim) {
                continue;
            }
            tags.push(format!("list:{partition}:by:{}", dim.name()));
        }
        tags.push(format!("list:{partition}"));
        tags
    }

    fn is_dim_relaxed(&self, dim: Dim) -> bool {
        match dim {
            Dim::Score => self.is_relaxed(ListField::Score),
            Dim::Year => self.is_relaxed(ListField::Year),
            _ => false,
        }
    }

    /// Tags of a search result (ranked by title match, then popularity).
    pub fn search(&self) -> Vec<String> {
        let mut tags = vec![CATALOGUE.to_owned(), SEARCH.to_owned()];
        if self.mode == Mode::Precise && !self.is_relaxed(ListField::Popularity) {
            // Ranked by title match first, so it records no span: any
            // members-count change drops it.
            tags.push(order_tag("all", ListField::Popularity));
        }
        tags
    }

    /// Tags of the genre (theme, studio) list and of one taxon by slug.
    pub fn taxonomy(&self, kind: Taxonomy) -> Vec<String> {
        vec![taxonomy(kind)]
    }

    /// Tags of anime `id`'s row.
    pub fn anime(&self, id: i32) -> Vec<String> {
        vec![anime(id)]
    }

    /// Tags of one relation of anime `id`.
    pub fn relation(&self, id: i32, relation: Relation) -> Vec<String> {
        vec![self::relation(id, relation)]
    }

    /// What a write to one anime invalidates.
    pub fn for_anime_change(&self, change: &AnimeChange<'_>) -> Invalidation {
        let mut tags = Tags::default();
        let mut changes = Vec::new();
        let id = change.id;
        tags.add(anime(id));
        let (before, after) = match (change.before, change.after) {
            (Some(before), Some(after)) => (before, after),
            // Created or deleted: everything about it.
            (one, other) => {
                for relation in Relation::ALL {
                    tags.add(self::relation(id, relation));
                }
                tags.add(SEARCH);
                if self.mode == Mode::Coarse {
                    tags.add(CATALOGUE);
                }
                if let Some(facts) = one.or(other) {
                    for partition in partitions(facts) {
                        tags.add(format!("list:{partition}"));
                    }
                    for (kind, taxa) in Self::taxa(facts) {
                        if !taxa.is_empty() {
                            tags.add(taxonomy(kind));
                        }
                    }
                }
                return tags.into_invalidation(changes);
            }
        };
        for kind in Taxonomy::ALL {
            let (old, new) = (Self::taxa_of(before, kind), Self::taxa_of(after, kind));
            if slugs(old) != slugs(new) {
                tags.add(taxonomy(kind));
            }
        }
        if change.has_new_players {
            tags.add(self::relation(id, Relation::Players));
        }
        if change.has_new_episodes {
            tags.add(self::relation(id, Relation::Episodes));
        }
        if self.mode == Mode::Coarse {
            tags.add(CATALOGUE);
            for relation in Relation::ALL {
                tags.add(self::relation(id, relation));
            }
            return tags.into_invalidation(changes);
        }
        let (old, new) = (&before.row, &after.row);
        let titles_changed = old.title != new.title
            || old.title_english != new.title_english
            || old.title_original != new.title_original;
        let changed = |field: ListField| match field {
            ListField::Popularity => old.popularity != new.popularity,
            ListField::Score => old.score != new.score,
            ListField::Year => old.year != new.year,
            ListField::Title => old.title != new.title,
        };
        if titles_changed
            || (changed(ListField::Popularity) && !self.is_relaxed(ListField::Popularity))
        {
            tags.add(SEARCH);
        }
        let dims_changed: Vec<Dim> = [
            (slugs(&before.themes) != slugs(&after.themes), Dim::Theme),
            (slugs(&before.studios) != slugs(&after.studios), Dim::Studio),
            (old.year != new.year, Dim::Year),
            (old.season != new.season, Dim::Season),
            (old.format != new.format, Dim::Format),
            (old.status != new.status, Dim::Status),
            (old.score != new.score, Dim::Score),
        ]
        .into_iter()
        .filter(|(is_changed, dim)| *is_changed && !self.is_dim_relaxed(*dim))
        .map(|(_, dim)| dim)
        .collect();
        let orders_changed: Vec<ListField> = ListField::ALL
            .into_iter()
            .filter(|field| changed(*field) && !self.is_relaxed(*field))
            .collect();
        let (was_in, is_in) = (partitions(before), partitions(after));
        for partition in was_in.union(&is_in) {
            if !(was_in.contains(partition) && is_in.contains(partition)) {
                // Joined or left it.
                tags.add(format!("list:{partition}"));
                continue;
            }
            for dim in &dims_changed {
                // Only partitions whose lists can filter by it (a list in a
                // theme's partition has no genre; one in a studio's has no
                // theme or genre).
                let applies = match dim {
                    Dim::Theme => partition.starts_with("genre:"),
                    Dim::Studio => {
                        partition.starts_with("genre:") || partition.starts_with("theme:")
                    }
                    _ => true,
                };
                if applies {
                    tags.add(format!("list:{partition}:by:{}", dim.name()));
                }
            }
            for &field in &orders_changed {
                let tag = order_tag(partition, field);
                if tag.starts_with('~') {
                    changes.push((
                        tag,
                        Change {
                            old: value_of(old, field),
                            new: value_of(new, field),
                        },
                    ));
                } else {
                    tags.add(tag);
                }
            }
        }
        tags.into_invalidation(changes)
    }

    /// The tags a write of `kind` to a taxon of `taxonomy` bumps; `members`
    /// are the anime that have (had) it.
    pub fn for_taxon_write(
        &self,
        taxonomy: Taxonomy,
        kind: TaxonWrite,
        members: &[i32],
    ) -> Vec<String> {
        let mut tags = vec![self::taxonomy(taxonomy)];
        if kind == TaxonWrite::Deleted {
            // Their entries still name the id; the taxonomy list no longer
            // does, so it would be skipped, but an id must never outlive
            // its taxon in a cached entry.
            tags.extend(members.iter().map(|&id| anime(id)));
        }
        let lists_change = match kind {
            TaxonWrite::Created => false,
            // Relation entries hold ids and names come from the taxonomy
            // list: a rename in place changes nothing else.
            TaxonWrite::Renamed { slug_changed } => slug_changed,
            TaxonWrite::Deleted => true,
        };
        if lists_change {
            // Lists filtered by the slug, in its partition and below
            // others': rare enough to drop every list.
            tags.push(CATALOGUE.to_owned());
        }
        tags
    }

    /// The tags of anime `ids` changed behind the service's back
    /// (`invalidateAnime`): everything about them, and every list.
    pub fn for_outside_change(&self, ids: &[i32]) -> Vec<String> {
        let mut tags = Tags::default();
        for &id in ids {
            tags.add(anime(id));
            for relation in Relation::ALL {
                tags.add(self::relation(id, relation));
            }
        }
        tags.add(CATALOGUE);
        tags.add(SEARCH);
        for kind in Taxonomy::ALL {
            tags.add(taxonomy(kind));
        }
        tags.into_vec()
    }

    fn taxa(facts: &AnimeFacts) -> [(Taxonomy, &[Taxon]); 3] {
        [
            (Taxonomy::Genre, &facts.genres),
            (Taxonomy::Theme, &facts.themes),
            (Taxonomy::Studio, &facts.studios),
        ]
    }

    fn taxa_of(facts: &AnimeFacts, kind: Taxonomy) -> &[Taxon] {
        match kind {
            Taxonomy::Genre => &facts.genres,
            Taxonomy::Theme => &facts.themes,
            Taxonomy::Studio => &facts.studios,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::db::YearRange;
    use crate::entities::anime::{self, Format, Status};

    fn taxon(id: i32, slug: &str) -> Taxon {
        Taxon {
            id,
            name: slug.to_owned(),
            slug: slug.to_owned(),
        }
    }

    fn facts() -> AnimeFacts {
        AnimeFacts {
            row: anime::Model {
                id: 7,
                title: "Sora".to_owned(),
                title_english: None,
                title_original: None,
                format: Format::Tv,
                episodes: Some(12),
                status: Status::Finished,
                season: None,
                year: Some(2004),
                score: Some(7.5),
                popularity: 1_000,
                age_rating: None,
                picture_url: "https://example.com/a.jpg".to_owned(),
                synopsis: "A sky.".to_owned(),
                created_at: Utc::now(),
                updated_at: Utc::now(),
            },
            genres: vec![taxon(1, "action"), taxon(2, "drama")],
            themes: vec![taxon(5, "school")],
            studios: vec![taxon(9, "bones")],
        }
    }

    fn change<'a>(before: &'a AnimeFacts, after: &'a AnimeFacts) -> AnimeChange<'a> {
        AnimeChange {
            id: 7,
            before: Some(before),
            after: Some(after),
            has_new_players: false,
            has_new_episodes: false,
        }
    }

    /// Whether a read with tags `read` may be dropped by `bumped`: one of
    /// its tags bumped, or a change logged against one of them.
    fn overlaps(read: &[String], bumped: &Invalidation) -> bool {
        read.iter().any(|tag| {
            bumped.tags.contains(tag) || bumped.changes.iter().any(|(changed, _)| changed == tag)
        })
    }

    fn by(sort: AnimeSort) -> AnimeOrder {
        sort.natural()
    }

    fn genre(slug: &str) -> AnimeFilter {
        AnimeFilter {
            genre: Some(slug.to_owned()),
            ..AnimeFilter::default()
        }
    }

    #[test]
    fn a_synopsis_edit_touches_the_anime_alone() {
        let policy = InvalidationPolicy::default();
        let before = facts();
        let mut after = facts();
        after.row.synopsis = "Another sky.".to_owned();
        let bumped = policy.for_anime_change(&change(&before, &after));
        assert_eq!(bumped.tags, vec![anime(7)]);
        assert!(bumped.changes.is_empty());
    }

    #[test]
    fn a_score_change_touches_score_lists_of_its_partitions_only() {
        let policy = InvalidationPolicy::default();
        let before = facts();
        let mut after = facts();
        after.row.score = Some(8.1);
        let bumped = policy.for_anime_change(&change(&before, &after));
        let filtered = AnimeFilter {
            min_score: Some(8.0),
            ..genre("action")
        };
        assert!(overlaps(
            &policy.list(&genre("action"), by(AnimeSort::Score)),
            &bumped
        ));
        assert!(overlaps(
            &policy.list(&AnimeFilter::default(), by(AnimeSort::Score)),
            &bumped
        ));
        assert!(overlaps(&policy.count(&filtered), &bumped));
        for (filter, sort) in [
            (genre("action"), AnimeSort::Popularity),
            (genre("action"), AnimeSort::Id),
            (AnimeFilter::default(), AnimeSort::Id),
            (AnimeFilter::default(), AnimeSort::Popularity),
            (genre("romance"), AnimeSort::Score),
        ] {
            assert!(
                !overlaps(&policy.list(&filter, by(sort)), &bumped),
                "{filter:?} by {sort:?}"
            );
        }
        assert!(!overlaps(&policy.count(&AnimeFilter::default()), &bumped));
        assert!(!overlaps(&policy.search(), &bumped));
    }

    #[test]
    fn a_genre_move_touches_those_two_genres() {
        let policy = InvalidationPolicy::default();
        let before = facts();
        let mut after = facts();
        after.genres = vec![taxon(1, "action"), taxon(3, "comedy")];
        let bumped = policy.for_anime_change(&change(&before, &after));
        assert!(overlaps(
            &policy.list(&genre("drama"), by(AnimeSort::Id)),
            &bumped
        ));
        assert!(overlaps(
            &policy.list(&genre("comedy"), by(AnimeSort::Popularity)),
            &bumped
        ));
        assert!(overlaps(&policy.count(&genre("comedy")), &bumped));
        assert!(!overlaps(
            &policy.list(&genre("action"), by(AnimeSort::Score)),
            &bumped
        ));
        assert!(!overlaps(
            &policy.list(&genre("romance"), by(AnimeSort::Score)),
            &bumped
        ));
        assert!(!overlaps(
            &policy.list(&AnimeFilter::default(), by(AnimeSort::Score)),
            &bumped
        ));
        assert!(bumped.tags.contains(&taxonomy(Taxonomy::Genre)));
        assert!(bumped.tags.contains(&anime(7)));
        assert!(!bumped.tags.contains(&relation(7, Relation::Players)));
        assert!(!bumped.tags.contains(&taxonomy(Taxonomy::Theme)));
    }

    #[test]
    fn popularity_is_relaxed_by_default_and_can_be_strict() {
        let before = facts();
        let mut after = facts();
        after.row.popularity += 1;
        let relaxed = InvalidationPolicy::default();
        let bumped = relaxed.for_anime_change(&change(&before, &after));
        assert_eq!((bumped.tags, bumped.changes), (vec![anime(7)], Vec::new()));
        let strict = InvalidationPolicy::new(Mode::Precise, &[]);
        let bumped = strict.for_anime_change(&change(&before, &after));
        assert!(overlaps(
            &strict.list(&AnimeFilter::default(), by(AnimeSort::Popularity)),
            &bumped
        ));
        assert!(overlaps(&strict.search(), &bumped));
        assert!(!overlaps(
            &strict.list(&AnimeFilter::default(), by(AnimeSort::Id)),
            &bumped
        ));
    }

    #[test]
    fn creates_and_deletes_touch_the_partitions_of_the_anime() {
        let policy = InvalidationPolicy::default();
        let created = facts();
        let bumped = policy.for_anime_change(&AnimeChange {
            id: 7,
            before: None,
            after: Some(&created),
            has_new_players: true,
            has_new_episodes: true,
        });
        for filter in [AnimeFilter::default(), genre("action"), genre("drama")] {
            assert!(overlaps(&policy.count(&filter), &bumped), "{filter:?}");
            assert!(overlaps(&policy.list(&filter, by(AnimeSort::Id)), &bumped));
        }
        assert!(!overlaps(
            &policy.list(&genre("romance"), by(AnimeSort::Score)),
            &bumped
        ));
        assert!(overlaps(&policy.search(), &bumped));
        assert!(bumped.tags.contains(&relation(7, Relation::Episodes)));
        assert!(bumped.tags.contains(&taxonomy(Taxonomy::Studio)));
    }

    #[test]
    fn year_and_format_filters_follow_their_fields() {
        let policy = InvalidationPolicy::default();
        let before = facts();
        let mut after = facts();
        after.row.year = Some(2010);
        let bumped = policy.for_anime_change(&change(&before, &after));
        let years = AnimeFilter {
            years: Some(YearRange::single(2004)),
            ..genre("drama")
        };
        assert!(overlaps(
            &policy.list(&years, by(AnimeSort::Popularity)),
            &bumped
        ));
        let movies = AnimeFilter {
            format: Some(Format::Movie),
            ..genre("drama")
        };
        assert!(!overlaps(
            &policy.list(&movies, by(AnimeSort::Popularity)),
            &bumped
        ));
    }

    #[test]
    fn coarse_mode_drops_every_list_on_any_write() {
        let policy = InvalidationPolicy::new(Mode::Coarse, &[ListField::Popularity]);
        let before = facts();
        let mut after = facts();
        after.row.synopsis = "x".to_owned();
        let bumped = policy.for_anime_change(&change(&before, &after));
        assert!(overlaps(
            &policy.list(&genre("romance"), by(AnimeSort::Id)),
            &bumped
        ));
        assert!(overlaps(&policy.search(), &bumped));
        assert!(bumped.tags.contains(&relation(7, Relation::Players)));
    }

    #[test]
    fn taxon_renames_in_place_touch_only_the_taxonomy() {
        let policy = InvalidationPolicy::default();
        let rename = TaxonWrite::Renamed {
            slug_changed: false,
        };
        assert_eq!(
            policy.for_taxon_write(Taxonomy::Genre, rename, &[1]),
            vec![taxonomy(Taxonomy::Genre)]
        );
        let moved = policy.for_taxon_write(
            Taxonomy::Studio,
            TaxonWrite::Renamed { slug_changed: true },
            &[1],
        );
        let moved = Invalidation {
            tags: moved,
            changes: Vec::new(),
        };
        assert!(overlaps(
            &policy.list(&genre("action"), by(AnimeSort::Id)),
            &moved
        ));
        let deleted = policy.for_taxon_write(Taxonomy::Theme, TaxonWrite::Deleted, &[4]);
        assert!(overlaps(
            &policy.count(&AnimeFilter::default()),
            &Invalidation {
                tags: deleted.clone(),
                changes: Vec::new(),
            }
        ));
        assert!(
            deleted.contains(&anime(4)),
            "its members' entries hold its id"
        );
        assert_eq!(
            policy.for_taxon_write(Taxonomy::Genre, TaxonWrite::Created, &[]),
            vec![taxonomy(Taxonomy::Genre)]
        );
    }

    #[test]
    fn a_score_change_is_logged_and_spares_the_pages_it_does_not_reach() {
        let policy = InvalidationPolicy::default();
        let before = facts();
        let mut after = facts();
        after.row.score = Some(7.0);
        let bumped = policy.for_anime_change(&change(&before, &after));
        let (tag, logged) = bumped
            .changes
            .iter()
            .find(|(tag, _)| tag == "~list:genre:action:order:score")
            .expect("logged against the genre's score order");
        assert_eq!((logged.old, logged.new), (Some(7.5), Some(7.0)));
        let order = by(AnimeSort::Score);
        let top = policy.spans(
            &genre("action"),
            order,
            Some(Covered {
                first: Some(9.5),
                last: Some(8.5),
            }),
        );
        let middle = policy.spans(
            &genre("action"),
            order,
            Some(Covered {
                first: Some(7.4),
                last: Some(6.9),
            }),
        );
        let survives = |spans: &[(String, Vec<Span>)]| {
            let spans = &spans.iter().find(|(name, _)| name == tag).expect("spans").1;
            crate::cache::ranged::survives(spans, &[*logged])
        };
        assert!(survives(&top), "7.5 to 7.0 does not reach 8.5-9.5");
        assert!(!survives(&middle), "it lands among 6.9-7.4");
        assert!(policy.list(&genre("action"), order).contains(tag));
    }

    #[test]
    fn tags_stay_few() {
        let policy = InvalidationPolicy::new(Mode::Precise, &[]);
        let filter = AnimeFilter {
            genre: Some("a".into()),
            theme: Some("b".into()),
            studio: Some("c".into()),
            years: Some(YearRange::single(2003)),
            season: Some(anime::Season::Fall),
            format: Some(Format::Tv),
            status: Some(Status::Ongoing),
            min_score: Some(7.0),
        };
        assert!(policy.list(&filter, by(AnimeSort::Score)).len() <= 10);
    }
}
