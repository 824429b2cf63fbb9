//! Deterministic demo data: `anigo seed --count N --seed S` and the demo rows
//! of a fresh embedded database.
//!
//! The same `(count, seed)` always produces the same catalogue (ChaCha8 is
//! portable across platforms and rand versions), on PostgreSQL and SQLite
//! alike, so benchmarks and bug reports can name a data set by its two
//! numbers. The shape follows a real catalogue:
//!
//! - anime: synopses of 400-1200 characters (one anime is 1-2 KB of JSON), a
//!   Zipf-like (Pareto-tailed) popularity, weighted formats, recent years;
//!   an original title for 85 % (kana, or romaji with macrons), a weighted
//!   age rating (PG-13 the most common);
//! - 20 genres (the usual names, weighted: Action and Comedy common, Avant
//!   Garde rare), 1-5 per anime; 50 themes, 0-3 per anime;
//! - 200 studios with generated names and Zipf sizes (rank r is picked with
//!   weight 1/r: at 100,000 anime the largest has about 20,000, the tenth
//!   about 2,000, the smallest about 100), 1-2 per anime;
//! - 0-3 video players per released anime (a fake host, `player.example`),
//!   with a translator and a quality label;
//! - episodes of TV and ONA series: `min(episodes, 26)` rows (1-12 for an
//!   airing show of unknown length), "Episode N", a week apart from the
//!   start of the anime's season.
//!
//! Rows are inserted in one transaction, anime 1,000 per statement and the
//! other tables as many rows as fit in [`MAX_BIND_PARAMS`]. Anime get
//! explicit ids after the largest one present, so their links can be
//! written without reading ids back; genre, theme and studio rows are
//! created only where the name is new (an existing catalogue keeps its own).

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::{Rng, SeedableRng, seq::IndexedRandom, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use sea_orm::sea_query::{Alias, InsertStatement, Query};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    Statement, TransactionTrait, Value,
};

use crate::db::Taxonomy;
use crate::db::relations::{EpisodeDraft, PlayerDraft};
use crate::db::taxonomy;
use crate::entities::anime::{self, AgeRating, Format, Season, Status};
use crate::service::AnimeDraft;

/// The seed used when none is given (demo data on first start).
pub const DEFAULT_SEED: u64 = 42;

/// Anime per INSERT: 1,000 rows × 16 columns.
const BATCH_ROWS: usize = 1_000;

/// Bind parameters per statement: SQLite's limit (32,766 since 3.32;
/// PostgreSQL allows 65,535). Rows per INSERT of a table are this divided
/// by its column count.
pub const MAX_BIND_PARAMS: usize = 32_766;

/// Most episode rows one anime gets (a long-running show lists its first 26).
const MAX_EPISODE_ROWS: i32 = 26;

/// Fixed seed of the studio names: the same 200 studios whatever `--seed`
/// is, so seeding twice with two seeds shares one set of studios.
const STUDIO_NAMES_SEED: u64 = 0x5747_d105;

/// Number of studios.
pub const STUDIO_COUNT: usize = 200;

/// Rows written by [`insert`], per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeedCounts {
    /// `anime` rows.
    pub anime: u64,
    /// `anime_genre` rows.
    pub anime_genres: u64,
    /// `anime_theme` rows.
    pub anime_themes: u64,
    /// `anime_studio` rows.
    pub anime_studios: u64,
    /// `player` rows.
    pub players: u64,
    /// `episode` rows.
    pub episodes: u64,
}

