//! Deterministic demo data: `anigo seed --count N --seed S` and the demo rows
//! of a fresh embedded database.
//!
//! The same `(count, seed)` always produces the same anime (ChaCha8 is
//! portable across platforms and rand versions), so benchmarks and bug
//! reports can name a data set by its two numbers. The shape follows a real
//! catalogue: synopses of 400-1200 characters (one anime is 1-2 KB of JSON),
//! a Zipf-like (Pareto-tailed) popularity, weighted formats and recent years.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng, seq::IndexedRandom};
use rand_chacha::ChaCha8Rng;
use sea_orm::{DatabaseConnection, EntityTrait, TransactionTrait};

use crate::entities::anime::{self, Format, Season, Status};
use crate::service::AnimeDraft;

/// The seed used when none is given (demo data on first start).
pub const DEFAULT_SEED: u64 = 42;

/// Rows per INSERT: 1,000 rows × 14 columns stays under both PostgreSQL's
/// 65,535 and SQLite's 32,766 bind-parameter limits.
const BATCH_ROWS: usize = 1_000;

/// Inserts `count` generated anime in batches inside one transaction and
/// returns how many were inserted.
pub async fn insert(db: &DatabaseConnection, count: u64, seed: u64) -> Result<u64, sea_orm::DbErr> {
    let mut generator = Generator::new(seed);
    let txn = db.begin().await?;
    let mut inserted = 0;
    while inserted < count {
        let batch_len = (count - inserted).min(BATCH_ROWS as u64);
        let batch: Vec<anime::ActiveModel> =
            (0..batch_len).map(|_| generator.next_active()).collect();
        anime::Entity::insert_many(batch)
            .exec_without_returning(&txn)
            .await?;
        inserted += batch_len;
    }
    txn.commit().await?;
    Ok(inserted)
}

/// Produces anime one at a time from a seed.
pub struct Generator {
    rng: ChaCha8Rng,
    index: u64,
}

/// One generated anime: what a client would send, plus its (deterministic)
/// insertion time.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAnime {
    /// The anime's fields.
    pub draft: AnimeDraft,
    /// Insertion time (derived from the index, not the clock).
    pub created_at: DateTime<Utc>,
}

