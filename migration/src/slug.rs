//! The slug rule of genre, theme and studio names: the one function that
//! turns a name into its URL key (`/genres/slice-of-life`). The data
//! migration that created the `genre` rows and every later write use it, so
//! a name gets the same slug whichever path created it.
//!
//! The rule, in order:
//! 1. transliterate to ASCII (`deunicode`: `é` → `e`, `ß` → `ss`, `Ō` →
//!    `O`, kana and CJK to their usual romanisation);
//! 2. `&` becomes the word `and`; apostrophes vanish (`Director's` →
//!    `directors`);
//! 3. lowercase; every run of anything else than `a-z0-9` becomes one `-`;
//!    no `-` at either end;
//! 4. at most [`MAX_SLUG_LEN`] characters, cut at a `-` when there is one
//!    in the last 16 characters (whole words), else mid-word;
//! 5. a name with nothing left is [`FALLBACK_SLUG`].
//!
//! Collisions ("Sci-Fi" and "Sci Fi", or "Action" and "action", which are
//! distinct names) are settled by [`unique_slug`]: the first keeps the
//! slug, later ones get `-2`, `-3`, … in the order they are created.

/// Longest slug: the `slug` columns are 64 characters.
pub const MAX_SLUG_LEN: usize = 64;

/// The slug of a name with no letters or digits at all (say, `"!!!"`).
pub const FALLBACK_SLUG: &str = "untitled";

/// How far back from the length limit a cut looks for a `-`, so that a
/// long name loses whole words rather than half of one.
const WORD_CUT_WINDOW: usize = 16;

/// The slug of `name` (see the module doc): lowercase ASCII letters,
/// digits and single `-` between them, 1 to [`MAX_SLUG_LEN`] characters.
pub fn slugify(name: &str) -> String {
    let ascii = deunicode::deunicode_with_tofu(name, " ");
    let mut slug = String::with_capacity(ascii.len());
    let mut pending_dash = false;
    for c in ascii.chars() {
        match c {
            'a'..='z' | '0'..='9' | 'A'..='Z' => {
                if pending_dash && !slug.is_empty() {
                    slug.push('-');
                }
                pending_dash = false;
                slug.push(c.to_ascii_lowercase());
            }
            '\'' => {}
            '&' => {
                if !slug.is_empty() {
                    slug.push('-');
                }
                slug.push_str("and");
                pending_dash = true;
            }
            _ => pending_dash = true,
        }
    }
    let slug = cut(&slug, MAX_SLUG_LEN);
    if slug.is_empty() {
        FALLBACK_SLUG.to_owned()
    } else {
        slug.to_owned()
    }
}

/// `base` if `is_taken` says it is free, else the first free of `base-2`,
/// `base-3`, … (with `base` shortened so that the suffix fits in
/// [`MAX_SLUG_LEN`]).
pub fn unique_slug(base: &str, mut is_taken: impl FnMut(&str) -> bool) -> String {
    if !is_taken(base) {
        return base.to_owned();
    }
    (2_u32..)
        .map(|n| {
            let suffix = format!("-{n}");
            format!("{}{suffix}", cut(base, MAX_SLUG_LEN - suffix.len()))
        })
        .find(|candidate| !is_taken(candidate))
        .unwrap_or_else(|| FALLBACK_SLUG.to_owned())
}

/// `slug` (ASCII) cut to at most `max` characters, at a `-` near the end
/// when there is one, never ending in `-`.
fn cut(slug: &str, max: usize) -> &str {
    if slug.len() <= max {
        return slug.trim_end_matches('-');
    }
    let head = &slug[..max];
    let at_word = head
        .rfind('-')
        .filter(|&dash| dash + WORD_CUT_WINDOW >= max && dash > 0);
    match at_word {
        Some(dash) => &head[..dash],
        None => head.trim_end_matches('-'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_lowercase_dashed_ascii() {
        assert_eq!(slugify("Slice of Life"), "slice-of-life");
        assert_eq!(slugify("Sci-Fi"), "sci-fi");
        assert_eq!(slugify("  Sci -- Fi  "), "sci-fi");
        assert_eq!(slugify("Boys Love"), "boys-love");
        assert_eq!(slugify("CGDCT"), "cgdct");
        // Symbols transliterate to words where deunicode has one.
        assert_eq!(slugify("Studio 4°C"), "studio-4degc");
        assert_eq!(slugify("Director's Cut"), "directors-cut");
        assert_eq!(slugify("Cute Girls & Dogs"), "cute-girls-and-dogs");
        assert_eq!(slugify("A-1 Pictures"), "a-1-pictures");
    }

    #[test]
    fn non_ascii_letters_are_transliterated() {
        assert_eq!(slugify("Pokémon"), "pokemon");
        assert_eq!(slugify("Straße"), "strasse");
        assert_eq!(slugify("Shōnen Jump"), "shonen-jump");
        assert_eq!(slugify("Ørsted Æther"), "orsted-aether");
        assert_eq!(slugify("ソラ"), "sora");
        assert_eq!(slugify("さくら"), "sakura");
    }

    #[test]
    fn a_name_without_letters_or_digits_gets_the_fallback() {
        assert_eq!(slugify(""), FALLBACK_SLUG);
        assert_eq!(slugify("!!! ..."), FALLBACK_SLUG);
    }

    #[test]
    fn long_names_are_cut_at_a_word_within_the_limit() {
        let name = "The Extraordinarily Long Name Of A Studio That Nobody Can Remember At All";
        let slug = slugify(name);
        assert!(slug.len() <= MAX_SLUG_LEN, "{slug}");
        assert_eq!(
            slug,
            "the-extraordinarily-long-name-of-a-studio-that-nobody-can"
        );
        let one_word = "x".repeat(100);
        assert_eq!(slugify(&one_word).len(), MAX_SLUG_LEN);
    }

    #[test]
    fn every_slug_uses_only_the_allowed_characters() {
        for name in [
            "Ça va?", "日常", "🦊 Fox", "a\u{0}b", "R+", "--x--", "Ⅻ", "ﬁne",
        ] {
            let slug = slugify(name);
            assert!(
                !slug.is_empty()
                    && slug.len() <= MAX_SLUG_LEN
                    && !slug.starts_with('-')
                    && !slug.ends_with('-')
                    && !slug.contains("--")
                    && slug
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name:?} → {slug:?}"
            );
        }
    }

    #[test]
    fn collisions_get_numbered_suffixes() {
        let taken = ["sci-fi", "sci-fi-2"];
        assert_eq!(unique_slug("drama", |s| taken.contains(&s)), "drama");
        assert_eq!(unique_slug("sci-fi", |s| taken.contains(&s)), "sci-fi-3");
        let long = "y".repeat(MAX_SLUG_LEN);
        let next = unique_slug(&long, |s| s == long);
        assert_eq!(next.len(), MAX_SLUG_LEN);
        assert!(next.ends_with("-2"), "{next}");
    }
}