/// Inserts `count` generated anime with their genres, themes, studios,
/// players and episodes inside one transaction; returns the rows written.
pub async fn insert(db: &DatabaseConnection, count: u64, seed: u64) -> Result<SeedCounts, DbErr> {
    let mut generator = Generator::new(seed);
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();

    let genres = names(GENRES.iter().map(|(name, _)| *name));
    let themes = names(THEMES.iter().copied());
    let studios = studio_names();
    let genre_ids = taxonomy::ensure(&txn, Taxonomy::Genre, &genres).await?;
    let theme_ids = taxonomy::ensure(&txn, Taxonomy::Theme, &themes).await?;
    let studio_ids = taxonomy::ensure(&txn, Taxonomy::Studio, &studios).await?;

    let first_id = max_anime_id(&txn).await? + 1;
    let mut tables = Tables::new();
    let mut counts = SeedCounts::default();
    while counts.anime < count {
        let batch_len = (count - counts.anime).min(BATCH_ROWS as u64);
        let mut rows = Vec::with_capacity(batch_len as usize);
        for _ in 0..batch_len {
            let id = first_id + counts.anime as i32 + rows.len() as i32;
            let new = generator.next_anime();
            for (links, names, ids) in [
                (&mut tables.genres, &new.draft.genres, &genre_ids),
                (&mut tables.themes, &new.draft.themes, &theme_ids),
                (&mut tables.studios, &new.draft.studios, &studio_ids),
            ] {
                for (position, name) in names.iter().enumerate() {
                    let taxon = *ids
                        .get(name)
                        .ok_or_else(|| DbErr::Custom(format!("seed name {name:?} has no row")))?;
                    links.push(vec![id.into(), taxon.into(), (position as i16).into()]);
                }
            }
            for (position, player) in new.draft.players.iter().enumerate() {
                tables.players.push(vec![
                    id.into(),
                    player.embed_url.clone().into(),
                    player.translator.clone().into(),
                    player.quality.clone().into(),
                    (position as i16).into(),
                ]);
            }
            for episode in &new.draft.episode_list {
                tables.episodes.push(vec![
                    id.into(),
                    episode.number.into(),
                    episode.title.clone().into(),
                    episode.aired_on.into(),
                ]);
            }
            let (mut row, _genres) = new.draft.into_parts(new.created_at);
            row.id = Set(id);
            rows.push(row);
        }
        anime::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
        counts.anime += batch_len;
        tables.flush(&txn, &mut counts, false).await?;
    }
    tables.flush(&txn, &mut counts, true).await?;
    if backend == DbBackend::Postgres && counts.anime > 0 {
        // Explicit ids leave the serial sequence behind: the next created
        // anime must not collide with a seeded one.
        txn.execute_unprepared(
            "SELECT setval(pg_get_serial_sequence('anime', 'id'), (SELECT MAX(id) FROM anime))",
        )
        .await?;
    }
    txn.commit().await?;
    // Fresh statistics for the planner (autovacuum would take a while to
    // notice a bulk load): which plan a search or a filter gets rests on them.
    db.execute_unprepared("ANALYZE").await?;
    Ok(counts)
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names.map(str::to_owned).collect()
}

async fn max_anime_id(conn: &impl ConnectionTrait) -> Result<i32, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COALESCE(MAX(id), 0) AS max_id FROM anime",
        ))
        .await?;
    match row {
        Some(row) => row.try_get("", "max_id"),
        None => Ok(0),
    }
}

/// One table's rows waiting to be inserted.
struct Buffer {
    table: &'static str,
    columns: &'static [&'static str],
    rows: Vec<Vec<Value>>,
}

impl Buffer {
    fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
        Self {
            table,
            columns,
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<Value>) {
        self.rows.push(row);
    }

    fn rows_per_statement(&self) -> usize {
        MAX_BIND_PARAMS / self.columns.len()
    }

    /// Inserts full statements' worth of rows (all of them when `all`);
    /// returns how many.
    async fn flush(&mut self, conn: &impl ConnectionTrait, all: bool) -> Result<u64, DbErr> {
        let per_statement = self.rows_per_statement();
        let mut written = 0;
        while self.rows.len() >= per_statement || (all && !self.rows.is_empty()) {
            let take = self.rows.len().min(per_statement);
            let mut insert: InsertStatement = Query::insert()
                .into_table(Alias::new(self.table))
                .columns(self.columns.iter().map(|c| Alias::new(*c)))
                .to_owned();
            for row in self.rows.drain(..take) {
                insert
                    .values(row.into_iter().map(Into::into))
                    .map_err(|err| DbErr::Custom(format!("building an INSERT: {err}")))?;
            }
            conn.execute(&insert).await?;
            written += take as u64;
        }
        Ok(written)
    }
}

