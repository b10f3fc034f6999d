// labdb merge: joins result databases (e.g. one per Slurm task) into a new one.
//
// The new file is made by lab::ResultStore, so it has exactly the schema this build of labrun
// writes; rows are then copied with plain SQL. Each run gets a new id and every row that refers
// to it (any table with a run_id column: params, metrics, plugins, artifacts, texts, and whatever
// later schema versions add) is copied with the new id. Columns are those of the new file's schema
// that the input also has, so inputs of older schema versions merge too.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <set>

#include "cli.h"
#include "lab/results.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb merge A.db B.db ... -o C.db [--force]\n"
    "\n"
    "Writes a new database C.db with every run of the inputs. Runs get new ids (params, metrics,\n"
    "plugins, artifacts and texts follow them) and keep their uid; a uid found in several inputs is\n"
    "copied once, from the first input that has it, with a warning. An existing C.db is refused\n"
    "unless --force is given. C.db appears only when the merge succeeded.";

// The columns of `table` in `to` that `from` has too, without `leave_out`.
std::vector<std::string> shared_columns(const Database& to, const Database& from, const std::string& table,
                                        const std::string& leave_out) {
    const std::vector<std::string> in_from = from.columns(table);
    std::vector<std::string> shared;
    for (const std::string& column : to.columns(table)) {
        if (column != leave_out && std::find(in_from.begin(), in_from.end(), column) != in_from.end()) {
            shared.push_back(column);
        }
    }
    for (const std::string& column : in_from) {
        if (column == leave_out) continue;
        const std::vector<std::string> in_to = to.columns(table);
        if (std::find(in_to.begin(), in_to.end(), column) == in_to.end()) {
            std::cerr << "labdb: warning: " << from.file().string() << ": column " << table << "." << column
                      << " is not in the schema of this labdb's results database and is not copied\n";
        }
    }
    return shared;
}

std::string column_list(const std::vector<std::string>& columns) {
    std::string text;
    for (const std::string& column : columns) text += (text.empty() ? "" : ", ") + quote_identifier(column);
    return text;
}

std::string placeholders(size_t first, size_t count) {
    std::string text;
    for (size_t i = 0; i < count; ++i) {
        text += i == 0 ? "?" : ", ?";
        text += std::to_string(first + i);
    }
    return text;
}

// Copies the rows of `table` whose run_id is `old_run` in `from` to `to` with run_id `new_run`.
// The statements are prepared per table and input, not per run.
class RunRowCopier {
 public:
    RunRowCopier(const Database& to, const Database& from, const std::string& table)
        : columns_(shared_columns(to, from, table, "run_id")),
          select_(from, "SELECT " + (columns_.empty() ? std::string("1") : column_list(columns_)) + " FROM " +
                            quote_identifier(table) + " WHERE run_id = ?1 ORDER BY rowid",
                  "read the " + table + " rows of a run"),
          insert_(to, "INSERT INTO " + quote_identifier(table) + " (run_id" +
                          (columns_.empty() ? "" : ", " + column_list(columns_)) + ") VALUES (?1" +
                          (columns_.empty() ? "" : ", " + placeholders(2, columns_.size())) + ")",
                  "copy a " + table + " row"),
          table_(table) {}

    int64_t copy(int64_t old_run, int64_t new_run) {
        select_.reset();
        select_.bind(1, old_run);
        int64_t copied = 0;
        while (select_.step()) {
            insert_.bind(1, new_run);
            for (size_t c = 0; c < columns_.size(); ++c) insert_.bind_column(static_cast<int>(c) + 2, select_, static_cast<int>(c));
            insert_.run();
            ++copied;
        }
        return copied;
    }
    const std::string& table() const { return table_; }

 private:
    std::vector<std::string> columns_;
    Statement select_, insert_;
    std::string table_;
};

std::vector<std::string> table_names(const Database& database) {
    Statement query(database,
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                    " ORDER BY name",
                    "list the tables");
    std::vector<std::string> names;
    while (query.step()) names.push_back(query.column_text(0));
    return names;
}

void remove_database_files(const std::filesystem::path& file) {
    std::error_code ignored;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(file.string() + suffix, ignored);
}

struct MergeCounts {
    int64_t runs = 0, duplicates = 0;
    std::map<std::string, int64_t> rows;  // table -> rows copied
};