const ROMAJI_NOUNS: &[&str] = &[
    "Sora", "Hoshi", "Kaze", "Yume", "Tsuki", "Hikari", "Kage", "Mizu", "Hana", "Ken", "Tetsu",
    "Kokoro", "Mirai", "Umi", "Yoru", "Honoo", "Shiro", "Kuro", "Akatsuki", "Sakura", "Ryuu",
    "Kitsune", "Tenshi", "Akuma", "Majo", "Yuusha", "Kishi", "Ningyo", "Oukoku", "Gakuen",
];
const ROMAJI_TAILS: &[&str] = &[
    "no Kanata",
    "no Uta",
    "no Tsubasa",
    "Monogatari",
    "Senki",
    "no Kiseki",
    "Gakuen",
    "no Kage",
    "Kakumei",
    "no Yakusoku",
    "Densetsu",
    "no Mori",
    "Tantei",
    "Shoujo",
    "no Hate",
];
const ENGLISH_ADJECTIVES: &[&str] = &[
    "Endless",
    "Silent",
    "Crimson",
    "Hidden",
    "Last",
    "Broken",
    "Golden",
    "Wandering",
    "Distant",
    "Forgotten",
    "Burning",
    "Frozen",
    "Eternal",
    "Little",
    "Secret",
];
const ENGLISH_NOUNS: &[&str] = &[
    "Sky", "Star", "Wind", "Dream", "Moon", "Light", "Shadow", "Tide", "Blossom", "Blade", "Heart",
    "Future", "Sea", "Night", "Flame", "Kingdom", "Academy", "Witch", "Knight", "Promise",
];
const SUBTITLES: &[&str] = &[
    "Season 2",
    "Season 3",
    "The Movie",
    "Final Chapter",
    "Zero",
    "Next Generation",
    "Requiem",
];
const GENRES: &[&str] = &[
    "Action",
    "Adventure",
    "Comedy",
    "Drama",
    "Fantasy",
    "Horror",
    "Mecha",
    "Music",
    "Mystery",
    "Psychological",
    "Romance",
    "Sci-Fi",
    "Slice of Life",
    "Sports",
    "Supernatural",
    "Thriller",
    "Isekai",
    "Historical",
];
const CHARACTERS: &[&str] = &[
    "Haruto", "Yui", "Ren", "Aoi", "Sota", "Hina", "Kaito", "Mio", "Riku", "Sakura", "Daiki",
    "Emi", "Takumi", "Nanami", "Shun",
];
const PLACES: &[&str] = &[
    "a quiet seaside town",
    "the floating city of Arcadia",
    "a crumbling mountain shrine",
    "Tokyo in the year 2099",
    "a kingdom at the edge of the world",
    "a prestigious magic academy",
    "an abandoned space colony",
    "a village hidden in the mist",
    "the last train line in the desert",
];
const HOOKS: &[&str] = &[
    "finds a letter from a future that should not exist",
    "inherits a sword that remembers every battle it has seen",
    "wakes up with the ability to hear the thoughts of machines",
    "is chosen to compete in a tournament that decides the fate of two worlds",
    "opens a café that only appears on rainy nights",
    "joins a failing school club with one month left to save it",
    "makes a pact with a fox spirit who wants one last adventure",
    "discovers that the stars above the town are slowly going out",
];
const MIDDLES: &[&str] = &[
    "Old friendships are tested as secrets from the past resurface one by one.",
    "Every victory comes at a price, and the price keeps rising.",
    "Between part-time jobs, exams and monsters, there is barely time to breathe.",
    "Rival factions close in, each convinced that they alone can stop the coming storm.",
    "A mysterious transfer student seems to know far more than anyone should.",
    "What begins as a simple errand turns into a journey across forgotten lands.",
    "The line between ally and enemy blurs with every new revelation.",
    "Small everyday moments slowly become the most important memories of all.",
];
const ENDINGS: &[&str] = &[
    "Can they change their destiny before the final bell rings?",
    "The truth waiting at the end will change everything they believe.",
    "Together, they must decide what is worth protecting.",
    "It is a story about growing up, letting go and finding the courage to begin again.",
    "And somewhere, someone is watching, waiting for the right moment to act.",
];