/// The rows of every table but `anime`.
struct Tables {
    genres: Buffer,
    themes: Buffer,
    studios: Buffer,
    players: Buffer,
    episodes: Buffer,
}

impl Tables {
    fn new() -> Self {
        Self {
            genres: Buffer::new("anime_genre", &["anime_id", "genre_id", "position"]),
            themes: Buffer::new("anime_theme", &["anime_id", "theme_id", "position"]),
            studios: Buffer::new("anime_studio", &["anime_id", "studio_id", "position"]),
            players: Buffer::new(
                "player",
                &["anime_id", "embed_url", "translator", "quality", "position"],
            ),
            episodes: Buffer::new("episode", &["anime_id", "number", "title", "aired_on"]),
        }
    }

    async fn flush(
        &mut self,
        conn: &impl ConnectionTrait,
        counts: &mut SeedCounts,
        all: bool,
    ) -> Result<(), DbErr> {
        counts.anime_genres += self.genres.flush(conn, all).await?;
        counts.anime_themes += self.themes.flush(conn, all).await?;
        counts.anime_studios += self.studios.flush(conn, all).await?;
        counts.players += self.players.flush(conn, all).await?;
        counts.episodes += self.episodes.flush(conn, all).await?;
        Ok(())
    }
}

/// Produces anime one at a time from a seed.
pub struct Generator {
    rng: ChaCha8Rng,
    index: u64,
    studios: Vec<String>,
    studio_sizes: WeightedIndex<f64>,
}

/// One generated anime: what a client would send, plus its (deterministic)
/// insertion time and what only the seed writes for now.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAnime {
    /// The anime's fields and relations.
    pub draft: AnimeDraft,
    /// Insertion time (derived from the index, not the clock).
    pub created_at: DateTime<Utc>,
}

