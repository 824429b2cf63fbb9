//! Creates the `anime` table and the index behind `popularAnime`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Name of the index serving `ORDER BY popularity DESC, id ASC`.
const POPULARITY_INDEX: &str = "idx_anime_popularity_desc_id";

#[expect(
    elided_lifetimes_in_paths,
    reason = "the trait's signature elides SchemaManager's lifetime; spelling it out does not match"
)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Anime::Table)
                    .if_not_exists()
                    .col(pk_auto(Anime::Id))
                    .col(string_len(Anime::Title, 255))
                    .col(string_len_null(Anime::TitleEnglish, 255))
                    // Enums are stored as their GraphQL names in short strings:
                    // portable across PostgreSQL and SQLite, readable in psql.
                    .col(string_len(Anime::Format, 16))
                    .col(integer_null(Anime::Episodes))
                    .col(string_len(Anime::Status, 16))
                    .col(string_len_null(Anime::Season, 16))
                    .col(integer_null(Anime::Year))
                    .col(double_null(Anime::Score))
                    .col(integer(Anime::Popularity).default(0))
                    // A JSON array of strings: jsonb on PostgreSQL, text on SQLite.
                    .col(json_binary(Anime::Genres))
                    .col(string_len(Anime::PictureUrl, 512))
                    .col(text(Anime::Synopsis))
                    .col(timestamp_with_time_zone(Anime::CreatedAt))
                    .col(timestamp_with_time_zone(Anime::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // Serves `ORDER BY popularity DESC, id ASC LIMIT n` as an index scan
        // with no sort step, on both backends.
        manager
            .create_index(
                Index::create()
                    .name(POPULARITY_INDEX)
                    .table(Anime::Table)
                    .col((Anime::Popularity, IndexOrder::Desc))
                    .col((Anime::Id, IndexOrder::Asc))
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Anime::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Anime {
    Table,
    Id,
    Title,
    TitleEnglish,
    Format,
    Episodes,
    Status,
    Season,
    Year,
    Score,
    Popularity,
    Genres,
    PictureUrl,
    Synopsis,
    CreatedAt,
    UpdatedAt,
}