impl Generator {
    /// A generator for `seed`; the first anime it yields is always the same.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            index: 0,
        }
    }

    /// The next anime as an insertable row (id left to the database).
    pub fn next_active(&mut self) -> anime::ActiveModel {
        let new = self.next_anime();
        new.draft.into_row(new.created_at)
    }

    /// The next anime.
    pub fn next_anime(&mut self) -> NewAnime {
        let index = self.index;
        self.index += 1;
        let rng = &mut self.rng;

        let mut title = format!("{} {}", pick(rng, ROMAJI_NOUNS), pick(rng, ROMAJI_TAILS));
        let mut title_english = rng.random_bool(0.65).then(|| {
            format!(
                "The {} {}",
                pick(rng, ENGLISH_ADJECTIVES),
                pick(rng, ENGLISH_NOUNS)
            )
        });
        if rng.random_bool(0.2) {
            let subtitle = pick(rng, SUBTITLES);
            title = format!("{title}: {subtitle}");
            title_english = title_english.map(|english| format!("{english}: {subtitle}"));
        }

        let format = *[
            (Format::Tv, 60),
            (Format::Movie, 12),
            (Format::Ova, 10),
            (Format::Ona, 10),
            (Format::Special, 5),
            (Format::Music, 3),
        ]
        .choose_weighted(rng, |(_, weight)| *weight)
        .map(|(format, _)| format)
        .unwrap_or(&Format::Tv);

        // Recent years dominate, as in a real catalogue: 1970 + 56·√u.
        let year = 1970 + (56.0 * rng.random::<f64>().sqrt()) as i32;
        let status = match year {
            2026 if rng.random_bool(0.5) => Status::Upcoming,
            2025.. => Status::Ongoing,
            _ => Status::Finished,
        };
        let season = rng.random_bool(0.9).then(|| {
            *[Season::Winter, Season::Spring, Season::Summer, Season::Fall]
                .choose(rng)
                .unwrap_or(&Season::Winter)
        });
        let episodes = match (status, format) {
            (Status::Upcoming, _) => None,
            (Status::Ongoing, _) if rng.random_bool(0.5) => None,
            (_, Format::Movie | Format::Music) => Some(1),
            (_, Format::Tv) => Some(*[12, 13, 24, 25, 26, 50].choose(rng).unwrap_or(&12)),
            (_, _) => Some(rng.random_range(1..=12)),
        };
        let score = (status != Status::Upcoming).then(|| {
            // Roughly bell-shaped around 7 (mean of three uniforms), 0-10.
            let spread: f64 = (0..3).map(|_| rng.random::<f64>()).sum::<f64>() / 3.0;
            ((3.0 + 6.5 * spread) * 100.0).round() / 100.0
        });
        // Pareto tail (alpha 1.1): most anime have a few hundred members, a
        // handful have millions, so the top-N list is stable yet realistic.
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        let popularity = (150.0 / u.powf(1.0 / 1.1)).min(3_900_000.0) as i32;

        let genre_count = rng.random_range(1..=4);
        let mut genres: Vec<String> = GENRES
            .choose_multiple(rng, genre_count)
            .map(|genre| (*genre).to_owned())
            .collect();
        genres.sort();

        let picture_url = format!(
            "https://img.anigo.example/covers/{:016x}.webp",
            rng.random::<u64>()
        );
        let synopsis = synopsis(rng);
        let created_at = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
            + Duration::minutes(index as i64);

        NewAnime {
            draft: AnimeDraft {
                title,
                title_english,
                format,
                episodes,
                status,
                season,
                year: Some(year),
                score,
                popularity,
                genres,
                picture_url,
                synopsis,
            },
            created_at,
        }
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, words: &[&'a str]) -> &'a str {
    words.choose(rng).copied().unwrap_or_default()
}

/// Longest synopsis, in bytes (so also at most this many characters).
const MAX_SYNOPSIS: usize = 1200;

/// 400-1200 characters of plausible plot summary.
fn synopsis(rng: &mut ChaCha8Rng) -> String {
    let target = rng.random_range(400..=1200);
    let mut text = format!(
        "In {}, {} {}.",
        pick(rng, PLACES),
        pick(rng, CHARACTERS),
        pick(rng, HOOKS)
    );
    while text.len() < target {
        let sentence = if rng.random_bool(0.7) {
            pick(rng, MIDDLES).to_owned()
        } else {
            format!("{} {}.", pick(rng, CHARACTERS), pick(rng, HOOKS))
        };
        // Whole sentences only, never past 1200: each sentence is far
        // shorter than 800, so stopping here still leaves at least 400.
        if text.len() + 1 + sentence.len() > MAX_SYNOPSIS {
            break;
        }
        text.push(' ');
        text.push_str(&sentence);
    }
    let ending = pick(rng, ENDINGS);
    if text.len() + 1 + ending.len() <= MAX_SYNOPSIS {
        text.push(' ');
        text.push_str(ending);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_anime() {
        let a: Vec<NewAnime> = (0..50)
            .scan(Generator::new(7), |g, _| Some(g.next_anime()))
            .collect();
        let b: Vec<NewAnime> = (0..50)
            .scan(Generator::new(7), |g, _| Some(g.next_anime()))
            .collect();
        let c: Vec<NewAnime> = (0..50)
            .scan(Generator::new(8), |g, _| Some(g.next_anime()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn generated_anime_have_realistic_shape() {
        let mut generator = Generator::new(DEFAULT_SEED);
        let all: Vec<NewAnime> = (0..20_000).map(|_| generator.next_anime()).collect();
        for anime in all.iter().map(|a| &a.draft) {
            let chars = anime.synopsis.chars().count();
            assert!((400..=1200).contains(&chars), "{chars} characters");
            assert!((1..=4).contains(&anime.genres.len()));
            assert!(anime.score.is_none_or(|s| (0.0..=10.0).contains(&s)));
            assert!(anime.popularity >= 150);
        }
        // Zipf-like: the top 1% holds a large share of all members.
        let mut popularity: Vec<i64> = all.iter().map(|a| i64::from(a.draft.popularity)).collect();
        popularity.sort_unstable_by(|a, b| b.cmp(a));
        let total: i64 = popularity.iter().sum();
        let top: i64 = popularity[..200].iter().sum();
        assert!(top * 5 > total, "top 1% holds {top} of {total}");
    }
}
