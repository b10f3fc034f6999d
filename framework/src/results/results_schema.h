// The DDL of every results-database schema version, as forward migrations (see lab/results.h).
// Internal to liblab: results.cpp runs them, tests keep literal copies of the released ones
// (tests/results_schema_history.h) to build old files by hand. A released migration is never
// edited; a change is a new migration.
#pragma once

namespace lab::results_schema {

// kMigrations[v] takes a database from PRAGMA user_version v to v + 1 (version 0 is an empty,
// new file). Each entry is several statements for sqlite3_exec and ends by setting its own
// user_version, so a migration is one unit inside the caller's transaction.
inline constexpr int kMigrationCount = 5;
extern const char* const kMigrations[kMigrationCount];

}  // namespace lab::results_schema