/// Romaji title words with their katakana, and their tails in hiragana.
const ROMAJI_NOUNS: &[(&str, &str)] = &[
    ("Sora", "ソラ"),
    ("Hoshi", "ホシ"),
    ("Kaze", "カゼ"),
    ("Yume", "ユメ"),
    ("Tsuki", "ツキ"),
    ("Hikari", "ヒカリ"),
    ("Kage", "カゲ"),
    ("Mizu", "ミズ"),
    ("Hana", "ハナ"),
    ("Ken", "ケン"),
    ("Tetsu", "テツ"),
    ("Kokoro", "ココロ"),
    ("Mirai", "ミライ"),
    ("Umi", "ウミ"),
    ("Yoru", "ヨル"),
    ("Honoo", "ホノオ"),
    ("Shiro", "シロ"),
    ("Kuro", "クロ"),
    ("Akatsuki", "アカツキ"),
    ("Sakura", "サクラ"),
    ("Ryuu", "リュウ"),
    ("Kitsune", "キツネ"),
    ("Tenshi", "テンシ"),
    ("Akuma", "アクマ"),
    ("Majo", "マジョ"),
    ("Yuusha", "ユウシャ"),
    ("Kishi", "キシ"),
    ("Ningyo", "ニンギョ"),
    ("Oukoku", "オウコク"),
    ("Gakuen", "ガクエン"),
];
const ROMAJI_TAILS: &[(&str, &str)] = &[
    ("no Kanata", "のかなた"),
    ("no Uta", "のうた"),
    ("no Tsubasa", "のつばさ"),
    ("Monogatari", "ものがたり"),
    ("Senki", "せんき"),
    ("no Kiseki", "のきせき"),
    ("Gakuen", "がくえん"),
    ("no Kage", "のかげ"),
    ("Kakumei", "かくめい"),
    ("no Yakusoku", "のやくそく"),
    ("Densetsu", "でんせつ"),
    ("no Mori", "のもり"),
    ("Tantei", "たんてい"),
    ("Shoujo", "しょうじょ"),
    ("no Hate", "のはて"),
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
const SUBTITLES: &[(&str, &str)] = &[
    ("Season 2", "第2期"),
    ("Season 3", "第3期"),
    ("The Movie", "劇場版"),
    ("Final Chapter", "完結編"),
    ("Zero", "ゼロ"),
    ("Next Generation", "ネクストジェネレーション"),
    ("Requiem", "レクイエム"),
];

/// The usual anime genres with how often they occur (relative weights).
const GENRES: &[(&str, u32)] = &[
    ("Action", 30),
    ("Comedy", 30),
    ("Fantasy", 22),
    ("Drama", 18),
    ("Adventure", 16),
    ("Romance", 15),
    ("Sci-Fi", 13),
    ("Slice of Life", 12),
    ("Supernatural", 10),
    ("Mystery", 7),
    ("Isekai", 5),
    ("Mecha", 5),
    ("Sports", 5),
    ("Ecchi", 4),
    ("Historical", 4),
    ("Music", 4),
    ("Psychological", 4),
    ("Horror", 3),
    ("Thriller", 3),
    ("Avant Garde", 1),
];

/// Themes, finer than genres; earlier ones are a little more common.
const THEMES: &[&str] = &[
    "School",
    "Super Power",
    "Military",
    "Martial Arts",
    "Space",
    "Adult Cast",
    "Mythology",
    "Time Travel",
    "Reincarnation",
    "Iyashikei",
    "Harem",
    "Detective",
    "Samurai",
    "Workplace",
    "Video Game",
    "Survival",
    "Vampire",
    "Idols (Female)",
    "Idols (Male)",
    "Team Sports",
    "Combat Sports",
    "Racing",
    "Strategy Game",
    "High Stakes Game",
    "Gore",
    "Parody",
    "Gag Humor",
    "Love Polygon",
    "Reverse Harem",
    "Mahou Shoujo",
    "Urban Fantasy",
    "Villainess",
    "Anthropomorphic",
    "CGDCT",
    "Childcare",
    "Delinquents",
    "Educational",
    "Gourmet",
    "Medical",
    "Organized Crime",
    "Otaku Culture",
    "Performing Arts",
    "Visual Arts",
    "Pets",
    "Showbiz",
    "Crossdressing",
    "Magical Sex Shift",
    "Love Status Quo",
    "Romantic Subtext",
    "Award Winning",
];

/// Words and patterns of generated studio names.
const STUDIO_WORDS: &[&str] = &[
    "Sakura",
    "Aozora",
    "Hoshizora",
    "Kumo",
    "Tsubame",
    "Hinata",
    "Kaminari",
    "Yamabuki",
    "Shirokuma",
    "Akane",
    "Kurenai",
    "Midori",
    "Fujimi",
    "Tanuki",
    "Komorebi",
    "Ginga",
    "Orion",
    "Nova",
    "Lumen",
    "Pixel",
    "Crescent",
    "Maple",
    "Silver Fox",
    "Blue Lynx",
    "Red Crane",
    "Paper Moon",
    "Lantern",
    "Quill",
    "Kiseki",
    "Hanabi",
    "Seiun",
    "Tokiwa",
    "Asahi",
    "Yūgen",
    "Ōkami",
    "Shippū",
    "Harbor",
    "Prism",
    "Atelier Nagi",
    "Bamboo",
];
const STUDIO_PATTERNS: &[&str] = &[
    "{} Animation",
    "Studio {}",
    "{} Pictures",
    "{} Works",
    "{} Production",
    "{} Studio",
    "{} Film",
    "{} Digital",
];

/// Fansub and dubbing teams the players name.
const TRANSLATORS: &[&str] = &[
    "Kitsune Subs",
    "NightOwl Fansub",
    "Aurora Dub",
    "Hikari Voice",
    "Paper Lantern",
    "Subtitle Forge",
    "Moonlit Dubbing",
    "Official",
];

/// Quality labels with how often they occur.
const QUALITIES: &[(&str, u32)] = &[("480p", 10), ("720p", 35), ("1080p", 50), ("2160p", 5)];

/// Syllables of generated names, with their katakana.
const SYLLABLES: &[(&str, &str)] = &[
    ("a", "ア"),
    ("i", "イ"),
    ("u", "ウ"),
    ("e", "エ"),
    ("o", "オ"),
    ("ka", "カ"),
    ("ki", "キ"),
    ("ku", "ク"),
    ("ko", "コ"),
    ("sa", "サ"),
    ("shi", "シ"),
    ("su", "ス"),
    ("se", "セ"),
    ("ta", "タ"),
    ("chi", "チ"),
    ("tsu", "ツ"),
    ("to", "ト"),
    ("na", "ナ"),
    ("ni", "ニ"),
    ("no", "ノ"),
    ("ha", "ハ"),
    ("hi", "ヒ"),
    ("fu", "フ"),
    ("ho", "ホ"),
    ("ma", "マ"),
    ("mi", "ミ"),
    ("mo", "モ"),
    ("ya", "ヤ"),
    ("yu", "ユ"),
    ("yo", "ヨ"),
    ("ra", "ラ"),
    ("ri", "リ"),
    ("ru", "ル"),
    ("re", "レ"),
    ("ro", "ロ"),
    ("wa", "ワ"),
    ("ga", "ガ"),
    ("ji", "ジ"),
    ("da", "ダ"),
    ("be", "ベ"),
];

/// A Japanese-looking name of 2-4 syllables (`Harukiko`), with its katakana:
/// about 2.6 million of them, so most names are rare.
fn generated_name(rng: &mut ChaCha8Rng) -> (String, String) {
    let mut romaji = String::new();
    let mut kana = String::new();
    for _ in 0..rng.random_range(2..=4) {
        let &(syllable, katakana) = SYLLABLES.choose(rng).unwrap_or(&SYLLABLES[0]);
        romaji.push_str(syllable);
        kana.push_str(katakana);
    }
    let mut letters = romaji.chars();
    let name = letters
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + letters.as_str())
        .unwrap_or_default();
    (name, kana)
}