// Copies every run of `input` (and its rows, and rows of tables not tied to a run) into `output`.
void merge_input(const Database& output, const Database& input, std::map<std::string, std::string>& uid_source,
                 MergeCounts& counts) {
    const std::vector<std::string> output_tables = table_names(output);
    std::vector<std::unique_ptr<RunRowCopier>> copiers;
    for (const std::string& table : output_tables) {
        if (table == "runs" || !input.has_table(table)) continue;
        if (output.has_column(table, "run_id") && input.has_column(table, "run_id")) {
            copiers.push_back(std::make_unique<RunRowCopier>(output, input, table));
        }
    }
    // Tables that are not about one run (the sweeps of schema version 2): rows already present
    // (the same sweep id from another input) are kept once.
    for (const std::string& table : output_tables) {
        if (table == "runs" || !input.has_table(table) || output.has_column(table, "run_id")) continue;
        const std::vector<std::string> columns = shared_columns(output, input, table, "");
        if (columns.empty()) continue;
        Statement select(input, "SELECT " + column_list(columns) + " FROM " + quote_identifier(table) + " ORDER BY rowid",
                         "read the " + table + " rows");
        Statement insert(output, "INSERT OR IGNORE INTO " + quote_identifier(table) + " (" + column_list(columns) +
                                     ") VALUES (" + placeholders(1, columns.size()) + ")",
                         "copy a " + table + " row");
        while (select.step()) {
            for (size_t c = 0; c < columns.size(); ++c) insert.bind_column(static_cast<int>(c) + 1, select, static_cast<int>(c));
            insert.run();
            counts.rows[table] += sqlite3_changes(output.handle());
        }
    }

    const std::vector<std::string> run_columns = shared_columns(output, input, "runs", "id");
    const auto uid_column = std::find(run_columns.begin(), run_columns.end(), "uid");
    if (uid_column == run_columns.end()) {
        throw lab::Error("'" + input.file().string() + "' has no runs.uid column, so it is not a labrun results " +
                         "database; hint: merge only databases written by labrun");
    }
    const int uid_index = static_cast<int>(uid_column - run_columns.begin()) + 1;
    Statement select_runs(input, "SELECT id, " + column_list(run_columns) + " FROM runs ORDER BY id",
                          "read the runs");
    Statement insert_run(output, "INSERT INTO runs (" + column_list(run_columns) + ") VALUES (" +
                                     placeholders(1, run_columns.size()) + ")",
                         "copy a run");
    while (select_runs.step()) {
        const int64_t old_id = select_runs.column_int(0);
        const std::string uid = select_runs.column_text(uid_index);
        const auto seen = uid_source.find(uid);
        if (seen != uid_source.end()) {
            std::cerr << "labdb: warning: run " << old_id << " of '" << input.file().string() << "' has uid " << uid
                      << ", already copied from '" << seen->second << "'; kept that copy only\n";
            ++counts.duplicates;
            continue;
        }
        for (size_t c = 0; c < run_columns.size(); ++c) insert_run.bind_column(static_cast<int>(c) + 1, select_runs, static_cast<int>(c) + 1);
        insert_run.run();
        const int64_t new_id = sqlite3_last_insert_rowid(output.handle());
        uid_source.emplace(uid, input.file().string());
        ++counts.runs;
        for (const auto& copier : copiers) counts.rows[copier->table()] += copier->copy(old_id, new_id);
    }
}

}  // namespace

int command_merge(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("merge options");
    options.add_options()
        ("output,o", po::value<std::string>(), "the new database file")
        ("force", po::bool_switch(), "replace the output file if it exists");
    po::options_description hidden;
    hidden.add_options()("input", po::value<std::vector<std::string>>(), "input databases");
    po::positional_options_description positional;
    positional.add("input", -1);
    const CommandLine command_line = parse_command_line(kUsage, options, hidden, positional, args, global, false);
    if (command_line.help) return kExitOk;
    if (!command_line.values.count("input")) throw UsageError("merge needs input databases; hint: labdb merge a.db b.db -o all.db");
    if (!command_line.values.count("output")) throw UsageError("merge needs -o OUTPUT.db");
    const std::vector<std::string> input_names = command_line.values["input"].as<std::vector<std::string>>();
    const std::filesystem::path output = command_line.values["output"].as<std::string>();
    const bool force = command_line.values["force"].as<bool>();

    std::error_code ec;
    const bool output_exists = std::filesystem::exists(output, ec);
    if (output_exists && !force) {
        throw lab::Error("merge: the output '" + output.string() + "' exists; hint: choose a new file name, or add " +
                         "--force to replace it");
    }
    if (output_exists && std::filesystem::is_directory(output, ec)) {
        throw lab::Error("merge: the output '" + output.string() + "' is a directory; hint: name a file, e.g. " +
                         (output / "merged.db").string());
    }
    // Opened (and checked) before the output is made, so a bad input leaves nothing behind.
    std::vector<std::unique_ptr<Database>> inputs;
    for (const std::string& name : input_names) {
        if (output_exists && std::filesystem::equivalent(name, output, ec)) {
            throw lab::Error("merge: the input '" + name + "' is also the output; hint: write the merge to a new file");
        }
        inputs.push_back(std::make_unique<Database>(name, Database::Mode::read_only));
    }

    const std::filesystem::path partial = output.string() + ".partial-" + std::to_string(::getpid());
    remove_database_files(partial);
    MergeCounts counts;
    try {
        { const lab::ResultStore schema_maker(partial); }
        {
            const Database merged(partial, Database::Mode::read_write);
            merged.execute("BEGIN IMMEDIATE", "begin the merge transaction");
            std::map<std::string, std::string> uid_source;
            for (const auto& input : inputs) merge_input(merged, *input, uid_source, counts);
            merged.execute("COMMIT", "commit the merge");
        }
        // Closing the last connection checkpointed the WAL into the file; a WAL left behind would be
        // separated from its database by the rename.
        if (std::filesystem::exists(partial.string() + "-wal", ec) && std::filesystem::file_size(partial.string() + "-wal", ec) > 0) {
            throw lab::Error("merge: '" + partial.string() + "-wal' was not checkpointed into the database; hint: " +
                             "another process has the new file open, retry the merge");
        }
        // A replaced database's own WAL and shared-memory files must not be paired with the new file.
        std::filesystem::remove(output.string() + "-wal", ec);
        std::filesystem::remove(output.string() + "-shm", ec);
        std::filesystem::rename(partial, output);
        remove_database_files(partial);
    } catch (...) {
        remove_database_files(partial);
        throw;
    }

    std::cout << "merged " << counts.runs << " runs from " << inputs.size() << " database"
              << (inputs.size() == 1 ? "" : "s") << " into " << output.string();
    if (counts.duplicates > 0) std::cout << " (" << counts.duplicates << " duplicate uid skipped)";
    std::cout << "\n";
    for (const auto& [table, rows] : counts.rows) std::cout << "  " << table << ": " << rows << " rows\n";
    return kExitOk;
}

}  // namespace labdb