/// The 200 studio names, the same for every seed; the first is the largest
/// (Zipf rank 1).
pub fn studio_names() -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(STUDIO_NAMES_SEED);
    let mut all: Vec<String> = STUDIO_PATTERNS
        .iter()
        .flat_map(|pattern| {
            STUDIO_WORDS
                .iter()
                .map(move |word| pattern.replace("{}", word))
        })
        .collect();
    all.shuffle(&mut rng);
    all.truncate(STUDIO_COUNT);
    all
}

/// Weighted pick of one item of `(item, weight)` pairs.
fn weighted<T: Copy>(rng: &mut ChaCha8Rng, choices: &[(T, u32)]) -> T {
    choices
        .choose_weighted(rng, |(_, weight)| *weight)
        .map(|(item, _)| *item)
        .unwrap_or(choices[0].0)
}

/// The first day of `season` in `year` (winter starts in January).
fn season_start(year: i32, season: Option<Season>) -> Option<NaiveDate> {
    let month = match season {
        None | Some(Season::Winter) => 1,
        Some(Season::Spring) => 4,
        Some(Season::Summer) => 7,
        Some(Season::Fall) => 10,
    };
    NaiveDate::from_ymd_opt(year, month, 1)
}

/// `title` in Hepburn with macrons: ou → ō, uu → ū (the long vowels the
/// seed's words spell out).
fn with_macrons(title: &str) -> String {
    title
        .replace("Ou", "Ō")
        .replace("ou", "ō")
        .replace("uu", "ū")
        .replace("oo", "ō")
}

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
        let studios = studio_names();
        let weights = (1..=studios.len()).map(|rank| 1.0 / rank as f64);
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            index: 0,
            // 200 positive finite weights: cannot fail.
            studio_sizes: WeightedIndex::new(weights)
                .unwrap_or_else(|_| unreachable!("studio weights are positive and finite")),
            studios,
        }
    }

    /// The next anime.
    pub fn next_anime(&mut self) -> NewAnime {
        let index = self.index;
        self.index += 1;
        let rng = &mut self.rng;

        // Half the titles lead with a common word, half with a generated
        // name, so that a search for a name finds a few anime, as in a
        // real catalogue, and one for a common word finds thousands.
        let (noun, noun_kana, is_name) = if rng.random_bool(0.5) {
            let &(noun, kana) = ROMAJI_NOUNS.choose(rng).unwrap_or(&ROMAJI_NOUNS[0]);
            (noun.to_owned(), kana.to_owned(), false)
        } else {
            let (name, kana) = generated_name(rng);
            (name, kana, true)
        };
        let &(tail, tail_kana) = ROMAJI_TAILS.choose(rng).unwrap_or(&ROMAJI_TAILS[0]);
        let mut title = format!("{noun} {tail}");
        let mut title_kana = format!("{noun_kana}{tail_kana}");
        let mut title_english = rng.random_bool(0.65).then(|| {
            let english = format!(
                "The {} {}",
                pick(rng, ENGLISH_ADJECTIVES),
                pick(rng, ENGLISH_NOUNS)
            );
            if is_name && rng.random_bool(0.5) {
                format!("{noun}: {english}")
            } else {
                english
            }
        });
        if rng.random_bool(0.2) {
            let &(subtitle, subtitle_kana) = SUBTITLES.choose(rng).unwrap_or(&SUBTITLES[0]);
            title = format!("{title}: {subtitle}");
            title_kana = format!("{title_kana} {subtitle_kana}");
            title_english = title_english.map(|english| format!("{english}: {subtitle}"));
        }
        let title_original = match rng.random_range(0..100) {
            0..68 => Some(title_kana),
            68..85 => Some(with_macrons(&title)),
            _ => None,
        };
        let age_rating = weighted(
            rng,
            &[
                (Some(AgeRating::G), 8),
                (Some(AgeRating::Pg), 12),
                (Some(AgeRating::Pg13), 45),
                (Some(AgeRating::R), 22),
                (Some(AgeRating::RPlus), 10),
                (Some(AgeRating::Rx), 1),
                (None, 2),
            ],
        );

        let format = weighted(
            rng,
            &[
                (Format::Tv, 60),
                (Format::Movie, 12),
                (Format::Ova, 10),
                (Format::Ona, 10),
                (Format::Special, 5),
                (Format::Music, 3),
            ],
        );

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

        let genre_count = weighted(rng, &[(1, 15), (2, 30), (3, 30), (4, 17), (5, 8)]);
        let genres = sorted_pick(rng, GENRES, genre_count);
        let theme_count = weighted(rng, &[(0, 30), (1, 35), (2, 25), (3, 10)]);
        let themes: Vec<(&str, u32)> = THEMES
            .iter()
            .enumerate()
            // From 3 (the first) down to 1 (the last): a gentle slope.
            .map(|(i, name)| (*name, 3 * THEMES.len() as u32 - 2 * i as u32))
            .collect();
        let themes = sorted_pick(rng, &themes, theme_count);
        let studio_count = weighted(rng, &[(1, 75), (2, 25)]);
        let mut studios: Vec<String> = Vec::with_capacity(studio_count);
        while studios.len() < studio_count {
            let studio = &self.studios[self.studio_sizes.sample(rng)];
            if !studios.contains(studio) {
                studios.push(studio.clone());
            }
        }

        let players = if status == Status::Upcoming {
            Vec::new()
        } else {
            let count = weighted(rng, &[(0, 15), (1, 35), (2, 30), (3, 20)]);
            (0..count)
                .map(|_| PlayerDraft {
                    embed_url: format!("https://player.example/embed/{:016x}", rng.random::<u64>()),
                    translator: rng
                        .random_bool(0.9)
                        .then(|| pick(rng, TRANSLATORS).to_owned()),
                    quality: rng
                        .random_bool(0.95)
                        .then(|| weighted(rng, QUALITIES).to_owned()),
                })
                .collect()
        };

        let episode_rows = match (format, status, episodes) {
            (Format::Tv | Format::Ona, Status::Finished | Status::Ongoing, Some(n)) => {
                n.min(MAX_EPISODE_ROWS)
            }
            (Format::Tv | Format::Ona, Status::Ongoing, None) => rng.random_range(1..=12),
            _ => 0,
        };
        let first_aired =
            season_start(year, season).map(|start| start + Duration::days(rng.random_range(0..14)));
        let episode_list = (1..=episode_rows)
            .map(|number| EpisodeDraft {
                number,
                title: Some(format!("Episode {number}")),
                aired_on: first_aired.map(|day| day + Duration::weeks(i64::from(number - 1))),
            })
            .collect();

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
                title_original,
                age_rating,
                format,
                episodes,
                status,
                season,
                year: Some(year),
                score,
                popularity,
                genres,
                themes,
                studios,
                players,
                episode_list,
                picture_url,
                synopsis,
            },
            created_at,
        }
    }
}

/// `count` distinct names of weighted `choices`, alphabetical (the order
/// the API writes names in).
fn sorted_pick(rng: &mut ChaCha8Rng, choices: &[(&str, u32)], count: usize) -> Vec<String> {
    let mut names: Vec<String> = choices
        .choose_multiple_weighted(rng, count, |(_, weight)| f64::from(*weight))
        .map(|picked| picked.map(|(name, _)| (*name).to_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
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
    use std::collections::HashMap;

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
        assert_eq!(
            studio_names(),
            studio_names(),
            "studios do not depend on the seed"
        );
    }

    #[test]
    fn generated_anime_have_realistic_shape() {
        let mut generator = Generator::new(DEFAULT_SEED);
        let all: Vec<NewAnime> = (0..20_000).map(|_| generator.next_anime()).collect();
        for new in &all {
            let anime = &new.draft;
            let chars = anime.synopsis.chars().count();
            assert!((400..=1200).contains(&chars), "{chars} characters");
            assert!((1..=5).contains(&anime.genres.len()));
            assert!(anime.genres.is_sorted());
            assert!(anime.themes.len() <= 3);
            assert!((1..=2).contains(&anime.studios.len()));
            assert!(anime.players.len() <= 3);
            assert!(
                anime
                    .players
                    .iter()
                    .all(|p| p.embed_url.starts_with("https://player.example/"))
            );
            assert!(anime.episode_list.len() <= MAX_EPISODE_ROWS as usize);
            assert!(anime.score.is_none_or(|s| (0.0..=10.0).contains(&s)));
            assert!(anime.popularity >= 150);
            let numbers: Vec<i32> = anime.episode_list.iter().map(|e| e.number).collect();
            assert_eq!(numbers, (1..=numbers.len() as i32).collect::<Vec<_>>());
            if let [first, second, ..] = anime.episode_list.as_slice() {
                assert_eq!(
                    second
                        .aired_on
                        .zip(first.aired_on)
                        .map(|(b, a)| (b - a).num_days()),
                    Some(7)
                );
            }
        }
        // Zipf-like: the top 1% holds a large share of all members.
        let mut popularity: Vec<i64> = all.iter().map(|a| i64::from(a.draft.popularity)).collect();
        popularity.sort_unstable_by(|a, b| b.cmp(a));
        let total: i64 = popularity.iter().sum();
        let top: i64 = popularity[..200].iter().sum();
        assert!(top * 5 > total, "top 1% holds {top} of {total}");

        // Every genre and most themes occur; original titles for most.
        let genres: std::collections::HashSet<&String> =
            all.iter().flat_map(|a| &a.draft.genres).collect();
        assert_eq!(genres.len(), GENRES.len());
        let originals = all
            .iter()
            .filter(|a| a.draft.title_original.is_some())
            .count();
        assert!(
            (16_000..18_000).contains(&originals),
            "{originals} original titles"
        );
    }

    #[test]
    fn studio_sizes_follow_a_zipf_curve() {
        let mut generator = Generator::new(DEFAULT_SEED);
        let mut sizes: HashMap<String, u32> = HashMap::new();
        for _ in 0..20_000 {
            for studio in generator.next_anime().draft.studios {
                *sizes.entry(studio).or_default() += 1;
            }
        }
        let mut sizes: Vec<u32> = sizes.into_values().collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        // Rank r is picked with weight 1/r (about 6 in total for 200):
        // the largest studio gets about a sixth, the tenth a tenth of that.
        assert_eq!(sizes.len(), STUDIO_COUNT, "every studio has anime");
        let total: u32 = sizes.iter().sum();
        assert!(
            sizes[0] * 8 > total && sizes[0] * 5 < total,
            "{} of {total}",
            sizes[0]
        );
        assert!(sizes[9] * 6 < sizes[0], "{sizes:?}");
        assert!(sizes[STUDIO_COUNT - 1] * 60 < sizes[0], "{sizes:?}");
    }
}
